//! Starts a real sinkd on a free loopback port with the given flags.

#![allow(dead_code)]

use clap::Parser;
use sinkd::wire::Event;
use sinkd::{Args, Config, Running, SinkClient};

pub const TOKEN: &str = "s3cret";

pub async fn sinkd(flags: &[&str]) -> (Running, SinkClient) {
    let args = Args::try_parse_from(["sinkd", "--listen", "127.0.0.1:0"].iter().chain(flags))
        .expect("valid flags");
    let config = Config::from_args(args).expect("valid config");
    let running = sinkd::start(config).await.expect("sinkd starts");
    let client = SinkClient::new(&running.url())
        .unwrap()
        .with_admin_token(TOKEN);
    (running, client)
}

pub fn event(id: u64, key: u64, seq: u64) -> Event {
    Event {
        id,
        key,
        seq,
        ts_ns: 0,
        priority: 0,
        payload: "x".repeat(16),
    }
}

/// The value of an unlabelled metric in a Prometheus text exposition.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}
