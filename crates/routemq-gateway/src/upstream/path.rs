use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use thiserror::Error;

use crate::{ErrorKind, GatewayError};

/// Everything but RFC 3986 unreserved characters is percent-encoded, so a
/// param can never add a `/`, `?`, `#` or `%`-escape to the upstream path.
const PARAM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Param(String),
}

/// An upstream path such as `/users/{user_id}`, filled from topic params.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    pieces: Vec<Piece>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PathTemplateError {
    #[error("upstream path `{0}` must start with `/`")]
    NotAbsolute(String),
    #[error("upstream path `{0}` has an unclosed or stray brace")]
    Brace(String),
    #[error("upstream path `{0}` may not contain `?` or `#`")]
    QueryOrFragment(String),
}

/// As written in the configuration: `/users/{user_id}`.
impl std::fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for piece in &self.pieces {
            match piece {
                Piece::Literal(literal) => f.write_str(literal)?,
                Piece::Param(name) => write!(f, "{{{name}}}")?,
            }
        }
        Ok(())
    }
}

impl PathTemplate {
    pub fn parse(template: &str) -> Result<Self, PathTemplateError> {
        if !template.starts_with('/') {
            return Err(PathTemplateError::NotAbsolute(template.into()));
        }
        if template.contains(['?', '#']) {
            return Err(PathTemplateError::QueryOrFragment(template.into()));
        }
        let mut pieces = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            let (literal, after) = rest.split_at(open);
            if literal.contains('}') {
                return Err(PathTemplateError::Brace(template.into()));
            }
            let close = after
                .find('}')
                .ok_or_else(|| PathTemplateError::Brace(template.into()))?;
            let name = &after[1..close];
            if name.is_empty() || name.contains('{') {
                return Err(PathTemplateError::Brace(template.into()));
            }
            if !literal.is_empty() {
                pieces.push(Piece::Literal(literal.into()));
            }
            pieces.push(Piece::Param(name.into()));
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err(PathTemplateError::Brace(template.into()));
        }
        if !rest.is_empty() {
            pieces.push(Piece::Literal(rest.into()));
        }
        Ok(PathTemplate { pieces })
    }

    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|piece| match piece {
            Piece::Param(name) => Some(name.as_str()),
            Piece::Literal(_) => None,
        })
    }

    /// Renders the path, percent-encoding each param. `.` and `..` are
    /// refused outright: URL parsers resolve them (even as `%2e%2e`), which
    /// would let a param climb out of its path segment.
    pub fn render<'a>(
        &self,
        lookup: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<String, GatewayError> {
        let mut path = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(literal) => path.push_str(literal),
                Piece::Param(name) => {
                    let value = lookup(name).ok_or_else(|| {
                        GatewayError::new(
                            ErrorKind::Internal,
                            format!("path parameter `{name}` has no value"),
                        )
                    })?;
                    if value == "." || value == ".." {
                        return Err(GatewayError::new(
                            ErrorKind::InvalidParam,
                            format!("parameter `{name}` may not be `{value}`"),
                        ));
                    }
                    path.extend(utf8_percent_encode(value, PARAM));
                }
            }
        }
        Ok(path)
    }
}
