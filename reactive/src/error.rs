//! The error carried by `on_error`.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

/// Why a stream ended with `on_error` instead of `on_complete`.
///
/// The error is cheap to clone (its sources sit behind an `Arc`), so a fan-out operator can
/// hand the same failure to every downstream.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// The subscriber called `request(0)` (rule 3.9). The subscription is cancelled.
    BadRequest,
    /// The subscriber already had an active subscription (rule 2.5), or the publisher accepts
    /// only one subscriber.
    AlreadySubscribed,
    /// A bounded resource ran out, for example an unbounded queue's safety cap.
    Overflow {
        /// What overflowed.
        what: &'static str,
        /// The limit that was hit.
        limit: u64,
    },
    /// The source failed.
    Upstream(Arc<dyn StdError + Send + Sync>),
    /// The sink failed.
    Sink(Arc<dyn StdError + Send + Sync>),
}

impl Error {
    /// Wraps a source's failure.
    pub fn upstream<E: StdError + Send + Sync + 'static>(error: E) -> Self {
        Error::Upstream(Arc::new(error))
    }

    /// Wraps a sink's failure.
    pub fn sink<E: StdError + Send + Sync + 'static>(error: E) -> Self {
        Error::Sink(Arc::new(error))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadRequest => f.write_str("request(0) is not allowed (rule 3.9)"),
            Error::AlreadySubscribed => f.write_str("already subscribed (rule 2.5)"),
            Error::Overflow { what, limit } => write!(f, "{what} overflowed its limit of {limit}"),
            Error::Upstream(e) => write!(f, "upstream failed: {e}"),
            Error::Sink(e) => write!(f, "sink failed: {e}"),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Error::Upstream(e) | Error::Sink(e) => Some(&**e),
            _ => None,
        }
    }
}
