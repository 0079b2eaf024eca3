//! A reply too large for one packet, as the chunks a caller reassembles
//! (`docs/protocol.md`, Chunked replies; the wire format is
//! [`routemq_router::chunk`]).
//!
//! Each chunk is a PUBLISH of its own on the reply's topic, with its
//! Correlation Data, the reply's user properties and the chunk header, so
//! a client can act on any chunk it gets first. Chunks carry no Payload
//! Format Indicator: a chunk boundary may split a UTF-8 character.

use bytes::Bytes;
use routemq_gateway::Outbound;
use routemq_router::chunk::{sha256_hex, ChunkHeader, Split};
use rumqttc::v5::mqttbytes::v5::PublishProperties;

use super::message;

/// The smallest chunk payload worth sending: a broker that leaves less room
/// than this under its packet size gets `502 reply_too_large` instead.
pub const MIN_CHUNK_BYTES: usize = 1024;

/// How many payload bytes each chunk of `reply` carries to stay within
/// `limit` bytes a packet; `None` when that leaves under [`MIN_CHUNK_BYTES`].
pub fn chunk_size(reply: &Outbound, limit: usize) -> Option<usize> {
    let header = ChunkHeader::widest(reply.payload.len()).properties();
    let overhead = message::size_bound_with(reply, 0, &header);
    limit
        .checked_sub(overhead)
        .filter(|room| *room >= MIN_CHUNK_BYTES)
}

/// The chunks of one reply, in order, as PUBLISH parts: topic, payload,
/// properties.
pub struct Chunks {
    topic: String,
    payload: Bytes,
    properties: PublishProperties,
    split: Split,
}

impl Chunks {
    /// Splits `reply` into chunks of `size` bytes (the last may be
    /// shorter). Hashes the whole payload: call it off the async threads
    /// for a large one.
    pub fn new(reply: Outbound, size: usize) -> Chunks {
        let split = Split::new(reply.payload.len(), size, sha256_hex(&reply.payload));
        let (topic, payload, mut properties) = message::into_publish(reply);
        properties.payload_format_indicator = None;
        Chunks {
            topic,
            payload,
            properties,
            split,
        }
    }

    /// How many chunks the reply has.
    pub fn chunk_count(&self) -> usize {
        self.split.chunk_count()
    }
}

impl Iterator for Chunks {
    type Item = (String, Bytes, PublishProperties);

    fn next(&mut self) -> Option<Self::Item> {
        let (header, range) = self.split.next()?;
        let mut properties = self.properties.clone();
        properties.user_properties.extend(header.properties());
        Some((self.topic.clone(), self.payload.slice(range), properties))
    }
}

#[cfg(test)]
mod tests;
