//! Example: a whole configured experiment from your own binary, in a few lines — what
//! `flotilla run` does, without its progress bar and plot.
//!
//! This example demonstrates: loading a built-in config with overrides, running every
//! method for every seed with `experiment::run_all` (progress comes back to this thread),
//! and writing `metrics.csv`, `stages.csv`, `summary.json` and the models into an output
//! folder that is replaced only once everything succeeded.
//!
//! Run: `cargo run --release --example own_experiment` (results in `out/own_experiment`)

use flotilla_experiment::experiment::{ExperimentOptions, Progress, run_all, write_outputs};
use flotilla_experiment::report::Summary;
use flotilla_experiment::{ConfigSource, ExperimentConfig, OutputDir, Prepared};
use std::path::Path;

fn main() -> anyhow::Result<()> {
    let source = ConfigSource::resolve("quickstart")?;
    let overrides = [
        "rounds=4",
        "seeds=2",
        r#"methods=["ondevice_kd", "weak_only"]"#,
    ];
    let config = ExperimentConfig::load(&source, &overrides.map(String::from))?;
    let output = OutputDir::claim(Path::new("out/own_experiment"))?;
    let mut prepared = Prepared::new(config)?;

    let outcomes = run_all(&mut prepared, &ExperimentOptions::default(), &mut |p| {
        if let Progress::Finished(id, outcome) = p {
            println!(
                "run {}/{}: {} seed {} done at {:.0} s virtual",
                id.index + 1,
                id.runs,
                id.method,
                id.seed,
                outcome.virtual_time_s
            );
        }
    })?;
    write_outputs(output.staging(), &prepared, &outcomes)?;
    let dir = output.commit()?;

    let summary = Summary::new(&prepared.config, &outcomes);
    println!("{}\nresults in {}", summary.table(), dir.display());
    anyhow::ensure!(summary.all_results(), "every model should be a result");
    anyhow::ensure!(
        dir.join("metrics.csv").is_file() && dir.join("summary.json").is_file(),
        "the outputs are written"
    );
    Ok(())
}
