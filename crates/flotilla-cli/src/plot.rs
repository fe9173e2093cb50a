//! `accuracy.png`: test accuracy against round and against virtual time, one line per
//! method (the mean over seeds) with a band from the lowest to the highest seed.

use anyhow::Context;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

/// One evaluation of a global model during a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct AccuracyPoint {
    /// The round after which the model was evaluated, from 0.
    pub(crate) round: u32,
    /// Virtual time at which the round closed \[s\].
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

/// Image size in pixels: two panels side by side.
const SIZE: (u32, u32) = (1400, 560);

/// Line colours, picked by series index (matplotlib's `tab10`, cycled).
const COLORS: [RGBColor; 10] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
];

/// The colour of the series at `index`.
fn color(index: usize) -> RGBColor {
    COLORS[index % COLORS.len()]
}

/// One round of a method, aggregated over its seeds; accuracies in %.
#[derive(Debug, Clone, Copy, PartialEq)]
struct RoundStats {
    /// Rounds completed (`round + 1`), so the first evaluation sits at 1.
    rounds_done: f64,
    /// Mean virtual time over seeds \[s\].
    time_s: f64,
    /// Mean accuracy over seeds.
    mean: f64,
    /// Lowest accuracy over seeds.
    min: f64,
    /// Highest accuracy over seeds.
    max: f64,
}

/// One method ready to draw.
#[derive(Debug, Clone, PartialEq)]
struct Curve {
    /// The legend label.
    label: String,
    /// Whether to draw the min–max band (two or more seeds).
    band: bool,
    /// One entry per round present in every run, in round order.
    points: Vec<RoundStats>,
}

/// Aggregates a series over its runs: only rounds that every run evaluated (with finite
/// values) are kept; a run's repeated round counts once, its first evaluation wins.
fn aggregate(series: &AccuracySeries) -> Vec<RoundStats> {
    let mut by_round: BTreeMap<u32, Vec<&AccuracyPoint>> = BTreeMap::new();
    for run in &series.runs {
        let mut seen = BTreeMap::new();
        for p in run {
            if p.accuracy.is_finite() && p.virtual_time_s.is_finite() {
                seen.entry(p.round).or_insert(p);
            }
        }
        for (round, p) in seen {
            by_round.entry(round).or_default().push(p);
        }
    }
    let runs = series.runs.len();
    by_round
        .into_iter()
        .filter(|(_, points)| runs > 0 && points.len() == runs)
        .map(|(round, points)| {
            let n = points.len() as f64;
            let acc: Vec<f64> = points.iter().map(|p| 100.0 * p.accuracy).collect();
            RoundStats {
                rounds_done: f64::from(round) + 1.0,
                time_s: points.iter().map(|p| p.virtual_time_s).sum::<f64>() / n,
                mean: acc.iter().sum::<f64>() / n,
                min: acc.iter().copied().fold(f64::INFINITY, f64::min),
                max: acc.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            }
        })
        .collect()
}

/// The x of a point on one panel: rounds done, or mean virtual time.
fn x_of(by_time: bool, p: &RoundStats) -> f64 {
    if by_time { p.time_s } else { p.rounds_done }
}

/// The right end of a panel's x axis: the largest x drawn, at least 1; 10 with no data.
fn x_extent(curves: &[Curve], by_time: bool) -> f64 {
    let largest = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| x_of(by_time, p)))
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
    largest.map_or(10.0, |x| x.max(1.0))
}

/// A tick label without trailing zeros (`200`, `0.5`).
fn tick_label(v: f64) -> String {
    let text = format!("{v:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.into()
    }
}

/// A round-axis tick label: whole rounds only, other ticks left blank.
fn round_tick_label(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        tick_label(v)
    } else {
        String::new()
    }
}

/// How many corners [`legend_corner`] tries (see [`legend_position`]).
const LEGEND_CORNERS: usize = 4;

/// The legend position of corner `index`, in order of preference: lower right, upper
/// left, upper right, lower left.
fn legend_position(index: usize) -> SeriesLabelPosition {
    match index {
        0 => SeriesLabelPosition::LowerRight,
        1 => SeriesLabelPosition::UpperLeft,
        2 => SeriesLabelPosition::UpperRight,
        _ => SeriesLabelPosition::LowerLeft,
    }
}

/// The corner whose legend box (`w` × `h`, as fractions of the plot area) covers the
/// fewest samples of the drawn lines and bands; ties go to the earlier corner.
fn legend_corner(curves: &[Curve], by_time: bool, x_max: f64, w: f64, h: f64) -> usize {
    // Sample every drawn segment, in [0, 1]² plot fractions.
    let mut samples = Vec::new();
    for curve in curves {
        let tracks: [fn(&RoundStats) -> f64; 3] = [|p| p.mean, |p| p.min, |p| p.max];
        for track in tracks.iter().take(if curve.band { 3 } else { 1 }) {
            let at = |p: &RoundStats| (x_of(by_time, p) / x_max, track(p) / 100.0);
            for pair in curve.points.windows(2) {
                let ((x0, y0), (x1, y1)) = (at(&pair[0]), at(&pair[1]));
                samples.extend((0..16).map(|i| {
                    let t = f64::from(i) / 16.0;
                    (x0 + t * (x1 - x0), y0 + t * (y1 - y0))
                }));
            }
            samples.extend(curve.points.last().map(at));
        }
    }
    let covered = |corner: usize| {
        let (left, bottom) = (corner == 1 || corner == 3, corner == 0 || corner == 3);
        samples
            .iter()
            .filter(|&&(x, y)| {
                // A little slack around the box keeps lines from grazing it.
                let (w, h) = (w + 0.03, h + 0.03);
                (if left { x <= w } else { x >= 1.0 - w })
                    && (if bottom { y <= h } else { y >= 1.0 - h })
            })
            .count()
    };
    (0..LEGEND_CORNERS)
        .min_by_key(|&c| (covered(c), c))
        .unwrap_or(0)
}

/// Draws `series` to a PNG at `path`, 1400×560: left, test accuracy (%) against rounds
/// done; right, against mean virtual time (s). Each method gets a line (the mean over
/// seeds, at each round present in every run) and, with two or more seeds, a translucent
/// band from the lowest to the highest seed; the legend sits in the left panel's emptiest
/// corner. Methods without data are only named in the legend; no methods draws empty axes.
pub(crate) fn draw_accuracy(
    path: &Path,
    title: &str,
    series: &[AccuracySeries],
) -> anyhow::Result<()> {
    let curves: Vec<Curve> = series
        .iter()
        .map(|s| Curve {
            label: s.method.clone(),
            band: s.runs.len() >= 2,
            points: aggregate(s),
        })
        .collect();
    draw(path, title, &curves)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("drawing {}", path.display()))
}

/// Draws the aggregated curves; [`draw_accuracy`] names the path in its errors.
fn draw(path: &Path, title: &str, curves: &[Curve]) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 24))?;
    let panels = root.split_evenly((1, 2));
    for (panel, by_time) in panels.iter().zip([false, true]) {
        let x_max = x_extent(curves, by_time);
        let x_range = 0.0..x_max * 1.02;
        let mut chart = ChartBuilder::on(panel)
            .margin(14)
            .x_label_area_size(45)
            .y_label_area_size(55)
            .build_cartesian_2d(x_range.clone(), 0.0..100.0)?;
        let round_labels = |v: &f64| round_tick_label(*v);
        let time_labels = |v: &f64| tick_label(*v);
        let y_labels = |v: &f64| tick_label(*v);
        chart
            .configure_mesh()
            .x_desc(if by_time { "virtual time (s)" } else { "round" })
            .y_desc("test accuracy (%)")
            .x_label_formatter(if by_time { &time_labels } else { &round_labels })
            .y_label_formatter(&y_labels)
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .bold_line_style(BLACK.mix(0.12))
            .light_line_style(BLACK.mix(0.04))
            .draw()?;
        for (i, curve) in curves.iter().enumerate() {
            let color = color(i);
            let x = |p: &RoundStats| x_of(by_time, p);
            if curve.band {
                match curve.points.as_slice() {
                    [] => {}
                    [p] => {
                        chart.draw_series(std::iter::once(PathElement::new(
                            vec![(x(p), p.min), (x(p), p.max)],
                            color.mix(0.4).stroke_width(6),
                        )))?;
                    }
                    points => {
                        let mut outline: Vec<(f64, f64)> =
                            points.iter().map(|p| (x(p), p.max)).collect();
                        outline.extend(points.iter().rev().map(|p| (x(p), p.min)));
                        chart.draw_series(std::iter::once(Polygon::new(
                            outline,
                            color.mix(0.2).filled(),
                        )))?;
                    }
                }
            }
            if let [p] = curve.points.as_slice() {
                // A single round has no line to draw: mark it.
                chart.draw_series(std::iter::once(Circle::new(
                    (x(p), p.mean),
                    4,
                    color.filled(),
                )))?;
            }
            let line = chart.draw_series(LineSeries::new(
                curve.points.iter().map(|p| (x(p), p.mean)),
                color.stroke_width(2),
            ))?;
            if !by_time {
                line.label(curve.label.as_str()).legend(move |(lx, ly)| {
                    PathElement::new(vec![(lx, ly), (lx + 20, ly)], color.stroke_width(3))
                });
            }
        }
        if !by_time && !curves.is_empty() {
            let font: TextStyle = ("sans-serif", 15).into_font().into();
            let area = chart.plotting_area();
            let (area_w, area_h) = area.dim_in_pixel();
            let mut text_w = 0;
            for curve in curves {
                text_w = text_w.max(area.estimate_text_size(&curve.label, &font)?.0);
            }
            // Plotters' legend: 30 px for the marker, 10 px margins, 5 px from the edge.
            let w = f64::from(text_w + 30 + 20 + 5) / f64::from(area_w.max(1));
            let line_h = 15.0 * 1.25;
            let h = (curves.len() as f64 * line_h + 25.0) / f64::from(area_h.max(1));
            let corner = legend_corner(curves, by_time, x_range.end, w, h);
            chart
                .configure_series_labels()
                .position(legend_position(corner))
                .label_font(font)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.5))
                .draw()?;
        }
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run of `n` rounds rising towards `ceiling`, shifted by `offset` (in % points).
    fn run(n: u32, offset: f64, ceiling: f64) -> Vec<AccuracyPoint> {
        (0..n)
            .map(|r| AccuracyPoint {
                round: r,
                virtual_time_s: 12.5 * f64::from(r + 1) + offset,
                accuracy: ceiling * (1.0 - (-f64::from(r + 1) / 6.0).exp()) + offset / 100.0,
            })
            .collect()
    }

    /// A fresh folder for one test's images.
    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("flotilla-plot-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Draws `series` and checks that a real PNG came out; returns its size.
    fn draws_png(name: &str, series: &[AccuracySeries]) -> usize {
        let dir = temp_dir(name);
        let path = dir.join("accuracy.png");
        draw_accuracy(&path, "flotilla: synthetic α=0.5", series).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert!(bytes.len() > 10_000, "{} bytes", bytes.len());
        bytes.len()
    }

    #[test]
    fn draws_several_methods_with_bands() {
        draws_png(
            "several",
            &[
                AccuracySeries {
                    method: "ondevice_kd (target)".into(),
                    runs: vec![run(30, 0.0, 0.85), run(30, 3.0, 0.85), run(28, -2.0, 0.85)],
                },
                AccuracySeries {
                    method: "fedavg (target)".into(),
                    runs: vec![run(30, 0.0, 0.7), run(30, 4.0, 0.7)],
                },
                AccuracySeries {
                    method: "local (weak)".into(),
                    runs: vec![run(30, 1.0, 0.3)],
                },
            ],
        );
    }

    #[test]
    fn draws_a_single_run_and_a_single_round() {
        draws_png(
            "single",
            &[AccuracySeries {
                method: "fedavg".into(),
                runs: vec![run(12, 0.0, 0.8)],
            }],
        );
        draws_png(
            "one-round",
            &[AccuracySeries {
                method: "fedavg".into(),
                runs: vec![run(1, 0.0, 0.8), run(1, 5.0, 0.8)],
            }],
        );
    }

    #[test]
    fn draws_empty_axes_without_data() {
        draws_png("none", &[]);
        draws_png(
            "empty-runs",
            &[
                AccuracySeries {
                    method: "no runs".into(),
                    runs: vec![],
                },
                AccuracySeries {
                    method: "empty runs".into(),
                    runs: vec![vec![], vec![]],
                },
            ],
        );
    }

    #[test]
    fn an_unwritable_path_is_an_error_naming_it() {
        let path = Path::new("/nonexistent-flotilla-dir/accuracy.png");
        let err = draw_accuracy(path, "t", &[]).unwrap_err();
        assert!(
            format!("{err:#}").contains("/nonexistent-flotilla-dir/accuracy.png"),
            "{err:#}"
        );
    }

    #[test]
    fn only_rounds_in_every_run_are_kept_and_averaged() {
        let mut short = run(10, 2.0, 0.8);
        short.truncate(5);
        short.push(short[4]); // a repeated round counts once
        let agg = aggregate(&AccuracySeries {
            method: "m".into(),
            runs: vec![run(10, 0.0, 0.8), short, run(10, 4.0, 0.8)],
        });
        assert_eq!(agg.len(), 5);
        let first = agg[0];
        assert_eq!(first.rounds_done, 1.0);
        assert!((first.time_s - (12.5 + 2.0)).abs() < 1e-9);
        let base = 80.0 * (1.0 - (-1.0f64 / 6.0).exp());
        assert!((first.mean - (base + 2.0)).abs() < 1e-9);
        assert!((first.min - base).abs() < 1e-9);
        assert!((first.max - (base + 4.0)).abs() < 1e-9);
    }

    #[test]
    fn non_finite_points_count_as_missing() {
        let mut bad = run(3, 0.0, 0.8);
        bad[1].accuracy = f64::NAN;
        bad[2].virtual_time_s = f64::INFINITY;
        let agg = aggregate(&AccuracySeries {
            method: "m".into(),
            runs: vec![bad, run(3, 1.0, 0.8)],
        });
        assert_eq!(agg.len(), 1);
    }

    #[test]
    fn the_legend_avoids_the_lines() {
        let curve = |y: f64| Curve {
            label: "m".into(),
            band: false,
            points: (0..10)
                .map(|r| RoundStats {
                    rounds_done: f64::from(r + 1),
                    time_s: f64::from(r + 1),
                    mean: y,
                    min: y,
                    max: y,
                })
                .collect(),
        };
        // High curves leave the lower right free; low ones push the legend to the top.
        assert_eq!(legend_corner(&[curve(90.0)], false, 10.0, 0.3, 0.2), 0);
        assert_eq!(legend_corner(&[curve(10.0)], false, 10.0, 0.3, 0.2), 1);
    }

    #[test]
    fn tick_labels_drop_trailing_zeros() {
        assert_eq!(tick_label(200.0), "200");
        assert_eq!(tick_label(0.5), "0.5");
        assert_eq!(tick_label(-0.0), "0");
        assert_eq!(round_tick_label(3.0), "3");
        assert_eq!(round_tick_label(2.5), "");
    }

    #[test]
    fn colours_are_fixed_by_index() {
        assert_eq!(color(0), color(10));
        assert_ne!(color(0), color(1));
    }
}
