//! The open-model generator: events at their intended times, whatever the pipeline does.
//!
//! # Honest measurement (the wrk2 lesson)
//! Event `i` has an intended send time fixed by the schedule alone. Its `ts_ns` carries that
//! time, and latency is measured from it, so a pipeline that delays the generator cannot hide
//! the delay (no coordinated omission). The generator emits only against demand: when the
//! pipeline pushes back, events wait at the source, counted as the source backlog. When the
//! generator itself cannot keep up (demand was there, the CPU was not), the late events are
//! counted as missed sends.
//!
//! # Determinism
//! The same seed gives the same ids, keys, priorities and payload bytes.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::Stream;
use reactive::flow::{Activity, RateSignal, Stage};
use sinkd::wire::Event;
use tokio::time::Instant;

use crate::schedule::Schedule;

/// Counters the generator shares with the run, and the payload buffers the run hands back.
#[derive(Debug, Default)]
pub struct GeneratorStats {
    pub emitted: AtomicU64,
    pub missed: AtomicU64,
    pub stop: AtomicBool,
    /// Payload buffers of written events, for the generator's next events.
    pub recycled: Recycler,
}

/// The most bytes of payload buffers a [`Recycler`] keeps.
const RECYCLED_BYTES: usize = 4 << 20;

/// Payload buffers handed back once their events are written, reused by the generator for the
/// next events' payloads: without it, every payload is allocated on the generator's thread and
/// freed on a sink worker's, the allocator's slow path (the events cross threads, so its
/// per-thread caches never hold the right buffers). Holds at most [`RECYCLED_BYTES`] of them;
/// what does not fit is freed.
#[derive(Debug, Default)]
pub struct Recycler {
    spare: Mutex<Vec<Vec<u8>>>,
    /// How many `spare` holds, readable without the lock: a generator whose sink hands nothing
    /// back (the Kafka producer's) never takes the lock.
    held: AtomicUsize,
}

impl Recycler {
    /// Takes the payloads of `events` (written, so no longer needed).
    pub fn give(&self, events: Vec<Event>) {
        let Some(first) = events.first() else {
            return;
        };
        let each = first.payload.capacity() + std::mem::size_of::<Vec<u8>>();
        let room = RECYCLED_BYTES / each;
        let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        let take = room.saturating_sub(spare.len()).min(events.len());
        spare.extend(
            events
                .into_iter()
                .take(take)
                .map(|e| e.payload.into_bytes()),
        );
        self.held.store(spare.len(), Ordering::Relaxed);
    }

    /// Moves up to `n` buffers into `into`.
    fn take(&self, into: &mut Vec<Vec<u8>>, n: usize) {
        if self.held.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        let from = spare.len().saturating_sub(n);
        into.extend(spare.drain(from..));
        self.held.store(spare.len(), Ordering::Relaxed);
    }
}

/// How events look.
#[derive(Debug, Clone, Copy)]
pub struct EventShape {
    pub seed: u64,
    pub keys: u64,
    pub msg_size: usize,
}

fn mix(z: u64) -> u64 {
    splitmix::next(z)
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Builds event `id` for a given key sequence number and intended time.
pub struct Factory {
    shape: EventShape,
    seqs: Vec<u64>,
    /// Buffers to make payloads in, taken from a [`Recycler`] a chunk at a time.
    spare: Vec<Vec<u8>>,
}

impl Factory {
    pub fn new(shape: EventShape) -> Self {
        let keys = shape.keys.max(1);
        Factory {
            seqs: vec![0; keys as usize],
            shape: EventShape { keys, ..shape },
            spare: Vec::new(),
        }
    }

    /// Like [`make`](Self::make), with the payload in a buffer from `recycled` when it has one.
    pub fn make_from(&mut self, recycled: &Recycler, id: u64, ts_ns: i64) -> Event {
        if self.spare.is_empty() {
            recycled.take(&mut self.spare, CHUNK);
        }
        let buffer = self.spare.pop().unwrap_or_default();
        self.make_in(buffer, id, ts_ns)
    }

    /// Event `id`, intended at `ts_ns`. Keys, priorities and payload are functions of the seed
    /// and the id; `seq` counts the key's events.
    pub fn make(&mut self, id: u64, ts_ns: i64) -> Event {
        self.make_in(Vec::new(), id, ts_ns)
    }

    /// Event `id`, its payload written into `bytes` (whatever it held).
    fn make_in(&mut self, mut bytes: Vec<u8>, id: u64, ts_ns: i64) -> Event {
        let h = mix(self.shape.seed ^ mix(id));
        let key = h % self.shape.keys;
        let seq = self.seqs[key as usize];
        self.seqs[key as usize] += 1;
        // Classes 0..3 at 40/30/20/10%.
        let priority = match (h >> 40) % 10 {
            0..=3 => 0,
            4..=6 => 1,
            7..=8 => 2,
            _ => 3,
        };
        // Ten characters of 6 bits from each mix, written as bytes: pushing chars one at a time
        // (a capacity check and a UTF-8 encoding each) was measurably slower in the e2e bench.
        bytes.clear();
        bytes.resize(self.shape.msg_size, 0);
        let mut bits = h;
        for chunk in bytes.chunks_mut(10) {
            bits = mix(bits);
            for b in chunk {
                *b = ALPHABET[(bits & 63) as usize];
                bits >>= 6;
            }
        }
        let payload = String::from_utf8(bytes).expect("the alphabet is ASCII");
        Event {
            id,
            key,
            seq,
            ts_ns,
            priority,
            payload,
        }
    }
}

pub fn now_epoch_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Events are late, and counted missed, when emitted this long after their intended time while
/// the pipeline was asking for them.
const MISSED_AFTER: Duration = Duration::from_millis(2);

/// Events are made up to this long before their intended time; the generator sleeps for later
/// ones.
const AHEAD: Duration = Duration::from_millis(1);

/// The most events made per reading of the clock. At high rates the generator makes the events
/// already due (or due within [`AHEAD`]) in chunks of up to this many, and reads the clock and
/// switches its stage once per chunk rather than once per event: the clock reads alone cost as
/// much as a third of the making at a million events a second.
pub const CHUNK: usize = 64;

/// What [`Making::fill`] found.
enum Filled {
    /// Events were made.
    Made,
    /// None was due yet: the next one is intended at this instant.
    Wait(Instant),
    /// The schedule is done, or the run stopped.
    Done,
}

/// The generator's state between chunks.
struct Making {
    schedule: Schedule,
    factory: Factory,
    origin: Instant,
    origin_epoch_ns: i64,
    signal: Option<RateSignal>,
    stats: Arc<GeneratorStats>,
    id: u64,
    /// Intended time of the next event, from origin.
    offset: Duration,
    /// Set after a wait for demand, cleared once an event goes out on time: while set, the
    /// generator is catching up on backpressure, and late events are not its own misses.
    catching_up: bool,
}

impl Making {
    /// Makes the events due by `now` (plus [`AHEAD`]) into `chunk`, up to [`CHUNK`] of them.
    fn fill(&mut self, now: Instant, chunk: &mut Vec<Event>) -> Filled {
        let total = self.schedule.total();
        // Times from origin, like the offsets: no instant arithmetic an event.
        let now = now.saturating_duration_since(self.origin);
        let mut missed = 0;
        while chunk.len() < CHUNK {
            if self.stats.stop.load(Ordering::Relaxed) || self.offset >= total {
                break;
            }
            let mut rate = self.schedule.rate_at(self.offset);
            if let Some(signal) = &self.signal {
                rate = rate.min(signal.get());
            }
            if rate <= 0.0 {
                // A zero-rate segment: skip to its end.
                self.offset = self.schedule.next_change(self.offset).unwrap_or(total);
                continue;
            }
            if self.offset > now + AHEAD {
                if chunk.is_empty() {
                    return Filled::Wait(self.origin + self.offset);
                }
                break;
            }
            if now.saturating_sub(self.offset) > MISSED_AFTER {
                if !self.catching_up {
                    // Demand was there and the event is late anyway: the generator cannot
                    // keep up.
                    missed += 1;
                }
            } else {
                self.catching_up = false;
            }
            // The intended time (origin + offset) in nanoseconds since the Unix epoch.
            let ts_ns = self.origin_epoch_ns + self.offset.as_nanos() as i64;
            let event = self.factory.make_from(&self.stats.recycled, self.id, ts_ns);
            chunk.push(event);
            self.id += 1;
            self.offset += Duration::from_secs_f64(1.0 / rate);
        }
        if missed > 0 {
            self.stats.missed.fetch_add(missed, Ordering::Relaxed);
        }
        if chunk.is_empty() {
            Filled::Done
        } else {
            Filled::Made
        }
    }
}

/// The generator as a stream of chunks: polled only against demand (it is wrapped in
/// `reactive::from_chunks`, which asks for the next chunk once the last one's events are all
/// out), it sleeps until the next event's intended time and makes the events due in one chunk.
///
/// The stage is busy while it makes a chunk and held back while the chunk is handed out (the
/// pipeline takes events only as it asks for them), idle while it sleeps. An event counts as
/// emitted when its chunk leaves the generator.
pub fn event_chunks(
    schedule: Schedule,
    shape: EventShape,
    origin: Instant,
    origin_epoch_ns: i64,
    signal: Option<RateSignal>,
    stats: Arc<GeneratorStats>,
    stage: Stage,
) -> impl Stream<Item = Vec<Event>> {
    Chunks {
        making: Making {
            schedule,
            factory: Factory::new(shape),
            origin,
            origin_epoch_ns,
            signal,
            stats,
            id: 0,
            offset: Duration::ZERO,
            catching_up: false,
        },
        stage,
        handing: None,
        sleep: None,
        emitted: 0,
        done: false,
    }
}

/// See [`event_chunks`]: a hand-written stream.
struct Chunks {
    making: Making,
    stage: Stage,
    /// While a chunk is handed out: when that began, and how many events it holds.
    handing: Option<(Instant, u64)>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    emitted: u64,
    done: bool,
}

impl Chunks {
    /// The last chunk is handed out: counts it, and notes whether waiting for demand made it
    /// late.
    fn handed(&mut self) {
        if let Some((since, n)) = self.handing.take() {
            self.stage.record_out(n);
            if since.elapsed() > MISSED_AFTER {
                self.making.catching_up = true;
            }
        }
    }
}

impl Stream for Chunks {
    type Item = Vec<Event>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Vec<Event>>> {
        let this = &mut *self;
        loop {
            if let Some(sleep) = this.sleep.as_mut() {
                ready!(sleep.as_mut().poll(cx));
                this.sleep = None;
            }
            // Asked again: the last chunk is out.
            this.handed();
            if this.done {
                return Poll::Ready(None);
            }
            this.stage.set(Activity::Busy);
            let mut chunk = Vec::with_capacity(CHUNK);
            match this.making.fill(Instant::now(), &mut chunk) {
                Filled::Made => {
                    // Until the pipeline has taken the chunk, the generator is held back.
                    this.stage.set(Activity::Backpressured);
                    this.handing = Some((Instant::now(), chunk.len() as u64));
                    this.emitted += chunk.len() as u64;
                    this.making
                        .stats
                        .emitted
                        .store(this.emitted, Ordering::Relaxed);
                    return Poll::Ready(Some(chunk));
                }
                Filled::Wait(intended) => {
                    this.stage.set(Activity::Idle);
                    this.sleep = Some(Box::pin(tokio::time::sleep_until(intended)));
                }
                Filled::Done => {
                    this.stage.set(Activity::Idle);
                    this.done = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Profile;
    use futures::StreamExt;

    fn stream_of(
        rate: f64,
        duration: Duration,
    ) -> (impl Stream<Item = Event>, Arc<GeneratorStats>, Stage) {
        let schedule = Schedule::from_profile(Profile::Constant, rate, 0.0, duration);
        let shape = EventShape {
            seed: 3,
            keys: 8,
            msg_size: 64,
        };
        let (stats, stage) = (Arc::new(GeneratorStats::default()), Stage::new("generator"));
        let s = event_chunks(
            schedule,
            shape,
            Instant::now(),
            0,
            None,
            stats.clone(),
            stage.clone(),
        )
        .flat_map(futures::stream::iter);
        (s, stats, stage)
    }

    #[tokio::test(start_paused = true)]
    async fn the_stream_emits_the_schedule_s_events_in_order_whatever_the_chunks() {
        // 1,000/s: an event per wake-up; 10^6/s: chunks of CHUNK.
        for (rate, duration, n) in [
            (1000.0, Duration::from_millis(200), 200u64),
            (1e6, Duration::from_millis(1), 1000),
        ] {
            let (stream, stats, stage) = stream_of(rate, duration);
            let got: Vec<Event> = stream.collect().await;
            let mut f = Factory::new(EventShape {
                seed: 3,
                keys: 8,
                msg_size: 64,
            });
            let step = 1e9 / rate;
            let want: Vec<Event> = (0..n)
                .map(|i| f.make(i, (i as f64 * step).round() as i64))
                .collect();
            assert_eq!(got, want, "at {rate}/s");
            assert_eq!(stats.emitted.load(Ordering::Relaxed), n);
            assert_eq!(stats.missed.load(Ordering::Relaxed), 0);
            assert_eq!(stage.snapshot().items_out, n);
        }
    }

    #[test]
    fn recycled_buffers_make_the_same_events_and_the_recycler_is_bounded() {
        let shape = EventShape {
            seed: 5,
            keys: 4,
            msg_size: 1000,
        };
        let recycler = Recycler::default();
        // Buffers of other events, one of them longer than a payload.
        let mut other = Factory::new(EventShape { seed: 6, ..shape });
        let mut used: Vec<Event> = (0..100).map(|i| other.make(i, 7)).collect();
        used[0].payload.push_str("and then some");
        recycler.give(used);
        let (mut fresh, mut reusing) = (Factory::new(shape), Factory::new(shape));
        for id in 0..300 {
            assert_eq!(reusing.make_from(&recycler, id, 9), fresh.make(id, 9));
        }
        // 10,000 payloads of 1,000 bytes: no more than RECYCLED_BYTES of them are kept.
        recycler.give((0..10_000).map(|i| fresh.make(i, 0)).collect());
        let kept = recycler.spare.lock().unwrap().len();
        assert!(kept > 0 && kept * 1000 <= RECYCLED_BYTES, "{kept}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_stream_ends_when_told_to_stop_mid_chunk() {
        let (stream, stats, _) = stream_of(1e6, Duration::from_secs(1));
        let mut stream = Box::pin(stream);
        for _ in 0..10 {
            assert!(stream.next().await.is_some());
        }
        stats.stop.store(true, Ordering::Relaxed);
        // The rest of the chunk already made goes out; nothing is made after it.
        let rest = stream.collect::<Vec<_>>().await.len() as u64;
        assert!(10 + rest <= CHUNK as u64, "{rest} after the stop");
        assert_eq!(stats.emitted.load(Ordering::Relaxed), 10 + rest);
    }

    #[test]
    fn the_same_seed_gives_the_same_events() {
        let shape = EventShape {
            seed: 7,
            keys: 16,
            msg_size: 512,
        };
        let a: Vec<Event> = {
            let mut f = Factory::new(shape);
            (0..100).map(|i| f.make(i, 0)).collect()
        };
        let b: Vec<Event> = {
            let mut f = Factory::new(shape);
            (0..100).map(|i| f.make(i, 0)).collect()
        };
        assert_eq!(a, b);
        let c: Vec<Event> = {
            let mut f = Factory::new(EventShape { seed: 8, ..shape });
            (0..100).map(|i| f.make(i, 0)).collect()
        };
        assert_ne!(a, c);
        assert!(a.iter().all(|e| e.payload.len() == 512 && e.key < 16));
        // seq counts each key's events.
        let key0: Vec<u64> = a
            .iter()
            .filter(|e| e.key == a[0].key)
            .map(|e| e.seq)
            .collect();
        assert!(key0.iter().copied().eq(0..key0.len() as u64));
    }
}
