//! What a failed HTTP exchange with an upstream is answered with.

use crate::{ErrorKind, GatewayError};

/// The error's reply, without the URL: its query string is built from the
/// caller's payload, which the reply must not echo (a 256 KiB GET payload
/// came back whole in a `502`).
pub(super) fn classify(error: reqwest::Error) -> GatewayError {
    let error = error.without_url();
    if error.is_timeout() {
        return GatewayError::new(
            ErrorKind::UpstreamTimeout,
            "upstream did not answer in time",
        );
    }
    if error.is_connect() {
        return GatewayError::new(
            ErrorKind::UpstreamUnavailable,
            "upstream refused the connection",
        );
    }
    GatewayError::new(
        ErrorKind::UpstreamError,
        format!("upstream call failed: {error}"),
    )
}
