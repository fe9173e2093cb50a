//! The `flotilla` command.

mod commands;
mod plot;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// mimalloc rather than the system allocator: a large fleet's many small, short-lived
/// allocations (messages, link reservations) fragment glibc's heap (measured on W3: 2.0 GB
/// of live heap at the peak, 2.7-3.0 GB resident). Built without transparent huge pages
/// (`no_thp`): mimalloc's purged and reused pages otherwise fault back in as 2 MiB pages the
/// kernel zeroes whole (a fifth of the large-fleet bench's time went to zeroing them).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Flotilla: simulate heterogeneous federated learning, deterministically.
#[derive(Debug, Parser)]
#[command(name = "flotilla", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train models centrally on a dataset and report test accuracy per epoch.
    Train(commands::train::TrainArgs),
    /// Run a federated experiment: every configured method for every seed, as an actor
    /// simulation; writes metrics.csv, stages.csv, summary.json and accuracy.png.
    Run(commands::run::RunArgs),
    /// Continue an experiment started with `flotilla run --checkpoint-every N` from its
    /// checkpoint folder, after a crash or a kill: the outputs are those of the
    /// uninterrupted run, bit for bit.
    Resume(commands::run::ResumeArgs),
    /// Time the standard workloads (P1, W1-W3) and print samples per second, the training
    /// arithmetic's GFLOP/s against this machine's measured FMA peak, the share of time
    /// outside it and peak memory.
    Bench(commands::bench::BenchArgs),
    /// List a model spec's layers, parameter count and forward FLOPs per sample.
    Models(commands::models::ModelsArgs),
    /// Print the fleet a config describes (groups, strong clients, speeds, availability,
    /// links, expected job times) without running anything.
    Fleet(commands::fleet::FleetArgs),
    /// Write a synthetic device trace: log-normal speeds and diurnal online sessions, one
    /// device per line (JSON Lines), for a fleet group's `trace`.
    Trace(commands::trace::TraceArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => commands::train::run(args).map(|()| true),
        Command::Models(args) => commands::models::run(args).map(|()| true),
        Command::Fleet(args) => commands::fleet::run(args).map(|()| true),
        Command::Trace(args) => commands::trace::run(args).map(|()| true),
        Command::Run(args) => commands::run::run(args),
        Command::Resume(args) => commands::run::resume(args),
        Command::Bench(args) => commands::bench::run(args).map(|()| true),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(commands::run::EXIT_NOT_ALL_RESULTS),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(commands::exit_code(&e))
        }
    }
}
