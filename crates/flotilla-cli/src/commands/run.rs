//! `flotilla run`: every configured method for every seed, with outputs in one folder.

use crate::plot::{AccuracyPoint, AccuracySeries, draw_accuracy};
use anyhow::Context;
use flotilla_experiment::report::{Summary, metrics_csv, stages_csv};
use flotilla_experiment::{
    ConfigError, ConfigSource, ExperimentConfig, Method, OutputDir, Prepared, RunOptions,
    RunOutcome, Verdict,
};
use flotilla_fl::ModelRole;
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
    /// Output folder (default `out/<config name>`): created, or replaced when it holds an
    /// earlier flotilla output, once every run finished; any other folder is refused.
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
    /// Start a model from a safetensors file (PyTorch names and layouts, as written to
    /// `models/`) instead of the seed's draw, e.g. `--init target=wl.safetensors`
    /// (repeatable; models: target, auxiliary).
    #[arg(long, value_name = "MODEL=PATH")]
    init: Vec<String>,
}

/// Parses `--init MODEL=PATH`.
fn parse_init(item: &str) -> Result<(ModelRole, PathBuf), ConfigError> {
    let (model, path) = item
        .split_once('=')
        .ok_or_else(|| ConfigError::new("--init", item, "expected MODEL=PATH"))?;
    let role = ModelRole::ALL
        .into_iter()
        .find(|r| r.name() == model)
        .ok_or_else(|| ConfigError::new("--init", item, "the model is `target` or `auxiliary`"))?;
    Ok((role, PathBuf::from(path)))
}

fn write(dir: &Path, name: &str, text: &str) -> anyhow::Result<()> {
    let path = dir.join(name);
    fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

/// One curve per method of its result model, over the runs where that model is a result;
/// the legend names the runs left out and why.
fn series(config: &ExperimentConfig, outcomes: &[RunOutcome]) -> Vec<AccuracySeries> {
    config
        .methods
        .iter()
        .map(|&method| {
            let role = method.reported_model(config.fedavg.model);
            let mut label = format!("{method} ({role})");
            for o in outcomes.iter().filter(|o| o.method == method) {
                let verdict = o.verdict(role);
                if !verdict.is_ok() {
                    label.push_str(&format!(", seed {}: {}", o.seed, verdict.describe()));
                }
            }
            AccuracySeries {
                method: label,
                runs: outcomes
                    .iter()
                    .filter(|o| o.method == method && o.verdict(role).is_ok())
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

/// The most worker threads `--threads` accepts.
const MAX_THREADS: usize = 1024;

/// Exit code of a run that finished but has a model that is not a result (diverged, or
/// never updated): the outputs are written and the warnings say which.
pub(crate) const EXIT_NOT_ALL_RESULTS: u8 = 3;

/// Runs the experiment; `Ok(false)` when it finished but some model is not a result.
pub(crate) fn run(args: RunArgs) -> anyhow::Result<bool> {
    let source = ConfigSource::resolve(args.config.as_deref().unwrap_or("quickstart"))?;
    let mut overrides = args.set.clone();
    if let Some(n) = args.seeds {
        overrides.push(format!("seeds={n}"));
    }
    let config = ExperimentConfig::load(&source, &overrides)?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if !(1..=MAX_THREADS).contains(&threads) {
        anyhow::bail!(flotilla_experiment::ConfigError::new(
            "--threads",
            threads,
            format!("must be from 1 to {MAX_THREADS}")
        ));
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("out").join(&config.name));
    // Claimed before any work: a folder flotilla may not replace is refused now.
    let output = OutputDir::claim(&out)?;
    let staging = output.staging().to_path_buf();
    if !args.quiet {
        eprintln!("loading {} data…", config.data.dataset.name());
    }
    let mut prepared = Prepared::new(config)?;
    for item in &args.init {
        let (role, path) = parse_init(item)?;
        prepared.init_from(role, &path)?;
    }
    let config = &prepared.config;

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
        let path = staging.join("trace.jsonl");
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
                ..RunOptions::default()
            },
        )?;
        prepared.save_models(&outcome, &staging.join("models"))?;
        bar.set_position(base + u64::from(config.rounds));
        if args.quiet {
            let result = match outcome.verdict(role) {
                Verdict::Ok => outcome
                    .final_accuracy(role)
                    .map_or("not evaluated".into(), |a| format!("{:.2} %", 100.0 * a)),
                verdict => verdict.describe(),
            };
            eprintln!(
                "{method} seed {seed}: {role} {result} after {} rounds ({:.1} s)",
                config.rounds, outcome.wall_time_s
            );
        }
        outcomes.push(outcome);
    }
    bar.finish_and_clear();

    let summary = Summary::new(config, &outcomes);
    write(&staging, "metrics.csv", &metrics_csv(&outcomes))?;
    write(&staging, "stages.csv", &stages_csv(&outcomes))?;
    let json = serde_json::to_string_pretty(&summary).context("encoding summary.json")?;
    write(&staging, "summary.json", &json)?;
    let title = format!(
        "{}: {} α={} ({} seed{})",
        config.name,
        config.data.dataset.name(),
        config.data.alpha,
        seeds.len(),
        if seeds.len() == 1 { "" } else { "s" }
    );
    draw_accuracy(
        &staging.join("accuracy.png"),
        &title,
        &series(config, &outcomes),
    )?;
    output.commit()?;

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
    if !summary.all_results() {
        eprintln!(
            "flotilla: some model is not a result (see the warnings above); exit code {EXIT_NOT_ALL_RESULTS}"
        );
    }
    Ok(summary.all_results())
}
