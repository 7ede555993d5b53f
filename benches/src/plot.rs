//! Plots of fan-out results: end-to-end latency against the delivery rate, one line per
//! server and percentile, as SVG.

use std::path::Path;

use plotters::prelude::*;

use crate::report::FanoutResult;

/// Line colours, told apart easily on white.
const COLORS: [RGBColor; 6] = [
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// One server's results, labelled.
pub struct Series<'a> {
    /// The server's name in the legend.
    pub label: &'a str,
    /// Its fan-out windows, in increasing rate.
    pub results: &'a [FanoutResult],
}

/// Draws p50 and p99 latency (ms, log scale) against deliveries per second.
pub fn latency_vs_rate(path: &Path, title: &str, series: &[Series<'_>]) -> anyhow::Result<()> {
    let points = series.iter().flat_map(|s| s.results.iter());
    let max_rate = points
        .clone()
        .map(|r| r.deliveries_per_sec)
        .fold(1.0, f64::max);
    let max_ms = points
        .map(|r| r.latency.p99_us as f64 / 1000.0)
        .fold(1.0, f64::max);
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..max_rate * 1.05, (0.05f64..max_ms * 2.0).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("deliveries per second")
        .y_desc("latency (ms)")
        .x_label_formatter(&|v| format!("{:.0}k", v / 1000.0))
        .draw()?;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()].to_rgba();
        for (quantile, dashed) in [("p50", false), ("p99", true)] {
            let data: Vec<(f64, f64)> = s
                .results
                .iter()
                .filter(|r| r.delivered > 0)
                .map(|r| {
                    let us = if dashed {
                        r.latency.p99_us
                    } else {
                        r.latency.p50_us
                    };
                    (r.deliveries_per_sec, (us as f64 / 1000.0).max(0.05))
                })
                .collect();
            let style = ShapeStyle::from(color).stroke_width(if dashed { 1 } else { 2 });
            chart
                .draw_series(LineSeries::new(data.clone(), style))?
                .label(format!("{} {quantile}", s.label))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
            chart.draw_series(data.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Latency;

    #[test]
    fn draws_an_svg_with_both_percentiles_of_each_server() {
        let results: Vec<FanoutResult> = [(100, 1.0, 2.0), (1000, 1.5, 4.0)]
            .into_iter()
            .map(|(rate, p50, p99)| FanoutResult {
                rate,
                delivered: u64::from(rate) * 10_000,
                deliveries_per_sec: f64::from(rate) * 1000.0,
                latency: Latency {
                    p50_us: (p50 * 1000.0) as u64,
                    p99_us: (p99 * 1000.0) as u64,
                    ..Latency::default()
                },
                ..FanoutResult::default()
            })
            .collect();
        let path = std::env::temp_dir().join(format!("ringcast-plot-{}.svg", std::process::id()));
        let series = [
            Series {
                label: "ringcast",
                results: &results,
            },
            Series {
                label: "bare loop",
                results: &results,
            },
        ];
        latency_vs_rate(&path, "fan-out", &series).expect("plot");
        let svg = std::fs::read_to_string(&path).expect("svg written");
        std::fs::remove_file(&path).ok();
        assert!(svg.starts_with("<svg"));
        for label in [
            "ringcast p50",
            "ringcast p99",
            "bare loop p99",
            "deliveries per second",
        ] {
            assert!(svg.contains(label), "{label} missing");
        }
    }
}
