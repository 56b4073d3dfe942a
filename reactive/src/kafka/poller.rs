//! The poll thread of a [`KafkaSource`](super::KafkaSource): membership, fetching against
//! demand, pause and resume, commits, revocations and stall recovery.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use tokio::sync::mpsc::UnboundedSender;

use super::KafkaRecord;
use super::batch::Batch;
use super::lag::lag_loop;
use super::probe;
use super::rebalance::{REQUEST_TIMEOUT, SourceContext, commit, is_eviction, tpl_of};
use super::recover::{Progress, check_stalls};
use super::shared::{Arena, Shared};

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

/// The poll thread's own state between two rounds.
pub(super) struct Round {
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

    let mut batch = take_stash(shared, demand.min(max_batch) as usize);
    if batch.records.is_empty() {
        poll_into(
            consumer,
            shared,
            round,
            &mut batch,
            credit.min(max_batch) as usize,
        );
    }
    hand_over(shared, round, batch, tx)?;
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

/// A batch of up to `n` records fetched before a pause took effect (empty, with room for `n`,
/// when there are none).
fn take_stash(shared: &Arc<Shared>, n: usize) -> Batch {
    let mut batch = Batch::new(shared, n);
    if n > 0 {
        if let Ok(mut stash) = shared.stash.lock() {
            let k = n.min(stash.len());
            for raw in stash.drain(..k) {
                batch.push_raw(raw);
            }
        }
    }
    batch
}

/// Registers what was polled for acknowledgement and sends it to the connection. Breaks when
/// the connection is gone.
fn hand_over(
    shared: &Arc<Shared>,
    round: &mut Round,
    batch: Batch,
    tx: &UnboundedSender<Msg>,
) -> ControlFlow<()> {
    if batch.records.is_empty() {
        return ControlFlow::Continue(());
    }
    let epoch = shared.revoke_epoch.load(Ordering::Acquire);
    let records = batch.register(shared);
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

/// Polls up to `limit` records into `batch` (what comes beyond it goes to the stash).
fn poll_into(
    consumer: &BaseConsumer<SourceContext>,
    shared: &Shared,
    round: &mut Round,
    batch: &mut Batch,
    limit: usize,
) {
    let timeout = if round.paused {
        PAUSED_POLL
    } else {
        ACTIVE_POLL
    };
    let mut noted = batch.records.len();
    poll_messages(consumer, shared, round, batch, &mut noted, limit, timeout);
    note_runs(&mut round.progress, &batch.records[noted..]);
}

/// Notes fetch progress once per run of a partition's records rather than per record.
fn note_runs(progress: &mut super::recover::Progress, fetched: &[KafkaRecord]) {
    for (i, r) in fetched.iter().enumerate() {
        let last_of_run = fetched
            .get(i + 1)
            .is_none_or(|next| next.partition != r.partition || next.topic() != r.topic());
        if last_of_run {
            progress.note_fetched(&(r.topic_arc().clone(), r.partition), r.offset);
        }
    }
}

fn poll_messages(
    consumer: &BaseConsumer<SourceContext>,
    shared: &Shared,
    round: &mut Round,
    batch: &mut Batch,
    noted: &mut usize,
    limit: usize,
    mut timeout: Duration,
) {
    let mut epoch = shared.assignment_epoch.load(Ordering::Acquire);
    loop {
        let polled = consumer.poll(timeout);
        // A revocation ran inside that poll: those partitions start again from their commit
        // (what was fetched before it is noted first, then forgotten if revoked).
        if shared.revoked_seq.load(Ordering::Acquire) != round.revoked_seen {
            note_runs(&mut round.progress, &batch.records[*noted..]);
            *noted = batch.records.len();
            forget_revoked(shared, round);
        }
        // A rebalance ran inside it: the topics' handles may have changed.
        let now = shared.assignment_epoch.load(Ordering::Acquire);
        if now != epoch {
            epoch = now;
            batch.forget_handles();
        }
        match polled {
            Some(Ok(m)) => {
                if batch.records.len() < limit {
                    batch.push_message(&m, &mut round.arena);
                } else {
                    // Fetched before the pause took effect: keep it for later demand.
                    let r = batch.raw_of(&m, &mut round.arena);
                    round.progress.note_fetched(&r.tp, r.offset);
                    if let Ok(mut stash) = shared.stash.lock() {
                        stash.push_back(r);
                    }
                    return;
                }
                if batch.records.len() >= limit {
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
                if batch.records.is_empty() && limit > 0 && !round.paused {
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
