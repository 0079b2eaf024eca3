use bytes::{Bytes, BytesMut};
use routemq_gateway::{Outbound, Reply, ReplyAddress};
use routemq_router::chunk::{sha256_hex, ChunkHeader};
use rumqttc::v5::mqttbytes::v5::Publish;
use rumqttc::v5::mqttbytes::QoS;

use super::{chunk_size, Chunks, MIN_CHUNK_BYTES};

fn reply_of(len: usize) -> Outbound {
    let address = ReplyAddress {
        topic: "replies/anonymous/client-1".into(),
        correlation_data: Some(Bytes::from_static(b"0123456789abcdef")),
        from_payload: false,
    };
    let payload: Vec<u8> = (0..len).map(|index| (index % 251) as u8).collect();
    let reply = Reply {
        status: 200,
        payload: payload.into(),
        replayed: false,
        properties: vec![("etag".into(), "\"v1\"".into())],
        large: None,
    };
    Outbound::new(address, reply, "req-1")
}

#[test]
fn every_chunk_fits_the_packet_limit_and_together_they_are_the_reply() {
    let limit = 16 * 1024;
    let reply = reply_of(100_000);
    let whole = reply.payload.clone();
    let size = chunk_size(&reply, limit).expect("room for chunks");
    let chunks: Vec<_> = Chunks::new(reply, size).collect();
    assert_eq!(chunks.len(), 100_000usize.div_ceil(size));
    let mut joined = BytesMut::new();
    for (index, (topic, payload, properties)) in chunks.iter().enumerate() {
        let header = ChunkHeader::parse(&properties.user_properties)
            .expect("a chunk")
            .expect("well formed");
        assert_eq!(header.index as usize, index);
        assert_eq!(header.count as usize, chunks.len());
        assert_eq!(header.total, 100_000);
        assert_eq!(header.sha256, sha256_hex(&whole));
        assert!(properties
            .user_properties
            .contains(&("etag".into(), "\"v1\"".into())));
        assert_eq!(properties.payload_format_indicator, None);
        let mut publish = Publish::new(
            topic.as_str(),
            QoS::AtLeastOnce,
            payload.clone(),
            Some(properties.clone()),
        );
        publish.pkid = 1;
        assert!(publish.size() <= limit, "{} > {limit}", publish.size());
        joined.extend_from_slice(payload);
    }
    assert_eq!(joined.freeze(), whole);
}

#[test]
fn a_limit_without_room_for_a_useful_chunk_gives_none() {
    let reply = reply_of(10_000);
    let header_and_framing = 400;
    assert_eq!(chunk_size(&reply, header_and_framing), None);
    assert!(chunk_size(&reply, header_and_framing + MIN_CHUNK_BYTES).is_some());
}
