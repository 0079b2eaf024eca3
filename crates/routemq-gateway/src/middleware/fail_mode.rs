//! What a middleware on cluster-wide state does when Redis cannot answer:
//! each rate limiter and breaker chooses, and says so in its table.

/// What a limiter does when Redis cannot answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// Keep serving; a rate limiter then applies its local per-worker limit.
    Open,
    /// Refuse with 503 until Redis is back.
    Closed,
}

impl FailMode {
    /// `on_redis_error` as written: "open", "closed", or absent for `default`.
    pub(crate) fn parse(raw: Option<String>, default: FailMode) -> Result<FailMode, String> {
        match raw.as_deref() {
            None => Ok(default),
            Some("open") => Ok(FailMode::Open),
            Some("closed") => Ok(FailMode::Closed),
            Some(other) => Err(format!(
                "on_redis_error must be \"open\" or \"closed\", not `{other}`"
            )),
        }
    }
}
