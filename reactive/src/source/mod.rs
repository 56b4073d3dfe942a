//! Publishers made from iterators and streams (of items, or of chunks of items).
//!
//! Both poll their source only against outstanding demand: an iterator's `next` and a stream's
//! `poll_next` are never called while the subscriber has no unmet request.

mod chunks;
mod iter;
mod stream;

pub use chunks::{ChunksConnection, FromChunks, from_chunks};
pub use iter::{Iter, IterConnection, iter};
pub use stream::{FromStream, FromTryStream, StreamConnection, from_stream, from_try_stream};

/// Items a connection emits in one poll before it yields to the scheduler, so that a source
/// that is always ready cannot starve the other tasks of its thread.
pub(crate) const YIELD_BUDGET: u32 = 4096;
