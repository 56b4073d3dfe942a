//! The conformance suite against every publisher the crate ships.

use reactive::tck::{PublisherVerification, Upstream};
use reactive::{PublisherExt, from_chunks, from_stream, from_try_stream, iter};

const STREAM_END: &str =
    "a stream says it has ended only when polled once more, which takes demand";
const FILTER_END: &str = "a filter cannot know that no later item would pass";

/// A stream that pauses (returns Pending, woken from elsewhere) every few items.
fn pausing_stream(n: u64) -> impl futures::Stream<Item = u64> + Send {
    async_stream::stream! {
        for i in 0..n {
            if i % 7 == 0 {
                tokio::task::yield_now().await;
            }
            yield i;
        }
    }
}

type Failing = reactive::source::FromTryStream<
    futures::stream::Iter<std::vec::IntoIter<Result<u64, std::io::Error>>>,
>;

fn failing() -> Failing {
    from_try_stream(futures::stream::iter(vec![
        Ok(1),
        Err(std::io::Error::other("boom")),
    ]))
}

reactive::publisher_tck!(
    iter_publisher,
    PublisherVerification::new(|n| iter(0..n)).with_failed(failing)
);

reactive::publisher_tck!(
    stream_publisher,
    PublisherVerification::new(|n| from_stream(futures::stream::iter(0..n)))
        .with_pending(|n| from_stream(pausing_stream(n)))
        .with_idle(|| from_stream(futures::stream::pending::<u64>()))
        .with_failed(failing)
        .needs_a_request_to_complete(STREAM_END)
);

/// `0..n` in chunks of 7 (the last one shorter), with an empty chunk after each.
fn chunks_of(n: u64) -> impl futures::Stream<Item = Vec<u64>> + Send {
    let chunks: Vec<Vec<u64>> = (0..n)
        .step_by(7)
        .flat_map(|start| [(start..(start + 7).min(n)).collect(), Vec::new()])
        .collect();
    futures::stream::iter(chunks)
}

/// The same, pausing before every chunk.
fn pausing_chunks_of(n: u64) -> impl futures::Stream<Item = Vec<u64>> + Send {
    async_stream::stream! {
        for start in (0..n).step_by(7) {
            tokio::task::yield_now().await;
            yield (start..(start + 7).min(n)).collect::<Vec<u64>>();
        }
    }
}

reactive::publisher_tck!(
    chunks_publisher,
    PublisherVerification::new(|n| from_chunks(chunks_of(n)))
        .with_pending(|n| from_chunks(pausing_chunks_of(n)))
        .with_idle(|| from_chunks(futures::stream::pending::<Vec<u64>>()))
        .needs_a_request_to_complete(STREAM_END)
);

reactive::publisher_tck!(
    async_stream_publisher,
    PublisherVerification::new(|n| from_stream(pausing_stream(n)))
        .with_idle(|| from_stream(futures::stream::pending::<u64>()))
        .needs_a_request_to_complete(STREAM_END)
);

reactive::publisher_tck!(
    try_stream_publisher,
    PublisherVerification::new(|n| {
        from_try_stream(futures::stream::iter((0..n).map(Ok::<u64, std::io::Error>)))
    })
    .with_idle(|| { from_try_stream(futures::stream::pending::<Result<u64, std::io::Error>>()) })
    .with_failed(failing)
    .needs_a_request_to_complete(STREAM_END)
);

reactive::publisher_tck!(
    map_operator,
    PublisherVerification::over(|up| up.map(|x| x * 2)).with_failed(|| failing().map(|x| x + 1))
);

reactive::publisher_tck!(
    filter_operator,
    PublisherVerification::new(|n| iter(0..n * 2).filter(|x| x % 2 == 0))
        .with_pending(|n| Upstream::pausing(n * 2).filter(|x| x % 2 == 0))
        .with_idle(|| Upstream::idle().filter(|x| x % 2 == 0))
        .with_failed(|| failing().filter(|_| true))
        .needs_a_request_to_complete(FILTER_END)
);

reactive::publisher_tck!(
    infinite_publisher,
    PublisherVerification::new(|_| iter(0u64..)).max_elements(u64::MAX)
);

reactive::publisher_tck!(
    tck_upstream,
    PublisherVerification::new(Upstream::ready)
        .with_pending(Upstream::pausing)
        .with_idle(Upstream::idle)
);

#[test]
fn run_all_reports_every_rule() {
    let report = tokio::runtime::Runtime::new().unwrap().block_on(
        PublisherVerification::new(|n| iter(0..n))
            .with_failed(failing)
            .run_all(),
    );
    assert_eq!(report.len(), 29);
    for (rule, outcome) in &report {
        assert!(rule.starts_with("rule_"));
        if rule.contains("_idle_") {
            // iter is a source: it has no idle upstream to put under it.
            assert!(
                matches!(outcome, Ok(reactive::tck::Outcome::Skipped(_))),
                "{rule}"
            );
        } else {
            assert_eq!(outcome, &Ok(reactive::tck::Outcome::Passed), "{rule}");
        }
    }
}

/// A spill queue over a fresh directory (kept, under cargo's target/tmp: the publisher cannot
/// own it), with four items in memory, so that longer runs go through the disk.
fn spilled<P>(source: P) -> reactive::spill::Spill<P>
where
    P: reactive::Publisher<Item = u64>,
{
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
        .keep();
    let config = reactive::spill::SpillConfig::new(dir, 4, 1 << 20);
    let (tx, rx, _) = reactive::spill::open(config).unwrap();
    reactive::spill::Spill::new(source, tx, rx)
}

reactive::publisher_tck!(
    spill_publisher,
    PublisherVerification::new(|n| spilled(iter(0..n)))
        .with_idle(|| spilled(from_stream(futures::stream::pending::<u64>())))
        .with_failed(|| spilled(failing()))
        .needs_a_request_to_complete(STREAM_END)
);
