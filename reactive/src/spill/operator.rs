//! [`Spill`]: a publisher whose items pass through a spill queue.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use futures_util::StreamExt;

use super::{SpillCodec, SpillError, SpillReceiver, SpillSender, SpillStats};
use crate::bridge::InboxSubscriber;
use crate::source::{FromTryStream, from_try_stream};
use crate::{Publisher, PublisherExt, Subscriber};

/// Items per push and per pop between the source, the queue and the subscriber.
const BATCH: usize = 64;

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, SpillFailure>> + Send>>;
type Pump = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Why a spilled stream ended early: the spill failed, or the source did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SpillFailure {
    /// The spill could not take or give back an item.
    Spill(SpillError),
    /// The source failed.
    Upstream(crate::Error),
}

impl std::fmt::Display for SpillFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpillFailure::Spill(e) => write!(f, "spill failed: {e}"),
            SpillFailure::Upstream(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SpillFailure {}

/// A publisher between `upstream` and its subscriber that queues in a spill queue: the source
/// is drained as fast as the queue takes items (memory, then disk), and waits only when the
/// disk budget is full. Items reach the subscriber in the order the source emitted them.
///
/// The connection runs the pump (source into the queue) and the emission (queue to the
/// subscriber) in one task. A source's error is delivered after everything queued before it.
///
/// Items move in batches of up to 64: what the source has ready is pushed at once, and the
/// emission pops up to 64 at once, so a popped batch is *consumed* (its cursor saved) while its
/// items wait in the connection for demand. A crash loses those (at most 64), as it loses what
/// the subscriber holds; what is still in the queue on disk is recovered exactly once.
pub struct Spill<P: Publisher> {
    upstream: P,
    sender: SpillSender<P::Item>,
    receiver: SpillReceiver<P::Item>,
}

impl<P: Publisher> std::fmt::Debug for Spill<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spill").finish()
    }
}

impl<P: Publisher> Spill<P>
where
    P::Item: SpillCodec + Send + 'static,
{
    /// `upstream` through the queue `sender`/`receiver` (from [`open`](super::open)).
    pub fn new(
        upstream: P,
        sender: SpillSender<P::Item>,
        receiver: SpillReceiver<P::Item>,
    ) -> Self {
        Spill {
            upstream,
            sender,
            receiver,
        }
    }

    /// The queue's counters.
    pub fn stats(&self) -> std::sync::Arc<SpillStats> {
        self.sender.stats()
    }
}

impl<P> Publisher for Spill<P>
where
    P: Publisher + Send + 'static,
    P::Item: SpillCodec + Send + 'static,
    P::Connection<InboxSubscriber<P::Item>>: Send,
{
    type Item = P::Item;
    type Connection<S: Subscriber<P::Item>> = SpillConnection<P::Item, S>;

    fn connect<S: Subscriber<P::Item>>(self, subscriber: S) -> Self::Connection<S> {
        let Spill {
            upstream,
            mut sender,
            receiver,
        } = self;
        let (pump_stats, out_stats) = (sender.stats(), sender.stats());
        let (fail, failed) = tokio::sync::oneshot::channel::<SpillFailure>();
        let pump: Pump = Box::pin(async move {
            // What the source has ready goes in one push: one blocking task (and one fsync)
            // per batch on the disk path.
            let mut source = Box::pin(upstream.into_stream().ready_chunks(BATCH));
            while let Some(chunk) = source.next().await {
                let mut items = Vec::with_capacity(chunk.len());
                let mut failure = None;
                for next in chunk {
                    match next {
                        Ok(item) => items.push(item),
                        Err(e) => {
                            failure = Some(SpillFailure::Upstream(e));
                            break;
                        }
                    }
                }
                let n = items.len();
                pump_stats.take_in_hand(n);
                let pushed = sender.push_many(items).await;
                pump_stats.put_down(n);
                if let Err(e) = pushed {
                    failure = Some(SpillFailure::Spill(e.error));
                }
                if let Some(failure) = failure {
                    let _ = fail.send(failure);
                    break;
                }
            }
            // Dropping the sender ends the receiver's stream once it has drained.
        });
        let out: Boxed<P::Item> = Box::pin(futures_util::stream::unfold(
            (receiver, Some(failed), VecDeque::new()),
            move |(mut receiver, mut failed, mut ready)| {
                let stats = out_stats.clone();
                async move {
                    if let Some(item) = ready.pop_front() {
                        stats.put_down(1);
                        return Some((Ok(item), (receiver, failed, ready)));
                    }
                    match receiver.pop_many(BATCH).await {
                        Ok(batch) if !batch.is_empty() => {
                            stats.take_in_hand(batch.len() - 1);
                            ready.extend(batch);
                            let item = ready.pop_front()?;
                            Some((Ok(item), (receiver, failed, ready)))
                        }
                        Ok(_) => {
                            let failure = failed.take()?.await.ok()?;
                            Some((Err(failure), (receiver, None, ready)))
                        }
                        Err(e) => Some((Err(SpillFailure::Spill(e)), (receiver, None, ready))),
                    }
                }
            },
        ));
        SpillConnection {
            pump: Some(pump),
            out: Box::pin(from_try_stream(out).connect(subscriber)),
        }
    }
}

/// The connection of a [`Spill`]: the pump and the emission, polled together.
#[must_use = "a connection emits nothing unless polled"]
pub struct SpillConnection<T: Send + 'static, S: Subscriber<T>> {
    pump: Option<Pump>,
    // Boxed once per connection, so the connection is `Unpin` without a projection.
    out: Pin<Box<<FromTryStream<Boxed<T>> as Publisher>::Connection<S>>>,
}

impl<T: Send + 'static, S: Subscriber<T>> std::fmt::Debug for SpillConnection<T, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpillConnection")
            .field("pumping", &self.pump.is_some())
            .finish()
    }
}

impl<T: Send + 'static, S: Subscriber<T>> Future for SpillConnection<T, S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if let Some(pump) = this.pump.as_mut() {
            if pump.as_mut().poll(cx).is_ready() {
                this.pump = None;
            }
        }
        let done = this.out.as_mut().poll(cx);
        if done.is_ready() {
            // The subscriber is gone (done or cancelled): the source goes with it.
            this.pump = None;
        }
        done
    }
}
