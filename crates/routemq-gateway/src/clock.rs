//! The wall clock, for timestamps people and other systems read.

/// Time since the Unix epoch by the wall clock, for timestamps people and
/// other systems read (log entries, key records, token claims); zero if the
/// clock is set before 1970. Durations and deadlines use `Instant` instead.
pub fn unix_time() -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}
