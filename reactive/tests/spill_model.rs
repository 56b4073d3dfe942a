//! The spill queue against a model: random pushes, pops, batch pops and reopens (a crash that
//! loses the memory half), checked against a `VecDeque` that knows which items are on disk.

use std::collections::VecDeque;

use proptest::prelude::*;
use reactive::spill::{self, SpillConfig, SpillReceiver, SpillSender};

#[derive(Debug, Clone)]
enum Op {
    Push,
    PushMany(u8),
    Pop,
    PopMany(u8),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Push),
        2 => (1u8..20).prop_map(Op::PushMany),
        3 => Just(Op::Pop),
        2 => (1u8..20).prop_map(Op::PopMany),
        1 => Just(Op::Reopen),
    ]
}

type Halves = (SpillSender<Vec<u8>>, SpillReceiver<Vec<u8>>);

fn item(n: u64) -> Vec<u8> {
    // Sizes vary, so segments roll at different places.
    let mut v = n.to_le_bytes().to_vec();
    v.resize(8 + (n % 40) as usize, n as u8);
    v
}

fn run(memory: usize, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let config = SpillConfig::new(dir.path(), memory, 1 << 20).segment_bytes(200);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let open = || -> (Halves, u64) {
            let (tx, rx, recovery) = spill::open::<Vec<u8>>(config.clone()).unwrap();
            ((tx, rx), recovery.records)
        };
        let ((mut tx, mut rx), _) = open();
        // (item number, on disk)
        let mut model: VecDeque<(u64, bool)> = VecDeque::new();
        let mut next = 0u64;
        let push_model = |model: &mut VecDeque<(u64, bool)>, n: u64| {
            let disk_empty = model.iter().all(|&(_, d)| !d);
            let in_memory = model.iter().filter(|&&(_, d)| !d).count();
            model.push_back((n, !(disk_empty && in_memory < memory)));
        };
        for op in ops {
            match op {
                Op::Push => {
                    tx.push(item(next)).await.unwrap();
                    push_model(&mut model, next);
                    next += 1;
                }
                Op::PushMany(k) => {
                    let batch: Vec<Vec<u8>> = (next..next + u64::from(k)).map(item).collect();
                    tx.push_many(batch).await.unwrap();
                    for n in next..next + u64::from(k) {
                        push_model(&mut model, n);
                    }
                    next += u64::from(k);
                }
                Op::Pop => {
                    if let Some((n, _)) = model.pop_front() {
                        prop_assert_eq!(rx.pop().await.unwrap(), Some(item(n)));
                    }
                }
                Op::PopMany(k) => {
                    if model.is_empty() {
                        continue;
                    }
                    let got = rx.pop_many(usize::from(k)).await.unwrap();
                    prop_assert!(!got.is_empty() && got.len() <= usize::from(k));
                    for g in got {
                        let (n, _) = model.pop_front().unwrap();
                        prop_assert_eq!(g, item(n));
                    }
                }
                Op::Reopen => {
                    drop((tx, rx));
                    // The memory half is lost with the process; it was older than the disk.
                    while model.front().is_some_and(|&(_, d)| !d) {
                        model.pop_front();
                    }
                    let (halves, recovered) = open();
                    (tx, rx) = halves;
                    prop_assert_eq!(recovered, model.len() as u64);
                }
            }
            let depth = tx.stats().depth();
            prop_assert_eq!(depth, model.len() as u64);
        }
        drop(tx);
        let mut rest = Vec::new();
        while let Some(x) = rx.pop().await.unwrap() {
            rest.push(x);
            prop_assert!(rest.len() <= model.len());
        }
        let want: Vec<Vec<u8>> = model.iter().map(|&(n, _)| item(n)).collect();
        prop_assert_eq!(rest, want);
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_spill_is_a_fifo_that_loses_only_its_memory_half_on_reopen(
        memory in 0usize..6,
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        run(memory, ops)?;
    }
}
