use super::StageSnapshot;

/// Why a stage was named the bottleneck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BottleneckKind {
    /// The stages before it spend their time backpressured, waiting on it.
    BlocksUpstream,
    /// It is busy nearly all the time and its input queue is full.
    BusyWithFullInput,
    /// It is busy nearly all the time.
    Busy,
}

/// The stage that limits throughput, and the evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct Bottleneck {
    /// The stage's name.
    pub stage: String,
    /// Why.
    pub kind: BottleneckKind,
    /// The evidence, for a person.
    pub reason: String,
}

/// Backpressured at least this much of the time: the stage is waiting on its downstream.
const BACKPRESSURED: f64 = 0.5;
/// Idle at most this much of the time: the stage never waits for input.
const NEVER_IDLE: f64 = 0.05;
/// Backpressured at least this much while never idle: the stage is held by its downstream too
/// (a slow stage of its own, say, whose remaining time goes to waiting on the next one).
const HELD: f64 = 0.2;
/// Busy at least this much of the time: the stage is saturated.
const SATURATED: f64 = 0.8;
/// An input at least this full is full.
const FULL: f64 = 0.8;

/// Names the stage limiting throughput, from snapshots in pipeline order (source first), or
/// `None` when no stage is saturated (the source sets the pace).
///
/// The stage others wait on wins: if a stage waits on its downstream (it spends half its time or
/// more backpressured, or it is never idle and spends a fifth or more backpressured), the first
/// stage after it that does not is the bottleneck. Otherwise a stage busy 80% of the time
/// or more with an input 80% full or more, then any stage busy 80% or more.
///
/// ```
/// use reactive::flow::{find_bottleneck, BottleneckKind, StageSnapshot};
/// use std::time::Duration;
/// let stage = |name: &str, busy: u64, backpressured: u64| StageSnapshot {
///     name: name.into(), elapsed: Duration::from_secs(10), busy: Duration::from_secs(busy),
///     idle: Duration::from_secs(10 - busy - backpressured),
///     backpressured: Duration::from_secs(backpressured), items_in: 0, items_out: 0, input_fill: 0.0,
/// };
/// let stages = [stage("source", 1, 9), stage("transform", 1, 8), stage("sink", 9, 0)];
/// let b = find_bottleneck(&stages).unwrap();
/// assert_eq!((b.stage.as_str(), b.kind), ("sink", BottleneckKind::BlocksUpstream));
/// ```
pub fn find_bottleneck(stages: &[StageSnapshot]) -> Option<Bottleneck> {
    let waits = |s: &StageSnapshot| {
        s.backpressured_ratio() >= BACKPRESSURED
            || (s.idle_ratio() <= NEVER_IDLE && s.backpressured_ratio() >= HELD)
    };
    for (i, waiting) in stages.iter().enumerate() {
        if waiting.backpressured_ratio() < BACKPRESSURED {
            continue;
        }
        if let Some(blocker) = stages[i + 1..].iter().find(|s| !waits(s)) {
            return Some(Bottleneck {
                stage: blocker.name.clone(),
                kind: BottleneckKind::BlocksUpstream,
                reason: format!(
                    "{} spent {:.0}% of its time waiting on it; it was busy {:.0}%",
                    waiting.name,
                    waiting.backpressured_ratio() * 100.0,
                    blocker.busy_ratio() * 100.0
                ),
            });
        }
    }
    if let Some(s) = stages
        .iter()
        .find(|s| s.busy_ratio() >= SATURATED && s.input_fill >= FULL)
    {
        return Some(Bottleneck {
            stage: s.name.clone(),
            kind: BottleneckKind::BusyWithFullInput,
            reason: format!(
                "busy {:.0}% with its input {:.0}% full",
                s.busy_ratio() * 100.0,
                s.input_fill * 100.0
            ),
        });
    }
    stages
        .iter()
        .filter(|s| s.busy_ratio() >= SATURATED)
        .max_by(|a, b| a.busy_ratio().total_cmp(&b.busy_ratio()))
        .map(|s| Bottleneck {
            stage: s.name.clone(),
            kind: BottleneckKind::Busy,
            reason: format!("busy {:.0}% of the time", s.busy_ratio() * 100.0),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn stage(name: &str, busy: f64, backpressured: f64, fill: f64) -> StageSnapshot {
        let ms = |f: f64| Duration::from_millis((f * 1000.0) as u64);
        StageSnapshot {
            name: name.into(),
            elapsed: ms(1.0),
            busy: ms(busy),
            idle: ms(1.0 - busy - backpressured),
            backpressured: ms(backpressured),
            items_in: 0,
            items_out: 0,
            input_fill: fill,
        }
    }

    #[test]
    fn a_stage_never_idle_and_partly_held_is_waiting_too() {
        // The workers are slow themselves (busy 56%) but never idle: the rest of their time
        // goes to waiting on the sink, which is the bottleneck.
        let stages = [
            stage("source", 0.27, 0.66, 0.0),
            stage("transform", 0.43, 0.56, 0.0),
            stage("workers", 0.56, 0.44, 0.99),
            stage("sink", 1.0, 0.0, 0.0),
        ];
        assert_eq!(find_bottleneck(&stages).unwrap().stage, "sink");
        // Idle now and then, and held less: it is not waiting, it is the bottleneck.
        let stages = [
            stage("source", 0.2, 0.7, 0.0),
            stage("workers", 0.85, 0.1, 0.9),
            stage("sink", 0.4, 0.0, 0.0),
        ];
        assert_eq!(find_bottleneck(&stages).unwrap().stage, "workers");
    }

    #[test]
    fn the_stage_others_wait_on_is_named() {
        let stages = [
            stage("source", 0.1, 0.9, 0.0),
            stage("transform", 0.9, 0.0, 0.9),
            stage("sink", 0.3, 0.0, 0.0),
        ];
        assert_eq!(find_bottleneck(&stages).unwrap().stage, "transform");
    }

    #[test]
    fn a_busy_stage_with_a_full_input_is_named_without_backpressure() {
        let stages = [
            stage("source", 0.2, 0.0, 0.0),
            stage("sink", 0.95, 0.0, 0.9),
        ];
        let b = find_bottleneck(&stages).unwrap();
        assert_eq!(
            (b.stage.as_str(), b.kind),
            ("sink", BottleneckKind::BusyWithFullInput)
        );
    }

    #[test]
    fn an_idle_pipeline_has_no_bottleneck() {
        let stages = [stage("source", 0.3, 0.0, 0.0), stage("sink", 0.4, 0.0, 0.1)];
        assert_eq!(find_bottleneck(&stages), None);
    }
}
