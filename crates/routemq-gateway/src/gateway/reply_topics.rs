//! Where replies may go. A client picks its reply address (MQTT 5 Response
//! Topic, or `reply_to` in the payload), and the gateway publishes there with
//! its own broker permissions: without a bound, any client could aim replies,
//! with Correlation Data of its choosing, at any topic (a confused deputy).
//! So reply topics must match an allowlist of filters whose `{sub}` and
//! `{iss}` levels are bound to the caller's verified identity: with
//! `replies/{sub}/#`, a caller whose token says `sub = alice` may only be
//! answered under `replies/alice/`.
//!
//! A placeholder fills exactly one topic level with the value encoded by
//! [`encode_level`]: bytes outside `A–Z a–z 0–9 - _ .` are percent-encoded
//! (so `/`, `+`, `#`, `$`, `%` and `~` never appear raw), and a value whose
//! encoding is longer than 64 bytes is replaced by `~` and the hex
//! SHA-256 of the raw value. Filters without placeholders match any caller,
//! anonymous ones included: for those, confinement comes from the broker's
//! ACLs (`deploy/mosquitto/`, `deploy/emqx/`).

use routemq_router::{encode_level, filter_matches};

use crate::middleware::Identity;

/// One topic level of an allowlisted filter.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Literal(String),
    /// `+`: any one level.
    Any,
    /// `#`: the rest, last level only.
    Rest,
    Subject,
    Issuer,
}

/// One allowlisted filter, with the MQTT filters the per-request checks
/// match against made once, at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Filter {
    levels: Vec<Level>,
    /// The filter itself when it has no placeholder: it serves anyone.
    open: Option<String>,
    /// The filter with its placeholders as `+`: could some identity match?
    shape: String,
}

impl Filter {
    fn new(levels: Vec<Level>) -> Filter {
        let shape: Vec<&str> = levels
            .iter()
            .map(|level| match level {
                Level::Literal(text) => text.as_str(),
                Level::Any | Level::Subject | Level::Issuer => "+",
                Level::Rest => "#",
            })
            .collect();
        let shape = shape.join("/");
        let bound = levels
            .iter()
            .any(|level| matches!(level, Level::Subject | Level::Issuer));
        Filter {
            open: (!bound).then(|| shape.clone()),
            levels,
            shape,
        }
    }
}

/// The reply-topic allowlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTopics {
    filters: Vec<Filter>,
}

/// How a reply topic fares against the allowlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Only a filter bound to an identity could match: the caller's verified
    /// identity decides.
    NeedsIdentity,
    Refused,
}

impl ReplyTopics {
    /// Every topic allowed (the gateway's structural checks still apply).
    pub fn any() -> ReplyTopics {
        ReplyTopics {
            filters: vec![Filter::new(vec![Level::Rest])],
        }
    }

    /// Parses filters such as `replies/{sub}/#`; a placeholder must be a whole level.
    pub fn parse<S: AsRef<str>>(filters: &[S]) -> Result<ReplyTopics, String> {
        let filters = filters
            .iter()
            .map(|filter| parse_filter(filter.as_ref()).map(Filter::new))
            .collect::<Result<Vec<_>, _>>()?;
        if filters.is_empty() {
            return Err("the reply-topic allowlist is empty: no reply could be sent".into());
        }
        Ok(ReplyTopics { filters })
    }

    /// The check made before anything else runs, without an identity.
    pub fn precheck(&self, topic: &str) -> Verdict {
        let open = |f: &Filter| {
            f.open
                .as_deref()
                .is_some_and(|open| filter_matches(open, topic))
        };
        if self.filters.iter().any(open) {
            return Verdict::Allowed;
        }
        if self.filters.iter().any(|f| filter_matches(&f.shape, topic)) {
            return Verdict::NeedsIdentity;
        }
        Verdict::Refused
    }

    /// Whether `topic` may receive a reply for `identity`.
    pub fn allows(&self, topic: &str, identity: Option<&Identity>) -> bool {
        self.filters
            .iter()
            .any(|f| matches(&f.levels, topic, identity))
    }
}

fn parse_filter(filter: &str) -> Result<Vec<Level>, String> {
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len() - 1;
    levels
        .iter()
        .enumerate()
        .map(|(index, level)| match *level {
            "{sub}" => Ok(Level::Subject),
            "{iss}" => Ok(Level::Issuer),
            "+" => Ok(Level::Any),
            "#" if index == last => Ok(Level::Rest),
            "#" => Err(format!("reply topic filter `{filter}`: `#` must be the last level")),
            literal if literal.contains(['+', '#', '{', '}']) => Err(format!(
                "reply topic filter `{filter}`: `{literal}` mixes a wildcard or placeholder into a level"
            )),
            literal if index == 0 && literal.starts_with('$') => Err(format!(
                "reply topic filter `{filter}`: `$` topics belong to the broker"
            )),
            literal => Ok(Level::Literal(literal.to_string())),
        })
        .collect()
}

/// The filter as an MQTT filter, its placeholders bound or, without an
/// identity, unmatched (a filter needing an identity never matches without one).
fn matches(filter: &[Level], topic: &str, identity: Option<&Identity>) -> bool {
    let mut levels = Vec::with_capacity(filter.len());
    for level in filter {
        levels.push(match level {
            Level::Literal(text) => text.clone(),
            Level::Any => "+".into(),
            Level::Rest => "#".into(),
            Level::Subject => match identity {
                Some(identity) => encode_level(&identity.subject),
                None => return false,
            },
            Level::Issuer => match identity {
                Some(identity) => encode_level(identity.issuer.as_deref().unwrap_or_default()),
                None => return false,
            },
        });
    }
    filter_matches(&levels.join("/"), topic)
}

#[cfg(test)]
mod tests;
