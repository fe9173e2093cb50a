//! The output folder of a run, claimed before the run and replaced only when it succeeds.
//!
//! Flotilla never deletes what it did not write. [`OutputDir::claim`] refuses, before any
//! work starts:
//! - a path that names no folder of its own (`.`, `..`, `/`), the working folder or one of
//!   its ancestors, a symbolic link, or an existing file;
//! - an existing folder that is neither empty nor marked as an earlier Flotilla output (the
//!   [`MARKER`] file every output folder holds);
//! - a folder another run is writing to (an OS lock on a sibling `.NAME.lock` file, released
//!   by the OS even when a run is killed).
//!
//! Results are written into a staging folder `.NAME.partial-PID` beside the destination
//! (creating it proves the destination's parent is writable); [`OutputDir::commit`] checks
//! the destination again and swaps the staging folder in by renames. A run that fails or
//! is interrupted leaves at most its staging folder, holding the marker; the next run to
//! the same destination removes such leftovers once it holds the lock, so it can prove
//! they are Flotilla's and nobody else's in progress.

use std::fs::{self, File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

/// The file marking a folder as Flotilla's output (the only folders it replaces).
pub const MARKER: &str = ".flotilla-output";

const MARKER_TEXT: &str = "This folder was written by `flotilla run`; a later run with the same \
--out replaces it. Flotilla refuses to replace a folder without this file.\n";

/// Why an output folder cannot be used (all are the user's to fix; nothing was written).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    /// The destination is not a folder Flotilla may replace.
    #[error("--out {path}: {reason}")]
    Refused {
        /// The destination as given.
        path: PathBuf,
        /// Why, and what would be accepted.
        reason: String,
    },
    /// Another run holds the destination's lock.
    #[error("--out {path}: another flotilla run is writing to this folder (lock {lock})")]
    Busy {
        /// The destination.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// A file-system operation on the destination or its staging folder failed.
    #[error("--out {path}: {action}")]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// What was being done.
        action: String,
        /// The cause.
        source: io::Error,
    },
}

fn io_error(path: &Path, action: &str) -> impl FnOnce(io::Error) -> OutputError {
    let (path, action) = (path.to_path_buf(), action.to_string());
    move |source| OutputError::Io {
        path,
        action,
        source,
    }
}

/// What an existing destination holds.
enum Contents {
    Absent,
    Empty,
    Flotilla,
    Foreign(String),
}

fn contents(dest: &Path) -> Result<Contents, OutputError> {
    let meta = match fs::symlink_metadata(dest) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Contents::Absent),
        Err(e) => return Err(io_error(dest, "reading its metadata")(e)),
    };
    if meta.file_type().is_symlink() {
        return Ok(Contents::Foreign(
            "is a symbolic link; give the folder it points to".into(),
        ));
    }
    if !meta.is_dir() {
        return Ok(Contents::Foreign("is a file, not a folder".into()));
    }
    if dest.join(MARKER).is_file() {
        return Ok(Contents::Flotilla);
    }
    let mut entries = fs::read_dir(dest).map_err(io_error(dest, "listing it"))?;
    match entries.next() {
        None => Ok(Contents::Empty),
        Some(entry) => {
            let name = entry
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .unwrap_or_default();
            Ok(Contents::Foreign(format!(
                "holds files Flotilla did not write (e.g. `{name}`; no {MARKER} marker); \
                 choose another folder or empty this one"
            )))
        }
    }
}

/// The exclusive lock on one destination: a sibling `.NAME.lock` file locked by the OS.
#[derive(Debug)]
struct Lock {
    path: PathBuf,
    file: File,
}

impl Lock {
    fn acquire(path: PathBuf, dest: &Path) -> Result<Self, OutputError> {
        loop {
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(io_error(&path, "creating the lock file"))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    return Err(OutputError::Busy {
                        path: dest.to_path_buf(),
                        lock: path,
                    });
                }
                Err(TryLockError::Error(e)) => return Err(io_error(&path, "locking")(e)),
            }
            // A run that released the lock removes the file: if ours is no longer the
            // file at `path`, someone else may hold the new one, so try again.
            if same_file(&file, &path) {
                return Ok(Self { path, file });
            }
        }
    }
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, path: &Path) -> bool {
    path.exists()
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Remove while still holding the lock, then let the OS release it.
        #[cfg(unix)]
        let _ = fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

/// A claimed output folder: results go to [`OutputDir::staging`], and
/// [`OutputDir::commit`] moves them to the destination. Dropped without a commit, it
/// removes its staging folder.
#[derive(Debug)]
pub struct OutputDir {
    dest: PathBuf,
    staging: PathBuf,
    parent: PathBuf,
    name: String,
    keep_staging: bool,
    _lock: Lock,
}

impl OutputDir {
    /// Claims `dest` for a run of this process (see the module documentation for what is
    /// refused). Creates missing parent folders and the staging folder.
    pub fn claim(dest: &Path) -> Result<Self, OutputError> {
        let refuse = |reason: &str| OutputError::Refused {
            path: dest.to_path_buf(),
            reason: reason.to_string(),
        };
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| {
                refuse("names no folder of its own (the working folder or an ancestor)")
            })?;
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).map_err(io_error(&parent, "creating the parent folder"))?;
        let parent = fs::canonicalize(&parent).map_err(io_error(&parent, "resolving"))?;
        let resolved = parent.join(&name);
        let cwd = std::env::current_dir()
            .and_then(fs::canonicalize)
            .map_err(io_error(Path::new("."), "resolving the working folder"))?;
        if cwd.starts_with(&resolved) {
            return Err(refuse("is the working folder or one of its ancestors"));
        }
        let lock = Lock::acquire(parent.join(format!(".{name}.lock")), dest)?;
        if let Contents::Foreign(reason) = contents(&resolved)? {
            return Err(refuse(&reason));
        }
        let mut output = Self {
            dest: dest.to_path_buf(),
            staging: parent.join(format!(".{name}.partial-{}", std::process::id())),
            parent,
            name,
            // Until it is created, the staging path is nobody's to remove.
            keep_staging: true,
            _lock: lock,
        };
        output.remove_leftovers();
        fs::create_dir(&output.staging)
            .map_err(io_error(&output.staging, "creating the staging folder"))?;
        output.keep_staging = false;
        fs::write(output.staging.join(MARKER), MARKER_TEXT)
            .map_err(io_error(&output.staging, "writing the marker"))?;
        Ok(output)
    }

    /// Removes staging and replaced folders of earlier runs to this destination that were
    /// interrupted (one may even carry this process's id, from a reused id): they hold the
    /// marker, and nobody else can be writing them while this run holds the lock.
    fn remove_leftovers(&self) {
        let (partial, old) = (
            format!(".{}.partial-", self.name),
            format!(".{}.old-", self.name),
        );
        let Ok(entries) = fs::read_dir(&self.parent) else {
            return;
        };
        for entry in entries.flatten() {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let ours = file_name.starts_with(&partial) || file_name.starts_with(&old);
            let path = entry.path();
            if ours && path.join(MARKER).is_file() {
                let _ = fs::remove_dir_all(&path);
            }
        }
    }

    /// Where the run writes its files until [`OutputDir::commit`].
    pub fn staging(&self) -> &Path {
        &self.staging
    }

    /// The destination as given.
    pub fn destination(&self) -> &Path {
        &self.dest
    }

    /// Moves the staging folder to the destination, replacing an earlier Flotilla output
    /// there. If the destination has meanwhile become something Flotilla may not replace,
    /// nothing is replaced and the results stay in the staging folder, whose path the
    /// error names.
    pub fn commit(mut self) -> Result<PathBuf, OutputError> {
        let resolved = self.parent.join(&self.name);
        let keep = |reason: String, staging: &Path| OutputError::Refused {
            path: self.dest.clone(),
            reason: format!("{reason}; the results were kept in {}", staging.display()),
        };
        match contents(&resolved)? {
            Contents::Foreign(reason) => {
                self.keep_staging = true;
                return Err(keep(reason, &self.staging));
            }
            Contents::Absent => {}
            Contents::Empty => {
                fs::remove_dir(&resolved).map_err(io_error(&resolved, "replacing it"))?;
            }
            Contents::Flotilla => {
                let old = self
                    .parent
                    .join(format!(".{}.old-{}", self.name, std::process::id()));
                fs::rename(&resolved, &old).map_err(io_error(&resolved, "replacing it"))?;
                // Best effort: a leftover is removed by the next run to this destination.
                let _ = fs::remove_dir_all(&old);
            }
        }
        if let Err(e) = fs::rename(&self.staging, &resolved) {
            self.keep_staging = true;
            return Err(keep(
                format!("moving the results failed: {e}"),
                &self.staging,
            ));
        }
        self.keep_staging = true;
        Ok(resolved)
    }
}

impl Drop for OutputDir {
    fn drop(&mut self) {
        if !self.keep_staging {
            let _ = fs::remove_dir_all(&self.staging);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    /// A fresh, empty folder for one test, removed with everything in it when the guard drops.
    fn scratch(name: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("flotilla-out-{name}-"))
            .tempdir()
            .unwrap()
    }

    #[test]
    fn a_new_folder_is_created_on_commit_and_replaced_by_the_next_run() {
        let scratch_dir = scratch("new");
        let dir = scratch_dir.path();
        let dest = dir.join("results");
        let out = OutputDir::claim(&dest).unwrap();
        assert!(!dest.exists(), "nothing appears before the commit");
        fs::write(out.staging().join("metrics.csv"), "a").unwrap();
        out.commit().unwrap();
        assert_eq!(fs::read_to_string(dest.join("metrics.csv")).unwrap(), "a");
        assert!(dest.join(MARKER).is_file());

        let again = OutputDir::claim(&dest).unwrap();
        fs::write(again.staging().join("metrics.csv"), "b").unwrap();
        again.commit().unwrap();
        assert_eq!(fs::read_to_string(dest.join("metrics.csv")).unwrap(), "b");
        let left: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left,
            vec![std::ffi::OsString::from("results")],
            "no lock, staging or old folder left"
        );
    }

    #[test]
    fn a_folder_with_other_files_is_refused_and_untouched() {
        let scratch_dir = scratch("foreign");
        let dir = scratch_dir.path();
        let dest = dir.join("thesis");
        fs::create_dir_all(&dest).unwrap();
        fs::write(dest.join("chapter1.tex"), "precious").unwrap();
        let err = OutputDir::claim(&dest).unwrap_err();
        assert!(err.to_string().contains("chapter1.tex"), "{err}");
        assert_eq!(
            fs::read_to_string(dest.join("chapter1.tex")).unwrap(),
            "precious"
        );
        assert_eq!(
            fs::read_dir(dir).unwrap().count(),
            1,
            "no staging folder left"
        );
    }

    #[test]
    fn a_file_the_root_and_dot_paths_are_refused() {
        let scratch_dir = scratch("file");
        let dir = scratch_dir.path();
        let file = dir.join("notes.txt");
        fs::write(&file, "keep").unwrap();
        assert!(
            OutputDir::claim(&file)
                .unwrap_err()
                .to_string()
                .contains("is a file")
        );
        assert_eq!(fs::read_to_string(&file).unwrap(), "keep");
        for path in [".", "..", "/", "./", "../.."] {
            let err = OutputDir::claim(Path::new(path)).unwrap_err();
            assert!(matches!(err, OutputError::Refused { .. }), "{path}: {err}");
        }
    }

    #[test]
    fn the_working_folder_is_refused_by_any_name() {
        let cwd = std::env::current_dir().unwrap();
        let by_name = cwd.parent().unwrap().join(cwd.file_name().unwrap());
        let err = OutputDir::claim(&by_name).unwrap_err();
        assert!(err.to_string().contains("working folder"), "{err}");
        let err = OutputDir::claim(cwd.parent().unwrap()).unwrap_err();
        assert!(err.to_string().contains("working folder"), "{err}");
    }

    #[test]
    fn a_second_claim_on_the_same_folder_is_busy_until_the_first_ends() {
        let scratch_dir = scratch("busy");
        let dir = scratch_dir.path();
        let dest = dir.join("out");
        let first = OutputDir::claim(&dest).unwrap();
        assert!(matches!(
            OutputDir::claim(&dest),
            Err(OutputError::Busy { .. })
        ));
        drop(first);
        assert!(!dest.exists(), "an uncommitted run leaves nothing");
        OutputDir::claim(&dest).unwrap().commit().unwrap();
        assert!(dest.join(MARKER).is_file());
    }

    #[test]
    fn leftovers_of_an_interrupted_run_are_removed_but_not_foreign_lookalikes() {
        let scratch_dir = scratch("stale");
        let dir = scratch_dir.path();
        let dest = dir.join("out");
        let stale = dir.join(".out.partial-999999999");
        fs::create_dir_all(&stale).unwrap();
        fs::write(stale.join(MARKER), MARKER_TEXT).unwrap();
        let lookalike = dir.join(".out.partial-123");
        fs::create_dir_all(&lookalike).unwrap();
        fs::write(lookalike.join("data"), "not ours").unwrap();
        let out = OutputDir::claim(&dest).unwrap();
        assert!(!stale.exists());
        assert!(lookalike.join("data").is_file());
        out.commit().unwrap();
    }

    #[test]
    fn a_destination_filled_during_the_run_keeps_the_results_aside() {
        let scratch_dir = scratch("late");
        let dir = scratch_dir.path();
        let dest = dir.join("out");
        let out = OutputDir::claim(&dest).unwrap();
        let staging = out.staging().to_path_buf();
        fs::write(staging.join("metrics.csv"), "x").unwrap();
        fs::create_dir_all(&dest).unwrap();
        fs::write(dest.join("mine.txt"), "user").unwrap();
        let err = out.commit().unwrap_err();
        assert!(
            err.to_string().contains(&staging.display().to_string()),
            "{err}"
        );
        assert_eq!(fs::read_to_string(dest.join("mine.txt")).unwrap(), "user");
        assert!(staging.join("metrics.csv").is_file());
    }
}
