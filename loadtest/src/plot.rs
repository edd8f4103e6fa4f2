//! The latency histogram as an SVG file (plotters, SVG backend only): responses per
//! logarithmic latency bucket, four buckets per doubling, with p50/p99/p99.9 marked.

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;

/// Buckets per doubling of latency.
const BUCKETS_PER_OCTAVE: f64 = 4.0;
/// Buckets drawn at most (about 2^40 us of range at four per doubling).
pub const BUCKETS_MAX: usize = 160;

#[derive(Debug, thiserror::Error)]
#[error("plot {path}: {reason}")]
pub struct PlotError {
    path: String,
    reason: String,
}

/// `(low_us, high_us, count)` per non-empty logarithmic bucket, in ascending order.
pub fn log_buckets(h: &Histogram<u64>) -> Vec<(f64, f64, u64)> {
    let mut counts: Vec<(i64, u64)> = Vec::new();
    for v in h.iter_recorded() {
        let value = v.value_iterated_to().max(1) as f64;
        let bucket = (value.log2() * BUCKETS_PER_OCTAVE).floor() as i64;
        let full = counts.len() >= BUCKETS_MAX;
        match counts.last_mut() {
            Some((b, n)) if *b == bucket || full => *n += v.count_at_value(),
            _ => counts.push((bucket, v.count_at_value())),
        }
    }
    counts
        .into_iter()
        .map(|(b, n)| {
            let low = 2f64.powf(b as f64 / BUCKETS_PER_OCTAVE);
            let high = 2f64.powf((b + 1) as f64 / BUCKETS_PER_OCTAVE);
            (low, high, n)
        })
        .collect()
}

pub fn write_svg(path: &Path, h: &Histogram<u64>, title: &str) -> Result<(), PlotError> {
    let fail = |e: &dyn std::fmt::Display| PlotError {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let buckets = log_buckets(h);
    let x_low = buckets.first().map_or(1.0, |b| b.0);
    let x_high = buckets.last().map_or(10.0, |b| b.1).max(x_low * 2.0);
    let y_high = buckets.iter().map(|b| b.2).max().unwrap_or(1) as f64 * 1.1;
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((x_low..x_high).log_scale(), 0f64..y_high)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("latency (us, log scale)")
        .y_desc("responses")
        .x_label_formatter(&|us| format!("{us:.0}"))
        .y_label_formatter(&|count| format!("{count:.0}"))
        .draw()
        .map_err(|e| fail(&e))?;
    chart
        .draw_series(buckets.iter().map(|&(low, high, n)| {
            Rectangle::new([(low, 0.0), (high, n as f64)], BLUE.mix(0.6).filled())
        }))
        .map_err(|e| fail(&e))?;
    if !h.is_empty() {
        for (label, q, color) in [
            ("p50", 0.5, GREEN),
            ("p99", 0.99, RED),
            ("p99.9", 0.999, BLACK),
        ] {
            let at = h.value_at_quantile(q).max(1) as f64;
            chart
                .draw_series(LineSeries::new([(at, 0.0), (at, y_high)], color))
                .map_err(|e| fail(&e))?
                .label(format!("{label} {} us", h.value_at_quantile(q)))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| fail(&e))?;
    }
    root.present().map_err(|e| fail(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(values: &[u64]) -> Histogram<u64> {
        let mut h = Histogram::new_with_bounds(1, 600_000_000, 3).unwrap();
        for &v in values {
            h.record(v).unwrap();
        }
        h
    }

    #[test]
    fn buckets_are_quarter_octaves() {
        let h = histogram(&[16, 16, 17, 19, 20, 64]);
        let buckets = log_buckets(&h);
        // 16, 17 and 19 are in [16, 19.03); 20 in [19.03, 22.6); 64 in [64, 76.1).
        let summary: Vec<(u64, u64)> = buckets.iter().map(|b| (b.0.round() as u64, b.2)).collect();
        assert_eq!(summary, [(16, 4), (19, 1), (64, 1)]);
        assert!((buckets[0].1 - 19.027).abs() < 0.01);
    }

    #[test]
    fn writes_an_svg_with_bars() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latency.svg");
        let h = histogram(&[50, 60, 70, 80, 400, 2_000]);
        write_svg(&path, &h, "test run").unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        assert!(svg.contains("<rect"));
        assert!(svg.contains("test run"));
        assert!(svg.contains("p99 "));
        assert!(
            svg.contains("1000") && !svg.contains(".0\n"),
            "integer axis labels"
        );
        let empty = dir.path().join("empty.svg");
        write_svg(&empty, &histogram(&[]), "nothing").unwrap();
        assert!(std::fs::read_to_string(&empty).unwrap().contains("nothing"));
    }
}
