//! `accuracy.png`: test accuracy against round and against virtual time, one line per
//! method (the mean over seeds) with a band from the lowest to the highest seed.

use anyhow::Context;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

/// One evaluation of a global model during a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct AccuracyPoint {
    /// Round, from 0.
    pub(crate) round: u32,
    /// Virtual time the round closed \[s\].
    pub(crate) virtual_time_s: f64,
    /// Test accuracy in [0, 1].
    pub(crate) accuracy: f64,
}

/// One method's curve: one run per seed, each a list of points in round order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AccuracySeries {
    /// The legend label.
    pub(crate) method: String,
    /// One run per seed.
    pub(crate) runs: Vec<Vec<AccuracyPoint>>,
}

/// Per round present in every run: (round, mean virtual time, mean, min, max accuracy %).
type Aggregated = Vec<(f64, f64, f64, f64, f64)>;

fn aggregate(series: &AccuracySeries) -> Aggregated {
    let mut by_round: BTreeMap<u32, Vec<&AccuracyPoint>> = BTreeMap::new();
    for run in &series.runs {
        for p in run {
            by_round.entry(p.round).or_default().push(p);
        }
    }
    let runs = series.runs.len();
    by_round
        .into_iter()
        .filter(|(_, points)| runs > 0 && points.len() == runs)
        .map(|(round, points)| {
            let n = points.len() as f64;
            let acc: Vec<f64> = points.iter().map(|p| 100.0 * p.accuracy).collect();
            let time = points.iter().map(|p| p.virtual_time_s).sum::<f64>() / n;
            let mean = acc.iter().sum::<f64>() / n;
            let lo = acc.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = acc.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (f64::from(round) + 1.0, time, mean, lo, hi)
        })
        .collect()
}

/// Draws `series` to a PNG at `path` (1400×560): left, test accuracy (%) against round;
/// right, against virtual time (s).
pub(crate) fn draw_accuracy(
    path: &Path,
    title: &str,
    series: &[AccuracySeries],
) -> anyhow::Result<()> {
    let curves: Vec<(String, Aggregated)> = series
        .iter()
        .map(|s| (s.method.clone(), aggregate(s)))
        .collect();
    let bands = series.iter().any(|s| s.runs.len() > 1);
    let max_round = curves
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let max_time = curves
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| p.1))
        .fold(1.0, f64::max);
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        let root = BitMapBackend::new(path, (1400, 560)).into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(title, ("sans-serif", 22))?;
        let panels = root.split_evenly((1, 2));
        for (panel, by_time) in panels.iter().zip([false, true]) {
            let x_max = if by_time { max_time } else { max_round };
            let mut chart = ChartBuilder::on(panel)
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(50)
                .build_cartesian_2d(0.0..x_max * 1.02, 0.0..100.0)?;
            chart
                .configure_mesh()
                .x_desc(if by_time { "virtual time (s)" } else { "round" })
                .y_desc("test accuracy (%)")
                .draw()?;
            for (i, (label, curve)) in curves.iter().enumerate() {
                let color = Palette99::pick(i).to_rgba();
                let x = |p: &(f64, f64, f64, f64, f64)| if by_time { p.1 } else { p.0 };
                if bands && curve.len() > 1 {
                    let mut outline: Vec<(f64, f64)> = curve.iter().map(|p| (x(p), p.4)).collect();
                    outline.extend(curve.iter().rev().map(|p| (x(p), p.3)));
                    chart.draw_series(std::iter::once(Polygon::new(
                        outline,
                        color.mix(0.18).filled(),
                    )))?;
                }
                let line = chart.draw_series(LineSeries::new(
                    curve.iter().map(|p| (x(p), p.2)),
                    color.stroke_width(2),
                ))?;
                if !by_time {
                    line.label(label.as_str()).legend(move |(lx, ly)| {
                        PathElement::new(vec![(lx, ly), (lx + 20, ly)], color.stroke_width(2))
                    });
                }
            }
            if !by_time && !curves.is_empty() {
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::LowerRight)
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .draw()?;
            }
        }
        root.present()?;
        Ok(())
    };
    draw()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("drawing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(offset: f64) -> Vec<AccuracyPoint> {
        (0..10)
            .map(|r| AccuracyPoint {
                round: r,
                virtual_time_s: 10.0 * f64::from(r + 1) + offset,
                accuracy: 0.1 + 0.08 * f64::from(r) + offset / 100.0,
            })
            .collect()
    }

    #[test]
    fn draws_a_png_with_bands_and_without() {
        let dir = std::env::temp_dir().join(format!("flotilla-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cases = [
            vec![
                AccuracySeries {
                    method: "a".into(),
                    runs: vec![run(0.0), run(3.0), run(-2.0)],
                },
                AccuracySeries {
                    method: "b".into(),
                    runs: vec![run(5.0)],
                },
            ],
            vec![],
            vec![AccuracySeries {
                method: "empty".into(),
                runs: vec![vec![]],
            }],
        ];
        for (i, series) in cases.iter().enumerate() {
            let path = dir.join(format!("plot-{i}.png"));
            draw_accuracy(&path, "test", series).unwrap();
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
            assert!(bytes.len() > 5_000, "{} bytes", bytes.len());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unwritable_path_is_an_error_naming_it() {
        let path = Path::new("/nonexistent-dir/accuracy.png");
        let err = draw_accuracy(path, "t", &[]).unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent-dir"), "{err:#}");
    }

    #[test]
    fn rounds_missing_from_a_seed_are_left_out() {
        let mut short = run(0.0);
        short.truncate(5);
        let agg = aggregate(&AccuracySeries {
            method: "m".into(),
            runs: vec![run(0.0), short],
        });
        assert_eq!(agg.len(), 5);
    }
}
