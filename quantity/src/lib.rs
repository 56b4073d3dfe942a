//! The workspace's one parser of human-written quantities, for command-line flags and config
//! files: durations (`90s`, `2ms`, `1.5s`, `10m`, `1h`, `250us`, or a bare number of seconds)
//! and sizes (`512`, `4KiB`, `16MiB`, `1GiB`, `10KB`, `5MB`).
//!
//! Each crate wraps these in its own error type; the message names what was expected and what
//! was given, so a caller only has to add the flag.

use std::time::Duration;

/// Why a quantity could not be read: what was expected, and what was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantityError(pub String);

impl std::fmt::Display for QuantityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for QuantityError {}

/// Parses `90s`, `2ms`, `1.5s`, `10m`, `1h`, `250us`, `100ns`, or a bare number of seconds.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(quantity::duration("1.5s"), Ok(Duration::from_millis(1500)));
/// assert_eq!(quantity::duration("10m"), Ok(Duration::from_secs(600)));
/// assert!(quantity::duration("5 parsecs").is_err());
/// ```
///
/// # Errors
/// When the number or the unit cannot be read, or the duration is negative or out of range.
pub fn duration(s: &str) -> Result<Duration, QuantityError> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| QuantityError(format!("expected a duration like 90s or 2ms, got `{s}`")))?;
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(QuantityError(format!(
                "unknown duration unit `{other}` in `{s}` (use ns, us, ms, s, m or h)"
            )));
        }
    };
    Duration::try_from_secs_f64(value * scale)
        .map_err(|_| QuantityError(format!("duration out of range: `{s}`")))
}

/// Parses `512`, `4KiB`, `16MiB`, `1GiB` (powers of 1024) or `10KB`, `5MB`, `1GB` (of 1000).
///
/// ```
/// assert_eq!(quantity::bytes("4KiB"), Ok(4096));
/// assert_eq!(quantity::bytes("10KB"), Ok(10_000));
/// ```
///
/// # Errors
/// When the number or the unit cannot be read, or the size does not fit in a `u64`.
pub fn bytes(s: &str) -> Result<u64, QuantityError> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| QuantityError(format!("expected a size like 512 or 4KiB, got `{s}`")))?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(QuantityError(format!(
                "unknown size unit `{other}` in `{s}` (use B, KiB, MiB, GiB, KB, MB or GB)"
            )));
        }
    };
    value
        .checked_mul(scale)
        .ok_or_else(|| QuantityError(format!("size out of range: `{s}`")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(duration("2ms"), Ok(Duration::from_millis(2)));
        assert_eq!(duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration(" 10m "), Ok(Duration::from_secs(600)));
        assert_eq!(duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(duration("7ns"), Ok(Duration::from_nanos(7)));
    }

    #[test]
    fn bad_durations_say_what_was_expected() {
        let e = duration("fast").unwrap_err();
        assert!(e.0.contains("90s") && e.0.contains("`fast`"), "{e}");
        let e = duration("3 weeks").unwrap_err();
        assert!(e.0.contains("`weeks`") && e.0.contains("use ns"), "{e}");
        assert!(duration("1e300h").is_err());
        assert!(duration("-1s").is_err());
    }

    #[test]
    fn sizes_in_both_bases() {
        assert_eq!(bytes("512"), Ok(512));
        assert_eq!(bytes("16MiB"), Ok(16 << 20));
        assert_eq!(bytes("5MB"), Ok(5_000_000));
        assert!(
            bytes("99999999999999GiB")
                .unwrap_err()
                .0
                .contains("out of range")
        );
        assert!(bytes("4 furlongs").unwrap_err().0.contains("`furlongs`"));
    }
}
