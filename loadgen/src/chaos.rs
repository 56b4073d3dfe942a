//! `loadgen chaos`: sinkd's admin endpoints on a schedule.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use sinkd::SinkClient;

use crate::cli::ChaosArgs;
use crate::units::duration as parse_duration;

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Stall { rate: f64, duration: Duration },
    Pause,
    Resume,
    Rate(f64),
}

/// Parses `stall:RATE:DURATION@AT`, `pause@AT`, `resume@AT`, `rate:RATE@AT`.
pub fn parse(item: &str) -> anyhow::Result<(Duration, Action)> {
    let (what, at) = item.split_once('@').with_context(|| {
        format!("invalid value '{item}' for '--schedule': expected ACTION@AT (e.g. pause@20s)")
    })?;
    let at = parse_duration(at)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("invalid value '{item}' for '--schedule'"))?;
    let parts: Vec<&str> = what.split(':').collect();
    let number = |s: &str| -> anyhow::Result<f64> {
        let v: f64 = s.parse().with_context(|| {
            format!("invalid value '{item}' for '--schedule': '{s}' is not a rate")
        })?;
        if !(v.is_finite() && v > 0.0) {
            bail!("invalid value '{item}' for '--schedule': the rate must be above 0");
        }
        Ok(v)
    };
    let action = match parts.as_slice() {
        ["pause"] => Action::Pause,
        ["resume"] => Action::Resume,
        ["rate", r] => Action::Rate(number(r)?),
        ["stall", r, d] => Action::Stall {
            rate: number(r)?,
            duration: parse_duration(d)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("invalid value '{item}' for '--schedule'"))?,
        },
        _ => bail!(
            "invalid value '{item}' for '--schedule': actions are stall:RATE:DURATION, pause, resume, rate:RATE"
        ),
    };
    Ok((at, action))
}

pub async fn run(args: ChaosArgs) -> anyhow::Result<ExitCode> {
    let mut plan = args
        .schedule
        .iter()
        .map(|s| parse(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if plan.is_empty() {
        bail!("'--schedule' is empty: give at least one action, e.g. stall:200:90s@600s");
    }
    plan.sort_by_key(|(at, _)| *at);
    let client = SinkClient::new(&args.sink_url)
        .map_err(|e| anyhow::anyhow!("invalid value '{}' for '--sink-url': {e}", args.sink_url))?
        .with_admin_token(args.admin_token);
    let start = tokio::time::Instant::now();
    for (at, action) in plan {
        tokio::time::sleep_until(start + at).await;
        let reply = match &action {
            Action::Stall { rate, duration } => client.stall(*rate, *duration).await,
            Action::Pause => client.pause().await,
            Action::Resume => client.resume().await,
            Action::Rate(r) => client.set_rate(Some(*r)).await,
        }?;
        println!(
            "{:>8.1}s {action:?}: {} {}",
            start.elapsed().as_secs_f64(),
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        if !reply.is_success() {
            bail!("sinkd refused {action:?}: {}", reply.status);
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_parse_and_bad_ones_name_the_flag() {
        assert_eq!(
            parse("stall:200:90s@600s").unwrap(),
            (
                Duration::from_secs(600),
                Action::Stall {
                    rate: 200.0,
                    duration: Duration::from_secs(90)
                }
            )
        );
        assert_eq!(
            parse("pause@20m").unwrap(),
            (Duration::from_secs(1200), Action::Pause)
        );
        assert_eq!(parse("rate:500@1s").unwrap().1, Action::Rate(500.0));
        let e = parse("explode@1s").unwrap_err().to_string();
        assert!(
            e.contains("--schedule") && e.contains("stall:RATE:DURATION"),
            "{e}"
        );
        assert!(parse("pause").is_err());
        assert!(parse("rate:-1@1s").is_err());
    }
}
