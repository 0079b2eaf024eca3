//! The answer to a request shed at capacity: `503 overloaded` without
//! running it, to a usable MQTT 5 Response Topic (a payload `reply_to` is
//! not parsed for a shed request).

use super::exchange::request_id;
use super::reply_policy::ReplyPolicy;
use crate::middleware::{Authenticator, Credentials};
use crate::{ErrorKind, GatewayError, Headers, Inbound, Outbound, Reply, ReplyAddress};

pub(super) fn answer(
    policy: &ReplyPolicy,
    authenticator: &Authenticator,
    inbound: &Inbound,
) -> Option<Outbound> {
    metrics::counter!("routemq_requests_shed_total").increment(1);
    let topic = inbound.response_topic.clone()?;
    let headers = Headers::from_properties(&inbound.user_properties);
    let credentials = Credentials::new(authenticator, &headers);
    let (request_id, _) = request_id(&headers);
    let address = ReplyAddress {
        topic,
        correlation_data: inbound.correlation_data.clone(),
        from_payload: false,
    };
    if !policy.accept(&address, &request_id, &credentials) {
        return None;
    }
    let error = GatewayError::new(
        ErrorKind::Overloaded,
        "the worker is at capacity; retry later",
    )
    .with_property("retry-after", "1");
    let reply = Reply::error(&error, &request_id, None);
    Some(Outbound::new(address, reply, &request_id))
}
