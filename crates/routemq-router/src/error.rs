use thiserror::Error;

/// Why a pattern or a route table was refused. Each message names the pattern
/// at fault so the configuration layer can point at the line that declared it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RouteError {
    #[error("topic pattern `{pattern}` is invalid: {reason}")]
    InvalidPattern { pattern: String, reason: String },
    #[error("route `{second}` conflicts with route `{first}`: both match the topic `{example}`")]
    Conflict {
        first: String,
        second: String,
        example: String,
    },
}

impl RouteError {
    /// The full topic pattern of the route this error is about (for conflicts, the later one).
    pub fn pattern(&self) -> &str {
        match self {
            RouteError::InvalidPattern { pattern, .. } => pattern,
            RouteError::Conflict { second, .. } => second,
        }
    }
}
