//! A whole experiment: every configured method for every seed, and its files.
//!
//! [`run_all`] runs the seeds × methods of a [`Prepared`] configuration in order (seed by
//! seed, methods in the configuration's order), reporting [`Progress`] as it goes;
//! [`write_outputs`] writes what `flotilla run` writes into a folder, apart from the plot:
//!
//! ```no_run
//! use flotilla_experiment::experiment::{ExperimentOptions, run_all, write_outputs};
//! use flotilla_experiment::report::Summary;
//! use flotilla_experiment::{ConfigSource, ExperimentConfig, Prepared};
//! let source = ConfigSource::resolve("quickstart")?;
//! let mut prepared = Prepared::new(ExperimentConfig::load(&source, &["rounds=5".into()])?)?;
//! let outcomes = run_all(&mut prepared, &ExperimentOptions::default(), &mut |_| {})?;
//! write_outputs(std::path::Path::new("out/mine"), &prepared, &outcomes)?;
//! println!("{}", Summary::new(&prepared.config, &outcomes).table());
//! # Ok::<(), flotilla_experiment::ExperimentError>(())
//! ```

use crate::checkpoints::CheckpointDir;
use crate::report::{Summary, metrics_csv, stages_csv, updates_csv};
use crate::run::RunCheckpoints;
use crate::{ConfigError, ExperimentError, Method, Prepared, RunOptions, RunOutcome};
use flotilla_fl::{Evaluation, ModelRole, Observer, Offload};
use flotilla_sim::{Checkpoint, SimTime};
use std::fs;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};

/// How to run an experiment.
#[derive(Debug, Clone, Default)]
pub struct ExperimentOptions {
    /// Actor arbiters and job threads of each run (results do not depend on it; 0 counts
    /// as 1).
    pub threads: usize,
    /// Models to start from a safetensors file instead of the seed's draw (see
    /// [`Prepared::init_from`]; [`parse_init`] reads `MODEL=PATH`).
    pub init: Vec<(ModelRole, PathBuf)>,
    /// Where to write every run's event trace (JSONL), each run's preceded by a
    /// `{"run":{"method":…,"seed":…}}` line; no trace when `None`.
    pub trace: Option<PathBuf>,
    /// Where to keep checkpoints, and from where to resume (see [`crate::checkpoints`]):
    /// each run resumes from its latest checkpoint there, if it has one.
    pub checkpoints: Option<CheckpointDir>,
    /// Where clients' training and evaluations compute, if not on the job threads (e.g.
    /// MPI ranks, see `flotilla-mpi`); results do not depend on it.
    pub offload: Option<Arc<dyn Offload>>,
}

/// Which run of an experiment: its place and what it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunId {
    /// Position in the experiment, from 0.
    pub index: usize,
    /// Runs in the experiment.
    pub runs: usize,
    /// The method.
    pub method: Method,
    /// The seed.
    pub seed: u64,
}

/// What [`run_all`] reports as it goes, in order, from the calling thread.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// A run starts.
    Started(RunId),
    /// A run goes on from its checkpoint, taken at this virtual time (after `Started`).
    Resumed(RunId, SimTime),
    /// A run evaluated a model (once per evaluation, as it completes).
    Evaluated(RunId, &'a Evaluation),
    /// A run finished.
    Finished(RunId, &'a RunOutcome),
}

/// Reads `MODEL=PATH` (as `flotilla run --init` takes it): the model is `target` or
/// `auxiliary`.
pub fn parse_init(item: &str) -> Result<(ModelRole, PathBuf), ConfigError> {
    let (model, path) = item
        .split_once('=')
        .ok_or_else(|| ConfigError::new("--init", item, "expected MODEL=PATH"))?;
    let role = ModelRole::ALL
        .into_iter()
        .find(|r| r.name() == model)
        .ok_or_else(|| ConfigError::new("--init", item, "the model is `target` or `auxiliary`"))?;
    Ok((role, PathBuf::from(path)))
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ExperimentError {
    let path = path.display().to_string();
    move |source| ExperimentError::Io { path, source }
}

/// Runs every configured method for every seed: seed by seed, the methods in the
/// configuration's order. First starts the models of `options.init` from their files
/// (they stay set on `prepared`); stops at the first run that fails.
pub fn run_all(
    prepared: &mut Prepared,
    options: &ExperimentOptions,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Vec<RunOutcome>, ExperimentError> {
    for (role, path) in &options.init {
        prepared.init_from(*role, path)?;
    }
    let prepared = &*prepared;
    let config = &prepared.config;
    // With checkpoints, each run's trace goes to a file of its own in the checkpoint
    // folder (a resumed run cuts it to the checkpoint's length), joined at the end.
    let mut trace_file = match (&options.trace, &options.checkpoints) {
        (Some(path), None) => Some(fs::File::create(path).map_err(io_error(path))?),
        _ => None,
    };
    let runs: Vec<(u64, Method)> = config
        .seed_list()
        .into_iter()
        .flat_map(|s| config.methods.iter().map(move |&m| (s, m)))
        .collect();
    let mut outcomes = Vec::with_capacity(runs.len());
    for (index, &(seed, method)) in runs.iter().enumerate() {
        let id = RunId {
            index,
            runs: runs.len(),
            method,
            seed,
        };
        let mut trace = match (&mut trace_file, &options.trace) {
            (Some(file), Some(path)) => {
                write_run_header(file, method, seed).map_err(io_error(path))?;
                let handle = file.try_clone().map_err(io_error(path))?;
                Some(Box::new(std::io::BufWriter::new(handle)) as Box<dyn Write + Send>)
            }
            _ => None,
        };
        progress(Progress::Started(id));
        let checkpoints = match &options.checkpoints {
            Some(dir) => {
                let resume = dir.load(index, method, seed)?;
                if let Some(checkpoint) = &resume {
                    progress(Progress::Resumed(id, checkpoint.time()));
                }
                if options.trace.is_some() {
                    let cut = resume.as_ref().and_then(Checkpoint::trace_bytes);
                    trace = Some(continue_trace(&dir.trace_file(index), cut.unwrap_or(0))?);
                }
                Some(RunCheckpoints {
                    every: dir.every(),
                    resume,
                    save: dir.saver(index, method, seed),
                })
            }
            None => None,
        };
        let outcome = run_one(
            prepared,
            id,
            RunOptions {
                threads: options.threads,
                trace,
                checkpoints,
                offload: options.offload.clone(),
                ..RunOptions::default()
            },
            progress,
        )?;
        progress(Progress::Finished(id, &outcome));
        outcomes.push(outcome);
    }
    if let (Some(path), Some(dir)) = (&options.trace, &options.checkpoints) {
        let mut file = fs::File::create(path).map_err(io_error(path))?;
        for (index, &(seed, method)) in runs.iter().enumerate() {
            write_run_header(&mut file, method, seed).map_err(io_error(path))?;
            let part = dir.trace_file(index);
            let mut run = fs::File::open(&part).map_err(io_error(&part))?;
            std::io::copy(&mut run, &mut file).map_err(io_error(path))?;
        }
    }
    Ok(outcomes)
}

/// The line that opens a run's part of `trace.jsonl`.
fn write_run_header(out: &mut impl Write, method: Method, seed: u64) -> std::io::Result<()> {
    writeln!(
        out,
        "{{\"run\":{{\"method\":\"{method}\",\"seed\":{seed}}}}}"
    )
}

/// Opens a run's own trace file to continue it from its first `len` bytes (what its
/// checkpoint covers; 0 for a run starting afresh).
fn continue_trace(path: &Path, len: u64) -> Result<Box<dyn Write + Send>, ExperimentError> {
    let mut file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_error(path))?;
    if file.metadata().map_err(io_error(path))?.len() < len {
        return Err(ConfigError::new(
            "checkpoint",
            path.display(),
            format!("the trace is shorter than the {len} bytes its checkpoint covers"),
        )
        .into());
    }
    file.set_len(len).map_err(io_error(path))?;
    file.seek(std::io::SeekFrom::End(0))
        .map_err(io_error(path))?;
    Ok(Box::new(std::io::BufWriter::new(file)))
}

/// What a run's thread sends the calling thread.
enum Message {
    Evaluated(Evaluation),
    Done(Box<Result<RunOutcome, ExperimentError>>),
}

/// Runs one method with one seed on a thread of its own, so that `progress` (which need
/// not be `Send`) is called from this thread with each evaluation as it arrives.
fn run_one(
    prepared: &Prepared,
    id: RunId,
    options: RunOptions,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<RunOutcome, ExperimentError> {
    let (sender, receiver) = mpsc::channel();
    let to_caller = sender.clone();
    let observer: Observer = Box::new(move |e: &Evaluation| {
        // The receiver outlives the run; a failed send cannot happen.
        let _ = to_caller.send(Message::Evaluated(e.clone()));
    });
    std::thread::scope(|scope| {
        let run = scope.spawn(move || {
            let options = RunOptions {
                observer: Some(observer),
                ..options
            };
            let result = prepared.run(id.method, id.seed, options);
            let _ = sender.send(Message::Done(Box::new(result)));
        });
        for message in &receiver {
            match message {
                Message::Evaluated(e) => progress(Progress::Evaluated(id, &e)),
                Message::Done(result) => return *result,
            }
        }
        // Every sender is gone without a result: the run's thread panicked.
        match run.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => Err(ExperimentError::Incomplete {
                method: id.method.to_string(),
                seed: id.seed,
                reason: "the run ended without a result".into(),
            }),
        }
    })
}

/// Writes the files of an experiment into `dir` (which must exist): `metrics.csv`,
/// `stages.csv`, `updates.csv`, `summary.json` (see [`crate::report`]) and each run's final models as
/// `models/<method>_seed<seed>_<model>.safetensors` (see [`Prepared::save_models`]).
/// Returns the files written.
pub fn write_outputs(
    dir: &Path,
    prepared: &Prepared,
    outcomes: &[RunOutcome],
) -> Result<Vec<PathBuf>, ExperimentError> {
    let mut written = Vec::new();
    let models = dir.join("models");
    for outcome in outcomes {
        written.extend(prepared.save_models(outcome, &models)?);
    }
    let summary = Summary::new(&prepared.config, outcomes);
    let json = serde_json::to_string_pretty(&summary)
        .map_err(|e| io_error(&dir.join("summary.json"))(std::io::Error::other(e)))?;
    for (name, text) in [
        ("metrics.csv", metrics_csv(outcomes)),
        ("stages.csv", stages_csv(outcomes)),
        ("updates.csv", updates_csv(outcomes)),
        ("summary.json", json),
    ] {
        let path = dir.join(name);
        fs::write(&path, text).map_err(io_error(&path))?;
        written.push(path);
    }
    Ok(written)
}
