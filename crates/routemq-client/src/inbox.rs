//! Where replies arrive: each is handed to the request waiting for its
//! correlation data, a chunked one once it is whole.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use rumqttc::v5::mqttbytes::v5::Publish;
use tokio::sync::oneshot;

use crate::assembly::{Chunk, Fed, Reassembly};
use crate::strays::Strays;
use crate::{ClientError, Reply};
use routemq_router::chunk::ChunkHeader;

/// What a waiting request gets.
pub(crate) type Answer = Result<Reply, ClientError>;

/// A request waiting for its reply, with the chunks of it received so far.
struct Waiter {
    answer: oneshot::Sender<Answer>,
    chunks: Reassembly,
}

/// The requests waiting for replies.
pub(crate) struct Inbox {
    waiting: Mutex<HashMap<Bytes, Waiter>>,
    strays: Strays,
    max_chunked_reply_bytes: u64,
}

impl Inbox {
    pub(crate) fn new(strays: Strays, max_chunked_reply_bytes: u64) -> Inbox {
        Inbox {
            waiting: Mutex::default(),
            strays,
            max_chunked_reply_bytes,
        }
    }

    pub(crate) fn strays(&self) -> &Strays {
        &self.strays
    }

    /// Waits for the reply with `correlation` data.
    pub(crate) fn wait(&self, correlation: Bytes) -> oneshot::Receiver<Answer> {
        let (answer, answered) = oneshot::channel();
        let waiter = Waiter {
            answer,
            chunks: Reassembly::default(),
        };
        self.waiting.lock().insert(correlation, waiter);
        answered
    }

    /// The request was never sent.
    pub(crate) fn forget(&self, correlation: &Bytes) {
        self.waiting.lock().remove(correlation);
    }

    /// The request waited `waited` in vain: a timeout, or an incomplete
    /// reply if some of its chunks came.
    pub(crate) fn timed_out(&self, correlation: Bytes, waited: Duration) -> ClientError {
        let waiter = self.waiting.lock().remove(&correlation);
        // The reply may have raced the timeout: then it was answered after all.
        let Some(waiter) = waiter else {
            return ClientError::Timeout(waited);
        };
        self.strays.timed_out(correlation);
        match waiter.chunks.progress() {
            Some((received, count)) => ClientError::IncompleteReply {
                received,
                count,
                waited,
            },
            None => ClientError::Timeout(waited),
        }
    }

    /// Hands a reply (or a chunk of one) to the request waiting for its
    /// correlation data; one nobody waits for (late, or a duplicate) is
    /// counted as a stray.
    pub(crate) fn deliver(&self, publish: Publish) {
        let properties = publish.properties.unwrap_or_default();
        let Some(correlation) = properties.correlation_data else {
            return;
        };
        let mut waiting = self.waiting.lock();
        let Some(waiter) = waiting.get_mut(&correlation) else {
            drop(waiting);
            self.strays.stray(&correlation);
            return;
        };
        let answer = match ChunkHeader::parse(&properties.user_properties) {
            None => Ok(Reply::new(
                publish.payload,
                properties.user_properties,
                properties.content_type,
            )),
            Some(Err(malformed)) => Err(ClientError::BadChunks(malformed.to_string())),
            Some(Ok(header)) => {
                let chunk = Chunk {
                    header,
                    payload: publish.payload,
                    user_properties: properties.user_properties,
                    content_type: properties.content_type,
                };
                match waiter.chunks.feed(chunk, self.max_chunked_reply_bytes) {
                    Fed::Waiting => return,
                    Fed::Done(reply) => Ok(reply),
                    Fed::Failed(error) => Err(error),
                }
            }
        };
        let Some(waiter) = waiting.remove(&correlation) else {
            return;
        };
        drop(waiting);
        self.strays.answered(&correlation);
        waiter.answer.send(answer).ok();
    }

    /// Whether anyone may still wait for a reply.
    pub(crate) fn is_orphaned(self: &std::sync::Arc<Self>) -> bool {
        std::sync::Arc::strong_count(self) == 1
    }
}
