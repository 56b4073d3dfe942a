//! Flags as typed ([`Args`]) and the validated configuration ([`Config`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// What a batch costs against the token bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Cost {
    /// One token per request, whatever its size: batching pays.
    PerRequest,
    /// One token per event: a batch of n costs n. A batch larger than the burst is admitted
    /// from a full bucket and paid back by later writes.
    PerEvent,
}

/// What happens to a write that finds no tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnLimit {
    /// Hold the request until its tokens are there (at most `--max-held` at once; past that,
    /// 503).
    Delay,
    /// Answer 429 with `Retry-After` and `RateLimit` headers.
    Reject,
}

/// sinkd: an HTTP sink that enforces its write rate on the server side and audits what it got.
#[derive(Debug, Clone, Parser)]
#[command(name = "sinkd", version, about, long_about = None)]
pub struct Args {
    /// Address to listen on. Binds loopback only unless told otherwise.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Writes per second the sink accepts, or `off` for no limit.
    #[arg(long, default_value = "2000", value_parser = parse_rate)]
    pub rate_limit: Rate,
    /// Bucket capacity in writes [default: a tenth of a second of rate, at least 1].
    #[arg(long)]
    pub burst: Option<f64>,
    /// What one write costs.
    #[arg(long, value_enum, default_value_t = Cost::PerRequest)]
    pub cost: Cost,
    /// What happens to a write over the limit.
    #[arg(long, value_enum, default_value_t = OnLimit::Delay)]
    pub on_limit: OnLimit,
    /// With `--on-limit delay`: requests held at once before sinkd answers 503.
    #[arg(long, default_value_t = 10_000)]
    pub max_held: usize,
    /// Rate during the scheduled stall, writes/s.
    #[arg(long, requires = "stall_at")]
    pub stall_rate: Option<f64>,
    /// When the scheduled stall starts, after start-up (e.g. 600s, 10m).
    #[arg(long, value_parser = parse_duration, requires = "stall_rate")]
    pub stall_at: Option<Duration>,
    /// How long the scheduled stall lasts.
    #[arg(long, value_parser = parse_duration, default_value = "90s")]
    pub stall_for: Duration,
    /// Fraction of writes answered with an injected 500, from 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Seed for the injected failures.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Fixed delay added to each accepted write (e.g. 2ms), modelling a database round trip.
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    pub latency: Duration,
    /// Largest request body accepted; larger bodies get 413 (e.g. 16MiB).
    #[arg(long, value_parser = parse_bytes, default_value = "16MiB")]
    pub max_body: u64,
    /// How long a client may take to send its request headers.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub header_timeout: Duration,
    /// Enables /admin/* and requires `Authorization: Bearer TOKEN` on them.
    #[arg(long)]
    pub admin_token: Option<String>,
    /// Appends every accepted event to this file as JSON lines.
    #[arg(long)]
    pub log: Option<PathBuf>,
}

/// A write rate, or no limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// No limit.
    Off,
    /// Writes per second.
    PerSecond(f64),
}

/// A flag's value that is refused, with the flag and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A flag's value on its own, or how it combines with others, is out of bounds.
    #[error("{flag} {reason}")]
    Invalid {
        /// The flag, as written on the command line.
        flag: &'static str,
        /// What it must be, and what it was.
        reason: String,
    },
}

fn invalid(flag: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        flag,
        reason: reason.into(),
    }
}

/// A value that does not parse (a duration, a size, a rate): what was expected, and what came.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(String);

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The base rate; `None` for no limit.
    pub rate: Option<f64>,
    /// Bucket capacity.
    pub burst: f64,
    /// Cost of one write.
    pub cost: Cost,
    /// Over-limit behaviour.
    pub on_limit: OnLimit,
    /// Held-request bound.
    pub max_held: usize,
    /// A stall scheduled at start-up: (start after, duration, rate).
    pub stall: Option<(Duration, Duration, f64)>,
    /// Injected failure fraction.
    pub fail_rate: f64,
    /// Seed of the injected failures.
    pub seed: u64,
    /// Added write latency.
    pub latency: Duration,
    /// Largest body.
    pub max_body: u64,
    /// Header read timeout.
    pub header_timeout: Duration,
    /// Admin token; admin endpoints are off without it.
    pub admin_token: Option<String>,
    /// Event log file.
    pub log: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config::from_args(Args::parse_from(["sinkd"])).expect("the defaults are valid")
    }
}

impl Config {
    /// Checks the flags together. The error names the flag.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the flag at fault.
    pub fn from_args(a: Args) -> Result<Config, ConfigError> {
        let rate = match a.rate_limit {
            Rate::Off => None,
            Rate::PerSecond(r) => Some(r),
        };
        let burst = match a.burst {
            Some(b) if !(b.is_finite() && b >= 1.0) => {
                return Err(invalid("--burst", format!("must be at least 1, got {b}")));
            }
            Some(b) => b,
            None => rate.map_or(1.0, |r| (r / 10.0).max(1.0)),
        };
        if !(0.0..=1.0).contains(&a.fail_rate) {
            return Err(invalid(
                "--fail-rate",
                format!("must be between 0 and 1, got {}", a.fail_rate),
            ));
        }
        if a.max_held == 0 {
            return Err(invalid("--max-held", "must be at least 1"));
        }
        if a.max_body == 0 {
            return Err(invalid("--max-body", "must be at least 1 byte"));
        }
        let stall = match (a.stall_rate, a.stall_at) {
            (Some(r), Some(at)) => {
                check_rate(r).map_err(|e| invalid("--stall-rate", e.0))?;
                Some((at, a.stall_for, r))
            }
            _ => None,
        };
        if a.admin_token.as_deref() == Some("") {
            return Err(invalid("--admin-token", "must not be empty"));
        }
        Ok(Config {
            listen: a.listen,
            rate,
            burst,
            cost: a.cost,
            on_limit: a.on_limit,
            max_held: a.max_held,
            stall,
            fail_rate: a.fail_rate,
            seed: a.seed,
            latency: a.latency,
            max_body: a.max_body,
            header_timeout: a.header_timeout,
            admin_token: a.admin_token,
            log: a.log,
        })
    }
}

fn check_rate(r: f64) -> Result<f64, ValueError> {
    if r.is_finite() && r > 0.0 && r <= 1e9 {
        Ok(r)
    } else {
        Err(ValueError(format!(
            "must be a number of writes/s above 0, got {r}"
        )))
    }
}

fn parse_rate(s: &str) -> Result<Rate, ValueError> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(Rate::Off);
    }
    let r: f64 = s
        .parse()
        .map_err(|_| ValueError(format!("expected writes/s (e.g. 2000) or `off`, got `{s}`")))?;
    check_rate(r).map(Rate::PerSecond)
}

/// Parses `90s`, `2ms`, `1.5s`, `10m`, `1h`, `250us`, or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, ValueError> {
    quantity::duration(s).map_err(|e| ValueError(e.0))
}

/// Parses `1024`, `64KiB`, `16MiB`, `1GiB`, `10KB`, `5MB`.
pub fn parse_bytes(s: &str) -> Result<u64, ValueError> {
    quantity::bytes(s).map_err(|e| ValueError(e.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Result<Config, String> {
        let args = Args::try_parse_from(std::iter::once("sinkd").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        Config::from_args(args).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_follow_the_lab() {
        let c = config(&[]).unwrap();
        assert_eq!(c.rate, Some(2000.0));
        assert_eq!(c.burst, 200.0);
        assert_eq!(c.cost, Cost::PerRequest);
        assert_eq!(c.on_limit, OnLimit::Delay);
        assert!(c.listen.ip().is_loopback());
        assert!(c.admin_token.is_none());
    }

    #[test]
    fn the_lab_stall_parses() {
        let c = config(&[
            "--stall-rate",
            "200",
            "--stall-at",
            "600s",
            "--stall-for",
            "90s",
        ])
        .unwrap();
        assert_eq!(
            c.stall,
            Some((Duration::from_secs(600), Duration::from_secs(90), 200.0))
        );
    }

    #[test]
    fn bad_flags_name_the_flag_and_the_allowed_values() {
        let e = config(&["--on-limit", "drop"]).unwrap_err();
        assert!(
            e.contains("--on-limit") && e.contains("delay") && e.contains("reject"),
            "{e}"
        );
        let e = config(&["--cost", "free"]).unwrap_err();
        assert!(e.contains("per-request") && e.contains("per-event"), "{e}");
        assert!(
            config(&["--fail-rate", "2"])
                .unwrap_err()
                .contains("--fail-rate")
        );
        assert!(
            config(&["--rate-limit=-5"])
                .unwrap_err()
                .contains("--rate-limit")
        );
        assert!(config(&["--burst", "0"]).unwrap_err().contains("--burst"));
        assert!(
            config(&["--latency", "3 parsecs"])
                .unwrap_err()
                .contains("--latency")
        );
    }

    #[test]
    fn units_parse() {
        assert_eq!(parse_duration("2ms").unwrap(), Duration::from_millis(2));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_bytes("16MiB").unwrap(), 16 << 20);
        assert!(parse_bytes("99999999999999GiB").is_err());
        assert_eq!(config(&["--rate-limit", "off"]).unwrap().rate, None);
    }
}
