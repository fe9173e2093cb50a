//! `flotilla models`: what a model spec builds.

use clap::Args;
use flotilla_data::SyntheticConfig;
use flotilla_experiment::{ConfigError, Named};
use flotilla_nn::{MAX_TRAINING_MEMORY_BYTES, ModelSpec};

/// Arguments of `flotilla models`.
#[derive(Debug, Args)]
pub(crate) struct ModelsArgs {
    /// Model specs, e.g. `mlp:784-256-128-10`, `resnet20:0.25`, `cnn:0.5`. Default: the
    /// dataset's target and auxiliary models.
    specs: Vec<String>,
    /// Dataset whose input shape and classes the models are built for.
    #[arg(long, default_value = "synthetic")]
    data: String,
}

pub(crate) fn run(args: ModelsArgs) -> anyhow::Result<()> {
    let named: Named = args.data.parse()?;
    let (Some((input, classes)), Some(defaults)) = (
        named.input(&SyntheticConfig::default()),
        named.default_models(),
    ) else {
        anyhow::bail!(ConfigError::new(
            "--data",
            named.name(),
            "the sample shape and classes are in the dataset's file; `flotilla train --data \
             npz --data-path FILE --model SPEC` builds models for it"
        ));
    };
    let specs: Vec<String> = if args.specs.is_empty() {
        defaults.iter().map(|s| s.to_string()).collect()
    } else {
        args.specs
    };
    for text in specs {
        let spec: ModelSpec = text.parse()?;
        // Counts that overflow are an error naming the spec; nothing is allocated.
        let net = spec.build(input, classes)?;
        println!("{spec} on {} ({input} → {classes} classes)", args.data);
        println!(
            "{:<12} {:<46} {:>10} {:>10} {:>14}",
            "layer", "computes", "output", "params", "FLOPs/sample"
        );
        for row in net.summary() {
            println!(
                "{:<12} {:<46} {:>10} {:>10} {:>14}",
                row.name,
                row.description,
                row.output.to_string(),
                row.params,
                row.flops
            );
        }
        println!(
            "{:<12} {:<46} {:>10} {:>10} {:>14}",
            "total",
            "",
            "",
            net.param_len(),
            net.flops_per_sample()
        );
        let memory = net.training_memory_bytes(32)?;
        let over = if memory > MAX_TRAINING_MEMORY_BYTES {
            " — over the 16 GiB limit: `run` and `train` refuse it"
        } else {
            ""
        };
        println!(
            "training memory at batch 32: {:.1} MB (weights, gradients, momentum, \
             activations){over}\n",
            memory as f64 / 1e6
        );
    }
    Ok(())
}
