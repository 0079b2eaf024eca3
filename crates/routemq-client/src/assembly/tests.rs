use bytes::Bytes;
use routemq_router::chunk::{sha256_hex, Split};

use super::{Chunk, Fed, Reassembly};
use crate::ClientError;

/// The chunks of `payload`, `size` bytes each, as a worker sends them.
fn chunks_of(payload: &[u8], size: usize) -> Vec<Chunk> {
    Split::new(payload.len(), size, sha256_hex(payload))
        .map(|(header, range)| {
            let mut user_properties = vec![("status".to_string(), "200".to_string())];
            user_properties.extend(header.properties());
            Chunk {
                header,
                payload: Bytes::copy_from_slice(&payload[range]),
                user_properties,
                content_type: Some("application/json".into()),
            }
        })
        .collect()
}

fn feed_all(reassembly: &mut Reassembly, chunks: Vec<Chunk>) -> Vec<Fed> {
    chunks
        .into_iter()
        .map(|chunk| reassembly.feed(chunk, 1 << 20))
        .collect()
}

#[test]
fn chunks_in_any_order_and_repeated_make_the_reply_once() {
    let payload: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
    let mut chunks = chunks_of(&payload, 1000);
    chunks.reverse();
    let mut repeated = chunks_of(&payload, 1000);
    repeated.truncate(3);
    let mut reassembly = Reassembly::default();
    let fed = feed_all(&mut reassembly, repeated);
    assert!(fed.iter().all(|fed| matches!(fed, Fed::Waiting)));
    assert_eq!(reassembly.progress(), Some((3, 10)));
    let fed = feed_all(&mut reassembly, chunks);
    let done: Vec<_> = fed
        .into_iter()
        .filter_map(|fed| match fed {
            Fed::Done(reply) => Some(reply),
            _ => None,
        })
        .collect();
    assert_eq!(done.len(), 1, "one reply, whatever the order and repeats");
    assert_eq!(done[0].payload, payload);
    assert_eq!(done[0].status, 200);
    assert_eq!(
        done[0].user_properties,
        vec![("status".to_string(), "200".to_string())],
        "the chunk header is not part of the reply"
    );
}

#[test]
fn a_corrupted_chunk_fails_the_checksum_instead_of_giving_a_wrong_body() {
    let payload = vec![7u8; 5000];
    let mut chunks = chunks_of(&payload, 1000);
    chunks[2].payload = Bytes::from(vec![8u8; 1000]);
    let mut reassembly = Reassembly::default();
    let last = feed_all(&mut reassembly, chunks).pop();
    assert!(matches!(last, Some(Fed::Failed(ClientError::BadChunks(_)))));
}

#[test]
fn two_different_answers_are_kept_apart_and_the_first_complete_wins() {
    let first = vec![1u8; 3000];
    let second = vec![2u8; 3000];
    let mut interleaved = Vec::new();
    for (a, b) in chunks_of(&first, 1000)
        .into_iter()
        .zip(chunks_of(&second, 1000))
    {
        interleaved.push(b);
        interleaved.push(a);
    }
    let mut reassembly = Reassembly::default();
    let done = feed_all(&mut reassembly, interleaved)
        .into_iter()
        .find_map(|fed| match fed {
            Fed::Done(reply) => Some(reply),
            _ => None,
        })
        .expect("a reply");
    assert_eq!(done.payload, second);
}

#[test]
fn a_reply_over_the_clients_bound_is_refused_at_its_first_chunk() {
    let payload = vec![0u8; 5000];
    let mut reassembly = Reassembly::default();
    let chunk = chunks_of(&payload, 1000).remove(0);
    assert!(matches!(
        reassembly.feed(chunk, 4999),
        Fed::Failed(ClientError::BadChunks(_))
    ));
}
