//! The wire format of a chunked reply (`docs/protocol.md`, Chunked
//! replies), defined once for the worker that writes it and the clients
//! that read it.
//!
//! A reply larger than the broker's Maximum Packet Size goes out as
//! `count` PUBLISH packets on the request's Response Topic, each with its
//! Correlation Data and four user properties: its `index` (from 0), the
//! `count`, the `total` length of the whole payload and its SHA-256. The
//! payloads, in index order, are the reply's payload.

use sha2::{Digest, Sha256};

/// The request user property by which a caller says it reassembles
/// chunked replies: `1`, or the largest packet it takes in bytes (see
/// [`accepted_packet_size`]).
pub const ACCEPT_CHUNKS: &str = "x-accept-chunks";

/// The smallest packet size a caller may name: less leaves no useful room
/// for a chunk beside the packet's properties.
pub const MIN_ACCEPTED_PACKET: usize = 1024;
/// The chunk's position, from 0.
pub const CHUNK_INDEX: &str = "x-chunk-index";
/// How many chunks the reply has.
pub const CHUNK_COUNT: &str = "x-chunk-count";
/// The length of the whole payload, in bytes.
pub const CHUNK_TOTAL: &str = "x-chunk-total";
/// The SHA-256 of the whole payload, 64 lower-case hex digits.
pub const CHUNK_SHA256: &str = "x-chunk-sha256";

/// What one chunk says about itself and the reply it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkHeader {
    pub index: u32,
    pub count: u32,
    pub total: u64,
    pub sha256: String,
}

/// Why a message that claims to be a chunk cannot be one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed chunk: {0}")]
pub struct MalformedChunk(&'static str);

impl ChunkHeader {
    /// The header of chunk `index` of `count` of `payload`, whose digest
    /// is `sha256` (computed once per reply by [`sha256_hex`]).
    pub fn new(index: u32, count: u32, payload_len: usize, sha256: &str) -> ChunkHeader {
        ChunkHeader {
            index,
            count,
            total: payload_len as u64,
            sha256: sha256.to_string(),
        }
    }

    /// The user properties that carry it.
    pub fn properties(&self) -> [(String, String); 4] {
        [
            (CHUNK_INDEX.into(), self.index.to_string()),
            (CHUNK_COUNT.into(), self.count.to_string()),
            (CHUNK_TOTAL.into(), self.total.to_string()),
            (CHUNK_SHA256.into(), self.sha256.clone()),
        ]
    }

    /// `None` when the message is not a chunk (it has no `x-chunk-index`);
    /// an error when it says it is one but its header does not add up.
    pub fn parse(properties: &[(String, String)]) -> Option<Result<ChunkHeader, MalformedChunk>> {
        let get = |name: &str| {
            properties
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        let index = get(CHUNK_INDEX)?;
        Some(Self::parse_fields(
            index,
            get(CHUNK_COUNT),
            get(CHUNK_TOTAL),
            get(CHUNK_SHA256),
        ))
    }

    fn parse_fields(
        index: &str,
        count: Option<&str>,
        total: Option<&str>,
        sha256: Option<&str>,
    ) -> Result<ChunkHeader, MalformedChunk> {
        let number = |value: Option<&str>, what| {
            value
                .and_then(|value| value.parse::<u64>().ok())
                .ok_or(MalformedChunk(what))
        };
        let index = number(Some(index), "x-chunk-index is not a number")?;
        let count = number(count, "x-chunk-count is missing or not a number")?;
        let total = number(total, "x-chunk-total is missing or not a number")?;
        let sha256 = sha256.ok_or(MalformedChunk("x-chunk-sha256 is missing"))?;
        if count == 0 || count > u64::from(u32::MAX) || index >= count {
            return Err(MalformedChunk("x-chunk-index is not below x-chunk-count"));
        }
        if count > total.max(1) {
            return Err(MalformedChunk("more chunks than bytes"));
        }
        let is_digest = sha256.len() == 64
            && sha256
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte));
        if !is_digest {
            return Err(MalformedChunk(
                "x-chunk-sha256 is not 64 lower-case hex digits",
            ));
        }
        Ok(ChunkHeader {
            index: index as u32,
            count: count as u32,
            total,
            sha256: sha256.to_string(),
        })
    }

    /// The widest header a reply of `payload_len` bytes can have: what
    /// sizing a chunk must leave room for.
    pub fn widest(payload_len: usize) -> ChunkHeader {
        ChunkHeader::new(u32::MAX, u32::MAX, payload_len, &"0".repeat(64))
    }
}

/// The packet size a caller that sent `x-accept-chunks: value` takes:
/// `1` means as large as the broker takes (`usize::MAX` here); a number of
/// at least [`MIN_ACCEPTED_PACKET`] is the caller's own Maximum Packet Size
/// (a device with a small buffer), so its replies come in chunks that fit
/// it. Anything else is no opt-in: `None`.
pub fn accepted_packet_size(value: &str) -> Option<usize> {
    if value == "1" {
        return Some(usize::MAX);
    }
    let size: usize = value.parse().ok()?;
    (size >= MIN_ACCEPTED_PACKET).then_some(size)
}

/// The SHA-256 of `payload` as 64 lower-case hex digits.
pub fn sha256_hex(payload: &[u8]) -> String {
    Sha256::digest(payload)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// How many chunks of at most `chunk_size` bytes `payload_len` bytes take.
pub fn chunk_count(payload_len: usize, chunk_size: usize) -> usize {
    payload_len.div_ceil(chunk_size.max(1)).max(1)
}

/// The chunks of a payload: each one's header and the byte range of the
/// payload it carries, in order.
#[derive(Debug, Clone)]
pub struct Split {
    payload_len: usize,
    chunk_size: usize,
    sha256: String,
    next: usize,
    count: usize,
}

impl Split {
    /// `payload_len` bytes whose digest is `sha256`, in pieces of
    /// `chunk_size` bytes (the last may be shorter).
    pub fn new(payload_len: usize, chunk_size: usize, sha256: String) -> Split {
        let chunk_size = chunk_size.max(1);
        Split {
            payload_len,
            chunk_size,
            sha256,
            next: 0,
            count: chunk_count(payload_len, chunk_size),
        }
    }

    /// How many chunks there are in all.
    pub fn chunk_count(&self) -> usize {
        self.count
    }
}

impl Iterator for Split {
    type Item = (ChunkHeader, std::ops::Range<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.count {
            return None;
        }
        let index = self.next;
        self.next += 1;
        let start = index * self.chunk_size;
        let end = (start + self.chunk_size).min(self.payload_len);
        let header = ChunkHeader::new(
            index as u32,
            self.count as u32,
            self.payload_len,
            &self.sha256,
        );
        Some((header, start..end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_reads_back_as_written() {
        let digest = sha256_hex(b"hello");
        let header = ChunkHeader::new(2, 3, 5, &digest);
        let properties = header.properties().to_vec();
        assert_eq!(ChunkHeader::parse(&properties), Some(Ok(header)));
        assert_eq!(ChunkHeader::parse(&[("status".into(), "200".into())]), None);
        assert_eq!(
            digest,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
    }

    #[test]
    fn a_header_that_does_not_add_up_is_refused() {
        let digest = sha256_hex(b"x");
        let with = |index: &str, count: &str, total: &str, sha: &str| {
            vec![
                (CHUNK_INDEX.to_string(), index.to_string()),
                (CHUNK_COUNT.to_string(), count.to_string()),
                (CHUNK_TOTAL.to_string(), total.to_string()),
                (CHUNK_SHA256.to_string(), sha.to_string()),
            ]
        };
        for properties in [
            with("3", "3", "10", &digest),
            with("0", "0", "10", &digest),
            with("0", "11", "10", &digest),
            with("-1", "3", "10", &digest),
            with("0", "3", "ten", &digest),
            with("0", "3", "10", "abc"),
            with("0", "3", "10", &digest.to_uppercase()),
            with("0", "99999999999", "99999999999", &digest),
        ] {
            assert!(
                matches!(ChunkHeader::parse(&properties), Some(Err(_))),
                "{properties:?}"
            );
        }
        let missing = vec![(CHUNK_INDEX.to_string(), "0".to_string())];
        assert!(matches!(ChunkHeader::parse(&missing), Some(Err(_))));
    }

    #[test]
    fn an_opt_in_is_one_or_a_packet_size() {
        assert_eq!(accepted_packet_size("1"), Some(usize::MAX));
        assert_eq!(accepted_packet_size("16384"), Some(16384));
        assert_eq!(accepted_packet_size("1024"), Some(1024));
        for refused in ["0", "2", "1023", "yes", "", "-4096", "1e6"] {
            assert_eq!(accepted_packet_size(refused), None, "{refused}");
        }
    }

    #[test]
    fn chunks_cover_the_payload() {
        let ranges: Vec<_> = Split::new(25, 10, sha256_hex(b""))
            .map(|(h, r)| (h.index, r))
            .collect();
        assert_eq!(ranges, [(0, 0..10), (1, 10..20), (2, 20..25)]);
        assert_eq!(
            Split::new(0, 10, String::new()).count(),
            1,
            "an empty reply is one chunk"
        );
        assert_eq!(chunk_count(0, 10), 1);
        assert_eq!(chunk_count(10, 10), 1);
        assert_eq!(chunk_count(11, 10), 2);
        assert_eq!(chunk_count(5 << 20, 256 << 10), 20);
    }
}
