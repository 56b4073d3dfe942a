//! The value parsers of loadgen's flags: durations, sizes, rates and counts are typed when the
//! command line is parsed, so a bad value is refused by clap with the flag named, and nothing
//! after parsing handles text.

use std::time::Duration;

/// `90s`, `2ms`, `1.5s`, `10m`, `1h`, `500us` (a bare number is seconds).
pub fn duration(s: &str) -> Result<Duration, String> {
    quantity::duration(s).map_err(|e| e.0)
}

/// `512`, `4KiB`, `1MiB`, `10KB`: bytes.
pub fn bytes(s: &str) -> Result<u64, String> {
    quantity::bytes(s).map_err(|e| e.0)
}

/// A spill's fsync policy: `always`, `never`, or a period such as `100ms`.
pub fn fsync(s: &str) -> Result<reactive::spill::Fsync, String> {
    use reactive::spill::Fsync;
    match s.trim() {
        "always" => Ok(Fsync::Always),
        "never" => Ok(Fsync::Never),
        other => match quantity::duration(other) {
            Ok(d) if !d.is_zero() => Ok(Fsync::Every(d)),
            _ => Err(format!(
                "expected `always`, `never` or a period such as `100ms`, got `{s}`"
            )),
        },
    }
}

/// An event's payload size: at most 1 MiB.
pub fn payload_size(s: &str) -> Result<usize, String> {
    let n = bytes(s)?;
    if n > 1 << 20 {
        return Err(format!("`{s}` is more than 1 MiB"));
    }
    Ok(n as usize)
}

/// A rate in events (or writes) per second: a finite number, 0 or more.
pub fn rate(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("expected a rate in events/s, got `{s}`"))?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("`{s}` must be 0 or more"));
    }
    Ok(v)
}

/// A rate above 0.
pub fn positive_rate(s: &str) -> Result<f64, String> {
    match rate(s)? {
        0.0 => Err("must be above 0".into()),
        v => Ok(v),
    }
}

/// A count of at least 1.
pub fn at_least_one(s: &str) -> Result<usize, String> {
    let n: usize = s
        .trim()
        .parse()
        .map_err(|_| format!("expected a whole number, got `{s}`"))?;
    if n == 0 {
        return Err("at least 1".into());
    }
    Ok(n)
}

/// Events per write: a fixed count, or `auto` (sized from the observed write latency).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchSize {
    /// This many events at most per write.
    Fixed(usize),
    /// Sizes chosen as the run goes ([`reactive::sink::Batching::Adaptive`]).
    Auto,
}

impl std::fmt::Display for BatchSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BatchSize::Fixed(n) => write!(f, "{n}"),
            BatchSize::Auto => f.write_str("auto"),
        }
    }
}

/// A batch size: a count of at least 1, or `auto`.
pub fn batch_size(s: &str) -> Result<BatchSize, String> {
    if s.trim() == "auto" {
        return Ok(BatchSize::Auto);
    }
    match s.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(BatchSize::Fixed(n)),
        _ => Err(format!(
            "expected `auto` or a whole number of at least 1, got `{s}`"
        )),
    }
}

/// A number of sink workers: from 1 to 1024.
pub fn workers(s: &str) -> Result<usize, String> {
    let n = at_least_one(s)?;
    if n > 1024 {
        return Err("from 1 to 1024".into());
    }
    Ok(n)
}

/// A time scale: a finite number above 0.
pub fn time_scale(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("expected a number, got `{s}`"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err("must be above 0".into());
    }
    Ok(v)
}

/// `KEY=VALUE`, both trimmed and neither empty.
pub fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("expected KEY=VALUE, got `{s}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_sizes_and_rates_parse_and_bad_ones_say_why() {
        assert_eq!(duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("2ms"), Ok(Duration::from_millis(2)));
        assert!(duration("soon").unwrap_err().contains("like 90s"));
        assert!(duration("5y").unwrap_err().contains("unit"));
        assert_eq!(bytes("4KiB"), Ok(4096));
        assert_eq!(payload_size("512"), Ok(512));
        assert!(payload_size("2MiB").is_err());
        assert_eq!(rate("8000"), Ok(8000.0));
        assert!(rate("-1").is_err());
        assert!(rate("NaN").is_err());
        assert!(positive_rate("0").is_err());
        assert!(at_least_one("0").is_err());
        assert!(workers("2000").unwrap_err().contains("1024"));
        assert!(time_scale("0").is_err());
        assert_eq!(batch_size("64"), Ok(BatchSize::Fixed(64)));
        assert_eq!(batch_size("auto"), Ok(BatchSize::Auto));
        for bad in ["0", "big", "-3", "Auto1"] {
            let err = batch_size(bad).unwrap_err();
            assert!(err.contains("`auto`") && err.contains(bad), "{err}");
        }
    }

    #[test]
    fn fsync_policies_parse_and_a_bad_one_lists_the_choices() {
        use reactive::spill::Fsync;
        assert_eq!(fsync("always"), Ok(Fsync::Always));
        assert_eq!(fsync("never"), Ok(Fsync::Never));
        assert_eq!(fsync("50ms"), Ok(Fsync::Every(Duration::from_millis(50))));
        let err = fsync("sometimes").unwrap_err();
        assert!(
            err.contains("always") && err.contains("never") && err.contains("100ms"),
            "{err}"
        );
        assert!(fsync("0ms").is_err());
    }
}
