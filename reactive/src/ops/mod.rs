//! Operators: publishers built on other publishers.
//!
//! Each operator is a noun type with a verb method on [`PublisherExt`](crate::PublisherExt)
//! (`Map` / `.map()`), in a file of its own. Operators that only transform items nest the
//! downstream subscriber inside the upstream one, so a chain compiles to one loop with no
//! allocation or synchronisation per item.

mod batch;
mod filter;
mod map;

pub use batch::{Batch, BatchConnection};
pub use filter::{Filter, FilterSubscriber};
pub use map::{Map, MapSubscriber};
