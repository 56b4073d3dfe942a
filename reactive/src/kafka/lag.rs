//! Lag, read from the broker: each partition's log-end offset against the group's commit.

use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::TopicPartitionList as Tpl;

use super::PartitionLag;
use super::rebalance::SourceContext;
use super::shared::Shared;

use super::rebalance::REQUEST_TIMEOUT;

/// Reads the lag of `partitions` for the consumer's group: the group's committed offsets and each
/// partition's log-end offset (high watermark), from the broker. A partition with nothing
/// committed counts from its log start. Blocks for up to `timeout` per request.
pub fn read_lag<C: rdkafka::consumer::ConsumerContext>(
    consumer: &impl rdkafka::consumer::Consumer<C>,
    partitions: rdkafka::TopicPartitionList,
    timeout: Duration,
) -> Result<Vec<PartitionLag>, KafkaError> {
    let committed = consumer.committed_offsets(partitions, timeout)?;
    let mut lags = Vec::new();
    for e in committed.elements() {
        let (low, high) = consumer.fetch_watermarks(e.topic(), e.partition(), timeout)?;
        let committed = e.offset().to_raw().filter(|o| *o >= 0);
        lags.push(PartitionLag {
            topic: e.topic().to_string(),
            partition: e.partition(),
            log_end: high,
            committed,
            lag: (high - committed.unwrap_or(low)).max(0),
        });
    }
    lags.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(lags)
}

/// The lag thread: reads the assigned partitions' lag every `lag_interval`.
pub(super) fn lag_loop(consumer: &rdkafka::consumer::BaseConsumer<SourceContext>, shared: &Shared) {
    let interval = shared.config.lag_interval;
    let mut next = Instant::now();
    while !shared.stop.load(std::sync::atomic::Ordering::Acquire) {
        if Instant::now() < next {
            std::thread::sleep(Duration::from_millis(20).min(interval));
            continue;
        }
        next = Instant::now() + interval;
        let assigned = shared.lock_tracker().assigned();
        if assigned.is_empty() {
            shared.set_lag(Vec::new());
            continue;
        }
        let mut tpl = Tpl::with_capacity(assigned.len());
        for (topic, p) in &assigned {
            tpl.add_partition(topic, *p);
        }
        let Ok(lags) = read_lag(consumer, tpl, REQUEST_TIMEOUT) else {
            continue;
        };
        shared.set_lag(lags);
    }
}
