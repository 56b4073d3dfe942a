//! `--check EXPR`: gates over the report's fields, as k6's thresholds are.
//!
//! `FIELD OP VALUE`, where FIELD is a dotted path to a number in report.json
//! (`latency_ms.p99`, `lost`, `dropped.total`), OP one of `< <= > >= == !=`, and VALUE a number
//! with an optional unit: `KiB MiB GiB KB MB GB` for bytes, `%` for fractions (`99%` = 0.99).

use anyhow::bail;

use crate::report::Report;

#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub text: String,
    pub field: String,
    pub op: Op,
    pub value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
            Op::Eq => a == b,
            Op::Ne => a != b,
        }
    }
    fn symbol(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }
}

/// Every numeric field a check may name.
pub fn fields() -> Vec<String> {
    let mut out = Vec::new();
    flatten(
        "",
        &serde_json::to_value(Report::default()).unwrap_or_default(),
        &mut out,
        &mut |_| true,
    );
    out.retain(|f| !f.starts_with("plan"));
    out
}

fn flatten(
    prefix: &str,
    v: &serde_json::Value,
    out: &mut Vec<String>,
    keep: &mut dyn FnMut(&serde_json::Value) -> bool,
) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&path, v, out, keep);
            }
        }
        serde_json::Value::Number(_) | serde_json::Value::Bool(_) if keep(v) => {
            out.push(prefix.to_string())
        }
        _ => {}
    }
}

fn parse_value(text: &str) -> Option<f64> {
    let text = text.trim();
    let units: [(&str, f64); 7] = [
        ("KiB", 1024.0),
        ("MiB", 1048576.0),
        ("GiB", 1073741824.0),
        ("KB", 1e3),
        ("MB", 1e6),
        ("GB", 1e9),
        ("%", 0.01),
    ];
    for (unit, scale) in units {
        if let Some(n) = text.strip_suffix(unit) {
            return n.trim().parse::<f64>().ok().map(|v| v * scale);
        }
    }
    text.parse().ok()
}

impl Check {
    /// Parses one expression, checking the field exists.
    pub fn parse(text: &str) -> anyhow::Result<Check> {
        let ops = [
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<", Op::Lt),
            (">", Op::Gt),
        ];
        let Some((at, sym, op)) = ops
            .iter()
            .filter_map(|(s, op)| text.find(s).map(|i| (i, *s, *op)))
            .min_by_key(|(i, s, _)| (*i, usize::MAX - s.len()))
        else {
            bail!(
                "invalid value '{text}' for '--check': expected FIELD OP VALUE with OP one of < <= > >= == != (e.g. 'latency_ms.p99<100')"
            );
        };
        let field = text[..at].trim().to_string();
        let value_text = &text[at + sym.len()..];
        let known = fields();
        if !known.contains(&field) {
            bail!(
                "invalid value '{text}' for '--check': unknown field '{field}'; valid fields: {}",
                known.join(", ")
            );
        }
        let Some(value) = parse_value(value_text) else {
            bail!(
                "invalid value '{text}' for '--check': '{}' is not a number (units: KiB MiB GiB KB MB GB %)",
                value_text.trim()
            );
        };
        Ok(Check {
            text: text.to_string(),
            field,
            op,
            value,
        })
    }

    /// The field's value in `report`.
    pub fn actual(&self, report: &Report) -> Option<f64> {
        let mut v = serde_json::to_value(report).ok()?;
        for part in self.field.split('.') {
            v = v.get(part)?.clone();
        }
        match v {
            serde_json::Value::Bool(b) => Some(f64::from(u8::from(b))),
            v => v.as_f64(),
        }
    }

    /// Evaluates against `report`: whether it holds, and the line to print.
    pub fn evaluate(&self, report: &Report) -> (bool, String) {
        match self.actual(report) {
            Some(actual) => {
                let ok = self.op.holds(actual, self.value);
                let mark = if ok { "ok  " } else { "FAIL" };
                (
                    ok,
                    format!(
                        "{mark} {}: {actual} {} {} ({})",
                        self.field,
                        self.op.symbol(),
                        self.value,
                        self.text
                    ),
                )
            }
            None => (
                false,
                format!("FAIL {}: no value ({})", self.field, self.text),
            ),
        }
    }
}

/// Parses every `--check` before anything runs, so a typo fails fast.
pub fn parse_checks(texts: &[String]) -> anyhow::Result<Vec<Check>> {
    texts.iter().map(|t| Check::parse(t)).collect()
}

/// Prints one line per check, after `prefix`; returns whether all held.
pub fn apply_checks(checks: &[Check], report: &Report, prefix: &str) -> bool {
    let mut all = true;
    for c in checks {
        let (ok, line) = c.evaluate(report);
        println!("{prefix}{line}");
        all &= ok;
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_parse_with_units() {
        let c = Check::parse("rss_peak_bytes<64MiB").unwrap();
        assert_eq!(
            (c.field.as_str(), c.op, c.value),
            ("rss_peak_bytes", Op::Lt, 64.0 * 1048576.0)
        );
        let c = Check::parse("sink_utilization >= 99%").unwrap();
        assert_eq!((c.op, c.value), (Op::Ge, 0.99));
        assert_eq!(Check::parse("lost==0").unwrap().op, Op::Eq);
        assert_eq!(Check::parse("latency_ms.p99<=100").unwrap().op, Op::Le);
    }

    #[test]
    fn a_bad_expression_names_the_field_and_lists_the_valid_ones() {
        let e = Check::parse("latency.p99<5").unwrap_err().to_string();
        assert!(
            e.contains("unknown field 'latency.p99'")
                && e.contains("latency_ms.p99")
                && e.contains("--check"),
            "{e}"
        );
        assert!(
            Check::parse("lost")
                .unwrap_err()
                .to_string()
                .contains("FIELD OP VALUE")
        );
        assert!(
            Check::parse("lost<lots")
                .unwrap_err()
                .to_string()
                .contains("not a number")
        );
    }

    #[test]
    fn checks_evaluate_against_a_report() {
        let report = Report {
            lost: 0,
            produced: 10,
            ..Report::default()
        };
        assert!(Check::parse("lost==0").unwrap().evaluate(&report).0);
        let (ok, line) = Check::parse("produced>100").unwrap().evaluate(&report);
        assert!(!ok && line.contains("FAIL") && line.contains("10"));
    }
}
