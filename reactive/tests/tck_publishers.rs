//! The conformance suite against every publisher the crate ships.

use reactive::tck::PublisherVerification;
use reactive::{PublisherExt, from_stream, from_try_stream, iter};

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
    PublisherVerification::new(|n| from_stream(futures::stream::iter(0..n))).with_failed(failing)
);

reactive::publisher_tck!(
    async_stream_publisher,
    PublisherVerification::new(|n| from_stream(async_stream::stream! {
        for i in 0..n {
            if i % 7 == 0 {
                tokio::task::yield_now().await;
            }
            yield i;
        }
    }))
);

reactive::publisher_tck!(
    try_stream_publisher,
    PublisherVerification::new(|n| {
        from_try_stream(futures::stream::iter((0..n).map(Ok::<u64, std::io::Error>)))
    })
    .with_failed(failing)
);

reactive::publisher_tck!(
    map_operator,
    PublisherVerification::new(|n| iter(0..n).map(|x| x * 2))
        .with_failed(|| failing().map(|x| x + 1))
);

reactive::publisher_tck!(
    filter_operator,
    PublisherVerification::new(|n| iter(0..n * 2).filter(|x| x % 2 == 0))
        .with_failed(|| failing().filter(|_| true))
);

reactive::publisher_tck!(
    infinite_publisher,
    PublisherVerification::new(|_| iter(0u64..)).max_elements(u64::MAX)
);

#[test]
fn run_all_reports_every_rule() {
    let report = tokio::runtime::Runtime::new().unwrap().block_on(
        PublisherVerification::new(|n| iter(0..n))
            .with_failed(failing)
            .run_all(),
    );
    assert_eq!(report.len(), 22);
    for (rule, outcome) in &report {
        assert!(rule.starts_with("rule_"));
        assert_eq!(outcome, &Ok(reactive::tck::Outcome::Passed), "{rule}");
    }
}
