//! SVG line charts with `plotters` (SVG backend only, no system fonts).
//!
//! One chart shape serves every figure: named series of (x, y) points drawn
//! as lines with markers. The SVG is rendered into a string and written by
//! the caller's code, so a plot is as deterministic as its data.

use std::path::Path;

use plotters::prelude::*;

use crate::error::SimError;

/// One named line of a chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// Points, in drawing order.
    pub points: Vec<(f64, f64)>,
    /// Half-width of each point's 95 % interval, drawn as an error bar
    /// (empty, or NaN for a point: none).
    pub ci95: Vec<f64>,
}

impl Series {
    /// The points with their error bars' ends: (x, y, y − h, y + h).
    fn bars(&self) -> impl Iterator<Item = (f64, f64, f64, f64)> + '_ {
        self.points.iter().enumerate().map(|(i, &(x, y))| {
            let h = self
                .ci95
                .get(i)
                .copied()
                .filter(|h| h.is_finite())
                .unwrap_or(0.0);
            (x, y, y - h, y + h)
        })
    }
}

/// Titles of a chart.
#[derive(Clone, Copy, Debug)]
pub struct Labels<'a> {
    /// Caption above the chart.
    pub title: &'a str,
    /// X axis.
    pub x: &'a str,
    /// Y axis.
    pub y: &'a str,
}

fn bounds(series: &[Series], pick: impl Fn(&(f64, f64, f64, f64)) -> [f64; 2]) -> (f64, f64) {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for v in series.iter().flat_map(|s| s.bars()).flat_map(|b| pick(&b)) {
        if v.is_finite() {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        return (lo - 0.5, hi + 0.5);
    }
    let pad = (hi - lo) * 0.05;
    (lo - pad, hi + pad)
}

/// Renders a line chart to SVG text.
pub fn line_chart_svg(labels: Labels<'_>, series: &[Series]) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (800, 500)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (x0, x1) = bounds(series, |b| [b.0, b.0]);
        let (y0, y1) = bounds(series, |b| [b.2, b.3]);
        // Counts, sizes and ratios read best from zero.
        let all_nonnegative = series
            .iter()
            .flat_map(|s| s.bars())
            .all(|b| !b.2.is_finite() || b.2 >= 0.0);
        let y_start = if all_nonnegative { 0.0 } else { y0 };
        let mut chart = ChartBuilder::on(&root)
            .caption(labels.title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, y_start..y1)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(labels.x)
            .y_desc(labels.y)
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, s) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let points: Vec<(f64, f64)> = s
                .points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect();
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(s.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            let bars: Vec<(f64, f64, f64)> = s
                .bars()
                .filter(|b| b.1.is_finite() && b.3 > b.2)
                .map(|b| (b.0, b.2, b.3))
                .collect();
            let cap = (x1 - x0) / 150.0;
            for (x, lo, hi) in bars {
                for path in [
                    vec![(x, lo), (x, hi)],
                    vec![(x - cap, lo), (x + cap, lo)],
                    vec![(x - cap, hi), (x + cap, hi)],
                ] {
                    chart
                        .draw_series(std::iter::once(PathElement::new(
                            path,
                            color.stroke_width(1),
                        )))
                        .map_err(|e| e.to_string())?;
                }
            }
            if points.len() <= 60 {
                chart
                    .draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))
                    .map_err(|e| e.to_string())?;
            }
        }
        if series.len() > 1 || series.iter().any(|s| !s.name.is_empty()) {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// A rendered chart and the name of the file it is written to.
#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    /// File name, such as `latency.svg`.
    pub file: String,
    /// The SVG text.
    pub svg: String,
}

impl Chart {
    /// Renders a line chart that is to be written as `file`.
    pub fn line(file: &str, labels: Labels<'_>, series: &[Series]) -> Result<Chart, SimError> {
        let svg = line_chart_svg(labels, series).map_err(|message| SimError::Plot {
            path: file.to_string(),
            message,
        })?;
        Ok(Chart {
            file: file.to_string(),
            svg,
        })
    }

    /// Writes the SVG into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), SimError> {
        let path = dir.join(&self.file);
        std::fs::write(&path, &self.svg).map_err(|e| SimError::io(&path, e))
    }
}
