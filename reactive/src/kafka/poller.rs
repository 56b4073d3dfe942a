//! The poll thread of a [`KafkaSource`](super::KafkaSource): membership, fetching against
//! demand, pause and resume, commits, revocations and stall recovery.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use tokio::sync::mpsc::UnboundedSender;

use super::lag::lag_loop;
use super::probe;
use super::rebalance::{REQUEST_TIMEOUT, SourceContext, commit, is_eviction, tpl_of};
use super::record::Lease;
use super::recover::{Progress, check_stalls};
use super::shared::{Arena, Raw, Shared};
use super::{Ack, KafkaRecord};

/// What the poll thread sends the connection.
pub(super) enum Msg {
    /// Records, and the revocation count when they were made.
    Records(Vec<KafkaRecord>, u64),
    Failed(KafkaError),
    Drained,
}

/// How long a poll blocks while the partitions are paused: the latency with which returning
/// demand resumes them.
const PAUSED_POLL: Duration = Duration::from_millis(10);
/// How long a poll blocks while fetching.
const ACTIVE_POLL: Duration = Duration::from_millis(100);
/// How long demand must stay at zero before the partitions are paused. A pause drops what
/// librdkafka fetched ahead and a resume fetches it again, so the brief gaps while a subscriber
/// replenishes its window are waited out (without polling) instead.
pub(super) const PAUSE_AFTER: Duration = Duration::from_millis(100);
/// How often stalls are looked for.
const STALL_CHECK: Duration = Duration::from_millis(500);

/// Turns polled messages into records under one lock of the tracker, with one lookup per run
/// of a partition's records. Messages of partitions no longer assigned are left out: they
/// belong to the next owner.
fn to_records(shared: &Arc<Shared>, raw: Vec<Raw>) -> Vec<KafkaRecord> {
    let mut records = Vec::with_capacity(raw.len());
    let mut t = shared.lock_tracker();
    // Runs of one partition's records: (length, generation or None when not assigned).
    let mut runs = Vec::new();
    let mut start = 0;
    while start < raw.len() {
        let tp = &raw[start].tp;
        let len = raw[start..].iter().take_while(|r| r.tp == *tp).count();
        let offsets = raw[start..start + len].iter().map(|r| r.offset);
        runs.push((len, t.delivered_run(tp, offsets)));
        start += len;
    }
    drop(t);
    // Fresh reference counts for this batch (see `Lease`): one for the acks, and one topic
    // name per topic, so that cloning them here and dropping the records of an earlier batch
    // in the acknowledging task touch different cache lines.
    let lease = Arc::new(Lease(shared.clone()));
    let mut names: Vec<Arc<str>> = Vec::new();
    let mut raw = raw.into_iter();
    for (len, delivered) in runs {
        let run = raw.by_ref().take(len);
        let Some((generation, skips)) = delivered else {
            run.for_each(drop); // not assigned (any more): the next owner reads these
            continue;
        };
        // Records the last owner already wrote (registered as acknowledged) stay here.
        let mut skips = skips.into_iter().flatten();
        let mut run = run.filter(|_| !skips.next().unwrap_or(false)).peekable();
        let Some(first) = run.peek() else { continue };
        let topic = intern(&mut names, &first.tp.0);
        records.extend(run.map(|r| KafkaRecord {
            topic: topic.clone(),
            partition: r.tp.1,
            offset: r.offset,
            data: r.data,
            key_len: r.key_len,
            has_payload: r.has_payload,
            timestamp_ms: r.timestamp_ms,
            ack: Ack {
                lease: lease.clone(),
                tp: (topic.clone(), r.tp.1),
                offset: r.offset,
                generation,
                done: false,
            },
        }));
    }
    records
}

/// The poll thread's own state between two rounds.
pub(super) struct Round {
    /// The topics' names, shared by their records (a consumer reads few topics).
    topic_names: Vec<Arc<str>>,
    /// `shared.revoked_seq` when revoked partitions were last forgotten.
    revoked_seen: u64,
    /// Where keys and payloads are copied.
    arena: Arena,
    sent: u64,
    paused: bool,
    epoch_seen: u64,
    drained: bool,
    last_commit: Instant,
    no_demand_since: Option<Instant>,
    /// Fetch progress per partition, for the stall detector.
    progress: Progress,
    last_check: Instant,
}

/// `name` from `names`, added when it is not there yet (a consumer reads few topics).
fn intern(names: &mut Vec<Arc<str>>, name: &str) -> Arc<str> {
    if let Some(t) = names.iter().find(|t| ***t == *name) {
        return t.clone();
    }
    let t: Arc<str> = Arc::from(name);
    names.push(t.clone());
    t
}

pub(super) fn run(shared: Arc<Shared>, tx: UnboundedSender<Msg>) {
    if shared.config.group_protocol == "consumer" {
        let config = &shared.config;
        let has = probe::supports(
            &config.bootstrap_servers,
            probe::CONSUMER_GROUP_HEARTBEAT,
            REQUEST_TIMEOUT,
        );
        if has == Some(false) {
            let reason = format!(
                "group.protocol=consumer (KIP-848) needs the ConsumerGroupHeartbeat API, which the broker at {} does not offer; use the classic protocol",
                config.bootstrap_servers
            );
            let _ = tx.send(Msg::Failed(KafkaError::Subscription(reason)));
            return;
        }
    }
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

    let mut round = Round {
        topic_names: Vec::new(),
        revoked_seen: 0,
        arena: Arena::default(),
        sent: 0,
        paused: false,
        epoch_seen: u64::MAX,
        drained: false,
        last_commit: Instant::now(),
        no_demand_since: None,
        progress: Progress::new(shared.config.stall_after),
        last_check: Instant::now(),
    };
    while !shared.stop.load(Ordering::Acquire) {
        if turn(&consumer, &shared, &mut round, &tx).is_break() {
            break;
        }
    }
    leave(&consumer, &shared);
    if let Some(Some(thread)) = lag_thread {
        let _ = thread.join();
    }
}

/// One turn of the poll loop: pause or resume for the demand there is, hand over records
/// against it (from the stash first), commit and look for stalls when they are due. Breaks
/// when the connection is gone.
fn turn(
    consumer: &BaseConsumer<SourceContext>,
    shared: &Arc<Shared>,
    round: &mut Round,
    tx: &UnboundedSender<Msg>,
) -> ControlFlow<()> {
    let max_batch = shared.config.max_batch.max(1) as u64;
    let fetching = shared.fetching.load(Ordering::Acquire);
    // Demand left; while draining it is spent only on records fetched already (the stash).
    let demand = shared
        .granted
        .load(Ordering::Acquire)
        .saturating_sub(round.sent);
    let credit = if fetching { demand } else { 0 };
    let stash_empty = shared.stash.lock().map_or(true, |s| s.is_empty());
    if !fetching && !round.drained && stash_empty {
        round.drained = true;
        let _ = tx.send(Msg::Drained);
    }
    if credit == 0 && fetching && !round.paused && stash_empty {
        let since = *round.no_demand_since.get_or_insert_with(Instant::now);
        let waited = since.elapsed();
        if waited < PAUSE_AFTER {
            // The connection unparks this thread when demand arrives.
            std::thread::park_timeout(PAUSE_AFTER - waited);
            return ControlFlow::Continue(());
        }
    }
    if credit > 0 {
        round.no_demand_since = None;
    }
    apply_pause(consumer, shared, round, credit == 0);
    inject_faults(consumer, shared);

    let mut raw = take_stash(shared, demand.min(max_batch) as usize);
    if raw.is_empty() {
        poll_into(
            consumer,
            shared,
            round,
            &mut raw,
            credit.min(max_batch) as usize,
        );
    }
    hand_over(shared, round, raw, tx)?;
    if round.last_commit.elapsed() >= shared.config.commit_interval {
        commit(consumer, shared, None);
        round.last_commit = Instant::now();
    }
    if round.last_check.elapsed() >= STALL_CHECK {
        round.last_check = Instant::now();
        let wanted = fetching && credit > 0 && !round.paused;
        check_stalls(consumer, shared, &mut round.progress, wanted);
    }
    ControlFlow::Continue(())
}

/// Up to `n` records fetched before a pause took effect.
fn take_stash(shared: &Shared, n: usize) -> Vec<Raw> {
    let mut raw = Vec::with_capacity(n);
    if n > 0 {
        if let Ok(mut stash) = shared.stash.lock() {
            let k = n.min(stash.len());
            raw.extend(stash.drain(..k));
        }
    }
    raw
}

/// Registers what was polled for acknowledgement and sends it to the connection. Breaks when
/// the connection is gone.
fn hand_over(
    shared: &Arc<Shared>,
    round: &mut Round,
    raw: Vec<Raw>,
    tx: &UnboundedSender<Msg>,
) -> ControlFlow<()> {
    if raw.is_empty() {
        return ControlFlow::Continue(());
    }
    let epoch = shared.revoke_epoch.load(Ordering::Acquire);
    let records = to_records(shared, raw);
    if records.is_empty() {
        return ControlFlow::Continue(());
    }
    let n = records.len() as u64;
    round.sent += n;
    shared.counters.delivered.fetch_add(n, Ordering::Relaxed);
    match tx.send(Msg::Records(records, epoch)) {
        Ok(()) => ControlFlow::Continue(()),
        Err(_) => ControlFlow::Break(()),
    }
}

/// Leaves cleanly: commits what was acknowledged, then leaves the group (the revoke callback
/// commits again and forgets the partitions).
fn leave(consumer: &BaseConsumer<SourceContext>, shared: &Shared) {
    commit(consumer, shared, None);
    shared.closed.store(true, Ordering::Release);
    consumer.unsubscribe();
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    while Instant::now() < deadline && !shared.lock_tracker().is_empty() {
        let _ = consumer.poll(PAUSED_POLL);
    }
}

/// Pauses every assigned partition without demand and resumes them with it. Whenever the
/// assignment changed, the wanted state is applied to all of it again, whatever this thread
/// last did: librdkafka keeps a partition's pause across a rebalance, so a partition assigned
/// back to this member may arrive paused although the member is fetching.
fn apply_pause(
    consumer: &BaseConsumer<SourceContext>,
    shared: &Shared,
    round: &mut Round,
    pause: bool,
) {
    let epoch = shared.assignment_epoch.load(Ordering::Acquire);
    if pause == round.paused && epoch == round.epoch_seen {
        return;
    }
    if let Ok(tpl) = consumer.assignment() {
        let result = if pause {
            consumer.pause(&tpl)
        } else {
            consumer.resume(&tpl)
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, pause, "pause or resume failed");
        }
        tracing::debug!(partitions = tpl.count(), pause, "pause state applied");
    }
    if pause && !round.paused {
        shared.counters.pauses.fetch_add(1, Ordering::Relaxed);
    }
    round.paused = pause;
    round.epoch_seen = epoch;
}

/// Test-only faults: partitions paused behind the loop's back.
fn inject_faults(consumer: &BaseConsumer<SourceContext>, shared: &Shared) {
    let Ok(mut tps) = shared.inject_pause.lock() else {
        return;
    };
    if !tps.is_empty() {
        let _ = consumer.pause(&tpl_of(tps.iter()));
        tps.clear();
    }
}

/// Polls up to `limit` records into `raw` (what comes beyond it goes to the stash).
fn poll_into(
    consumer: &BaseConsumer<SourceContext>,
    shared: &Shared,
    round: &mut Round,
    raw: &mut Vec<Raw>,
    limit: usize,
) {
    let timeout = if round.paused {
        PAUSED_POLL
    } else {
        ACTIVE_POLL
    };
    let mut noted = raw.len();
    poll_messages(consumer, shared, round, raw, &mut noted, limit, timeout);
    note_runs(&mut round.progress, &raw[noted..]);
}

/// Notes fetch progress once per run of a partition's records rather than per record.
fn note_runs(progress: &mut super::recover::Progress, fetched: &[Raw]) {
    for (i, r) in fetched.iter().enumerate() {
        if fetched.get(i + 1).is_none_or(|next| next.tp != r.tp) {
            progress.note_fetched(&r.tp, r.offset);
        }
    }
}

fn poll_messages(
    consumer: &BaseConsumer<SourceContext>,
    shared: &Shared,
    round: &mut Round,
    raw: &mut Vec<Raw>,
    noted: &mut usize,
    limit: usize,
    mut timeout: Duration,
) {
    loop {
        let polled = consumer.poll(timeout);
        // A revocation ran inside that poll: those partitions start again from their commit
        // (what was fetched before it is noted first, then forgotten if revoked).
        if shared.revoked_seq.load(Ordering::Acquire) != round.revoked_seen {
            note_runs(&mut round.progress, &raw[*noted..]);
            *noted = raw.len();
            forget_revoked(shared, round);
        }
        match polled {
            Some(Ok(m)) => {
                let topic = intern(&mut round.topic_names, m.topic());
                let r = Raw::new(&m, topic, &mut round.arena);
                if raw.len() < limit {
                    raw.push(r);
                } else {
                    // Fetched before the pause took effect: keep it for later demand.
                    round.progress.note_fetched(&r.tp, r.offset);
                    if let Ok(mut stash) = shared.stash.lock() {
                        stash.push_back(r);
                    }
                    return;
                }
                if raw.len() >= limit {
                    return;
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
                return;
            }
            None => {
                if raw.is_empty() && limit > 0 && !round.paused {
                    round.progress.ran_dry = true;
                }
                return;
            }
        }
    }
}

/// Forgets the fetch positions of partitions revoked since the last look.
fn forget_revoked(shared: &Shared, round: &mut Round) {
    let seq = shared.revoked_seq.load(Ordering::Acquire);
    if seq == round.revoked_seen {
        return; // the common case: no lock
    }
    round.revoked_seen = seq;
    let Ok(mut revoked) = shared.revoked_positions.lock() else {
        return;
    };
    for tp in revoked.drain(..) {
        round.progress.forget(&tp);
    }
}
