//! `flotilla fleet`: the fleet a configuration describes, printed before anything runs.

use flotilla_experiment::{ConfigSource, ExperimentConfig, Prepared};

/// Arguments of `flotilla fleet`.
#[derive(Debug, clap::Args)]
pub(crate) struct FleetArgs {
    /// A config file, or a built-in config (default quickstart).
    config: Option<String>,
    /// Override a config key, e.g. `--set fleet.clients=200` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

/// Loads and checks the configuration (and its data, which sizes the jobs) and prints its
/// fleet.
pub(crate) fn run(args: FleetArgs) -> anyhow::Result<()> {
    let source = ConfigSource::resolve(args.config.as_deref().unwrap_or("quickstart"))?;
    let config = ExperimentConfig::load(&source, &args.set)?;
    let prepared = Prepared::new(config)?;
    print!("{}", prepared.fleet_report()?);
    Ok(())
}
