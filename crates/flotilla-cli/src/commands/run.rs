//! `flotilla run`: every configured method for every seed, with outputs in one folder.

use crate::plot::{AccuracyPoint, AccuracySeries, draw_accuracy};
use anyhow::Context;
use flotilla_experiment::report::{Summary, metrics_csv, stages_csv};
use flotilla_experiment::{
    ConfigSource, ExperimentConfig, Method, Prepared, RunOptions, RunOutcome,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Arguments of `flotilla run`.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// A config file, or a built-in config: quickstart (the default), mnist, femnist,
    /// cifar10_paper, cifar10_small.
    config: Option<String>,
    /// Override a config key, e.g. `--set data.alpha=1.0` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Output folder (default `out/<config name>`); replaced when the run succeeds.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Worker threads (results are identical for any number).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Number of seeds (overrides the config's `seeds`).
    #[arg(long, value_name = "N")]
    seeds: Option<usize>,
    /// No progress bar (for scripts); the results table is still printed.
    #[arg(long)]
    quiet: bool,
    /// Also write trace.jsonl: every run's event trace, each preceded by a
    /// `{"run": {"method": …, "seed": …}}` line.
    #[arg(long)]
    trace: bool,
}

/// Removes the partial output folder unless the run completed.
struct PartialDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for PartialDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> anyhow::Result<()> {
    let path = dir.join(name);
    fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

fn series(config: &ExperimentConfig, outcomes: &[RunOutcome]) -> Vec<AccuracySeries> {
    config
        .methods
        .iter()
        .map(|&method| {
            let role = method.reported_model(config.fedavg.model);
            AccuracySeries {
                method: format!("{method} ({role})"),
                runs: outcomes
                    .iter()
                    .filter(|o| o.method == method)
                    .map(|o| {
                        o.evaluations
                            .iter()
                            .filter(|e| e.role == role)
                            .map(|e| AccuracyPoint {
                                round: e.round,
                                virtual_time_s: e.virtual_time_s,
                                accuracy: e.accuracy,
                            })
                            .collect()
                    })
                    .collect(),
            }
        })
        .collect()
}

/// Runs the experiment.
pub(crate) fn run(args: RunArgs) -> anyhow::Result<()> {
    let source = ConfigSource::resolve(args.config.as_deref().unwrap_or("quickstart"))?;
    let mut overrides = args.set.clone();
    if let Some(n) = args.seeds {
        overrides.push(format!("seeds={n}"));
    }
    let config = ExperimentConfig::load(&source, &overrides)?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads == 0 {
        anyhow::bail!(flotilla_experiment::ConfigError::new(
            "--threads",
            0,
            "must be at least 1"
        ));
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("out").join(&config.name));
    if !args.quiet {
        eprintln!("loading {} data…", config.data.dataset.name());
    }
    let prepared = Prepared::new(config)?;
    let config = &prepared.config;

    let parent = out.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let file_name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let partial = PartialDir {
        path: out.with_file_name(format!(".{file_name}.partial-{}", std::process::id())),
        keep: false,
    };
    fs::create_dir_all(&partial.path)
        .with_context(|| format!("creating {}", partial.path.display()))?;

    let seeds = config.seed_list();
    let total = (config.methods.len() * seeds.len()) as u64 * u64::from(config.rounds);
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} rounds  {msg}  [{elapsed_precise}, ETA {eta}]",
            )
            .context("progress bar template")?,
        );
        bar
    };
    let mut trace_file = if args.trace {
        let path = partial.path.join("trace.jsonl");
        Some(fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?)
    } else {
        None
    };
    let mut outcomes = Vec::new();
    for (run_index, (&seed, &method)) in seeds
        .iter()
        .flat_map(|s| config.methods.iter().map(move |m| (s, m)))
        .enumerate()
    {
        let base = run_index as u64 * u64::from(config.rounds);
        let role = method.reported_model(config.fedavg.model);
        let progress = bar.clone();
        let observer = Box::new(move |e: &flotilla_fl::Evaluation| {
            progress.set_position(base + u64::from(e.round) + 1);
            if e.role == role {
                progress.set_message(format!(
                    "{method} seed {seed}: round {} at {:.0} s virtual, {role} {:.2} %",
                    e.round + 1,
                    e.virtual_time_s,
                    100.0 * e.accuracy
                ));
            }
        });
        let trace = match &mut trace_file {
            Some(file) => {
                writeln!(
                    file,
                    "{{\"run\":{{\"method\":\"{method}\",\"seed\":{seed}}}}}"
                )
                .context("writing trace.jsonl")?;
                let handle = file.try_clone().context("trace.jsonl")?;
                Some(Box::new(std::io::BufWriter::new(handle)) as Box<dyn Write + Send>)
            }
            None => None,
        };
        bar.set_message(format!("{method} seed {seed}: starting"));
        let outcome = prepared.run(
            method,
            seed,
            RunOptions {
                threads,
                trace,
                observer: Some(observer),
            },
        )?;
        bar.set_position(base + u64::from(config.rounds));
        if args.quiet {
            let result = outcome.final_accuracy(role).unwrap_or(f64::NAN);
            eprintln!(
                "{method} seed {seed}: {role} {:.2} % after {} rounds ({:.1} s)",
                100.0 * result,
                config.rounds,
                outcome.wall_time_s
            );
        }
        outcomes.push(outcome);
    }
    bar.finish_and_clear();

    let summary = Summary::new(config, &outcomes);
    write(&partial.path, "metrics.csv", &metrics_csv(&outcomes))?;
    write(&partial.path, "stages.csv", &stages_csv(&outcomes))?;
    let json = serde_json::to_string_pretty(&summary).context("encoding summary.json")?;
    write(&partial.path, "summary.json", &json)?;
    let title = format!(
        "{}: {} α={} ({} seed{})",
        config.name,
        config.data.dataset.name(),
        config.data.alpha,
        seeds.len(),
        if seeds.len() == 1 { "" } else { "s" }
    );
    draw_accuracy(
        &partial.path.join("accuracy.png"),
        &title,
        &series(config, &outcomes),
    )?;
    if out.exists() {
        fs::remove_dir_all(&out).with_context(|| format!("replacing {}", out.display()))?;
    }
    fs::rename(&partial.path, &out)
        .with_context(|| format!("moving results to {}", out.display()))?;
    let mut partial = partial;
    partial.keep = true;

    println!("{}", summary.table());
    let wall: f64 = outcomes.iter().map(|o| o.wall_time_s).sum();
    println!(
        "{} runs in {:.1} s; results in {}",
        outcomes.len(),
        wall,
        out.display()
    );
    if config.methods.contains(&Method::ServerLogitEnsemble) {
        println!(
            "server_logit_ensemble moved {} unlabeled samples to the server; the other methods moved none.",
            summary
                .methods
                .iter()
                .find(|m| m.method == Method::ServerLogitEnsemble)
                .map_or(0, |m| m.samples_centralised)
        );
    }
    Ok(())
}
