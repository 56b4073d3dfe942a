//! When to add or remove a member, from the broker's lag alone, and what each change cost.
//!
//! - **Add** one member when the lag has grown across a whole `window` (its last reading above
//!   the first, and at least `scale_up_lag`), below `max` members, and no change for `cooldown`.
//! - **Remove** one when every reading of the `window` is at most `idle_lag`, above `min`, and no
//!   change for `cooldown`.
//!
//! Nothing else: no CPU, no queue fill. Lag is the one signal every Kafka consumer has, and the one
//! KEDA's Kafka scaler reads (see `deploy/`). One member at a time, with a cool-down, because each
//! change is a rebalance: the group stops to reassign, and what was in flight may be replayed.

use std::collections::VecDeque;

use crate::analysis::mean;

/// The scaling rule's settings.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub window_s: f64,
    pub cooldown_s: f64,
    pub scale_up_lag: u64,
    pub idle_lag: u64,
    pub min: usize,
    pub max: usize,
}

/// A change of the group's size.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Decision {
    pub t: f64,
    pub from: usize,
    pub to: usize,
    pub lag: u64,
    pub reason: String,
}

/// The rule over the readings of the last window.
#[derive(Debug)]
pub struct Scaler {
    rule: Rule,
    readings: VecDeque<(f64, u64)>,
    last_change: Option<f64>,
}

impl Scaler {
    pub fn new(rule: Rule) -> Scaler {
        Scaler {
            rule,
            readings: VecDeque::new(),
            last_change: None,
        }
    }

    /// Takes the lag read at `t` with `members` members; returns a change to make, if any.
    pub fn observe(&mut self, t: f64, lag: u64, members: usize) -> Option<Decision> {
        let r = self.rule;
        self.readings.push_back((t, lag));
        // Keep one reading at or before the window's start, so the window is covered whole.
        while self.readings.len() > 2 && self.readings[1].0 <= t - r.window_s {
            self.readings.pop_front();
        }
        let (first_t, first_lag) = *self.readings.front()?;
        let covered = t - first_t >= r.window_s;
        let cooled = self.last_change.is_none_or(|c| t - c >= r.cooldown_s);
        if !covered || !cooled {
            return None;
        }
        let decision = |to: usize, reason: String| Decision {
            t,
            from: members,
            to,
            lag,
            reason,
        };
        let change = if members < r.max && lag >= r.scale_up_lag && lag > first_lag {
            Some(decision(
                members + 1,
                format!(
                    "lag grew from {first_lag} to {lag} over {:.0} s",
                    t - first_t
                ),
            ))
        } else if members > r.min && self.readings.iter().all(|&(_, l)| l <= r.idle_lag) {
            Some(decision(
                members - 1,
                format!("lag at most {} for {:.0} s", r.idle_lag, t - first_t),
            ))
        } else {
            None
        };
        if change.is_some() {
            self.last_change = Some(t);
            self.readings.clear();
            self.readings.push_back((t, lag));
        }
        change
    }
}

/// One second of the group: its size, the broker's lag, and the rates read off the broker.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct Reading {
    pub t: f64,
    pub members: usize,
    pub lag: u64,
    /// Records committed per second (the group's throughput, as the broker sees it).
    pub committed_rate: f64,
    /// Records written per second by the producers.
    pub produced_rate: f64,
    /// Duplicates sinkd has seen so far.
    pub duplicates: u64,
}

/// What one change cost: the seconds of reduced throughput after it, and the duplicates it
/// caused.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Cost {
    /// Seconds in `[t, t + span)` whose committed rate was below 90% of the rate in the `lead`
    /// seconds before the change.
    pub reduced_s: f64,
    /// The committed rate before the change, records/s.
    pub rate_before: f64,
    /// The committed rate over the span after the change.
    pub rate_after: f64,
    /// Duplicates sinkd counted over the span.
    pub duplicates: u64,
}

/// The cost of a change at `t`, from the readings of the `lead` seconds before it and the
/// `span` after.
pub fn cost(readings: &[Reading], t: f64, lead: f64, span: f64) -> Cost {
    let before = mean(
        readings
            .iter()
            .filter(|r| r.t >= t - lead && r.t < t)
            .map(|r| r.committed_rate),
    );
    let after: Vec<&Reading> = readings
        .iter()
        .filter(|r| r.t >= t && r.t < t + span)
        .collect();
    let step = |i: usize| -> f64 {
        let next = after.get(i + 1).map_or(1.0, |n| n.t - after[i].t);
        next.clamp(0.0, 5.0)
    };
    let reduced_s = (0..after.len())
        .filter(|&i| after[i].committed_rate < before * 0.9)
        .map(step)
        .fold(0.0, |a, b| a + b);
    let at = |r: Option<&&Reading>| r.map_or(0, |r| r.duplicates);
    Cost {
        reduced_s,
        rate_before: before,
        rate_after: mean(after.iter().map(|r| r.committed_rate)),
        duplicates: at(after.last()).saturating_sub(
            readings
                .iter()
                .rev()
                .find(|r| r.t < t)
                .map_or(0, |r| r.duplicates),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> Rule {
        Rule {
            window_s: 10.0,
            cooldown_s: 20.0,
            scale_up_lag: 1000,
            idle_lag: 100,
            min: 1,
            max: 4,
        }
    }

    /// Feeds one reading a second from `from` with lag `f(t)`; returns the decisions.
    fn feed(
        s: &mut Scaler,
        members: &mut usize,
        from: u32,
        to: u32,
        f: impl Fn(f64) -> u64,
    ) -> Vec<Decision> {
        let mut out = Vec::new();
        for i in from..to {
            let t = f64::from(i);
            if let Some(d) = s.observe(t, f(t), *members) {
                *members = d.to;
                out.push(d);
            }
        }
        out
    }

    #[test]
    fn growing_lag_adds_one_member_per_cooldown_up_to_the_max() {
        let (mut s, mut m) = (Scaler::new(rule()), 1);
        let d = feed(&mut s, &mut m, 0, 200, |t| 2000 + (t as u64) * 500);
        let at: Vec<(f64, usize)> = d.iter().map(|d| (d.t, d.to)).collect();
        assert_eq!(at, vec![(10.0, 2), (30.0, 3), (50.0, 4)], "{d:?}");
        assert_eq!(m, 4, "never beyond the partition count");
    }

    #[test]
    fn a_steady_or_small_lag_changes_nothing() {
        let (mut s, mut m) = (Scaler::new(rule()), 2);
        assert!(
            feed(&mut s, &mut m, 0, 100, |_| 5000).is_empty(),
            "high but flat"
        );
        let (mut s, mut m) = (Scaler::new(rule()), 2);
        assert!(feed(&mut s, &mut m, 0, 100, |t| 100 + t as u64 * 5).is_empty());
        let (mut s, mut m) = (Scaler::new(rule()), 1);
        assert!(
            feed(&mut s, &mut m, 0, 100, |t| t as u64).is_empty(),
            "grows, below the floor"
        );
    }

    #[test]
    fn an_idle_group_shrinks_to_its_minimum_and_a_spike_resets_the_window() {
        let (mut s, mut m) = (Scaler::new(rule()), 3);
        let d = feed(&mut s, &mut m, 0, 100, |_| 0);
        assert_eq!(d.iter().map(|d| d.to).collect::<Vec<_>>(), vec![2, 1]);
        let (mut s, mut m) = (Scaler::new(rule()), 3);
        // A spike every 8 s: never 10 s below the idle mark.
        assert!(
            feed(&mut s, &mut m, 0, 100, |t| if t as u64 % 8 == 0 {
                500
            } else {
                0
            })
            .is_empty()
        );
    }

    #[test]
    fn the_cost_counts_the_slow_seconds_and_the_new_duplicates() {
        let readings: Vec<Reading> = (0..40)
            .map(|i| {
                let t = f64::from(i);
                Reading {
                    t,
                    committed_rate: if (20.0..26.0).contains(&t) {
                        300.0
                    } else {
                        2000.0
                    },
                    duplicates: if t >= 22.0 { 150 } else { 10 },
                    ..Reading::default()
                }
            })
            .collect();
        let c = cost(&readings, 20.0, 5.0, 15.0);
        assert_eq!(c.reduced_s, 6.0);
        assert_eq!(c.rate_before, 2000.0);
        assert_eq!(c.duplicates, 140);
    }
}
