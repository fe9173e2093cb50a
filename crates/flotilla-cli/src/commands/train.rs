//! `flotilla train`: centralised training, the check that the numerics are right.

use anyhow::Context;
use clap::Args;
use flotilla_data::{SyntheticConfig, shuffled_batches};
use flotilla_experiment::{ConfigError, Loaded, Named};
use flotilla_nn::{LrSchedule, ModelSpec, SgdConfig, save_safetensors};
use flotilla_train::{BatchLoader, Trainer, evaluate, input_shape};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `flotilla train`.
#[derive(Debug, Args)]
pub(crate) struct TrainArgs {
    /// Dataset: synthetic (built in), mnist, cifar10, femnist or npz (your own arrays; needs
    /// --data-path and --model).
    #[arg(long, default_value = "synthetic")]
    data: String,
    /// Folder of the dataset's files; default `<data root>/<name>`, where the data root is
    /// $FLOTILLA_DATA or ../shared/data. For npz: the .npz file.
    #[arg(long)]
    data_path: Option<PathBuf>,
    /// Model spec; repeat to train several. Default: the dataset's target and auxiliary.
    #[arg(long = "model")]
    models: Vec<String>,
    /// Passes over the training set.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Mini-batch size.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Learning rate before decay. Default: 0.05 for synthetic, 0.02 for the image
    /// datasets.
    #[arg(long)]
    lr: Option<f32>,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    momentum: f32,
    /// Weight decay on kernels.
    #[arg(long, default_value_t = 5e-4)]
    weight_decay: f32,
    /// Epochs (counted from 0) at which the learning rate is divided by 10. Default: at two
    /// thirds of the epochs when there are at least 3.
    #[arg(long, value_delimiter = ',')]
    milestones: Option<Vec<usize>>,
    /// Pad-4 crop and horizontal-flip augmentation (CIFAR-10 only).
    #[arg(long)]
    augment: bool,
    /// Master seed: initialisation, shuffling and augmentation streams derive from it.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Write the last model's weights to this safetensors file.
    #[arg(long)]
    save: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// Independent RNG streams of one training run.
fn stream(seed: u64, purpose: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(purpose);
    rng
}

pub(crate) fn run(args: TrainArgs) -> anyhow::Result<()> {
    let named: Named = args.data.parse()?;
    let specs: Vec<ModelSpec> = if args.models.is_empty() {
        named
            .default_models()
            .ok_or_else(|| {
                ConfigError::new(
                    "--model",
                    "(none)",
                    format!(
                        "the {} dataset has no default models (its shapes are in its file); \
                         name them, e.g. --model mlp:784-256-10",
                        named.name()
                    ),
                )
            })?
            .iter()
            .map(|s| s.parse())
            .collect::<Result<_, _>>()?
    } else {
        args.models
            .iter()
            .map(|s| s.parse())
            .collect::<Result<_, _>>()?
    };
    let lr = args.lr.unwrap_or(named.default_lr());
    let milestones = match &args.milestones {
        Some(m) => m.clone(),
        None if args.epochs >= 3 => vec![2 * args.epochs / 3],
        None => Vec::new(),
    };
    let sgd = SgdConfig {
        momentum: args.momentum,
        weight_decay: args.weight_decay,
        nesterov: false,
        clip_norm: None,
    };
    sgd.validate()?;
    let schedule = LrSchedule::Step {
        base: lr,
        milestones,
        gamma: 0.1,
    };
    schedule.validate()?;
    if args.batch == 0 || args.epochs == 0 {
        anyhow::bail!("--batch and --epochs must be at least 1");
    }
    // Refuse, before the data or any weights are allocated, a model whose count overflows
    // or whose training memory at `--batch` is over the cap (an NnError: exit code 2).
    // (An npz file holds the shapes, so it is loaded first.)
    let synthetic = SyntheticConfig::default();
    let started = Instant::now();
    let load = || {
        named.load(
            args.data_path.as_deref(),
            args.augment,
            &synthetic,
            named.default_standardize(),
        )
    };
    let (early, (input, classes)) = match named.input(&synthetic) {
        Some(known) => (None, known),
        None => {
            let data = load()?;
            let known = (input_shape(&data.train), data.train.classes());
            (Some(data), known)
        }
    };
    for spec in &specs {
        spec.footprint(input, classes, args.batch)?
            .check_training_memory(spec)?;
    }

    let data = match early {
        Some(data) => data,
        None => load()?,
    };
    println!(
        "{}: {} train / {} test samples of {}, {} classes (loaded in {:.1}s)",
        args.data,
        data.train.len(),
        data.test.len(),
        data.train.shape(),
        data.train.classes(),
        started.elapsed().as_secs_f64()
    );

    let mut results = Vec::new();
    for spec in &specs {
        let accuracy = train_one(spec, &data, &args, sgd, &schedule)?;
        results.push((spec.to_string(), accuracy));
    }
    if results.len() > 1 {
        println!("\n{:<28} {:>14}", "model", "test accuracy");
        for (spec, acc) in &results {
            println!("{spec:<28} {:>13.2}%", acc * 100.0);
        }
    }
    Ok(())
}

/// Trains one model; returns its final test accuracy.
fn train_one(
    spec: &ModelSpec,
    data: &Loaded,
    args: &TrainArgs,
    sgd: SgdConfig,
    schedule: &LrSchedule,
) -> anyhow::Result<f64> {
    let net = spec.build(input_shape(&data.train), data.train.classes())?;
    println!(
        "\n{spec}: {} parameters, {:.2} MFLOP forward per sample",
        net.param_len(),
        net.flops_per_sample() as f64 / 1e6
    );
    let mut weights = net.init(&mut stream(args.seed, 1));
    let mut trainer = Trainer::new(net, sgd)?;
    let mut shuffle = stream(args.seed, 2);
    let mut augment = stream(args.seed, 3);
    let loader = BatchLoader::new(&data.train, data.augmentation);
    let all: Vec<usize> = (0..data.train.len()).collect();
    let mut accuracy = 0.0;
    for epoch in 0..args.epochs {
        let lr = schedule.lr_at(epoch);
        let batches = shuffled_batches(&all, args.batch, &mut shuffle)?;
        let bar = progress(args.quiet, batches.len(), epoch, args.epochs);
        let started = Instant::now();
        let mut loss_sum = 0.0f64;
        for (i, batch) in batches.iter().enumerate() {
            let (x, y) = loader.load(batch, &mut augment)?;
            loss_sum += f64::from(trainer.cross_entropy_step(&mut weights, x, &y, lr)?);
            if i % 50 == 0 {
                bar.set_message(format!("loss {:.4}", loss_sum / (i + 1) as f64));
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        let train_secs = started.elapsed().as_secs_f64();
        let test = evaluate(trainer.network(), &weights, &data.test, 256)?;
        accuracy = test.accuracy();
        println!(
            "epoch {}/{}  lr {lr:.4}  train loss {:.4}  test loss {:.4}  test accuracy {:.2}%  \
             ({train_secs:.1}s, {:.0} samples/s)",
            epoch + 1,
            args.epochs,
            loss_sum / batches.len() as f64,
            test.mean_loss(),
            accuracy * 100.0,
            data.train.len() as f64 / train_secs,
        );
    }
    if let Some(path) = &args.save {
        save_safetensors(path, trainer.network(), &weights)
            .with_context(|| format!("saving {spec}"))?;
        println!("saved {spec} to {}", path.display());
    }
    Ok(accuracy)
}

fn progress(quiet: bool, len: usize, epoch: usize, epochs: usize) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("{}/{epochs}", epoch + 1));
    bar
}
