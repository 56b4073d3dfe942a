//! Line charts as SVG, drawn with plotters' SVG backend: axes with round ticks, one line per
//! series, a legend. Several series share one axis, so curves can be compared directly.

use plotters::coord::Shift;
use plotters::prelude::*;

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

const COLORS: [RGBColor; 8] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x17, 0xbe, 0xcf),
];
const SIZE: (u32, u32) = (820, 450);

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

/// A tick label: short, with k / M / G for large values.
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

/// A value on a (possibly logarithmic) axis: log axes are drawn linear in log10 space.
fn axis(v: f64, log: bool) -> f64 {
    match log {
        true if v > 0.0 => v.log10(),
        true => f64::NAN,
        false => v,
    }
}

/// The label of an axis position.
fn tick(v: f64, log: bool) -> String {
    if log { label(10f64.powf(v)) } else { label(v) }
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

    /// The series in axis space, without the points an axis cannot show.
    fn lines(&self) -> Vec<Vec<(f64, f64)>> {
        self.series
            .iter()
            .map(|s| {
                s.points
                    .iter()
                    .map(|&(x, y)| (axis(x, self.log_x), axis(y, self.log_y)))
                    .filter(|(x, y)| x.is_finite() && y.is_finite())
                    .collect()
            })
            .collect()
    }

    /// The axes' ranges: x over the data, y from 0 (from the lowest decade when logarithmic)
    /// up to a round tick above the highest point.
    fn ranges(&self, lines: &[Vec<(f64, f64)>]) -> ((f64, f64), (f64, f64)) {
        let (mut x0, mut x1) = (f64::MAX, f64::MIN);
        let (mut y0, mut y1) = (f64::MAX, f64::MIN);
        for &(x, y) in lines.iter().flatten() {
            (x0, x1) = (x0.min(x), x1.max(x));
            (y0, y1) = (y0.min(y), y1.max(y));
        }
        if x0 > x1 {
            return ((0.0, 1.0), (0.0, 1.0));
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        let y = if self.log_y {
            (y0.floor(), y1.ceil().max(y0.floor() + 1.0))
        } else {
            let ystep = step(y1.max(1e-9));
            (0.0, (y1 / ystep).ceil().max(1.0) * ystep)
        };
        ((x0, x1), y)
    }

    /// The chart as an SVG document.
    pub fn svg(&self) -> String {
        let mut out = String::new();
        let drawn = {
            let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
            self.draw(&root).and_then(|()| root.present())
        };
        if let Err(e) = drawn {
            tracing::warn!(title = %self.title, "chart not drawn: {e}");
        }
        out
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        root.fill(&WHITE)?;
        let lines = self.lines();
        let ((x0, x1), (y0, y1)) = self.ranges(&lines);
        let (log_x, log_y) = (self.log_x, self.log_y);
        let x_ticks = |v: &f64| tick(*v, log_x);
        let y_ticks = |v: &f64| tick(*v, log_y);
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        let mut mesh = chart.configure_mesh();
        mesh.x_desc(self.x_label.as_str())
            .y_desc(self.y_label.as_str())
            .x_label_formatter(&x_ticks)
            .y_label_formatter(&y_ticks)
            .max_light_lines(0)
            .bold_line_style(RGBColor(0xe5, 0xe5, 0xe5));
        if log_x {
            mesh.x_labels(((x1 - x0).ceil() as usize + 1).max(2));
        }
        if log_y {
            mesh.y_labels(((y1 - y0).ceil() as usize + 1).max(2));
        }
        mesh.draw()?;
        for (i, (series, points)) in self.series.iter().zip(lines).enumerate() {
            let color = COLORS[i % COLORS.len()];
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                .label(series.name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(3))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(0xcc, 0xcc, 0xcc))
            .draw()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the SVG has a text element reading `s` (plotters puts it on a line of its own).
    fn has_text(svg: &str, s: &str) -> bool {
        svg.lines().any(|l| l.trim() == s)
    }

    fn chart(log_y: bool) -> Chart {
        Chart {
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
                    points: vec![(0.0, 1500.0), (5.0, 0.0), (10.0, 2000.0)],
                },
            ],
            log_x: false,
            log_y,
        }
    }

    #[test]
    fn a_chart_has_every_series_and_round_ticks() {
        let svg = chart(false).svg();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(has_text(&svg, "offered") && has_text(&svg, "sink"), "{svg}");
        assert!(
            svg.contains("rates &amp; &lt;depth&gt;"),
            "the title, escaped"
        );
        assert!(has_text(&svg, "8000"), "a round tick at the top: {svg}");
        assert!(has_text(&svg, "seconds") && has_text(&svg, "events/s"));
        for color in ["#1F77B4", "#D62728"] {
            assert_eq!(
                svg.matches(color).count(),
                2,
                "{color}: a line and its legend mark"
            );
        }
        assert_eq!(step(7300.0), 1000.0);
        assert_eq!(step(0.95), 0.2);
    }

    #[test]
    fn a_log_axis_labels_decades_and_leaves_out_zero() {
        let c = chart(true);
        let lines = c.lines();
        assert_eq!(lines[1].len(), 2, "the 0 cannot be shown on a log axis");
        assert_eq!(c.ranges(&lines).1, (3.0, 4.0));
        let svg = c.svg();
        assert!(has_text(&svg, "1000") && has_text(&svg, "10k"), "{svg}");
    }

    #[test]
    fn an_empty_chart_still_draws() {
        let svg = Chart::new("nothing", "x", "y", vec![]).svg();
        assert!(has_text(&svg, "nothing"), "{svg}");
    }
}
