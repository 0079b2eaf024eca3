//! Topic routing for RouteMQ Gateway.
//!
//! A [`RouteTable`] is built once from a tree of [`Group`]s and routes. Building
//! rejects malformed patterns and any two routes that could match the same
//! topic, so matching at run time is unambiguous and never fails for a reason
//! the operator could have been told at start-up.
#![forbid(unsafe_code)]

pub mod chunk;
mod error;
mod filter;
mod group;
mod level;
mod pattern;
mod table;
mod text;

pub use error::RouteError;
pub use filter::{filter_matches, is_valid_topic_name, SubscriptionFilter};
pub use group::{Group, RouteSpec};
pub use level::{
    encode_level, identity_level, is_safe_level, MAX_LEVEL_BYTES, MAX_RAW_LEVEL_BYTES,
};
pub use pattern::{Segment, TopicPattern};
pub use table::{Match, Params, Qos, Route, RouteTable};
pub use text::{is_allowed_char, is_mqtt_string, topic_levels, MAX_STRING_BYTES};

#[cfg(test)]
mod tests;
