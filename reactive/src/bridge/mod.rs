//! Bridges between publishers and the `futures` world.
//!
//! - [`from_stream`](crate::from_stream): a `Stream` becomes a publisher (in [`source`](crate::source)).
//! - [`IntoStream`]: a publisher becomes a `Stream`, with a [`Prefetch`] window.
//! - [`from_sink`]: a `Sink` becomes a subscriber plus the future that feeds the sink.
//!
//! The last two stand on [`Inbox`]: a buffer that never holds more than the demand it issued,
//! shared by a subscriber (the producing side) and an async consumer that replenishes demand as
//! it takes items out.

mod inbox;
mod into_stream;
mod prefetch;
mod sink;

pub use inbox::{Inbox, InboxSubscriber, inbox};
pub use into_stream::IntoStream;
pub use prefetch::Prefetch;
pub use sink::{SinkDriver, from_sink};
