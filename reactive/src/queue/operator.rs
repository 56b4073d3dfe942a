//! The [`Queue`] operator: one publisher, two connections. Pull mode passes demand straight
//! through ([`pull`](super::pull)); every other mode buffers ([`buffered`](super::buffered)).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use super::buffered::{self, QueueSubscriber};
use super::emitter::Emitter;
use super::pull::{self, Forward, PullSubscriber};
use super::{Mode, QueueConfig, QueueStats};
use crate::purge::Purger;
use crate::{Publisher, Subscriber};

/// The most turns each half of a buffered queue takes in one poll of its task.
const TURNS: u32 = 4;

/// A queue between a publisher and its subscriber. See [`crate::queue`].
pub struct Queue<P: Publisher> {
    upstream: P,
    config: QueueConfig<P::Item>,
    stats: Arc<QueueStats>,
    shared: Arc<buffered::Shared<P::Item>>,
}

impl<P: Publisher> std::fmt::Debug for Queue<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("config", &self.config)
            .finish()
    }
}

impl<P: Publisher> Queue<P> {
    pub(crate) fn new(upstream: P, config: QueueConfig<P::Item>) -> Self {
        let capacity = match config.mode {
            Mode::Bounded(n) => n as u64,
            Mode::Unbounded { .. } => u64::MAX,
            Mode::Pull => 0,
        };
        let shared = buffered::shared(
            match config.mode {
                Mode::Bounded(n) => Some(n),
                _ => None,
            },
            &config.overflow,
        );
        Queue {
            upstream,
            config,
            stats: Arc::new(QueueStats::new(capacity)),
            shared,
        }
    }

    /// The queue's live counters: keep a clone to watch the queue while it runs.
    pub fn stats(&self) -> Arc<QueueStats> {
        self.stats.clone()
    }

    /// A handle that removes queued items on purpose (see [`crate::purge`]). In pull mode
    /// nothing is ever queued, so it removes nothing.
    pub fn purger(&self) -> Purger<P::Item>
    where
        P::Item: Send + 'static,
    {
        Purger::new(Arc::new(buffered::Purging {
            shared: self.shared.clone(),
            config: self.config.clone(),
            stats: self.stats.clone(),
        }))
    }
}

impl<P: Publisher> Publisher for Queue<P> {
    type Item = P::Item;
    type Connection<S: Subscriber<P::Item>> = QueueConnection<P, S>;

    fn connect<S: Subscriber<P::Item>>(self, subscriber: S) -> Self::Connection<S> {
        let safety_cap = match self.config.mode {
            Mode::Pull => {
                let stats = self.stats.clone();
                let (input, forward) = pull::connect(subscriber, self.stats);
                let inner = Inner::Pull {
                    upstream: self.upstream.connect(input),
                    forward,
                };
                return QueueConnection { inner, stats };
            }
            Mode::Bounded(_) => None,
            Mode::Unbounded { safety_cap } => safety_cap,
        };
        // Downstream is subscribed first, then the input half is connected upstream.
        let emitter = Emitter::serve(
            self.shared.clone(),
            subscriber,
            self.config.clone(),
            self.stats.clone(),
        );
        let stats = self.stats.clone();
        let input = buffered::input(self.shared, self.config, self.stats, safety_cap);
        let inner = Inner::Buffered {
            upstream: Some(self.upstream.connect(input)),
            emitter,
        };
        QueueConnection { inner, stats }
    }
}

pin_project! {
    /// The connection of a [`Queue`]: drives the upstream connection and the emission
    /// downstream in one task.
    #[must_use = "a connection emits nothing unless polled"]
    pub struct QueueConnection<P: Publisher, S: Subscriber<P::Item>> {
        #[pin]
        inner: Inner<P, S>,
        stats: Arc<QueueStats>,
    }
}

pin_project! {
    #[project = Project]
    enum Inner<P: Publisher, S: Subscriber<P::Item>> {
        // Pull mode: items pass straight through; downstream demand is forwarded.
        Pull {
            #[pin]
            upstream: P::Connection<PullSubscriber<S>>,
            forward: Forward,
        },
        // A buffered mode: the upstream fills the buffer, the emitter drains it.
        Buffered {
            #[pin]
            upstream: Option<P::Connection<QueueSubscriber<P::Item>>>,
            emitter: Emitter<P::Item, S>,
        },
    }
}

impl<P: Publisher, S: Subscriber<P::Item>> std::fmt::Debug for QueueConnection<P, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match &self.inner {
            Inner::Pull { .. } => "pull",
            Inner::Buffered { .. } => "buffered",
        };
        f.debug_struct("QueueConnection")
            .field("mode", &mode)
            .finish()
    }
}

impl<P: Publisher, S: Subscriber<P::Item>> Future for QueueConnection<P, S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        let stats = &*this.stats;
        let done = match this.inner.project() {
            Project::Pull { upstream, forward } => {
                forward.poll(cx);
                upstream.poll(cx)
            }
            Project::Buffered {
                mut upstream,
                emitter,
            } => {
                // The two halves take turns. When the emitter hands demand back upstream, the
                // upstream (woken, and in this same task) gets another turn at once, a few
                // times, rather than after a trip through the scheduler.
                let mut turns = 0;
                loop {
                    if let Some(connection) = upstream.as_mut().as_pin_mut() {
                        if connection.poll(cx).is_ready() {
                            upstream.set(None);
                        }
                    }
                    let done = emitter.poll(cx);
                    if done.is_ready() {
                        // The subscriber is released; the source goes with it (it was
                        // cancelled).
                        upstream.set(None);
                        break done;
                    }
                    turns += 1;
                    if turns == TURNS || upstream.is_none() || !emitter.take_granted() {
                        break done;
                    }
                }
            }
        };
        // A blocked spell still open now lasts past this poll: time it from here.
        stats.stamp_blocked();
        done
    }
}
