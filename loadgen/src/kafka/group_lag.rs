//! A consumer group's lag over a whole topic, read from the broker by an outsider: the sum over
//! the topic's partitions of log-end offset (high watermark) minus the group's committed offset.
//! The experiments over Kafka read it every sample, so lag there is the broker's own figure, not
//! a member's estimate; the log-end sum also counts what the producers have written.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rdkafka::ClientConfig;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::BaseConsumer;

/// One reading of the group over the topic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupLag {
    /// Records written to the topic: the sum of log-end offsets (the topic starts empty).
    pub log_end: i64,
    /// Records at or past the group's commit: the sum of each partition's lag (from its log
    /// start where nothing is committed).
    pub lag: i64,
}

/// Reads [`GroupLag`] for one group and topic. It never joins the group: it only asks the
/// broker for offsets (OffsetFetch and ListOffsets).
#[derive(Clone)]
pub struct LagReader {
    consumer: Arc<BaseConsumer>,
    topic: String,
    partitions: i32,
}

/// Broker round trips of one reading.
const TIMEOUT: Duration = Duration::from_secs(5);

impl LagReader {
    /// A reader of `group`'s lag over `topic`'s `partitions` partitions.
    pub fn new(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> anyhow::Result<Self> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .context("cannot create a Kafka client to read the group's lag")?;
        Ok(LagReader {
            consumer: Arc::new(consumer),
            topic: topic.to_string(),
            partitions,
        })
    }

    /// One reading (blocks for broker round trips: call it from a blocking thread).
    pub fn read_blocking(&self) -> anyhow::Result<GroupLag> {
        let mut tpl = TopicPartitionList::with_capacity(self.partitions as usize);
        for p in 0..self.partitions {
            tpl.add_partition(&self.topic, p);
        }
        let lags = reactive::kafka::read_lag(&*self.consumer, tpl, TIMEOUT)
            .with_context(|| format!("cannot read the lag of topic {}", self.topic))?;
        Ok(lags.iter().fold(GroupLag::default(), |acc, p| GroupLag {
            log_end: acc.log_end + p.log_end,
            lag: acc.lag + p.lag,
        }))
    }

    /// One reading, on a blocking thread.
    pub async fn read(&self) -> anyhow::Result<GroupLag> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.read_blocking())
            .await
            .context("the lag reader panicked")?
    }
}
