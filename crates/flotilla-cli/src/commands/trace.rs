//! `flotilla trace`: write a synthetic device trace file.

use anyhow::Context;
use clap::Args;
use flotilla_sim::SyntheticTrace;
use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};

/// Arguments of `flotilla trace`; the settings' defaults are [`SyntheticTrace`]'s. Numbers
/// may be negative on the command line, to be refused with the setting named.
#[derive(Debug, Args)]
pub(crate) struct TraceArgs {
    /// How many devices (ids 0..N, one line each).
    #[arg(long, value_name = "N")]
    devices: u32,
    /// Master seed: device i draws from its own stream of it.
    #[arg(long, default_value_t = SyntheticTrace::default().seed)]
    seed: u64,
    /// Median training throughput [FLOP/s] (speeds are log-normal).
    #[arg(long, value_name = "FLOPS", allow_negative_numbers = true, default_value_t = SyntheticTrace::default().speed_median_flops)]
    speed_median: f64,
    /// σ of the log-normal speeds (1 spreads the middle 95 % over a factor of 50).
    #[arg(long, value_name = "SIGMA", allow_negative_numbers = true, default_value_t = SyntheticTrace::default().speed_sigma)]
    speed_sigma: f64,
    /// Length of a day [s].
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true, default_value_t = SyntheticTrace::default().period_s)]
    period_s: f64,
    /// Mean fraction of a day a device is online.
    #[arg(long, value_name = "F", allow_negative_numbers = true, default_value_t = SyntheticTrace::default().online_fraction)]
    online_fraction: f64,
    /// Standard deviation of that fraction across devices.
    #[arg(long, value_name = "S", allow_negative_numbers = true, default_value_t = SyntheticTrace::default().online_spread)]
    online_spread: f64,
    /// Online sessions a device's time in a day is split into.
    #[arg(long, value_name = "N", default_value_t = SyntheticTrace::default().sessions_per_period)]
    sessions_per_period: u32,
    /// End of the generated online intervals [s].
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true, default_value_t = SyntheticTrace::default().horizon_s)]
    horizon_s: f64,
    /// The JSON Lines file to write.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    force: bool,
}

/// `--out` names a file that may not be written (the user's to fix; nothing was written).
#[derive(Debug, thiserror::Error)]
#[error("--out {}: {reason}", path.display())]
pub(crate) struct OutRefused {
    path: PathBuf,
    reason: String,
}

pub(crate) fn run(args: TraceArgs) -> anyhow::Result<()> {
    let settings = SyntheticTrace {
        devices: args.devices,
        seed: args.seed,
        speed_median_flops: args.speed_median,
        speed_sigma: args.speed_sigma,
        period_s: args.period_s,
        online_fraction: args.online_fraction,
        online_spread: args.online_spread,
        sessions_per_period: args.sessions_per_period,
        horizon_s: args.horizon_s,
    };
    settings.validate()?;
    let temp = claim(&args.out, args.force)?;
    let trace = settings.generate()?;
    let intervals: usize = trace
        .devices
        .iter()
        .filter_map(|d| d.on.as_ref())
        .map(Vec::len)
        .sum();
    write_new(&temp, &args.out, args.force, |w| trace.write_jsonl(w))?;
    println!(
        "wrote {} devices, {intervals} online intervals over {} s, to {}",
        trace.devices.len(),
        settings.horizon_s,
        args.out.display()
    );
    Ok(())
}

/// Checks that `out` may be written (absent, or a file and `force`) and returns the
/// temporary file beside it that the output is written to first.
fn claim(out: &Path, force: bool) -> anyhow::Result<PathBuf> {
    let refuse = |reason: &str| OutRefused {
        path: out.to_path_buf(),
        reason: reason.into(),
    };
    let Some(name) = out.file_name() else {
        return Err(refuse("names no file").into());
    };
    match fs::symlink_metadata(out) {
        Ok(meta) if meta.is_dir() => return Err(refuse("is a folder; give a file name").into()),
        Ok(_) if !force => {
            return Err(refuse("exists; pass --force to replace it").into());
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("--out {}", out.display())),
    }
    let temp = format!(".{}.partial-{}", name.to_string_lossy(), std::process::id());
    Ok(out.with_file_name(temp))
}

/// Writes `temp` with `write`, then puts it at `out`: replacing `out` only with `force`,
/// never otherwise, even if it appeared meanwhile. `temp` is removed on failure.
fn write_new(
    temp: &Path,
    out: &Path,
    force: bool,
    write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> anyhow::Result<()> {
    let file = File::options()
        .write(true)
        .create_new(true)
        .open(temp)
        .with_context(|| format!("--out {}: cannot create {}", out.display(), temp.display()))?;
    let written = (|| {
        let mut w = BufWriter::new(file);
        write(&mut w)?;
        w.into_inner()
            .map_err(io::IntoInnerError::into_error)?
            .sync_all()
    })();
    let placed = written.and_then(|()| {
        if force {
            return fs::rename(temp, out);
        }
        // A hard link fails if `out` exists, atomically.
        fs::hard_link(temp, out)?;
        fs::remove_file(temp)
    });
    placed.map_err(|e| {
        let _ = fs::remove_file(temp);
        if e.kind() == io::ErrorKind::AlreadyExists {
            let reason = "appeared while writing; pass --force to replace it".to_string();
            anyhow::Error::from(OutRefused {
                path: out.to_path_buf(),
                reason,
            })
        } else {
            anyhow::Error::from(e).context(format!("--out {}: cannot write", out.display()))
        }
    })
}
