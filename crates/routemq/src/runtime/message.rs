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

/// The PUBLISH parts of `outbound`, moved out of it: topic, payload, properties.
pub fn into_publish(outbound: Outbound) -> (String, bytes::Bytes, PublishProperties) {
    let properties = PublishProperties {
        payload_format_indicator: Some(1),
        content_type: Some(CONTENT_TYPE.into()),
        correlation_data: outbound.correlation_data().cloned(),
        user_properties: outbound.user_properties,
        ..PublishProperties::default()
    };
    (outbound.address.topic, outbound.payload, properties)
}

const CONTENT_TYPE: &str = "application/json";

fn reply_properties(outbound: &Outbound) -> PublishProperties {
    PublishProperties {
        payload_format_indicator: Some(1),
        content_type: Some(CONTENT_TYPE.into()),
        correlation_data: outbound.correlation_data().cloned(),
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
        reply.topic(),
        qos,
        reply.payload.clone(),
        Some(reply_properties(reply)),
    );
    publish.pkid = 1;
    publish.size()
}

/// An upper bound on [`packet_size`] from lengths alone, so a reply well
/// under the broker's limit is not encoded twice to find out.
pub fn packet_size_bound(reply: &Outbound) -> usize {
    size_bound(
        reply.topic().len(),
        reply.payload.len(),
        reply.correlation_data().map_or(0, |data| data.len()),
        &reply.user_properties,
    )
}

/// [`packet_size_bound`] of `reply` with a payload of `payload` bytes and
/// `extra` user properties: what sizing its chunks starts from.
pub fn size_bound_with(reply: &Outbound, payload: usize, extra: &[(String, String)]) -> usize {
    let extra: usize = extra
        .iter()
        .map(|(name, value)| 5 + name.len() + value.len())
        .sum();
    packet_size_bound(reply) - reply.payload.len() + payload + extra
}

fn size_bound(
    topic: usize,
    payload: usize,
    correlation: usize,
    user_properties: &[(String, String)],
) -> usize {
    // Fixed header (type + up to 4 length bytes), topic length, packet id,
    // properties length (up to 4), payload format (2), content type (3 +
    // its text), correlation data framing (3); 5 bytes framing each user property.
    const FRAMING: usize = 5 + 2 + 2 + 4 + 2 + 3 + CONTENT_TYPE.len() + 3;
    let user_properties: usize = user_properties
        .iter()
        .map(|(name, value)| 5 + name.len() + value.len())
        .sum();
    FRAMING + topic + payload + correlation + user_properties
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_bound_is_never_below_the_encoded_size() {
        for (topic, payload, correlation, properties) in [
            (1, 0, 0, 0),
            (20, 100, 16, 2),
            (200, 70_000, 0, 5),
            (65_000, 3_000_000, 40_000, 40),
        ] {
            let user_properties: Vec<(String, String)> = (0..properties)
                .map(|index| (format!("name-{index}"), "v".repeat(index * 7)))
                .collect();
            let mut publish = Publish::new(
                "t".repeat(topic),
                QoS::ExactlyOnce,
                vec![b'x'; payload],
                Some(PublishProperties {
                    payload_format_indicator: Some(1),
                    content_type: Some(CONTENT_TYPE.into()),
                    correlation_data: (correlation > 0).then(|| vec![7u8; correlation].into()),
                    user_properties: user_properties.clone(),
                    ..PublishProperties::default()
                }),
            );
            publish.pkid = 1;
            let exact = publish.size();
            let bound = size_bound(topic, payload, correlation, &user_properties);
            assert!(bound >= exact, "{bound} < {exact}");
            assert!(bound <= exact + 16, "a close bound: {bound} vs {exact}");
        }
    }
}
