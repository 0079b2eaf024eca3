use std::fmt;

use crate::RouteError;

/// One level of a topic pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// Matches exactly this topic level.
    Literal(String),
    /// `{name}`: matches any single non-empty topic level and captures it.
    Param(String),
}

/// A parsed topic pattern such as `api/v1/users/get/{user_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicPattern {
    segments: Vec<Segment>,
}

impl TopicPattern {
    /// Parses a full pattern. Levels are separated by `/`; empty levels, MQTT
    /// wildcards and half-braced levels are refused because they would make the
    /// pattern mean something other than what it reads as.
    pub fn parse(pattern: &str) -> Result<Self, RouteError> {
        let invalid = |reason: &str| RouteError::InvalidPattern {
            pattern: pattern.to_string(),
            reason: reason.to_string(),
        };
        if pattern.is_empty() {
            return Err(invalid("it is empty"));
        }
        if pattern.starts_with('$') {
            return Err(invalid(
                "topics starting with `$` are reserved by the broker",
            ));
        }
        let mut segments = Vec::new();
        for level in pattern.split('/') {
            segments.push(parse_segment(level).map_err(|reason| invalid(&reason))?);
        }
        let mut names: Vec<&str> = segments
            .iter()
            .filter_map(|segment| match segment {
                Segment::Param(name) => Some(name.as_str()),
                Segment::Literal(_) => None,
            })
            .collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(invalid(&format!(
                "parameter `{{{}}}` appears twice",
                pair[0]
            )));
        }
        Ok(TopicPattern { segments })
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Names of the parameters in the order they appear.
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|segment| match segment {
            Segment::Param(name) => Some(name.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// A concrete topic that both patterns match, if there is one.
    pub(crate) fn overlap(&self, other: &TopicPattern) -> Option<String> {
        if self.segments.len() != other.segments.len() {
            return None;
        }
        let mut levels = Vec::with_capacity(self.segments.len());
        for (left, right) in self.segments.iter().zip(&other.segments) {
            let level = match (left, right) {
                (Segment::Literal(a), Segment::Literal(b)) if a != b => return None,
                (Segment::Literal(a), _) | (_, Segment::Literal(a)) => a.as_str(),
                (Segment::Param(_), Segment::Param(_)) => "x",
            };
            levels.push(level);
        }
        Some(levels.join("/"))
    }
}

fn parse_segment(level: &str) -> Result<Segment, String> {
    if level.is_empty() {
        return Err("it has an empty topic level (leading, trailing or double `/`)".into());
    }
    if level.contains(['+', '#']) {
        return Err(format!("level `{level}` contains an MQTT wildcard"));
    }
    if level.contains('\0') {
        return Err("it contains a NUL character".into());
    }
    let braced = level.starts_with('{') && level.ends_with('}') && level.len() >= 2;
    if braced {
        let name = &level[1..level.len() - 1];
        if !is_identifier(name) {
            return Err(format!(
                "parameter `{level}` must be `{{name}}` with a name of letters, digits and `_`, not starting with a digit"
            ));
        }
        return Ok(Segment::Param(name.to_string()));
    }
    if level.contains(['{', '}']) {
        return Err(format!(
            "level `{level}` has a brace but is not a whole `{{param}}` level"
        ));
    }
    Ok(Segment::Literal(level.to_string()))
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) if first.is_ascii_alphabetic() || first == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, segment) in self.segments.iter().enumerate() {
            if index > 0 {
                f.write_str("/")?;
            }
            match segment {
                Segment::Literal(literal) => f.write_str(literal)?,
                Segment::Param(name) => write!(f, "{{{name}}}")?,
            }
        }
        Ok(())
    }
}
