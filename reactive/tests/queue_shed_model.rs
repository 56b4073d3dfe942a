//! The shedding buffer against a plain `VecDeque` model, on random operation sequences.

use std::collections::VecDeque;

use proptest::prelude::*;
use reactive::queue::{DropReason, Offer, Overflow, ShedBuffer};

#[derive(Debug, Clone)]
enum Op {
    Offer(u8),
    Pop,
    /// A batch of this many class-0 items: `append`ed whole when the buffer takes it in bulk,
    /// offered one by one otherwise (as the queue's input does).
    Append(u8),
    /// `take_into` of this many, into a vector that may already hold something.
    Take(u8, bool),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            3 => (0u8..4).prop_map(Op::Offer),
            2 => Just(Op::Pop),
            1 => (0u8..6).prop_map(Op::Append),
            1 => (0u8..6, any::<bool>()).prop_map(|(n, prefilled)| Op::Take(n, prefilled)),
        ],
        0..200,
    )
}

/// The model: what each policy must do, written as plainly as possible.
struct Model {
    items: VecDeque<(u8, u32)>,
    cap: usize,
    policy: Overflow,
    dropped: Vec<(u32, DropReason)>,
}

impl Model {
    fn offer(&mut self, id: u32, class: u8) {
        let full = self.items.len() >= self.cap;
        match &self.policy {
            Overflow::Block if full => {}
            Overflow::DropNewest if full => self.dropped.push((id, DropReason::Newest)),
            Overflow::DropOldest if full => {
                let (_, old) = self.items.pop_front().unwrap();
                self.dropped.push((old, DropReason::Oldest));
                self.items.push_back((class, id));
            }
            Overflow::Priority { thresholds } => {
                let top = thresholds.len() as u8;
                let class = class.min(top);
                if class < top {
                    let fill = self.items.len() as f64 / self.cap as f64;
                    if full || fill >= thresholds[class as usize] {
                        self.dropped.push((id, DropReason::Priority(class)));
                    } else {
                        self.items.push_back((class, id));
                    }
                } else {
                    if full {
                        let lowest = self
                            .items
                            .iter()
                            .filter(|(c, _)| *c < top)
                            .map(|(c, _)| *c)
                            .min();
                        if let Some(lowest) = lowest {
                            let at = self.items.iter().position(|(c, _)| *c == lowest).unwrap();
                            let (c, old) = self.items.remove(at).unwrap();
                            self.dropped.push((old, DropReason::Priority(c)));
                        }
                    }
                    self.items.push_back((class, id));
                }
            }
            _ => self.items.push_back((class, id)),
        }
    }
}

fn check(policy: Overflow, cap: usize, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut buffer = ShedBuffer::new(cap, policy.clone());
    let mut model = Model {
        items: VecDeque::new(),
        cap,
        policy: policy.clone(),
        dropped: Vec::new(),
    };
    let mut dropped = Vec::new();
    let mut next_id = 0u32;
    let mut refused = 0usize;
    let blocks = matches!(policy, Overflow::Block);
    let offer = |buffer: &mut ShedBuffer<u32>,
                 model: &mut Model,
                 (dropped, refused): (&mut Vec<(u32, DropReason)>, &mut usize),
                 id: u32,
                 class: u8| {
        model.offer(id, class);
        match buffer.offer(id, class) {
            Offer::Accepted => {}
            Offer::Evicted(old, why) | Offer::Dropped(old, why) => dropped.push((old, why)),
            Offer::Full(_) => *refused += 1,
        }
    };
    for op in ops {
        match op {
            Op::Offer(class) => {
                offer(
                    &mut buffer,
                    &mut model,
                    (&mut dropped, &mut refused),
                    next_id,
                    class,
                );
                next_id += 1;
            }
            Op::Pop => prop_assert_eq!(buffer.pop(), model.items.pop_front().map(|(_, id)| id)),
            Op::Append(n) => {
                let ids: Vec<u32> = (next_id..next_id + u32::from(n)).collect();
                next_id += u32::from(n);
                if buffer.takes_in_bulk(ids.len()) {
                    // Whole: every item queued, as if offered with nothing shed.
                    model.items.extend(ids.iter().map(|id| (0, *id)));
                    let mut batch = ids;
                    buffer.append(&mut batch);
                    prop_assert!(batch.is_empty(), "append left items behind");
                } else {
                    for id in ids {
                        offer(&mut buffer, &mut model, (&mut dropped, &mut refused), id, 0);
                    }
                }
            }
            Op::Take(n, prefilled) => {
                let mut out = if prefilled {
                    vec![u32::MAX]
                } else {
                    Vec::new()
                };
                let expected: Vec<u32> = std::iter::once(u32::MAX)
                    .filter(|_| prefilled)
                    .chain(
                        std::iter::from_fn(|| model.items.pop_front().map(|(_, id)| id))
                            .take(usize::from(n)),
                    )
                    .collect();
                buffer.take_into(&mut out, usize::from(n));
                prop_assert_eq!(out, expected);
            }
        }
        prop_assert_eq!(buffer.len(), model.items.len());
        prop_assert_eq!(&dropped, &model.dropped);
        if !blocks && !matches!(policy, Overflow::Priority { .. }) {
            prop_assert!(
                buffer.len() <= cap,
                "a shedding queue never exceeds its capacity"
            );
        }
    }
    // Nothing vanishes: every offered item is queued, was popped, or was counted as dropped.
    prop_assert!(dropped.len() + refused + buffer.len() <= next_id as usize);
    if !blocks {
        prop_assert_eq!(refused, 0, "a shedding policy never blocks");
    }
    Ok(())
}

proptest! {
    #[test]
    fn block_matches_the_model(cap in 1usize..8, ops in ops()) {
        check(Overflow::Block, cap, ops)?;
    }

    #[test]
    fn drop_newest_matches_the_model(cap in 1usize..8, ops in ops()) {
        check(Overflow::DropNewest, cap, ops)?;
    }

    #[test]
    fn drop_oldest_matches_the_model(cap in 1usize..8, ops in ops()) {
        check(Overflow::DropOldest, cap, ops)?;
    }

    #[test]
    fn priority_matches_the_model_and_never_drops_the_top_class(cap in 1usize..8, ops in ops()) {
        let policy = Overflow::Priority { thresholds: vec![0.5, 0.75, 0.9] };
        check(policy.clone(), cap, ops.clone())?;
        let mut buffer = ShedBuffer::new(cap, policy);
        for (i, op) in ops.iter().enumerate() {
            if let Op::Offer(class) = op {
                if let Offer::Dropped(_, DropReason::Priority(c)) | Offer::Evicted(_, DropReason::Priority(c)) = buffer.offer(i, *class) {
                    prop_assert!(c < 3, "the top class was shed");
                }
            } else {
                buffer.pop();
            }
        }
    }
}
