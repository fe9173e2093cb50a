//! An experiment's checkpoint folder: what `flotilla run --checkpoint-every N` writes and
//! `flotilla resume DIR` continues.
//!
//! The folder holds `experiment.json` (the [`Manifest`]: the resolved configuration and
//! how the experiment was run, so a resume needs nothing else), and for each run that has
//! started, `run-<index>-<method>-seed<seed>.ckpt`: its latest [`Checkpoint`] (after a
//! version, or at its end; see [`RunCheckpoints`](crate::run::RunCheckpoints)). With a
//! trace, each run's JSONL trace is kept beside it (`trace-<index>.jsonl`) and the
//! experiment's `trace.jsonl` is assembled from them at the end. Every file is written
//! to a temporary name, synced, and renamed over the old one, so a kill at any point leaves
//! either the old checkpoint or the new one, never half of one.

use crate::run::SaveCheckpoint;
use crate::{ConfigError, ExperimentConfig, ExperimentError, Method};
use flotilla_fl::ModelRole;
use flotilla_sim::Checkpoint;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The manifest's file name.
const MANIFEST: &str = "experiment.json";

/// The manifest format; another is refused.
const FORMAT: u32 = 1;

/// How an experiment was started: what a resume needs to continue it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The manifest format.
    pub format: u32,
    /// The working folder the experiment was started in (relative paths are relative to
    /// it).
    pub cwd: PathBuf,
    /// The configuration, resolved (overrides applied, paths as the run used them).
    pub config: ExperimentConfig,
    /// The output folder.
    pub out: PathBuf,
    /// Worker threads.
    pub threads: usize,
    /// Whether a trace is written.
    pub trace: bool,
    /// Models started from files (`--init`).
    pub init: Vec<(ModelRole, PathBuf)>,
    /// Versions between checkpoints.
    pub every: u32,
}

/// A checkpoint folder (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointDir {
    dir: PathBuf,
    every: u32,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ExperimentError {
    let path = path.display().to_string();
    move |source| ExperimentError::Io { path, source }
}

/// Writes `bytes` to `path` through a synced temporary file renamed over it.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ExperimentError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = fs::File::create(&tmp).map_err(io_error(&tmp))?;
    file.write_all(bytes).map_err(io_error(&tmp))?;
    file.sync_all().map_err(io_error(&tmp))?;
    fs::rename(&tmp, path).map_err(io_error(path))?;
    if let Some(parent) = path.parent()
        && let Ok(dir) = fs::File::open(parent)
    {
        // Makes the rename durable where the platform allows syncing a folder.
        let _ = dir.sync_all();
    }
    Ok(())
}

impl CheckpointDir {
    /// Creates the folder `dir` for a new experiment described by `manifest`. An existing
    /// `dir` is refused (it may hold another experiment's checkpoints, or anything else).
    pub fn create(dir: &Path, manifest: &Manifest) -> Result<Self, ExperimentError> {
        if manifest.every == 0 {
            return Err(ConfigError::new("--checkpoint-every", 0, "must be at least 1").into());
        }
        if fs::symlink_metadata(dir).is_ok() {
            let hint = if dir.join(MANIFEST).is_file() {
                format!(
                    "it holds an unfinished experiment: continue it with `flotilla resume {}`, \
                     or remove it",
                    dir.display()
                )
            } else {
                "it exists; checkpoints go to a new folder".to_string()
            };
            return Err(ConfigError::new("--checkpoint-dir", dir.display(), hint).into());
        }
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        let json = serde_json::to_vec_pretty(manifest)
            .map_err(|e| io_error(&dir.join(MANIFEST))(std::io::Error::other(e)))?;
        write_atomically(&dir.join(MANIFEST), &json)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            every: manifest.every,
        })
    }

    /// Opens the checkpoint folder `dir` of an unfinished experiment, with its manifest.
    pub fn open(dir: &Path) -> Result<(Self, Manifest), ExperimentError> {
        let path = dir.join(MANIFEST);
        let bad = |reason: String| ConfigError::new("DIR", path.display(), reason);
        let text = fs::read(&path).map_err(|e| {
            bad(format!(
                "cannot read the manifest of a checkpoint folder: {e} (is DIR a folder \
                 written by `flotilla run --checkpoint-every`?)"
            ))
        })?;
        let manifest: Manifest =
            serde_json::from_slice(&text).map_err(|e| bad(format!("not a manifest: {e}")))?;
        if manifest.format != FORMAT {
            return Err(bad(format!(
                "format {} (this flotilla reads format {FORMAT})",
                manifest.format
            ))
            .into());
        }
        if manifest.every == 0 {
            return Err(bad("`every` must be at least 1".into()).into());
        }
        manifest.config.validate()?;
        let every = manifest.every;
        Ok((
            Self {
                dir: dir.to_path_buf(),
                every,
            },
            manifest,
        ))
    }

    /// Versions between checkpoints.
    pub fn every(&self) -> u32 {
        self.every
    }

    /// The checkpoint file of run `index` (method, seed).
    fn run_file(&self, index: usize, method: Method, seed: u64) -> PathBuf {
        self.dir
            .join(format!("run-{index}-{method}-seed{seed}.ckpt"))
    }

    /// Where run `index` writes its JSONL trace while the experiment runs.
    pub(crate) fn trace_file(&self, index: usize) -> PathBuf {
        self.dir.join(format!("trace-{index}.jsonl"))
    }

    /// The latest checkpoint of run `index`, if it started.
    pub(crate) fn load(
        &self,
        index: usize,
        method: Method,
        seed: u64,
    ) -> Result<Option<Checkpoint>, ExperimentError> {
        let path = self.run_file(index, method, seed);
        match fs::read(&path) {
            Ok(bytes) => Checkpoint::from_bytes(&bytes)
                .map(Some)
                .map_err(|e| ConfigError::new("checkpoint", path.display(), e.to_string()).into()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&path)(e)),
        }
    }

    /// Stores checkpoints of run `index`, each replacing the last.
    pub(crate) fn saver(&self, index: usize, method: Method, seed: u64) -> SaveCheckpoint {
        let path = self.run_file(index, method, seed);
        Box::new(move |checkpoint: &Checkpoint| write_atomically(&path, &checkpoint.to_bytes()?))
    }

    /// Removes the folder once the experiment's outputs are in place. Only the files this
    /// module writes are removed; anything else found in it stays, with the folder.
    pub fn remove(self) -> Result<(), ExperimentError> {
        for entry in fs::read_dir(&self.dir).map_err(io_error(&self.dir))? {
            let path = entry.map_err(io_error(&self.dir))?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let ours = name == MANIFEST
                || (name.starts_with("run-")
                    && (name.ends_with(".ckpt") || name.ends_with(".ckpt.tmp")))
                || (name.starts_with("trace-") && name.ends_with(".jsonl"))
                || name.ends_with(".json.tmp");
            if ours {
                fs::remove_file(&path).map_err(io_error(&path))?;
            }
        }
        // Fails, harmlessly, if something else is left in it.
        let _ = fs::remove_dir(&self.dir);
        Ok(())
    }
}
