//! Line charts as SVG, with no dependencies: axes with round ticks, one polyline per series,
//! a legend. Several series share one axis, so curves can be compared directly.

use std::fmt::Write;

pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Logarithmic axes (values at or below 0 are left out).
    pub log_x: bool,
    pub log_y: bool,
}

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];
const W: f64 = 820.0;
const H: f64 = 450.0;
const L: f64 = 80.0;
const R: f64 = 20.0;
const T: f64 = 40.0;
const B: f64 = 100.0;

/// A round tick step for a span.
fn step(span: f64) -> f64 {
    if span <= 0.0 || !span.is_finite() {
        return 1.0;
    }
    let raw = span / 6.0;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm < 1.5 {
        1.0
    } else if norm < 3.0 {
        2.0
    } else if norm < 7.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn label(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Chart {
    /// A chart with linear axes.
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
        series: Vec<Series>,
    ) -> Self {
        Chart {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            series,
            log_x: false,
            log_y: false,
        }
    }

    pub fn svg(&self) -> String {
        let tx = |v: f64| {
            if self.log_x {
                if v > 0.0 { v.log10() } else { f64::NAN }
            } else {
                v
            }
        };
        let ty = |v: f64| {
            if self.log_y {
                if v > 0.0 { v.log10() } else { f64::NAN }
            } else {
                v
            }
        };
        let series: Vec<Series> = self
            .series
            .iter()
            .map(|s| Series {
                name: s.name.clone(),
                points: s.points.iter().map(|(x, y)| (tx(*x), ty(*y))).collect(),
            })
            .collect();
        let pts = series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|(x, y)| x.is_finite() && y.is_finite());
        let (mut x0, mut x1, mut y1) = (f64::MAX, f64::MIN, f64::MIN);
        for (x, y) in pts {
            x0 = x0.min(*x);
            x1 = x1.max(*x);
            y1 = y1.max(*y);
        }
        if x0 > x1 {
            (x0, x1, y1) = (0.0, 1.0, 1.0);
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        let ystep = if self.log_y { 1.0 } else { step(y1.max(1e-9)) };
        let y1 = (y1 / ystep).ceil().max(1.0) * ystep;
        let xstep = if self.log_x { 1.0 } else { step(x1 - x0) };
        let xl = |v: f64| {
            if self.log_x {
                label(10f64.powf(v))
            } else {
                label(v)
            }
        };
        let yl = |v: f64| {
            if self.log_y {
                label(10f64.powf(v))
            } else {
                label(v)
            }
        };
        let (pw, ph) = (W - L - R, H - T - B);
        let sx = |x: f64| L + (x - x0) / (x1 - x0) * pw;
        let sy = |y: f64| T + ph - (y / y1) * ph;
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
        );
        let _ = write!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
        let _ = write!(
            s,
            r#"<text x="{}" y="22" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
            W / 2.0,
            escape(&self.title)
        );
        // Grid and ticks.
        let mut y = 0.0;
        while y <= y1 + ystep * 0.01 {
            let py = sy(y);
            let _ = write!(
                s,
                r##"<line x1="{L}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#e5e5e5"/>"##,
                W - R
            );
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                L - 6.0,
                py + 4.0,
                yl(y)
            );
            y += ystep;
        }
        let mut x = (x0 / xstep).ceil() * xstep;
        while x <= x1 + xstep * 0.01 {
            let px = sx(x);
            let _ = write!(
                s,
                r##"<line x1="{px:.1}" y1="{T}" x2="{px:.1}" y2="{:.1}" stroke="#f0f0f0"/>"##,
                T + ph
            );
            let _ = write!(
                s,
                r#"<text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                T + ph + 16.0,
                xl(x)
            );
            x += xstep;
        }
        let _ = write!(
            s,
            r##"<rect x="{L}" y="{T}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##
        );
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            L + pw / 2.0,
            T + ph + 34.0,
            escape(&self.x_label)
        );
        let _ = write!(
            s,
            r#"<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            T + ph / 2.0,
            escape(&self.y_label)
        );
        // Series, then a legend that flows left to right and wraps.
        let (mut lx, mut ly) = (L, T + (H - T - B) + 56.0);
        for (i, series) in series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let path: Vec<String> = series
                .points
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
                .collect();
            if !path.is_empty() {
                let _ = write!(
                    s,
                    r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                    path.join(" ")
                );
            }
            // About 6.5 px per character at 12 px sans-serif.
            let width = 24.0 + 6.5 * series.name.chars().count() as f64 + 16.0;
            if lx + width > W - R && lx > L {
                lx = L;
                ly += 16.0;
            }
            let _ = write!(
                s,
                r#"<rect x="{lx:.1}" y="{:.1}" width="14" height="4" fill="{color}"/>"#,
                ly - 4.0
            );
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{ly:.1}">{}</text>"#,
                lx + 18.0,
                escape(&series.name)
            );
            lx += width;
        }
        s.push_str("</svg>\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_has_every_series_and_round_ticks() {
        let chart = Chart {
            title: "rates & <depth>".into(),
            x_label: "seconds".into(),
            y_label: "events/s".into(),
            series: vec![
                Series {
                    name: "offered".into(),
                    points: vec![(0.0, 1500.0), (10.0, 8000.0)],
                },
                Series {
                    name: "sink".into(),
                    points: vec![(0.0, 1500.0), (10.0, 2000.0)],
                },
            ],
            log_x: false,
            log_y: false,
        };
        let svg = chart.svg();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("rates &amp; &lt;depth&gt;"));
        assert!(svg.contains(">8000<"), "a round tick at the top: {svg}");
        assert_eq!(step(7300.0), 1000.0);
        assert_eq!(step(0.95), 0.2);
    }
}
