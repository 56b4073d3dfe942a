//! `--sink-on-limit credit`: the sink workers send only against credit sinkd granted
//! ([`sinkd::credit`]), kept in a [`reactive::flow::Credits`].
//!
//! Each attempt takes its cost in credit before it goes (waiting, client-side, when there is
//! none) and announces the backlog: what the attempts waiting for credit cost, plus the queue
//! behind them. Grants come on every answer to a write and, whenever attempts are short of
//! credit, from a poller that asks `POST /credit` and, when the grant fell short, sleeps the
//! wait sinkd suggested. So nothing is refused for the rate and nothing is held on the server.
//!
//! The mirror is conservative: an attempt admitted without its credit (sinkd forgot the
//! account, or the cost unit was not known yet) spends it anyway; one refused (a pause) gives
//! it back. A mismatch costs a write admitted the ordinary way, never a lost event.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reactive::flow::{Credit, Credits};
use sinkd::SinkClient;
use sinkd::credit::CreditAsk;
use tokio::sync::Notify;

/// The client's side of sinkd's credit for one pipeline.
pub struct CreditFlow {
    id: u64,
    credits: Credits,
    /// sinkd's cost unit, learnt from its first grant.
    per_event: AtomicBool,
    /// An attempt is short of credit: the poller should ask.
    short: Notify,
    /// The backlog behind the waiting attempts (the queue's depth, in sinkd's unit).
    behind: std::sync::OnceLock<Box<dyn Fn() -> u64 + Send + Sync>>,
    poller: std::sync::OnceLock<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for CreditFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreditFlow")
            .field("id", &self.id)
            .field("credits", &self.credits)
            .finish_non_exhaustive()
    }
}

impl CreditFlow {
    /// An account with no credit yet; `id` names it at sinkd (any number, unique per client).
    pub fn new(id: u64) -> Arc<CreditFlow> {
        Arc::new(CreditFlow {
            id,
            credits: Credits::new(0),
            per_event: AtomicBool::new(false),
            short: Notify::new(),
            behind: std::sync::OnceLock::new(),
            poller: std::sync::OnceLock::new(),
        })
    }

    /// What an attempt of `events` events costs, in sinkd's unit.
    pub fn cost(&self, events: usize) -> u64 {
        if self.per_event.load(Ordering::Relaxed) {
            events as u64
        } else {
            1
        }
    }

    /// Waits for `cost` credit; when short, wakes the poller (started on first need).
    pub async fn acquire(self: &Arc<Self>, client: &SinkClient, cost: u64) -> Credit<'_> {
        if let Some(c) = self.credits.try_acquire(cost) {
            return c;
        }
        let wait = self.credits.acquire(cost);
        self.poller
            .get_or_init(|| tokio::spawn(poll(self.clone(), client.clone())));
        self.short.notify_one();
        // The credit is never closed: the poller (or the answers) will grant it.
        wait.await.expect("a sink's credit is never closed")
    }

    /// Where the backlog behind the waiting attempts is read (events queued for the sink, in
    /// sinkd's cost unit), so that grants cover what is coming, not only what waits now: with
    /// one write waiting per worker, sinkd would grant a few at a time and the poller would ask
    /// every few milliseconds. Set once; later calls are ignored.
    pub fn backlog_from(&self, behind: impl Fn() -> u64 + Send + Sync + 'static) {
        let _ = self.behind.set(Box::new(behind));
    }

    /// The ask a write carries: this account, and the backlog: the waiting attempts and what
    /// is queued behind them.
    pub fn ask(&self) -> CreditAsk {
        if let Some(behind) = self.behind.get() {
            self.credits.announce(behind());
        }
        CreditAsk {
            id: self.id,
            backlog: self.credits.backlog(),
        }
    }

    /// Settles an attempt's credit with its answer and takes the grant it carries.
    pub fn settle(&self, credit: Credit<'_>, reply: Option<&sinkd::Reply>) {
        let Some(reply) = reply else {
            // No answer: whether sinkd admitted it is unknown; spend, to stay conservative.
            credit.spend();
            return;
        };
        let used = reply.credit.is_some_and(|g| g.used);
        if used || reply.is_success() {
            credit.spend();
        } else {
            drop(credit);
        }
        if let Some(g) = reply.credit {
            self.per_event.store(g.per_event, Ordering::Relaxed);
            self.credits.grant(g.granted);
        }
    }
}

impl CreditFlow {
    /// Stops the poller (its owner, the writer, is done).
    pub fn stop(&self) {
        if let Some(p) = self.poller.get() {
            p.abort();
        }
    }
}

/// Asks sinkd for credit whenever attempts are short of it, until [`CreditFlow::stop`].
async fn poll(f: Arc<CreditFlow>, client: SinkClient) {
    loop {
        let short = f.short.notified();
        let ask = f.ask();
        if f.credits.shortfall() == 0 {
            short.await;
            continue;
        }
        let pause = match client.credit(ask).await {
            Ok(g) => {
                f.per_event.store(g.per_event, Ordering::Relaxed);
                f.credits.grant(g.granted);
                if f.credits.shortfall() > 0 {
                    g.wait.max(Duration::from_micros(250))
                } else {
                    Duration::ZERO
                }
            }
            // sinkd unreachable: the writes will say so; ask again soon.
            Err(_) => Duration::from_millis(100),
        };
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sinkd on loopback that refuses over its limit, and a client for it.
    async fn rejecting_sinkd(
        rate: f64,
        burst: f64,
        cost: sinkd::config::Cost,
    ) -> (sinkd::Running, SinkClient) {
        let mut config = sinkd::Config::default();
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.rate = Some(rate);
        config.burst = burst;
        config.cost = cost;
        config.on_limit = sinkd::config::OnLimit::Reject;
        let running = sinkd::start(config).await.unwrap();
        let client = SinkClient::new(&running.url()).unwrap();
        (running, client)
    }

    fn event(id: u64) -> sinkd::wire::Event {
        sinkd::wire::Event {
            id,
            key: id % 7,
            seq: id,
            ts_ns: 0,
            priority: 0,
            payload: String::new(),
        }
    }

    #[tokio::test]
    async fn batches_costing_more_than_a_burst_gather_their_credit() {
        // Per-event cost, a burst of 50, batches of 80: each write needs more than a bucket
        // holds, so the account must gather credit over several grants.
        let (running, client) = rejecting_sinkd(1_000.0, 50.0, sinkd::config::Cost::PerEvent).await;
        let flow = CreditFlow::new(7);
        let mut refused = 0;
        for b in 0..6u64 {
            let batch: Vec<_> = (b * 80..(b + 1) * 80).map(event).collect();
            let credit = tokio::time::timeout(
                Duration::from_secs(10),
                flow.acquire(&client, flow.cost(batch.len())),
            )
            .await
            .expect("the credit for a batch above the burst never came");
            let reply = client
                .write_batch_credited(&batch, sinkd::wire::Format::Binary, flow.ask())
                .await
                .unwrap();
            // The very first write is costed before the unit is known: it may be refused.
            refused += u64::from(!reply.is_success() && b > 0);
            flow.settle(credit, Some(&reply));
        }
        flow.stop();
        assert_eq!(refused, 0);
        assert!(running.shutdown().await.distinct_ids >= 400);
    }

    #[tokio::test]
    async fn workers_short_of_credit_get_it_from_the_poller_and_are_never_refused() {
        let (running, client) = rejecting_sinkd(500.0, 50.0, sinkd::config::Cost::PerRequest).await;
        let flow = CreditFlow::new(42);
        let mut tasks = Vec::new();
        for w in 0..8u64 {
            let (flow, client) = (flow.clone(), client.clone());
            tasks.push(tokio::spawn(async move {
                let mut refused = 0;
                for i in 0..40u64 {
                    let credit = flow.acquire(&client, flow.cost(1)).await;
                    let e = event(w * 1_000 + i);
                    let reply = client
                        .write_credited(&e, sinkd::wire::Format::Binary, flow.ask())
                        .await
                        .unwrap();
                    refused += u64::from(!reply.is_success());
                    flow.settle(credit, Some(&reply));
                }
                refused
            }));
        }
        let mut refused = 0;
        for t in tasks {
            refused += t.await.unwrap();
        }
        flow.stop();
        assert_eq!(refused, 0);
        let counts = crate::report::SinkLimit::from_metrics(&client.metrics().await.unwrap());
        assert!(
            counts.credit_polls > 0,
            "320 writes over a burst of 50 needed the poller"
        );
        assert_eq!((counts.refused, counts.held, counts.on_credit), (0, 0, 320));
        let stats = running.shutdown().await;
        assert_eq!(stats.distinct_ids, 320);
    }
}
