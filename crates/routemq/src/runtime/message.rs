//! Conversions between rumqttc packets and the gateway's request and reply types.

use std::time::{Duration, Instant};

use routemq_gateway::{Inbound, Outbound};
use rumqttc::v5::mqttbytes::v5::{Publish, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;

pub fn inbound(publish: &Publish, received_at: Instant) -> Inbound {
    let properties = publish.properties.as_ref();
    Inbound {
        topic: publish.topic.clone(),
        payload: publish.payload.clone(),
        qos: publish.qos as u8,
        response_topic: properties.and_then(|p| p.response_topic.clone()),
        correlation_data: properties.and_then(|p| p.correlation_data.clone()),
        user_properties: properties
            .map(|p| p.user_properties.clone())
            .unwrap_or_default(),
        message_expiry: properties
            .and_then(|p| p.message_expiry_interval)
            .map(|seconds| Duration::from_secs(u64::from(seconds))),
        received_at,
    }
}

pub fn reply_properties(outbound: &Outbound) -> PublishProperties {
    PublishProperties {
        payload_format_indicator: Some(1),
        content_type: Some("application/json".into()),
        correlation_data: outbound.correlation_data.clone(),
        user_properties: outbound.user_properties.clone(),
        ..PublishProperties::default()
    }
}

pub fn qos(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// The encoded size of the PUBLISH that carries `reply`, as the broker's
/// Maximum Packet Size counts it (a QoS 1/2 packet id included).
pub fn packet_size(reply: &Outbound, qos: QoS) -> usize {
    let mut publish = Publish::new(
        reply.topic.as_str(),
        qos,
        reply.payload.clone(),
        Some(reply_properties(reply)),
    );
    publish.pkid = 1;
    publish.size()
}
