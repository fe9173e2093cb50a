//! `flotilla trace`: write a synthetic device trace file.

use super::new_file::NewFile;
use clap::Args;
use flotilla_sim::SyntheticTrace;
use std::path::PathBuf;

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
    let target = NewFile::claim("--out", "--force", &args.out, args.force)?;
    let trace = settings.generate()?;
    let intervals: usize = trace
        .devices
        .iter()
        .filter_map(|d| d.on.as_ref())
        .map(Vec::len)
        .sum();
    target.write(|w| trace.write_jsonl(w))?;
    println!(
        "wrote {} devices, {intervals} online intervals over {} s, to {}",
        trace.devices.len(),
        settings.horizon_s,
        args.out.display()
    );
    Ok(())
}
