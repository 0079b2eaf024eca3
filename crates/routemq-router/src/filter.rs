use std::collections::BTreeMap;

use crate::{Qos, Segment, TopicPattern};

/// A topic filter a worker subscribes to, with the QoS to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionFilter {
    pub filter: String,
    pub qos: Qos,
}

impl SubscriptionFilter {
    /// The filter as a shared subscription of `group`, e.g. `$share/gw/api/#`.
    pub fn shared(&self, group: &str) -> String {
        format!("$share/{group}/{}", self.filter)
    }
}

/// One filter per first topic level: `level/#` when routes go deeper, `level`
/// for a one-level route, `#` when a route starts with a parameter. Coarse on
/// purpose: a few broad filters keep the broker's subscription tree small, and
/// topics under them without a route get a 404 reply rather than silence.
pub(crate) fn derive_filters<'a>(
    routes: impl Iterator<Item = (&'a TopicPattern, Qos)>,
) -> Vec<SubscriptionFilter> {
    let mut by_filter: BTreeMap<String, Qos> = BTreeMap::new();
    let mut add = |filter: String, qos: Qos| {
        let entry = by_filter.entry(filter).or_insert(qos);
        *entry = (*entry).max(qos);
    };
    for (pattern, qos) in routes {
        let segments = pattern.segments();
        match &segments[0] {
            Segment::Param(_) => add("#".to_string(), qos),
            Segment::Literal(first) if segments.len() == 1 => add(first.clone(), qos),
            Segment::Literal(first) => add(format!("{first}/#"), qos),
        }
    }
    if let Some(&qos) = by_filter.get("#") {
        // `#` covers every other filter; subscribing to both would deliver twice.
        return vec![SubscriptionFilter {
            filter: "#".to_string(),
            qos: by_filter.values().copied().max().unwrap_or(qos),
        }];
    }
    by_filter
        .into_iter()
        .map(|(filter, qos)| SubscriptionFilter { filter, qos })
        .collect()
}

/// MQTT topic-filter matching (MQTT 5 §4.7): `+` is one level, a trailing `#`
/// any number of levels including none, and wildcards never match a first
/// level starting with `$`.
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether `topic` can be published to: non-empty, no wildcards, and a
/// string every broker accepts ([`crate::is_mqtt_string`]). Level and byte
/// caps below the protocol's are the caller's to apply.
pub fn is_valid_topic_name(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#']) && crate::is_mqtt_string(topic)
}
