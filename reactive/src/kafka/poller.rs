//! The poll thread and the lag thread of a [`KafkaSource`](super::KafkaSource).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, Timestamp};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList as Tpl};
use tokio::sync::mpsc::UnboundedSender;

use super::tracker::Tp;
use super::{Ack, KafkaRecord, Msg, Shared, is_eviction};

/// How long a poll blocks while the partitions are paused: the latency with which returning
/// demand resumes them.
const PAUSED_POLL: Duration = Duration::from_millis(10);
/// How long a poll blocks while fetching.
const ACTIVE_POLL: Duration = Duration::from_millis(100);
/// How long demand must stay at zero before the partitions are paused. A pause drops what
/// librdkafka fetched ahead and a resume fetches it again, so the brief gaps while a subscriber
/// replenishes its window are waited out (without polling) instead.
pub(super) const PAUSE_AFTER: Duration = Duration::from_millis(100);
/// Broker round trips made from the callbacks and the lag thread.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) struct SourceContext {
    shared: Arc<Shared>,
}

impl ClientContext for SourceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if is_eviction(&error) {
            // Counted where the consumer reports it, in the poll loop.
            return;
        }
        self.shared.counters.errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%error, reason, "kafka client error");
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let shared = &self.shared;
        shared.counters.rebalances.fetch_add(1, Ordering::Relaxed);
        let revoked: Vec<Tp> = tpl
            .elements()
            .iter()
            .map(|e| (Arc::from(e.topic()), e.partition()))
            .collect();
        let lost = consumer.assignment_lost();
        if !lost {
            // Give the records in flight a chance to be acknowledged, then commit them.
            let deadline = Instant::now() + shared.config.revoke_grace;
            loop {
                let left: usize = {
                    let t = shared.lock_tracker();
                    revoked.iter().map(|tp| t.in_flight(tp)).sum()
                };
                if left == 0 || Instant::now() >= deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            commit(consumer, shared, Some(&revoked));
        }
        let mut t = shared.lock_tracker();
        let forgotten: usize = revoked.iter().map(|tp| t.revoke(tp)).sum();
        drop(t);
        shared
            .counters
            .revoked_in_flight
            .fetch_add(forgotten as u64, Ordering::Relaxed);
        tracing::info!(
            partitions = revoked.len(),
            lost,
            forgotten,
            "partitions revoked"
        );
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let shared = &self.shared;
        match rebalance {
            Rebalance::Assign(tpl) => {
                shared.counters.rebalances.fetch_add(1, Ordering::Relaxed);
                let mut t = shared.lock_tracker();
                for e in tpl.elements() {
                    t.assign((Arc::from(e.topic()), e.partition()));
                }
                drop(t);
                shared.assignment_epoch.fetch_add(1, Ordering::Release);
                tracing::info!(partitions = tpl.count(), "partitions assigned");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => {
                shared.counters.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "rebalance error");
            }
        }
    }
}

/// Commits the acknowledged prefix of every tracked partition (or of `only`), synchronously.
fn commit(consumer: &BaseConsumer<SourceContext>, shared: &Shared, only: Option<&[Tp]>) {
    let due: Vec<(Tp, i64)> = {
        let mut t = shared.lock_tracker();
        match only {
            Some(tps) => tps
                .iter()
                .filter_map(|tp| t.due_for(tp).map(|o| (tp.clone(), o)))
                .collect(),
            None => t.due(),
        }
    };
    if due.is_empty() {
        return;
    }
    let mut tpl = Tpl::with_capacity(due.len());
    for (tp, offset) in &due {
        if tpl
            .add_partition_offset(&tp.0, tp.1, Offset::Offset(*offset))
            .is_err()
        {
            return;
        }
    }
    match consumer.commit(&tpl, CommitMode::Sync) {
        Ok(()) => {
            shared.counters.commits.fetch_add(1, Ordering::Relaxed);
            let mut t = shared.lock_tracker();
            for (tp, offset) in &due {
                t.committed(tp, *offset);
            }
        }
        Err(e) => {
            shared
                .counters
                .commit_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "commit failed");
        }
    }
}

fn assignment_tpl(shared: &Shared) -> Tpl {
    let assigned = shared.lock_tracker().assigned();
    let mut tpl = Tpl::with_capacity(assigned.len());
    for (topic, p) in &assigned {
        tpl.add_partition(topic, *p);
    }
    tpl
}

/// Turns polled messages into records under one lock of the tracker. Messages of partitions
/// no longer assigned are left out: they belong to the next owner.
struct Raw {
    tp: Tp,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    timestamp_ms: Option<i64>,
}

fn to_records(shared: &Arc<Shared>, raw: Vec<Raw>) -> Vec<KafkaRecord> {
    let mut t = shared.lock_tracker();
    raw.into_iter()
        .filter_map(|r| {
            let generation = t.delivered(&r.tp, r.offset)?;
            Some(KafkaRecord {
                topic: r.tp.0.clone(),
                partition: r.tp.1,
                offset: r.offset,
                key: r.key,
                payload: r.payload,
                timestamp_ms: r.timestamp_ms,
                ack: Ack {
                    shared: shared.clone(),
                    tp: r.tp,
                    offset: r.offset,
                    generation,
                    done: false,
                },
            })
        })
        .collect()
}

pub(super) fn run(shared: Arc<Shared>, tx: UnboundedSender<Msg>) {
    let context = SourceContext {
        shared: shared.clone(),
    };
    let consumer: BaseConsumer<SourceContext> =
        match shared.config.client_config().create_with_context(context) {
            Ok(c) => c,
            Err(e) => {
                let _ = tx.send(Msg::Failed(e));
                return;
            }
        };
    let topics: Vec<&str> = shared.config.topics.iter().map(String::as_str).collect();
    if let Err(e) = consumer.subscribe(&topics) {
        let _ = tx.send(Msg::Failed(e));
        return;
    }
    let consumer = Arc::new(consumer);
    let lag_thread = (!shared.config.lag_interval.is_zero()).then(|| {
        let (consumer, shared) = (consumer.clone(), shared.clone());
        std::thread::Builder::new()
            .name("kafka-lag".into())
            .spawn(move || lag_loop(&consumer, &shared))
            .ok()
    });

    let mut topic_names: HashMap<String, Arc<str>> = HashMap::new();
    let mut stash: VecDeque<Raw> = VecDeque::new();
    let mut sent: u64 = 0;
    let mut paused = false;
    let mut epoch_seen = u64::MAX;
    let mut drained = false;
    let mut last_commit = Instant::now();
    let mut no_demand_since: Option<Instant> = None;
    let max_batch = shared.config.max_batch.max(1);

    while !shared.stop.load(Ordering::Acquire) {
        let fetching = shared.fetching.load(Ordering::Acquire);
        // Demand left; while draining it is spent only on records fetched already (the stash).
        let demand = shared.granted.load(Ordering::Acquire).saturating_sub(sent);
        let credit = if fetching { demand } else { 0 };
        if !fetching && !drained && stash.is_empty() {
            drained = true;
            let _ = tx.send(Msg::Drained);
        }
        // Pause without demand, resume with it. An assignment made while paused starts
        // fetching, so the pause is applied again after each one.
        let epoch = shared.assignment_epoch.load(Ordering::Acquire);
        if credit == 0 && fetching && !paused && stash.is_empty() {
            let since = *no_demand_since.get_or_insert_with(Instant::now);
            let waited = since.elapsed();
            if waited < PAUSE_AFTER {
                // The connection unparks this thread when demand arrives.
                std::thread::park_timeout(PAUSE_AFTER - waited);
                continue;
            }
        }
        if credit > 0 {
            no_demand_since = None;
        }
        if credit == 0 {
            if !paused || epoch != epoch_seen {
                if let Ok(tpl) = consumer.assignment() {
                    let _ = consumer.pause(&tpl);
                }
                if !paused {
                    shared.counters.pauses.fetch_add(1, Ordering::Relaxed);
                }
                paused = true;
                epoch_seen = epoch;
            }
        } else if paused {
            if let Ok(tpl) = consumer.assignment() {
                let _ = consumer.resume(&tpl);
            }
            paused = false;
            epoch_seen = epoch;
        }

        let mut raw: Vec<Raw> = Vec::new();
        let from_stash = demand.min(max_batch as u64) as usize;
        while raw.len() < from_stash {
            match stash.pop_front() {
                Some(r) => raw.push(r),
                None => break,
            }
        }
        let limit = credit.min(max_batch as u64) as usize;
        if raw.is_empty() {
            let mut timeout = if paused { PAUSED_POLL } else { ACTIVE_POLL };
            loop {
                match consumer.poll(timeout) {
                    Some(Ok(m)) => {
                        let topic = match topic_names.get(m.topic()) {
                            Some(t) => t.clone(),
                            None => {
                                let t: Arc<str> = Arc::from(m.topic());
                                topic_names.insert(m.topic().to_string(), t.clone());
                                t
                            }
                        };
                        let r = Raw {
                            tp: (topic, m.partition()),
                            offset: m.offset(),
                            key: m.key().map(<[u8]>::to_vec),
                            payload: m.payload().map(<[u8]>::to_vec),
                            timestamp_ms: match m.timestamp() {
                                Timestamp::NotAvailable => None,
                                Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => Some(t),
                            },
                        };
                        if raw.len() < limit {
                            raw.push(r);
                        } else {
                            // Fetched before the pause took effect: keep it for later demand.
                            stash.push_back(r);
                            break;
                        }
                        if raw.len() >= limit {
                            break;
                        }
                        timeout = Duration::ZERO;
                    }
                    Some(Err(e)) => {
                        if is_eviction(&e) {
                            shared.counters.evictions.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!("evicted: max.poll.interval.ms passed without a poll");
                        } else {
                            shared.counters.errors.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(error = %e, "kafka consumer error");
                        }
                        break;
                    }
                    None => break,
                }
            }
        }
        if !raw.is_empty() {
            let records = to_records(&shared, raw);
            if !records.is_empty() {
                sent += records.len() as u64;
                shared
                    .counters
                    .delivered
                    .fetch_add(records.len() as u64, Ordering::Relaxed);
                if tx.send(Msg::Records(records)).is_err() {
                    break;
                }
            }
        }
        if last_commit.elapsed() >= shared.config.commit_interval {
            commit(&consumer, &shared, None);
            last_commit = Instant::now();
        }
    }

    // Leave cleanly: commit what was acknowledged, then leave the group (the revoke callback
    // commits again and forgets the partitions).
    commit(&consumer, &shared, None);
    shared.closed.store(true, Ordering::Release);
    consumer.unsubscribe();
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    while Instant::now() < deadline && !shared.lock_tracker().is_empty() {
        let _ = consumer.poll(PAUSED_POLL);
    }
    if let Some(Some(thread)) = lag_thread {
        let _ = thread.join();
    }
}

fn lag_loop(consumer: &BaseConsumer<SourceContext>, shared: &Shared) {
    let interval = shared.config.lag_interval;
    let mut next = Instant::now();
    while !shared.stop.load(Ordering::Acquire) {
        if Instant::now() < next {
            std::thread::sleep(Duration::from_millis(20).min(interval));
            continue;
        }
        next = Instant::now() + interval;
        let tpl = assignment_tpl(shared);
        if tpl.count() == 0 {
            shared.lag.lock().unwrap_or_else(|p| p.into_inner()).clear();
            continue;
        }
        let Ok(lags) = super::read_lag(consumer, tpl, REQUEST_TIMEOUT) else {
            continue;
        };
        *shared.lag.lock().unwrap_or_else(|p| p.into_inner()) = lags;
    }
}
