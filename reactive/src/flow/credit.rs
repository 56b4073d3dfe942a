//! Credit-based flow control, Flink's scheme: a sender sends only against credit the receiver
//! granted, and a receiver grants credit only for buffers it has free. Nothing is sent that
//! the receiver cannot hold, so nothing is refused, held or dropped at the receiver's door,
//! and one slow channel cannot block the others' buffers.
//!
//! Two halves:
//!
//! - [`Credits`]: the sender's side on its own. A count of granted credit that a sender
//!   spends before each send ([`acquire`](Credits::acquire) waits for it, first come first
//!   served), with the backlog it announces: how much credit its waiting sends want. Whoever
//!   grants credit (the in-process receiver below, or a remote one: sinkd grants credit in its
//!   HTTP answers) calls [`grant`](Credits::grant).
//! - [`channels`]: an in-process receiver with `n` channels into one queue. Each channel owns
//!   `exclusive` buffers, granted to its sender up front and returned to it as the receiver
//!   takes items; a `floating` pool is shared, and goes to the channels that announce a backlog
//!   beyond their credit, the largest shortfall first. A floating buffer freed while its
//!   channel has no shortfall goes back to the pool.
//!
//! Guarantees of [`channels`]:
//! - the receiver never holds more than `n × exclusive + floating` items, however fast the
//!   senders are;
//! - a channel with `exclusive ≥ 1` always makes progress, whatever the other channels do;
//! - items arrive in send order per channel, and each exactly once;
//! - a send waits only for credit; once the receiver is dropped, sends fail at once and give
//!   the item back.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, Semaphore, SemaphorePermit};

/// The most credit one acquire can take at once (the semaphore's unit is `u32`).
const MAX_COST: u64 = u32::MAX as u64;

/// A sender's granted credit and announced backlog.
#[derive(Debug)]
pub struct Credits {
    available: Semaphore,
    /// Credit wanted by acquires that are waiting now.
    waiting: AtomicU64,
    /// Backlog announced on top of the waiting acquires (items the sender holds unsent).
    announced: AtomicU64,
    granted: AtomicU64,
    spent: AtomicU64,
}

/// Credit taken from [`Credits`]: [`spend`](Credit::spend) it when the send goes out.
/// Dropped unspent (the send was abandoned), it goes back.
#[derive(Debug)]
#[must_use = "credit not spent goes back when dropped"]
pub struct Credit<'a> {
    permit: SemaphorePermit<'a>,
    credits: &'a Credits,
    cost: u64,
}

impl Credit<'_> {
    /// The send went out: the credit is used up.
    pub fn spend(self) {
        self.credits.spent.fetch_add(self.cost, Ordering::Relaxed);
        self.permit.forget();
    }
}

/// Counts a waiting acquire's cost in the backlog until it ends, however it ends.
struct Waiting<'a>(&'a AtomicU64, u64);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(self.1, Ordering::AcqRel);
    }
}

/// Why an acquire failed: the receiver is gone and will grant nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the receiver is gone: no more credit will come")
    }
}

impl std::error::Error for Closed {}

impl Default for Credits {
    fn default() -> Self {
        Credits::new(0)
    }
}

impl Credits {
    /// Credits holding `initial` (the exclusive buffers a receiver grants up front).
    pub fn new(initial: u64) -> Credits {
        Credits {
            available: Semaphore::new(initial.min(Semaphore::MAX_PERMITS as u64) as usize),
            waiting: AtomicU64::new(0),
            announced: AtomicU64::new(0),
            granted: AtomicU64::new(initial),
            spent: AtomicU64::new(0),
        }
    }

    /// Adds `n` credit and wakes the acquires it satisfies, in the order they came.
    pub fn grant(&self, n: u64) {
        if n == 0 {
            return;
        }
        let room = Semaphore::MAX_PERMITS.saturating_sub(self.available.available_permits());
        self.available.add_permits((n as usize).min(room));
        self.granted.fetch_add(n, Ordering::Relaxed);
    }

    /// Takes `cost` credit now, if it is there and no acquire is waiting before this one.
    pub fn try_acquire(&self, cost: u64) -> Option<Credit<'_>> {
        let cost = cost.clamp(1, MAX_COST);
        let permit = self.available.try_acquire_many(cost as u32).ok()?;
        Some(Credit {
            permit,
            credits: self,
            cost,
        })
    }

    /// Waits for `cost` credit (at least 1). Acquires are served first come, first served.
    /// The cost counts in the [`backlog`](Self::backlog) from this call on (not from the first
    /// poll), until the credit is taken or the future is dropped; a dropped acquire takes
    /// nothing.
    ///
    /// # Errors
    /// [`Closed`] once [`close`](Self::close) was called.
    pub fn acquire(&self, cost: u64) -> impl Future<Output = Result<Credit<'_>, Closed>> + '_ {
        let cost = cost.clamp(1, MAX_COST);
        self.waiting.fetch_add(cost, Ordering::AcqRel);
        let waiting = Waiting(&self.waiting, cost);
        async move {
            let permit = self
                .available
                .acquire_many(cost as u32)
                .await
                .map_err(|_| Closed)?;
            drop(waiting);
            Ok(Credit {
                permit,
                credits: self,
                cost,
            })
        }
    }

    /// Announces a backlog held outside any acquire (items queued at the sender, unsent).
    pub fn announce(&self, backlog: u64) {
        self.announced.store(backlog, Ordering::Release);
    }

    /// What the sender wants: the waiting acquires' cost plus the announced backlog.
    pub fn backlog(&self) -> u64 {
        self.waiting
            .load(Ordering::Acquire)
            .saturating_add(self.announced.load(Ordering::Acquire))
    }

    /// Credit granted and not yet taken.
    pub fn available(&self) -> u64 {
        self.available.available_permits() as u64
    }

    /// What the backlog wants beyond the credit in hand.
    pub fn shortfall(&self) -> u64 {
        self.backlog().saturating_sub(self.available())
    }

    /// Credit granted since creation (the initial included).
    pub fn granted(&self) -> u64 {
        self.granted.load(Ordering::Relaxed)
    }

    /// Credit spent on sends.
    pub fn spent(&self) -> u64 {
        self.spent.load(Ordering::Relaxed)
    }

    /// No more credit will come: waiting and later acquires fail with [`Closed`].
    pub fn close(&self) {
        self.available.close();
    }
}

/// The receiver's bookkeeping, under one lock.
#[derive(Debug)]
struct Core<T> {
    queue: VecDeque<(usize, T)>,
    /// Floating buffers each channel holds (as credit or as queued items).
    floating_held: Vec<usize>,
    pool: usize,
    senders: usize,
    closed: bool,
}

#[derive(Debug)]
struct Shared<T> {
    core: Mutex<Core<T>>,
    credits: Vec<Arc<Credits>>,
    ready: Notify,
    exclusive: usize,
    floating: usize,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, Core<T>> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands the pool's buffers to the channels short of credit, the largest shortfall first.
    fn distribute(&self, core: &mut Core<T>) {
        while core.pool > 0 {
            let best = (0..self.credits.len())
                .map(|c| (self.credits[c].shortfall(), c))
                .filter(|(short, _)| *short > 0)
                .max_by_key(|(short, c)| (*short, std::cmp::Reverse(*c)));
            let Some((_, c)) = best else { break };
            core.pool -= 1;
            core.floating_held[c] += 1;
            self.credits[c].grant(1);
        }
    }

    /// The receiver took an item of channel `c`: its buffer is free again.
    fn free(&self, core: &mut Core<T>, c: usize) {
        if core.floating_held[c] > 0 && self.credits[c].shortfall() == 0 {
            core.floating_held[c] -= 1;
            core.pool += 1;
        } else {
            self.credits[c].grant(1);
        }
        self.distribute(core);
    }
}

/// One channel's sender: see [`channels`].
#[derive(Debug)]
pub struct CreditSender<T> {
    shared: Arc<Shared<T>>,
    channel: usize,
}

/// The receiver of [`channels`]: items from every channel, in the order they were sent.
#[derive(Debug)]
pub struct CreditReceiver<T> {
    shared: Arc<Shared<T>>,
}

/// `n` credit-controlled channels into one receiver, with `exclusive` buffers per channel and
/// a shared pool of `floating` ones. See the [module](self) for what is guaranteed.
pub fn channels<T>(
    n: usize,
    exclusive: usize,
    floating: usize,
) -> (Vec<CreditSender<T>>, CreditReceiver<T>) {
    let shared = Arc::new(Shared {
        core: Mutex::new(Core {
            queue: VecDeque::new(),
            floating_held: vec![0; n],
            pool: floating,
            senders: n,
            closed: false,
        }),
        credits: (0..n)
            .map(|_| Arc::new(Credits::new(exclusive as u64)))
            .collect(),
        ready: Notify::new(),
        exclusive,
        floating,
    });
    let senders = (0..n)
        .map(|channel| CreditSender {
            shared: shared.clone(),
            channel,
        })
        .collect();
    (senders, CreditReceiver { shared })
}

impl<T> CreditSender<T> {
    /// Sends `item` once this channel has credit. Waiting announces the send as backlog, which
    /// may bring a floating buffer.
    ///
    /// # Errors
    /// The item back, when the receiver is gone.
    pub async fn send(&self, item: T) -> Result<(), T> {
        let credits = &self.shared.credits[self.channel];
        let credit = match credits.try_acquire(1) {
            Some(c) => c,
            None => {
                let wait = credits.acquire(1);
                {
                    let mut core = self.shared.lock();
                    self.shared.distribute(&mut core);
                }
                match wait.await {
                    Ok(c) => c,
                    Err(Closed) => return Err(item),
                }
            }
        };
        let mut core = self.shared.lock();
        if core.closed {
            return Err(item);
        }
        credit.spend();
        core.queue.push_back((self.channel, item));
        drop(core);
        self.shared.ready.notify_one();
        Ok(())
    }

    /// Announces items held by the sender beyond the sends waiting now, so the receiver can
    /// give this channel floating buffers before they are sent.
    pub fn announce_backlog(&self, backlog: u64) {
        self.shared.credits[self.channel].announce(backlog);
        let mut core = self.shared.lock();
        self.shared.distribute(&mut core);
    }

    /// This channel's credit, to read (what it holds, was granted, spent, wants). Only the
    /// receiver grants it: a [`grant`](Credits::grant) from outside breaks the buffer bound.
    pub fn credits(&self) -> &Credits {
        &self.shared.credits[self.channel]
    }

    /// This channel's number.
    pub fn channel(&self) -> usize {
        self.channel
    }
}

impl<T> Drop for CreditSender<T> {
    fn drop(&mut self) {
        let credits = &self.shared.credits[self.channel];
        let mut core = self.shared.lock();
        core.senders -= 1;
        // Its announced backlog no longer wants buffers, and the floating buffers it holds as
        // credit go back to the pool for the others.
        credits.announce(0);
        let k = core.floating_held[self.channel].min(credits.available() as usize);
        if k > 0 {
            if let Ok(permit) = credits.available.try_acquire_many(k as u32) {
                permit.forget();
                core.floating_held[self.channel] -= k;
                core.pool += k;
                self.shared.distribute(&mut core);
            }
        }
        drop(core);
        self.shared.ready.notify_one();
    }
}

impl<T> CreditReceiver<T> {
    /// The next item and its channel; `None` once every sender is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<(usize, T)> {
        loop {
            let notified = self.shared.ready.notified();
            {
                let mut core = self.shared.lock();
                if let Some((c, item)) = core.queue.pop_front() {
                    self.shared.free(&mut core, c);
                    return Some((c, item));
                }
                if core.senders == 0 {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Items held now (sent, not yet received).
    pub fn len(&self) -> usize {
        self.shared.lock().queue.len()
    }

    /// Whether no item is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most items this receiver can ever hold: `n × exclusive + floating`.
    pub fn capacity(&self) -> usize {
        self.shared.credits.len() * self.shared.exclusive + self.shared.floating
    }

    /// Floating buffers in the pool now (not granted to any channel).
    pub fn pool(&self) -> usize {
        self.shared.lock().pool
    }
}

impl<T> Drop for CreditReceiver<T> {
    fn drop(&mut self) {
        let mut core = self.shared.lock();
        core.closed = true;
        core.queue.clear();
        drop(core);
        for c in &self.shared.credits {
            c.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_acquire_counts_in_the_backlog_from_the_call_until_it_ends() {
        let credits = Credits::new(0);
        let wait = credits.acquire(3);
        assert_eq!(credits.backlog(), 3);
        credits.announce(2);
        assert_eq!(credits.shortfall(), 5);
        drop(wait);
        assert_eq!(credits.backlog(), 2);
        credits.grant(1);
        assert_eq!(credits.shortfall(), 1);
    }

    #[tokio::test]
    async fn unspent_credit_goes_back_and_spent_credit_does_not() {
        let credits = Credits::new(2);
        credits.try_acquire(1).unwrap().spend();
        let c = credits.try_acquire(1).unwrap();
        assert!(credits.try_acquire(1).is_none());
        drop(c);
        assert_eq!(credits.available(), 1);
        assert_eq!(credits.spent(), 1);
    }

    #[tokio::test]
    async fn acquires_are_served_in_the_order_they_came() {
        let credits = Arc::new(Credits::new(0));
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..4u64 {
            let (credits, order) = (credits.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let c = credits.acquire(2).await.unwrap();
                order.lock().unwrap().push(i);
                c.spend();
            }));
            tokio::task::yield_now().await;
        }
        // One credit at a time: a cost of 2 waits for both; nobody jumps the queue.
        for _ in 0..8 {
            credits.grant(1);
            tokio::task::yield_now().await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(credits.spent(), 8);
    }

    #[tokio::test]
    async fn close_fails_the_waiting_acquires() {
        let credits = Arc::new(Credits::new(0));
        let c = credits.clone();
        let waiter = tokio::spawn(async move { c.acquire(1).await.map(Credit::spend) });
        tokio::task::yield_now().await;
        credits.close();
        assert_eq!(waiter.await.unwrap(), Err(Closed));
        assert_eq!(credits.backlog(), 0);
    }
}
