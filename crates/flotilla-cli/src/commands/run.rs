//! `flotilla run`: every configured method for every seed, with outputs in one folder.

use super::cluster::{self, Part};
use super::new_file::NewFile;
use crate::plot::{AccuracyPoint, AccuracySeries, draw_accuracy};
use anyhow::Context;
use flotilla_experiment::checkpoints::{CheckpointDir, Manifest};
use flotilla_experiment::experiment::{
    ExperimentOptions, Progress, parse_init, run_all, write_outputs,
};
use flotilla_experiment::report::Summary;
use flotilla_experiment::{
    ConfigSource, ExperimentConfig, Method, OutputDir, Prepared, RunOutcome, Verdict,
};
use flotilla_fl::{ModelRole, Offload};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    /// Also write the client split as a partition file (JSON, the format `data.split =
    /// "file"` reads), before the runs start. With one seed it goes to FILE; with several,
    /// whose splits differ, one file per seed: FILE with `_seed<N>` before its extension
    /// (`split.json` → `split_seed1.json`, …). Existing files are refused.
    #[arg(long, value_name = "FILE")]
    export_split: Option<PathBuf>,
    /// Replace the --export-split file(s) if they exist.
    #[arg(long, requires = "export_split")]
    force_export: bool,
    /// Take a checkpoint of each run every N versions of its global model (and at its
    /// end), so that `flotilla resume` can continue the experiment after a crash or a
    /// kill, with the same results bit for bit.
    #[arg(long, value_name = "N")]
    checkpoint_every: Option<u32>,
    /// Where to keep the checkpoints (default `<out>.checkpoint`); it must not exist. It
    /// is removed once the outputs are in place.
    #[arg(long, value_name = "DIR", requires = "checkpoint_every")]
    checkpoint_dir: Option<PathBuf>,
}

/// Arguments of `flotilla resume`.
#[derive(Debug, clap::Args)]
pub(crate) struct ResumeArgs {
    /// The checkpoint folder of an unfinished `flotilla run --checkpoint-every N`.
    dir: PathBuf,
    /// Worker threads (default: as the run had; results are identical for any number).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// An experiment to carry out, from `run`'s arguments or a checkpoint folder's manifest.
struct Job {
    config: ExperimentConfig,
    out: PathBuf,
    output: OutputDir,
    threads: usize,
    quiet: bool,
    trace: bool,
    init: Vec<(ModelRole, PathBuf)>,
    exports: Vec<(u64, PathBuf, NewFile)>,
    checkpoints: Option<CheckpointDir>,
}

/// Where `--export-split FILE` writes each seed's split: FILE itself for a single seed, else
/// FILE with `_seed<N>` before its extension.
fn export_paths(file: &Path, seeds: &[u64]) -> Vec<(u64, PathBuf)> {
    if let [seed] = seeds {
        return vec![(*seed, file.to_path_buf())];
    }
    let stem = file.file_stem().unwrap_or_default().to_string_lossy();
    let ext = file
        .extension()
        .map_or(String::new(), |e| format!(".{}", e.to_string_lossy()));
    seeds
        .iter()
        .map(|&seed| (seed, file.with_file_name(format!("{stem}_seed{seed}{ext}"))))
        .collect()
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

/// Shows one step of the experiment on the progress bar (or, with `--quiet`, each run's
/// result as a line).
fn show(bar: &ProgressBar, quiet: bool, rounds: u64, fedavg_model: ModelRole, event: Progress<'_>) {
    let (id, base) = match event {
        Progress::Started(id)
        | Progress::Resumed(id, _)
        | Progress::Evaluated(id, _)
        | Progress::Finished(id, _) => (id, id.index as u64 * rounds),
    };
    let (method, seed) = (id.method, id.seed);
    let role = method.reported_model(fedavg_model);
    match event {
        Progress::Started(_) => bar.set_message(format!("{method} seed {seed}: starting")),
        Progress::Resumed(_, at) => {
            // Said even with --quiet: what a resume did is part of its result.
            bar.suspend(|| {
                eprintln!(
                    "{method} seed {seed}: resumed from its checkpoint at {:.1} s virtual",
                    at.as_secs_f64()
                );
            });
        }
        Progress::Evaluated(_, e) => {
            bar.set_position(base + u64::from(e.round) + 1);
            if e.role == role {
                bar.set_message(format!(
                    "{method} seed {seed}: round {} at {:.0} s virtual, {role} {:.2} %",
                    e.round + 1,
                    e.virtual_time_s,
                    100.0 * e.accuracy
                ));
            }
        }
        Progress::Finished(_, outcome) => {
            bar.set_position(base + rounds);
            if quiet {
                let result = match outcome.verdict(role) {
                    Verdict::Ok => outcome
                        .final_accuracy(role)
                        .map_or("not evaluated".into(), |a| format!("{:.2} %", 100.0 * a)),
                    verdict => verdict.describe(),
                };
                eprintln!(
                    "{method} seed {seed}: {role} {result} after {rounds} rounds ({:.1} s)",
                    outcome.wall_time_s
                );
            }
        }
    }
}

/// The most worker threads `--threads` accepts.
const MAX_THREADS: usize = 1024;

/// Exit code of a run that finished but has a model that is not a result (diverged, or
/// never updated): the outputs are written and the warnings say which.
pub(crate) const EXIT_NOT_ALL_RESULTS: u8 = 3;

/// Checks a `--threads` value.
fn check_threads(threads: usize) -> anyhow::Result<usize> {
    if !(1..=MAX_THREADS).contains(&threads) {
        anyhow::bail!(flotilla_experiment::ConfigError::new(
            "--threads",
            threads,
            format!("must be from 1 to {MAX_THREADS}")
        ));
    }
    Ok(threads)
}

/// Runs the experiment; `Ok(false)` when it finished but some model is not a result.
pub(crate) fn run(args: RunArgs) -> anyhow::Result<bool> {
    let source = ConfigSource::resolve(args.config.as_deref().unwrap_or("quickstart"))?;
    let mut overrides = args.set.clone();
    if let Some(n) = args.seeds {
        overrides.push(format!("seeds={n}"));
    }
    let config = ExperimentConfig::load(&source, &overrides)?;
    let init: Vec<(ModelRole, PathBuf)> = args
        .init
        .iter()
        .map(|item| parse_init(item))
        .collect::<Result<_, _>>()?;
    // Under mpirun, only rank 0 goes on: the other ranks compute its jobs and write
    // nothing, so they claim no output.
    let part = match Part::join()? {
        Part::Worker(worker) => return cluster::serve(worker, config, &init),
        part => part,
    };
    let threads = check_threads(
        args.threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
    )?;
    part.note_binding(threads);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("out").join(&config.name));
    // Claimed before any work: a folder flotilla may not replace is refused now, and so is
    // an exported split's file.
    let exports = match &args.export_split {
        Some(file) => export_paths(file, &config.seed_list())
            .into_iter()
            .map(|(seed, path)| {
                NewFile::claim("--export-split", "--force-export", &path, args.force_export)
                    .map(|target| (seed, path, target))
            })
            .collect::<anyhow::Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    let output = OutputDir::claim(&out)?;
    let checkpoints = match args.checkpoint_every {
        Some(every) => {
            let dir = args.checkpoint_dir.clone().unwrap_or_else(|| {
                let mut name = out.as_os_str().to_owned();
                name.push(".checkpoint");
                PathBuf::from(name)
            });
            let manifest = Manifest {
                format: 1,
                cwd: std::env::current_dir().context("the working folder")?,
                config: config.clone(),
                out: out.clone(),
                threads,
                trace: args.trace,
                init: init.clone(),
                every,
            };
            Some(CheckpointDir::create(&dir, &manifest)?)
        }
        None => None,
    };
    let result = execute(
        Job {
            config,
            out,
            output,
            threads,
            quiet: args.quiet,
            trace: args.trace,
            init,
            exports,
            checkpoints,
        },
        part.offload(),
    );
    part.finish()?;
    result
}

/// Continues the experiment of a checkpoint folder: each run from its latest checkpoint
/// (a run that had not started starts afresh), then writes the outputs as `run` would.
pub(crate) fn resume(args: ResumeArgs) -> anyhow::Result<bool> {
    let dir = std::path::absolute(&args.dir)
        .with_context(|| format!("the checkpoint folder {}", args.dir.display()))?;
    let (checkpoints, manifest) = CheckpointDir::open(&dir)?;
    // The manifest's paths are relative to the folder the run was started in.
    std::env::set_current_dir(&manifest.cwd).with_context(|| {
        format!(
            "the experiment was started in {}, which is gone",
            manifest.cwd.display()
        )
    })?;
    let part = match Part::join()? {
        Part::Worker(worker) => return cluster::serve(worker, manifest.config, &manifest.init),
        part => part,
    };
    let threads = check_threads(args.threads.unwrap_or(manifest.threads))?;
    part.note_binding(threads);
    let output = OutputDir::claim(&manifest.out)?;
    if !args.quiet {
        eprintln!("resuming the experiment of {}", dir.display());
    }
    let result = execute(
        Job {
            config: manifest.config,
            out: manifest.out,
            output,
            threads,
            quiet: args.quiet,
            trace: manifest.trace,
            init: manifest.init,
            exports: Vec::new(),
            checkpoints: Some(checkpoints),
        },
        part.offload(),
    );
    part.finish()?;
    result
}

/// Runs a [`Job`]'s experiment, its jobs on `offload` if given, and writes its outputs.
fn execute(job: Job, offload: Option<Arc<dyn Offload>>) -> anyhow::Result<bool> {
    let Job {
        config,
        out,
        output,
        threads,
        quiet,
        trace,
        init,
        exports,
        checkpoints,
    } = job;
    let staging = output.staging().to_path_buf();
    if !quiet {
        eprintln!("loading {} data…", config.data.dataset.name());
    }
    let mut prepared = Prepared::new(config)?;
    for (seed, path, target) in &exports {
        let json = prepared.split_file(*seed)?;
        target.write(|w| std::io::Write::write_all(w, json.as_bytes()))?;
        if !quiet {
            eprintln!("wrote the split of seed {seed} to {}", path.display());
        }
    }
    let options = ExperimentOptions {
        threads,
        init,
        trace: trace.then(|| staging.join("trace.jsonl")),
        checkpoints: checkpoints.clone(),
        offload,
    };
    let rounds = u64::from(prepared.config.rounds);
    let runs = (prepared.config.methods.len() * prepared.config.seed_list().len()) as u64;
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::with_draw_target(Some(runs * rounds), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} rounds  {msg}  [{elapsed_precise}, ETA {eta}]",
            )
            .context("progress bar template")?,
        );
        bar
    };
    let fedavg_model = prepared.config.fedavg.model;
    let outcomes = run_all(&mut prepared, &options, &mut |event| {
        show(&bar, quiet, rounds, fedavg_model, event);
    })?;
    bar.finish_and_clear();
    let config = &prepared.config;
    let seeds = config.seed_list();

    let summary = Summary::new(config, &outcomes);
    let title = format!(
        "{}: {} α={} ({} seed{})",
        config.name,
        config.data.dataset.name(),
        config.data.alpha,
        seeds.len(),
        if seeds.len() == 1 { "" } else { "s" }
    );
    // The plot is drawn while the tables and models are written: neither reads the other.
    let plot_path = staging.join("accuracy.png");
    std::thread::scope(|s| {
        let plot = s.spawn(|| draw_accuracy(&plot_path, &title, &series(config, &outcomes)));
        let written = write_outputs(&staging, &prepared, &outcomes);
        let plotted = plot
            .join()
            .map_err(|_| anyhow::anyhow!("drawing accuracy.png panicked"))?;
        written?;
        plotted
    })?;
    output.commit()?;
    if let Some(checkpoints) = checkpoints {
        checkpoints.remove()?;
    }

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
