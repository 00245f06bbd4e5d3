//! The latency distribution as a self-contained SVG, written by hand (no plotting
//! crate): latency against percentile, the percentile axis on a log "nines" scale
//! (0, 90, 99, 99.9, 99.99 evenly spaced) so the tail is as readable as the median.
//! One line per report.

use crate::report::{Report, fmt_us};
use std::fmt::Write as _;

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 520.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
/// 99.99%: four nines.
const NINES: f64 = 4.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// An SVG of the latency percentile distribution of each report, one line each,
/// labelled with its name.
pub fn latency_svg(reports: &[(&str, &Report)]) -> String {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    // Points: x in nines (0..=4), latency in µs.
    let series: Vec<Vec<(f64, f64)>> = reports
        .iter()
        .map(|(_, r)| {
            let h = &r.histogram;
            if h.is_empty() {
                return Vec::new();
            }
            (0..=400)
                .map(|k| {
                    let x = NINES * f64::from(k) / 400.0;
                    let q = 1.0 - 10f64.powf(-x);
                    (x, h.value_at_quantile(q) as f64)
                })
                .collect()
        })
        .collect();
    let top_value = series
        .iter()
        .flatten()
        .map(|p| p.1)
        .fold(0.0, f64::max)
        .max(1.0);
    let (y_max, y_step) = nice_axis(top_value);
    let px = |x: f64| LEFT + x / NINES * plot_w;
    let py = |v: f64| TOP + plot_h - v / y_max * plot_h;

    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="{}" y="25" font-size="16" text-anchor="middle">Latency by percentile</text>"#,
        LEFT + plot_w / 2.0
    );
    // Horizontal grid and y labels.
    let mut v = 0.0;
    while v <= y_max + y_step / 2.0 {
        let y = py(v);
        let _ = writeln!(
            o,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            escape(&axis_label(v))
        );
        v += y_step;
    }
    // Vertical grid and x labels: 0, 90, 99, 99.9, 99.99.
    for (n, label) in ["0%", "90%", "99%", "99.9%", "99.99%"].iter().enumerate() {
        let x = px(n as f64);
        let _ = writeln!(
            o,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 18.0
        );
    }
    let _ = writeln!(
        o,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile (log scale of nines)</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 15.0
    );
    let _ = writeln!(
        o,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">latency</text>"#,
        TOP + plot_h / 2.0
    );
    let _ = writeln!(
        o,
        r#"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="black"/>"#
    );
    // The lines and the legend.
    for (i, ((name, report), points)) in reports.iter().zip(&series).enumerate() {
        let color = COLORS.get(i % COLORS.len()).copied().unwrap_or("black");
        if !points.is_empty() {
            let path: Vec<String> = points
                .iter()
                .map(|(x, v)| format!("{:.1},{:.1}", px(*x), py(*v)))
                .collect();
            let _ = writeln!(
                o,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                path.join(" ")
            );
        }
        let ly = TOP + 10.0 + 40.0 * i as f64;
        let lx = LEFT + plot_w + 15.0;
        let l = &report.latency_us;
        let _ = writeln!(
            o,
            r##"<line x1="{lx}" y1="{ly}" x2="{:.1}" y2="{ly}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text><text x="{:.1}" y="{:.1}" font-size="10" fill="#555">p50 {} p99 {}</text>"##,
            lx + 20.0,
            lx + 26.0,
            ly + 4.0,
            escape(name),
            lx + 26.0,
            ly + 18.0,
            escape(&fmt_us(l.p50 as f64)),
            escape(&fmt_us(l.p99 as f64))
        );
    }
    o.push_str("</svg>\n");
    o
}

/// A round axis maximum at or above `top`, and its tick step (1, 2 or 5 × 10^k, about
/// five ticks).
fn nice_axis(top: f64) -> (f64, f64) {
    let raw = top / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    ((top / step).ceil() * step, step)
}

/// An axis value in microseconds, short: `0`, `500 µs`, `2 ms`, `2.5 ms`, `1.5 s`.
fn axis_label(us: f64) -> String {
    let (v, unit) = if us == 0.0 {
        return "0".to_string();
    } else if us < 1000.0 {
        (us, "µs")
    } else if us < 1_000_000.0 {
        (us / 1000.0, "ms")
    } else {
        (us / 1_000_000.0, "s")
    };
    let text = format!("{v:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} {unit}")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::engine::Mode;

    #[test]
    fn draws_one_line_per_report() {
        let mut a = Report::empty("a<b", "http://x", "HTTP/1.1", Mode::Open { rate: 10 });
        for v in 1..1000 {
            a.histogram.record(v * 10).unwrap();
        }
        a.finish();
        let b = Report::empty(
            "empty",
            "http://y",
            "HTTP/2",
            Mode::Closed { concurrency: 1 },
        );
        let svg = latency_svg(&[("a<b", &a), ("empty", &b)]);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert!(svg.contains("a&lt;b"));
        assert!(svg.contains("99.99%"));
        assert_eq!(nice_axis(9_990.0), (10_000.0, 2_000.0));
        assert_eq!(nice_axis(730.0), (800.0, 200.0));
        assert_eq!(axis_label(60_000.0), "60 ms");
        assert_eq!(axis_label(2_500.0), "2.5 ms");
        assert_eq!(axis_label(0.0), "0");
    }
}
