//! Putting a chunked reply back together (`docs/protocol.md`, Chunked
//! replies). Chunks may arrive twice (a broker redelivers after a
//! reconnect) or, from a request answered twice (a worker that died after
//! publishing and before acking), as two different replies: each reply is
//! assembled apart, told by its digest, and the first complete one wins.
//! Memory grows only with what arrives, bounded by the declared total,
//! which is bounded by the client's `max_chunked_reply_bytes`.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use routemq_router::chunk::{
    sha256_hex, ChunkHeader, CHUNK_COUNT, CHUNK_INDEX, CHUNK_SHA256, CHUNK_TOTAL,
};

use crate::{ClientError, Reply};

/// At most this many different replies are assembled for one request.
const MAX_REPLIES: usize = 2;

/// One chunk as it arrived.
pub(crate) struct Chunk {
    pub header: ChunkHeader,
    pub payload: Bytes,
    pub user_properties: Vec<(String, String)>,
    pub content_type: Option<String>,
}

/// What feeding a chunk led to.
pub(crate) enum Fed {
    Waiting,
    Done(Reply),
    Failed(ClientError),
}

/// The chunked replies to one request, as far as they have arrived.
#[derive(Default)]
pub(crate) struct Reassembly {
    replies: Vec<Assembly>,
}

/// The chunks of one reply received so far.
struct Assembly {
    header: ChunkHeader,
    parts: BTreeMap<u32, Bytes>,
    bytes: u64,
    user_properties: Vec<(String, String)>,
    content_type: Option<String>,
}

impl Reassembly {
    /// Adds a chunk; a reply is done once all its chunks are in and its
    /// length and digest check out.
    pub(crate) fn feed(&mut self, chunk: Chunk, max_bytes: u64) -> Fed {
        let header = &chunk.header;
        if header.total > max_bytes {
            return Fed::Failed(ClientError::BadChunks(format!(
                "the reply declares {} bytes; this client takes at most {max_bytes}",
                header.total
            )));
        }
        let position = self.replies.iter().position(|assembly| {
            let known = &assembly.header;
            (known.sha256.as_str(), known.count, known.total)
                == (header.sha256.as_str(), header.count, header.total)
        });
        let position = match position {
            Some(position) => position,
            None if self.replies.len() >= MAX_REPLIES => return Fed::Waiting,
            None => {
                self.replies.push(Assembly::new(&chunk));
                self.replies.len() - 1
            }
        };
        let assembly = &mut self.replies[position];
        if assembly.parts.contains_key(&header.index) {
            return Fed::Waiting;
        }
        assembly.bytes += chunk.payload.len() as u64;
        if assembly.bytes > assembly.header.total {
            return Fed::Failed(ClientError::BadChunks(
                "the chunks hold more bytes than the reply declares".into(),
            ));
        }
        assembly.parts.insert(header.index, chunk.payload);
        if assembly.parts.len() < assembly.header.count as usize {
            return Fed::Waiting;
        }
        let done = self.replies.swap_remove(position);
        match done.joined() {
            Ok(reply) => Fed::Done(reply),
            Err(error) => Fed::Failed(error),
        }
    }

    /// The chunks received and expected of the reply furthest along.
    pub(crate) fn progress(&self) -> Option<(u32, u32)> {
        self.replies
            .iter()
            .map(|assembly| (assembly.parts.len() as u32, assembly.header.count))
            .max()
    }
}

impl Assembly {
    fn new(first: &Chunk) -> Assembly {
        let chunk_properties = [CHUNK_INDEX, CHUNK_COUNT, CHUNK_TOTAL, CHUNK_SHA256];
        Assembly {
            header: first.header.clone(),
            parts: BTreeMap::new(),
            bytes: 0,
            user_properties: first
                .user_properties
                .iter()
                .filter(|(name, _)| !chunk_properties.contains(&name.as_str()))
                .cloned()
                .collect(),
            content_type: first.content_type.clone(),
        }
    }

    /// The whole reply, once its length and digest match its header.
    fn joined(self) -> Result<Reply, ClientError> {
        let mut payload = BytesMut::with_capacity(self.bytes as usize);
        for part in self.parts.values() {
            payload.extend_from_slice(part);
        }
        if payload.len() as u64 != self.header.total {
            return Err(ClientError::BadChunks(format!(
                "the chunks hold {} bytes; the reply declares {}",
                payload.len(),
                self.header.total
            )));
        }
        if sha256_hex(&payload) != self.header.sha256 {
            return Err(ClientError::BadChunks(
                "the reassembled reply does not match its SHA-256".into(),
            ));
        }
        Ok(Reply::new(
            payload.freeze(),
            self.user_properties,
            self.content_type,
        ))
    }
}

#[cfg(test)]
mod tests;
