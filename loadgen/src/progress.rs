//! Live progress on stderr: readable at a glance, hidden when stderr is not a terminal. Every
//! sample can also be published as it is taken, to a watch (`process`'s /metrics).

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::report::mb;
use crate::telemetry::Sample;

pub struct Progress {
    bar: ProgressBar,
    live: Option<tokio::sync::watch::Sender<Sample>>,
}

impl Progress {
    pub fn new(quiet: bool, label: &str) -> Self {
        let target = if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr_with_hz(4)
        };
        let bar = ProgressBar::with_draw_target(Some(1000), target);
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:20}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        Progress { bar, live: None }
    }

    /// Also publishes every sample (for `process`'s /metrics).
    pub fn with_live(mut self, live: tokio::sync::watch::Sender<Sample>) -> Self {
        self.live = Some(live);
        self
    }

    pub fn update(&self, s: &Sample, total: Duration) {
        if let Some(live) = &self.live {
            live.send_replace(s.clone());
        }
        let frac = (s.t / total.as_secs_f64().max(1e-9)).min(1.0);
        self.bar.set_position((frac * 1000.0) as u64);
        self.bar.set_message(format!(
            "t={:.0}s target {:.0}/s sent {:.0}/s sink {:.0}/s queue {} lag {} rss {} dropped {} p99 {:.0}ms",
            s.t, s.target_rate, s.generated_rate, s.delivered_rate, s.queue_depth, s.lag, mb(s.rss_bytes), s.dropped, s.p99_ms
        ));
    }

    pub fn note(&self, text: &str) {
        self.bar.suspend(|| eprintln!("loadgen: {text}"));
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
