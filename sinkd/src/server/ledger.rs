//! Clients' credit accounts: tokens taken from the bucket and set aside for each client, what a
//! grant takes, what a credited write spends. A leaf: it knows the bucket and nothing of HTTP.

use std::collections::HashMap;
use std::time::Duration;

use crate::bucket::TokenBucket;

/// Credit unused this long is forgotten: its client went away.
const IDLE: Duration = Duration::from_secs(60);
/// The longest `wait-us` a grant suggests.
const MAX_WAIT: Duration = Duration::from_secs(1);
/// Accounts kept at most; past this, idle ones are dropped, and then new ones get nothing.
const MAX_ACCOUNTS: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Account {
    tokens: f64,
    last: Duration,
}

/// Every client's credit: tokens taken from the bucket and set aside for it.
#[derive(Debug, Default)]
pub(super) struct Ledger {
    accounts: HashMap<u64, Account>,
}

impl Ledger {
    /// Spends `cost` from `id`'s credit if it has that much.
    pub(super) fn spend(&mut self, id: u64, cost: f64, now: Duration) -> bool {
        match self.accounts.get_mut(&id) {
            Some(a) if a.tokens + 1e-9 >= cost => {
                a.tokens -= cost;
                a.last = now;
                true
            }
            _ => false,
        }
    }

    /// Grants `id` up to `want` from what the bucket holds now (no bucket: all of it).
    pub(super) fn grant(
        &mut self,
        bucket: Option<&mut TokenBucket>,
        id: u64,
        want: u64,
        now: Duration,
    ) -> (u64, Duration) {
        let Some(bucket) = bucket else {
            return (want, Duration::ZERO);
        };
        if !self.accounts.contains_key(&id) && !self.make_room(now) {
            return (0, Duration::from_secs(1));
        }
        let account = self.accounts.entry(id).or_insert(Account {
            tokens: 0.0,
            last: now,
        });
        let burst = bucket.burst();
        // An account holds at most a burst, or what its backlog needs if more: a single write
        // costing more than a burst (per-event cost, a big batch) must be able to gather it.
        let cap = burst.max(want as f64);
        let room = (cap - account.tokens).max(0.0).floor();
        let there = bucket.tokens(now).max(0.0).floor();
        let granted = (want as f64).min(room).min(there);
        if granted >= 1.0 && bucket.try_take(now, granted).is_ok() {
            account.tokens += granted;
            account.last = now;
        } else if granted >= 1.0 {
            return (0, Duration::from_millis(1));
        }
        let granted = granted.max(0.0) as u64;
        let short = want.saturating_sub(granted);
        let wait = if short == 0 {
            Duration::ZERO
        } else {
            // Until half a burst (or the whole shortfall, if less) is in the bucket, a debt
            // paid back first: asking sooner costs a request for a crumb; asking later lets
            // the bucket overflow. At most `MAX_WAIT`, so a rate raised meanwhile is seen.
            let target = (short as f64).min((burst / 2.0).max(1.0));
            let tokens = bucket.tokens(now);
            let secs = ((target - tokens) / bucket.rate()).clamp(0.0, MAX_WAIT.as_secs_f64());
            Duration::from_secs_f64(secs)
        };
        (granted, wait)
    }

    /// Drops idle accounts when there are too many; whether a new one fits.
    fn make_room(&mut self, now: Duration) -> bool {
        if self.accounts.len() < MAX_ACCOUNTS {
            return true;
        }
        self.accounts
            .retain(|_, a| now.saturating_sub(a.last) < IDLE);
        self.accounts.len() < MAX_ACCOUNTS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_grant_takes_from_the_bucket_and_a_credited_write_spends_it() {
        let mut bucket = TokenBucket::new(100.0, 10.0, ms(0));
        let mut ledger = Ledger::default();
        let (g, wait) = ledger.grant(Some(&mut bucket), 7, 4, ms(0));
        assert_eq!((g, wait), (4, Duration::ZERO));
        assert!((bucket.tokens(ms(0)) - 6.0).abs() < 1e-9);
        for _ in 0..4 {
            assert!(ledger.spend(7, 1.0, ms(0)));
        }
        assert!(!ledger.spend(7, 1.0, ms(0)), "spent out");
        assert!(!ledger.spend(8, 1.0, ms(0)), "another account has nothing");
    }

    #[test]
    fn a_grant_is_at_most_what_is_there_and_says_when_to_ask_again() {
        let mut bucket = TokenBucket::new(100.0, 10.0, ms(0));
        let mut ledger = Ledger::default();
        let (g, wait) = ledger.grant(Some(&mut bucket), 1, 50, ms(0));
        assert_eq!(g, 10, "the whole bucket, not the backlog");
        // Empty now; half a burst (5 tokens) refills in 50 ms.
        assert_eq!(wait, ms(50));
        // An account holds no more than a burst, unless its backlog needs more.
        let (g, _) = ledger.grant(Some(&mut bucket), 1, 10, ms(1_000));
        assert_eq!(g, 0);
        let (g, _) = ledger.grant(Some(&mut bucket), 1, 15, ms(1_000));
        assert_eq!(g, 5, "a backlog of 15 may gather 15");
        let (g, _) = ledger.grant(Some(&mut bucket), 2, 50, ms(1_000));
        assert_eq!(g, 5, "what the first account left in the bucket");
    }

    #[test]
    fn grants_never_exceed_the_rate() {
        // A greedy client asking every millisecond for 10 s: what it gets is the bucket's rate.
        let mut bucket = TokenBucket::new(1_000.0, 100.0, ms(0));
        let mut ledger = Ledger::default();
        let mut total = 0;
        for t in 0..10_000 {
            let (g, _) = ledger.grant(Some(&mut bucket), 1, 1_000, ms(t));
            total += g;
            while ledger.spend(1, 1.0, ms(t)) {}
        }
        assert!(total <= 10_000 + 100, "granted {total}");
        assert!(total >= 9_900, "granted {total}");
    }

    #[test]
    fn without_a_limit_everything_asked_is_granted() {
        let mut ledger = Ledger::default();
        assert_eq!(ledger.grant(None, 1, 123, ms(0)), (123, Duration::ZERO));
    }

    #[test]
    fn too_many_accounts_are_refused_until_idle_ones_go() {
        let mut bucket = TokenBucket::new(1e9, 1e9, ms(0));
        let mut ledger = Ledger::default();
        for id in 0..MAX_ACCOUNTS as u64 {
            assert_eq!(ledger.grant(Some(&mut bucket), id, 1, ms(0)).0, 1);
        }
        assert_eq!(ledger.grant(Some(&mut bucket), u64::MAX, 1, ms(1)).0, 0);
        let later = IDLE + ms(10);
        assert_eq!(ledger.grant(Some(&mut bucket), u64::MAX, 1, later).0, 1);
    }
}
