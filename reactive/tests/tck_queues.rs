//! The conformance suite against the queue in every mode, each over an upstream that is
//! always ready, one that pauses between items (the `pending` tests) and one that is idle.

use reactive::queue::{Overflow, QueueConfig};
use reactive::tck::PublisherVerification;
use reactive::{PublisherExt, iter};

/// Large enough never to shed within the suite's item counts, so every rule sees every item.
const ROOMY: usize = 1 << 20;

reactive::publisher_tck!(
    bounded_queue,
    PublisherVerification::over(|up| up.queue(QueueConfig::bounded(16)))
);
reactive::publisher_tck!(
    bounded_queue_of_one,
    PublisherVerification::over(|up| up.queue(QueueConfig::bounded(1)))
);
reactive::publisher_tck!(
    unbounded_queue,
    PublisherVerification::over(|up| up.queue(QueueConfig::unbounded()))
);
reactive::publisher_tck!(
    unbounded_queue_with_safety_cap,
    PublisherVerification::over(|up| up.queue(QueueConfig::unbounded().safety_cap(ROOMY)))
);
reactive::publisher_tck!(
    pull_queue,
    PublisherVerification::over(|up| up.queue(QueueConfig::pull()))
);
reactive::publisher_tck!(
    infinite_bounded_queue,
    PublisherVerification::new(|_| iter(0u64..).queue(QueueConfig::bounded(64)))
        .max_elements(u64::MAX)
);
reactive::publisher_tck!(
    drop_oldest_queue,
    PublisherVerification::over(|up| {
        up.queue(QueueConfig::bounded(ROOMY).overflow(Overflow::DropOldest))
    })
);
reactive::publisher_tck!(
    drop_newest_queue,
    PublisherVerification::over(|up| {
        up.queue(QueueConfig::bounded(ROOMY).overflow(Overflow::DropNewest))
    })
);
reactive::publisher_tck!(
    priority_queue,
    PublisherVerification::over(|up| {
        up.queue(QueueConfig::bounded(ROOMY).overflow(Overflow::Priority {
            thresholds: vec![0.9],
        }))
    })
);
