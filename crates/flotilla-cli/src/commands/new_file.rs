//! Writing a new output file safely: refused if it exists (unless forced), written to a
//! temporary file beside it, then put in place, so a reader never sees half a file.

use anyhow::Context;
use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};

/// An output file that may not be written (the user's to fix; nothing was written).
#[derive(Debug, thiserror::Error)]
#[error("{flag} {}: {reason}", path.display())]
pub(crate) struct OutRefused {
    /// The option that named the file, e.g. `--out`.
    flag: &'static str,
    path: PathBuf,
    reason: String,
}

/// A file to be written by a command: where, through which temporary file, and whether it
/// may replace an existing one.
#[derive(Debug)]
pub(crate) struct NewFile {
    /// The option that named the file, e.g. `--out`.
    flag: &'static str,
    /// The option that allows replacing it, e.g. `--force`.
    force_flag: &'static str,
    out: PathBuf,
    temp: PathBuf,
    force: bool,
}

impl NewFile {
    /// Checks that `out` (named by option `flag`) may be written: absent, or a file and
    /// `force` (given by option `force_flag`).
    pub(crate) fn claim(
        flag: &'static str,
        force_flag: &'static str,
        out: &Path,
        force: bool,
    ) -> anyhow::Result<Self> {
        let refuse = |reason: String| OutRefused {
            flag,
            path: out.to_path_buf(),
            reason,
        };
        let Some(name) = out.file_name() else {
            return Err(refuse("names no file".into()).into());
        };
        match fs::symlink_metadata(out) {
            Ok(meta) if meta.is_dir() => {
                return Err(refuse("is a folder; give a file name".into()).into());
            }
            Ok(_) if !force => {
                return Err(refuse(format!("exists; pass {force_flag} to replace it")).into());
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("{flag} {}", out.display())),
        }
        let temp = format!(".{}.partial-{}", name.to_string_lossy(), std::process::id());
        Ok(Self {
            flag,
            force_flag,
            out: out.to_path_buf(),
            temp: out.with_file_name(temp),
            force,
        })
    }

    /// Writes the temporary file with `write`, then puts it in place: replacing an existing
    /// file only when forced, never otherwise, even if it appeared meanwhile. The temporary
    /// file is removed on failure.
    pub(crate) fn write(
        &self,
        write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
    ) -> anyhow::Result<()> {
        let (out, temp, flag) = (&self.out, &self.temp, self.flag);
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(temp)
            .with_context(|| {
                format!("{flag} {}: cannot create {}", out.display(), temp.display())
            })?;
        let written = (|| {
            let mut w = BufWriter::new(file);
            write(&mut w)?;
            w.into_inner()
                .map_err(io::IntoInnerError::into_error)?
                .sync_all()
        })();
        let placed = written.and_then(|()| {
            if self.force {
                return fs::rename(temp, out);
            }
            // A hard link fails if `out` exists, atomically.
            fs::hard_link(temp, out)?;
            fs::remove_file(temp)
        });
        placed.map_err(|e| {
            let _ = fs::remove_file(temp);
            if e.kind() == io::ErrorKind::AlreadyExists {
                anyhow::Error::from(OutRefused {
                    flag,
                    path: out.to_path_buf(),
                    reason: format!(
                        "appeared while writing; pass {} to replace it",
                        self.force_flag
                    ),
                })
            } else {
                anyhow::Error::from(e).context(format!("{flag} {}: cannot write", out.display()))
            }
        })
    }
}
