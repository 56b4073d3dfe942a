//! For the end-to-end bench (`benches/e2e.rs`): `loadgen run`'s whole pipeline driven through
//! a fixed number of events, the generator's events for a client that posts the same ones, and
//! the chart of events/s against batch size.

use std::fmt;

use clap::Parser;
use sinkd::wire::Event;

use crate::chart::{Chart, Series};
use crate::cli::RunArgs;
use crate::generator::{EventShape, Factory};
pub use crate::pipeline::Unpaced;
use crate::plan::Plan;

/// Runs the pipeline `loadgen run FLAGS` would build until every event of its schedule is
/// delivered (`--rate R --duration D` is `R × D` events), as fast as the pipeline goes.
///
/// # Errors
/// When the flags are invalid, or the run fails (see [`Unpaced`]'s run).
pub async fn run(flags: &[String]) -> anyhow::Result<Unpaced> {
    let argv = std::iter::once("run".to_string()).chain(flags.iter().cloned());
    let args = RunArgs::try_parse_from(argv)?;
    let plan = Plan::from_args(&args)?;
    crate::pipeline::run_unpaced(&plan).await
}

/// The events the pipeline's generator makes: the same ids, keys, priorities and payloads.
pub struct Events(Factory);

impl Events {
    /// Events like those of `--seed seed --keys keys --msg-size msg_size`.
    pub fn new(seed: u64, keys: u64, msg_size: usize) -> Events {
        Events(Factory::new(EventShape {
            seed,
            keys,
            msg_size,
        }))
    }

    /// Event `id` (its intended time 0).
    pub fn make(&mut self, id: u64) -> Event {
        self.0.make(id, 0)
    }
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

/// An SVG chart of events/s (y) against batch size (x, logarithmic), one line per series.
pub fn chart(title: &str, series: &[(&str, Vec<(f64, f64)>)]) -> String {
    let series = series
        .iter()
        .map(|(name, points)| Series {
            name: (*name).to_string(),
            points: points.clone(),
        })
        .collect();
    let mut chart = Chart::new(title, "batch size (events per write)", "events/s", series);
    chart.log_x = true;
    chart.svg()
}
