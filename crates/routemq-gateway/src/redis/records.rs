//! The values the gateway stores in Redis, each with one typed encoding.
//! The wire formats are those earlier releases wrote, so old and new workers
//! read each other's records during a rolling upgrade; a change of format
//! goes under a new key name.

use std::borrow::Cow;

/// Length of a payload fingerprint: SHA-1 in hex.
pub const FINGERPRINT_LEN: usize = 40;

/// A safe-retry record (`{routemq:req2:HASH}`): `pending:<fingerprint>:<claim token>`
/// while its request runs, `done:<fingerprint>:<status>:<reply payload>` once
/// answered. The fingerprint tells a retry from another request reusing the id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayRecord<'a> {
    Pending {
        fingerprint: Cow<'a, str>,
        /// Who holds the claim: the process id and a per-claim nonce.
        token: Cow<'a, str>,
    },
    Done {
        fingerprint: Cow<'a, str>,
        status: u16,
        payload: Cow<'a, str>,
    },
}

impl<'a> ReplayRecord<'a> {
    pub fn encode(&self) -> String {
        match self {
            ReplayRecord::Pending { fingerprint, token } => {
                format!("pending:{fingerprint}:{token}")
            }
            ReplayRecord::Done {
                fingerprint,
                status,
                payload,
            } => format!("done:{fingerprint}:{status}:{payload}"),
        }
    }

    /// `None` for anything this release cannot read.
    pub fn decode(stored: &'a str) -> Option<ReplayRecord<'a>> {
        let (state, rest) = stored.split_once(':')?;
        let fingerprint = Cow::Borrowed(rest.get(..FINGERPRINT_LEN)?);
        let rest = rest.get(FINGERPRINT_LEN..)?.strip_prefix(':')?;
        match state {
            "pending" => Some(ReplayRecord::Pending {
                fingerprint,
                token: Cow::Borrowed(rest),
            }),
            "done" => {
                let (status, payload) = rest.split_once(':')?;
                Some(ReplayRecord::Done {
                    fingerprint,
                    status: status.parse().ok()?,
                    payload: Cow::Borrowed(payload),
                })
            }
            _ => None,
        }
    }

    pub fn fingerprint(&self) -> &str {
        match self {
            ReplayRecord::Pending { fingerprint, .. } | ReplayRecord::Done { fingerprint, .. } => {
                fingerprint
            }
        }
    }
}

/// A fallback-cache entry (`routemq:cache:SERVICE:{HASH}`): `<status>:<JSON body>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedReply<'a> {
    pub status: u16,
    pub body: Cow<'a, str>,
}

impl<'a> CachedReply<'a> {
    pub fn encode(&self) -> String {
        format!("{}:{}", self.status, self.body)
    }

    pub fn decode(stored: &'a str) -> Option<CachedReply<'a>> {
        let (status, body) = stored.split_once(':')?;
        Some(CachedReply {
            status: status.parse().ok()?,
            body: Cow::Borrowed(body),
        })
    }
}

/// A per-service counter in the cluster metrics hash (`routemq:metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceCounter {
    Requests,
    Errors,
    /// Summed response time, in microseconds.
    TimeMicros,
}

impl ServiceCounter {
    /// The hash field: `service:<name>:requests` or `service:<name>:time_us`.
    pub fn field(self, service: &str) -> String {
        let counter = match self {
            ServiceCounter::Requests => "requests",
            ServiceCounter::Errors => "errors",
            ServiceCounter::TimeMicros => "time_us",
        };
        format!("service:{service}:{counter}")
    }

    /// The service a `requests` field counts, if `field` is one.
    pub fn requests_of(field: &str) -> Option<&str> {
        field.strip_prefix("service:")?.strip_suffix(":requests")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRINT: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn replay_records_read_back_in_the_format_earlier_releases_wrote() {
        let done = format!("done:{PRINT}:201:{{\"data\":\"a:b\"}}");
        let record = ReplayRecord::decode(&done).expect("done parses");
        assert_eq!(
            record,
            ReplayRecord::Done {
                fingerprint: PRINT.into(),
                status: 201,
                payload: "{\"data\":\"a:b\"}".into(),
            }
        );
        assert_eq!(record.encode(), done);
        let pending = format!("pending:{PRINT}:worker:1:abc");
        let record = ReplayRecord::decode(&pending).expect("pending parses");
        assert_eq!(record.fingerprint(), PRINT);
        assert_eq!(record.encode(), pending);
        assert!(ReplayRecord::decode("done:short:200:{}").is_none());
        assert!(ReplayRecord::decode(&format!("done:{PRINT}:notanumber:{{}}")).is_none());
        assert!(ReplayRecord::decode(&format!("other:{PRINT}:x")).is_none());
    }

    #[test]
    fn cached_replies_and_counter_fields_keep_their_format() {
        let stored = CachedReply {
            status: 200,
            body: "{\"a\":\"b:c\"}".into(),
        };
        assert_eq!(stored.encode(), "200:{\"a\":\"b:c\"}");
        assert_eq!(CachedReply::decode(&stored.encode()), Some(stored));
        assert!(CachedReply::decode("x:{}").is_none());
        assert_eq!(
            ServiceCounter::TimeMicros.field("user-service"),
            "service:user-service:time_us"
        );
    }
}
