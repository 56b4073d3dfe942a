//! The conformance suite against the queue in every mode.

use reactive::queue::{Overflow, QueueConfig};
use reactive::tck::PublisherVerification;
use reactive::{PublisherExt, iter};

reactive::publisher_tck!(
    bounded_queue,
    PublisherVerification::new(|n| iter(0..n).queue(QueueConfig::bounded(16)))
);
reactive::publisher_tck!(
    unbounded_queue,
    PublisherVerification::new(|n| iter(0..n).queue(QueueConfig::unbounded()))
);
reactive::publisher_tck!(
    pull_queue,
    PublisherVerification::new(|n| iter(0..n).queue(QueueConfig::pull()))
);
reactive::publisher_tck!(
    infinite_bounded_queue,
    PublisherVerification::new(|_| iter(0u64..).queue(QueueConfig::bounded(64)))
        .max_elements(u64::MAX)
);
reactive::publisher_tck!(
    shedding_queue,
    // Large enough never to shed within the suite's item counts, so every rule sees every item.
    PublisherVerification::new(
        |n| iter(0..n).queue(QueueConfig::bounded(1 << 20).overflow(Overflow::DropOldest))
    )
);
