//! The timeline as an SVG chart (plotters): latency p50 and p99 above,
//! replies per second below.

use std::path::Path;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::Report;

type Panel<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// One chart over the run's seconds, with its mesh drawn.
fn panel<'a, 'b>(
    area: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    caption: &str,
    seconds: f64,
    y_max: f64,
) -> anyhow::Result<Panel<'a, 'b>> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..seconds, 0.0..y_max)
        .map_err(chart_error)?;
    chart
        .configure_mesh()
        .x_desc("second")
        .draw()
        .map_err(chart_error)?;
    Ok(chart)
}

pub fn write_svg(report: &Report, path: &Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(chart_error)?;
    let (upper, lower) = root.split_vertically(320);
    let seconds = report.timeline.len().max(1) as f64;
    let max_latency = report
        .timeline
        .iter()
        .map(|s| s.p99_ms)
        .fold(1.0_f64, f64::max)
        * 1.1;
    let mut latency = panel(&upper, "latency (ms)", seconds, max_latency)?;
    for (label, color, value) in [
        (
            "p50",
            BLUE,
            (|s: &super::SecondReport| s.p50_ms) as fn(&super::SecondReport) -> f64,
        ),
        ("p99", RED, |s: &super::SecondReport| s.p99_ms),
    ] {
        latency
            .draw_series(LineSeries::new(
                report.timeline.iter().map(|s| (s.second as f64, value(s))),
                color.stroke_width(2),
            ))
            .map_err(chart_error)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    latency
        .configure_series_labels()
        .border_style(BLACK)
        .draw()
        .map_err(chart_error)?;
    let max_rate = report
        .timeline
        .iter()
        .map(|s| s.replied as f64)
        .fold(1.0_f64, f64::max)
        * 1.1;
    let mut throughput = panel(&lower, "replies per second", seconds, max_rate)?;
    throughput
        .draw_series(LineSeries::new(
            report
                .timeline
                .iter()
                .map(|s| (s.second as f64, s.replied as f64)),
            GREEN.stroke_width(2),
        ))
        .map_err(chart_error)?;
    root.present().map_err(chart_error)?;
    Ok(())
}

fn chart_error<E: std::fmt::Display>(error: E) -> anyhow::Error {
    anyhow::anyhow!("chart: {error}")
}
