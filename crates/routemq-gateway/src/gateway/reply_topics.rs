//! Where replies may go. A client picks its reply address (MQTT 5 Response
//! Topic, or `reply_to` in the payload), and the gateway publishes there with
//! its own broker permissions: without a bound, any client could aim replies,
//! with Correlation Data of its choosing, at any topic (a confused deputy).
//! So reply topics must match an allowlist of filters whose `{sub}` and
//! `{iss}` levels are bound to the caller's verified identity: with
//! `replies/{sub}/#`, a caller whose token says `sub = alice` may only be
//! answered under `replies/alice/`.
//!
//! A placeholder fills exactly one topic level with the value mapped by
//! [`identity_level`]: the value itself when it is a safe level (an e-mail
//! address, a UUID — what broker ACLs substitute for the user name), else
//! percent-encoded with upper-case hex, or hashed when long. During a
//! deprecation window (`legacy_levels`, on by default) the older mapping
//! that encoded every value ([`encode_level`]) is accepted too. Filters
//! without placeholders match any caller, anonymous ones included: for
//! those, confinement comes from the broker's ACLs (`deploy/mosquitto/`,
//! `deploy/emqx/`).

use routemq_router::{encode_level, filter_matches, identity_level};

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
    /// Whether an identity level in the older, always-encoded form is
    /// accepted beside the canonical one.
    legacy_levels: bool,
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
            legacy_levels: true,
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
        Ok(ReplyTopics {
            filters,
            legacy_levels: true,
        })
    }

    /// Whether the older identity levels (every value percent-encoded,
    /// `ada%40example.com`) are still accepted beside the canonical ones.
    pub fn with_legacy_levels(mut self, accepted: bool) -> ReplyTopics {
        self.legacy_levels = accepted;
        self
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
            .any(|f| matches(&f.levels, topic, identity, self.legacy_levels))
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

/// Whether `topic` matches the filter with its placeholders bound to
/// `identity`'s canonical levels or, with `legacy`, to its older ones; a
/// filter needing an identity never matches without one.
fn matches(filter: &[Level], topic: &str, identity: Option<&Identity>, legacy: bool) -> bool {
    let Some(bound) = bind(filter, identity, identity_level) else {
        return false;
    };
    if filter_matches(&bound, topic) {
        return true;
    }
    legacy
        && bind(filter, identity, encode_level)
            .is_some_and(|old| old != bound && filter_matches(&old, topic))
}

/// The filter as an MQTT filter, each placeholder filled by `level` of the
/// identity's value; `None` when it has a placeholder and there is no identity.
fn bind(
    filter: &[Level],
    identity: Option<&Identity>,
    level: fn(&str) -> String,
) -> Option<String> {
    let mut levels = Vec::with_capacity(filter.len());
    for part in filter {
        levels.push(match part {
            Level::Literal(text) => text.clone(),
            Level::Any => "+".into(),
            Level::Rest => "#".into(),
            Level::Subject => level(&identity?.subject),
            Level::Issuer => level(identity?.issuer.as_deref().unwrap_or_default()),
        });
    }
    Some(levels.join("/"))
}

#[cfg(test)]
mod tests;
