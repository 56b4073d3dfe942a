//! Demand arithmetic: how `request(n)` calls add up.
//!
//! Demand is a count of items the subscriber is ready for. Requests add to it, emissions
//! subtract from it. The sum saturates at [`UNBOUNDED`] (2^63 − 1), and a demand that has
//! reached it is never decremented again: the publisher may emit without limit (rule 3.17).

/// Accumulated demand at or above this value means "unbounded" (rule 3.17).
pub const UNBOUNDED: u64 = i64::MAX as u64;

/// Adds two demands, saturating at [`UNBOUNDED`].
///
/// ```
/// use reactive::demand::{add, UNBOUNDED};
/// assert_eq!(add(2, 3), 5);
/// assert_eq!(add(UNBOUNDED - 1, 10), UNBOUNDED);
/// assert_eq!(add(u64::MAX, u64::MAX), UNBOUNDED);
/// ```
#[inline]
pub const fn add(a: u64, b: u64) -> u64 {
    let sum = a.saturating_add(b);
    if sum > UNBOUNDED { UNBOUNDED } else { sum }
}

/// Subtracts `used` items from a demand, leaving an unbounded demand unbounded.
///
/// ```
/// use reactive::demand::{sub, UNBOUNDED};
/// assert_eq!(sub(5, 2), 3);
/// assert_eq!(sub(UNBOUNDED, 1_000), UNBOUNDED);
/// ```
#[inline]
pub const fn sub(demand: u64, used: u64) -> u64 {
    if demand >= UNBOUNDED {
        UNBOUNDED
    } else {
        demand.saturating_sub(used)
    }
}

/// Whether a demand is unbounded.
#[inline]
pub const fn is_unbounded(demand: u64) -> bool {
    demand >= UNBOUNDED
}
