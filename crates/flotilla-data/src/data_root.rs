//! Locating the shared folder of real datasets.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// Environment variable that overrides the data folder.
pub const DATA_ENV: &str = "FLOTILLA_DATA";

/// Default data folder, relative to the current directory.
pub const DEFAULT_RELATIVE: &str = "../shared/data";

/// The shared data folder: `$FLOTILLA_DATA` if set, else `../shared/data` relative to the
/// current directory if it exists.
///
/// An error explains what was tried when neither gives an existing directory.
pub fn data_root() -> Result<PathBuf> {
    let cwd = std::env::current_dir().map_err(|e| DataError::io(".", e))?;
    resolve_data_root(std::env::var_os(DATA_ENV), &cwd)
}

/// [`data_root`] with the environment value and current directory passed in.
pub fn resolve_data_root(env_value: Option<OsString>, cwd: &Path) -> Result<PathBuf> {
    let (path, reason) = match env_value {
        Some(value) => (
            PathBuf::from(value),
            format!("{DATA_ENV} is set to this path but it is not a directory"),
        ),
        None => (
            cwd.join(DEFAULT_RELATIVE),
            format!(
                "no data folder: set {DATA_ENV} to the folder holding mnist/, cifar10/, femnist/"
            ),
        ),
    };
    if path.is_dir() {
        Ok(path)
    } else {
        Err(DataError::NotFound { path, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_value_wins_and_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let got = resolve_data_root(Some(dir.path().into()), Path::new("/nonexistent")).unwrap();
        assert_eq!(got, dir.path());
        let missing = dir.path().join("nope");
        let err = resolve_data_root(Some(missing.into()), dir.path()).unwrap_err();
        assert!(err.to_string().contains("FLOTILLA_DATA is set"), "{err}");
    }

    #[test]
    fn falls_back_to_relative_default() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path().join("main");
        std::fs::create_dir_all(dir.path().join("shared/data")).unwrap();
        std::fs::create_dir(&cwd).unwrap();
        assert!(resolve_data_root(None, &cwd).unwrap().is_dir());
        // Inside the temporary folder, so that whatever lies beside it cannot answer.
        let elsewhere = dir.path().join("elsewhere/main");
        std::fs::create_dir_all(&elsewhere).unwrap();
        let err = resolve_data_root(None, &elsewhere).unwrap_err();
        assert!(err.to_string().contains("set FLOTILLA_DATA"), "{err}");
    }
}
