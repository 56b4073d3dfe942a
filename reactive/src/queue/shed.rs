//! The bounded buffer behind the queue, with its overflow policy. Pure: no clock, no locks, so
//! it is checked against a `VecDeque` model with proptest.

use std::collections::VecDeque;

/// What a full bounded queue does with one more item. Each variant says who loses data.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Overflow {
    /// Nobody: the queue stops granting demand when full, so the source waits (backpressure).
    /// The loss, if any, moves upstream: lag in Kafka, a generator behind its schedule.
    Block,
    /// The incoming item is dropped and counted. Old items keep their place: good for
    /// work that must be done in order, bad for freshness.
    DropNewest,
    /// The oldest queued item is dropped and counted to make room: the freshest data wins
    /// (metrics, positions). The queue's latency stays bounded by its capacity.
    DropOldest,
    /// Items carry a priority class (0 = lowest). Class `c` is refused once the queue is at
    /// least `thresholds[c]` full; when the queue is full, an item of a higher class evicts the
    /// oldest item of the lowest class present. The highest class (`thresholds.len()`) is never
    /// shed: if it alone fills the queue, the queue grows past its capacity for it (see
    /// [`ShedBuffer::offer`]).
    Priority {
        /// Fill fractions, one per sheddable class, lowest class first (e.g. `[0.5, 0.7, 0.9]`
        /// for classes 0–2, with class 3 never shed).
        thresholds: Vec<f64>,
    },
}

impl Overflow {
    /// Whether the policy drops items instead of blocking.
    pub fn sheds(&self) -> bool {
        !matches!(self, Overflow::Block)
    }

    /// The class that is never shed under [`Overflow::Priority`].
    pub fn top_class(&self) -> u8 {
        match self {
            Overflow::Priority { thresholds } => u8::try_from(thresholds.len()).unwrap_or(u8::MAX),
            _ => u8::MAX,
        }
    }
}

/// Why an item was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Refused on arrival: the queue was full ([`Overflow::DropNewest`]).
    Newest,
    /// Evicted from the head to make room ([`Overflow::DropOldest`]).
    Oldest,
    /// Shed for its priority class ([`Overflow::Priority`]).
    Priority(u8),
    /// Discarded when an unbounded queue's safety cap ended the stream: the item that found
    /// the cap (and the rest of its batch, if it came in one), and every item still queued
    /// (the error is signalled ahead of them).
    Overflow,
}

/// What became of an offered item.
#[derive(Debug, PartialEq)]
pub enum Offer<T> {
    /// Queued.
    Accepted,
    /// Queued, and this older item was dropped to make room.
    Evicted(T, DropReason),
    /// Not queued: dropped.
    Dropped(T, DropReason),
    /// Not queued: the queue is full and the policy is [`Overflow::Block`]. The caller keeps it.
    Full(T),
}

/// A FIFO buffer of at most `capacity` items (except the top priority class, see [`Overflow`]),
/// applying an [`Overflow`] policy when full.
#[derive(Debug)]
pub struct ShedBuffer<T> {
    items: VecDeque<T>,
    /// Each item's class, beside it, kept only under [`Overflow::Priority`] (the only policy
    /// that reads it), so the other policies store the items alone and move them in bulk.
    classes: VecDeque<u8>,
    capacity: usize,
    policy: Overflow,
    /// Items queued per class, to find the lowest class present without a scan.
    per_class: Vec<usize>,
}

impl<T> ShedBuffer<T> {
    /// An empty buffer. A capacity of 0 is treated as 1.
    pub fn new(capacity: usize, policy: Overflow) -> Self {
        let classes = usize::from(policy.top_class().min(16)) + 1;
        ShedBuffer {
            items: VecDeque::new(),
            classes: VecDeque::new(),
            capacity: capacity.max(1),
            policy,
            per_class: vec![0; classes],
        }
    }

    /// Items queued.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether the queue holds `capacity` items or more.
    pub fn is_full(&self) -> bool {
        self.items.len() >= self.capacity
    }

    fn prioritised(&self) -> bool {
        matches!(self.policy, Overflow::Priority { .. })
    }

    fn class_slot(&self, priority: u8) -> usize {
        usize::from(priority).min(self.per_class.len() - 1)
    }

    fn push(&mut self, priority: u8, item: T) {
        // Without priorities every item counts as class 0: only `Priority` reads the classes.
        if self.prioritised() {
            let slot = self.class_slot(priority);
            self.per_class[slot] += 1;
            self.classes.push_back(priority);
        } else {
            self.per_class[0] += 1;
        }
        self.items.push_back(item);
    }

    /// Takes the oldest item and its class.
    fn pop_front(&mut self) -> Option<(u8, T)> {
        let item = self.items.pop_front()?;
        let p = self.classes.pop_front().unwrap_or(0);
        let slot = self.class_slot(p);
        self.per_class[slot] -= 1;
        Some((p, item))
    }

    /// Offers an item of class `priority` (ignored unless the policy is
    /// [`Overflow::Priority`]; classes above the top class count as the top class).
    pub fn offer(&mut self, item: T, priority: u8) -> Offer<T> {
        let full = self.is_full();
        match &self.policy {
            Overflow::Block if full => Offer::Full(item),
            Overflow::DropNewest if full => Offer::Dropped(item, DropReason::Newest),
            Overflow::DropOldest if full => {
                let (_, old) = self.pop_front().expect("a full queue is not empty");
                self.push(priority, item);
                Offer::Evicted(old, DropReason::Oldest)
            }
            Overflow::Priority { thresholds } => {
                let class = priority.min(self.policy.top_class());
                let fill = self.items.len() as f64 / self.capacity as f64;
                if let Some(threshold) = thresholds.get(usize::from(class)) {
                    if fill >= *threshold || full {
                        return Offer::Dropped(item, DropReason::Priority(class));
                    }
                    self.push(class, item);
                    return Offer::Accepted;
                }
                // The top class: never shed. When full, evict the oldest of the lowest class
                // present; with none present, grow past capacity.
                if full {
                    if let Some(lowest) = self.per_class[..self.per_class.len() - 1]
                        .iter()
                        .position(|n| *n > 0)
                    {
                        let at = self
                            .classes
                            .iter()
                            .position(|p| usize::from(*p) == lowest)
                            .expect("counted");
                        let p = self.classes.remove(at).expect("in range");
                        let old = self.items.remove(at).expect("in range");
                        self.per_class[lowest] -= 1;
                        self.push(class, item);
                        return Offer::Evicted(old, DropReason::Priority(p));
                    }
                }
                self.push(class, item);
                Offer::Accepted
            }
            _ => {
                self.push(priority, item);
                Offer::Accepted
            }
        }
    }

    /// Whether [`append`](Self::append) may take `n` items at once: the policy does not look
    /// at classes, and the items fit (or the policy never refuses: a blocking buffer is kept
    /// within its capacity by the demand it grants).
    pub fn takes_in_bulk(&self, n: usize) -> bool {
        !self.prioritised()
            && (matches!(self.policy, Overflow::Block) || self.items.len() + n <= self.capacity)
    }

    /// Queues all of `items` (emptied) as offers of class 0 would, when
    /// [`takes_in_bulk`](Self::takes_in_bulk) says they are all accepted; an empty buffer
    /// adopts the batch's allocation instead of copying it.
    pub fn append(&mut self, items: &mut Vec<T>) {
        debug_assert!(self.takes_in_bulk(items.len()));
        self.per_class[0] += items.len();
        if self.items.is_empty() {
            self.items = VecDeque::from(std::mem::take(items));
        } else {
            self.items.extend(items.drain(..));
        }
    }

    /// Takes the oldest item.
    pub fn pop(&mut self) -> Option<T> {
        self.pop_front().map(|(_, item)| item)
    }

    /// Moves the oldest `n` items (at most all) to the end of `out`; an empty `out` that takes
    /// everything takes the buffer's allocation.
    pub fn take_into(&mut self, out: &mut Vec<T>, n: usize) {
        let n = n.min(self.items.len());
        if self.prioritised() {
            out.extend(std::iter::from_fn(|| self.pop()).take(n));
            return;
        }
        self.per_class[0] -= n;
        if n == self.items.len() && out.is_empty() {
            *out = Vec::from(std::mem::take(&mut self.items));
        } else {
            out.extend(self.items.drain(..n));
        }
    }

    /// Takes out every item `remove` matches, keeping the others in order; returns them.
    pub fn remove_where(&mut self, mut remove: impl FnMut(&T) -> bool) -> Vec<T> {
        let mut removed = Vec::new();
        let mut kept = ShedBuffer::new(self.capacity, self.policy.clone());
        while let Some((p, item)) = self.pop_front() {
            if remove(&item) {
                removed.push(item);
            } else {
                kept.push(p, item);
            }
        }
        *self = kept;
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_hands_the_item_back_when_full() {
        let mut b = ShedBuffer::new(2, Overflow::Block);
        assert_eq!(b.offer(1, 0), Offer::Accepted);
        assert_eq!(b.offer(2, 0), Offer::Accepted);
        assert_eq!(b.offer(3, 0), Offer::Full(3));
        assert_eq!(b.pop(), Some(1));
    }

    #[test]
    fn priority_sheds_by_threshold_and_evicts_for_the_top_class() {
        let mut b = ShedBuffer::new(
            4,
            Overflow::Priority {
                thresholds: vec![0.5, 0.75],
            },
        );
        assert_eq!(b.offer("low-a", 0), Offer::Accepted);
        assert_eq!(b.offer("low-b", 0), Offer::Accepted);
        assert_eq!(
            b.offer("low-c", 0),
            Offer::Dropped("low-c", DropReason::Priority(0))
        ); // 50% full
        assert_eq!(b.offer("mid-a", 1), Offer::Accepted);
        assert_eq!(
            b.offer("mid-b", 1),
            Offer::Dropped("mid-b", DropReason::Priority(1))
        ); // 75% full
        assert_eq!(b.offer("top-a", 2), Offer::Accepted);
        assert_eq!(
            b.offer("top-b", 2),
            Offer::Evicted("low-a", DropReason::Priority(0))
        );
        assert_eq!(
            b.offer("top-c", 2),
            Offer::Evicted("low-b", DropReason::Priority(0))
        );
        assert_eq!(
            b.offer("top-d", 2),
            Offer::Evicted("mid-a", DropReason::Priority(1))
        );
        // Full of the top class: it grows rather than shed it.
        assert_eq!(b.offer("top-e", 2), Offer::Accepted);
        assert_eq!(b.len(), 5);
        let order: Vec<_> = std::iter::from_fn(|| b.pop()).collect();
        assert_eq!(order, ["top-a", "top-b", "top-c", "top-d", "top-e"]);
    }
}
