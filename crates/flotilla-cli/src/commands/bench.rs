//! `flotilla bench`: the standard workloads, timed, against this machine's measured peak.
//!
//! Each workload runs in a child process of its own (`flotilla bench --child W`), so that
//! its peak resident memory is its own; the child prints its figures as one JSON line and
//! the parent prints the table. The machine's peak is measured first: 16 independent chains
//! of fused multiply-adds on the widest vectors the CPU has (AVX-512 where present, chosen
//! at run time by `pulp`), on one thread and on every thread at once; that is the
//! arithmetic limit the training's rate is compared with.

use anyhow::Context;
use flotilla_experiment::experiment::{ExperimentOptions, run_all};
use flotilla_experiment::{ConfigSource, ExperimentConfig, Prepared};
use pulp::{Arch, Simd, WithSimd};
use serde::{Deserialize, Serialize};
use std::process::Command;
use std::time::Instant;

/// The standard workloads (the performance issue's; results compare across changes).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Workload {
    /// FedAvg of mlp:784-256-128-10, 100 clients, 20 a round, 30 local steps of batch 32,
    /// 10 rounds, evaluation on 5,000 test samples every round; synthetic 784-dim data (the
    /// Python simulators' workload).
    P1,
    /// MNIST, 100 clients, 20 a round, 20 strong, mlp:784-256-128-10 target, mlp:784-32-10
    /// auxiliary, 30 local steps of batch 32, ondevice_kd, 20 rounds.
    W1,
    /// CIFAR-10, the cifar10_paper setting, ondevice_kd, 2 rounds.
    W2,
    /// 1,000,000 registered clients, 1,000 a round, mlp:784-32-10, synthetic data, 5 local
    /// steps, 5 rounds.
    W3,
    /// The large fleet with a tiny model, where the cost is almost all outside the model:
    /// 100,000 clients, 10,000 a round, mlp:32-64-10, 5 local steps, 3 rounds (the framework's
    /// cost per client job; run it with `--threads 1`).
    L,
}

impl Workload {
    /// The built-in configuration and the overrides that make the workload.
    fn config(self) -> (&'static str, &'static [&'static str]) {
        match self {
            Workload::P1 => (
                "quickstart",
                &[
                    "name=\"p1\"",
                    "methods=[\"fedavg_all_large\"]",
                    "seeds=1",
                    "rounds=10",
                    "eval_every=1",
                    "data.alpha=1.0",
                    "synthetic.dim=784",
                    "synthetic.train_samples=20000",
                    "synthetic.test_samples=5000",
                    "models.target=\"mlp:784-256-128-10\"",
                    "models.auxiliary=\"mlp:784-32-10\"",
                    "fleet.weak_memory_mb=1.0",
                    "training.lr_milestones=[]",
                    "training.weight_decay=1e-4",
                ],
            ),
            Workload::W1 => (
                "mnist",
                &["methods=[\"ondevice_kd\"]", "seeds=1", "rounds=20"],
            ),
            Workload::W2 => (
                "cifar10_paper",
                &["methods=[\"ondevice_kd\"]", "seeds=1", "rounds=2"],
            ),
            Workload::W3 => (
                "quickstart",
                &[
                    "name=\"w3\"",
                    "methods=[\"weak_only\"]",
                    "seeds=1",
                    "rounds=5",
                    "eval_every=5",
                    "data.split=\"iid\"",
                    "data.min_shard_samples=1",
                    "data.unlabeled_shards_per_strong=0",
                    "synthetic.dim=784",
                    "synthetic.train_samples=1000000",
                    "synthetic.test_samples=1000",
                    "models.target=\"mlp:784-32-10\"",
                    "models.auxiliary=\"mlp:784-32-10\"",
                    "fleet.clients=1000000",
                    "fleet.strong=0",
                    "training.clients_per_round=1000",
                    "training.local_steps=5",
                ],
            ),
            Workload::L => (
                "quickstart",
                &[
                    "name=\"large-fleet\"",
                    "methods=[\"weak_only\"]",
                    "seeds=1",
                    "rounds=3",
                    "eval_every=3",
                    "data.split=\"iid\"",
                    "data.min_shard_samples=1",
                    "data.unlabeled_shards_per_strong=0",
                    "synthetic.train_samples=200000",
                    "models.target=\"mlp:32-64-10\"",
                    "models.auxiliary=\"mlp:32-64-10\"",
                    "fleet.clients=100000",
                    "fleet.strong=0",
                    "training.clients_per_round=10000",
                    "training.local_steps=5",
                ],
            ),
        }
    }
}

/// Arguments of `flotilla bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// Workloads to run, in order (default: p1 w1 w2 w3).
    #[arg(value_enum)]
    workloads: Vec<Workload>,
    /// Worker threads (default: as many as the machine has cores).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Run the one workload given in this process and print its figures as a JSON line
    /// (what the parent process does for each workload).
    #[arg(long, hide = true)]
    child: bool,
}

/// What one workload measured (the child's JSON line).
#[derive(Debug, Serialize, Deserialize)]
struct Figures {
    workload: Workload,
    threads: usize,
    /// The child process from start to exit, data loading included \[s\].
    wall_s: f64,
    /// Local SGD samples of the replies that came back: replies × local steps × batch.
    samples: u64,
    /// Client jobs assigned.
    client_jobs: u64,
    /// FLOPs of the compute jobs (training, distillation, evaluation) as declared.
    job_flops: u64,
    /// Time the job threads spent in those jobs, summed over threads \[s\].
    job_busy_s: f64,
    /// FLOPs of the convolutions' matrix products (none for the MLP workloads).
    conv_flops: u64,
    /// Time spent in convolution passes, summed over threads \[s\].
    conv_busy_s: f64,
    /// Peak resident memory of the process \[MB\] (`VmHWM`).
    peak_rss_mb: f64,
}

/// The process's peak resident memory \[MB\], from `/proc/self/status` (Linux; `NaN`
/// elsewhere).
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                let kb = line.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?;
                kb.trim().parse::<f64>().ok()
            })
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Runs one workload here and measures it.
fn child(workload: Workload, threads: usize) -> anyhow::Result<Figures> {
    let started = Instant::now();
    let (name, sets) = workload.config();
    let sets: Vec<String> = sets.iter().map(|s| (*s).to_string()).collect();
    let config = ExperimentConfig::load(&ConfigSource::resolve(name)?, &sets)?;
    let (steps, batch) = (config.training.local_steps, config.training.batch_size);
    let mut prepared = Prepared::new(config)?;
    let options = ExperimentOptions {
        threads,
        ..ExperimentOptions::default()
    };
    let outcomes = run_all(&mut prepared, &options, &mut |_| {})?;
    let convolutions = flotilla_nn::convolution_totals();
    let replies: u64 = outcomes
        .iter()
        .map(|o| o.jobs.assigned - o.jobs.unanswered)
        .sum();
    Ok(Figures {
        workload,
        threads,
        wall_s: started.elapsed().as_secs_f64(),
        samples: replies * (steps * batch) as u64,
        client_jobs: outcomes.iter().map(|o| o.jobs.assigned).sum(),
        job_flops: outcomes.iter().map(|o| o.job_flops).sum(),
        job_busy_s: outcomes.iter().map(|o| o.job_busy_s).sum(),
        conv_flops: convolutions.flops,
        conv_busy_s: convolutions.busy.as_secs_f64(),
        peak_rss_mb: peak_rss_mb(),
    })
}

/// Independent FMA chains kept in registers: enough to cover the FMA units' latency.
const CHAINS: usize = 16;

/// `iterations` rounds of [`CHAINS`] fused multiply-adds on full vectors; returns a value
/// that depends on every one (so none is optimised away) and the vector's `f32` lanes.
struct FmaLoop {
    iterations: u64,
}

impl WithSimd for FmaLoop {
    type Output = (f32, usize);

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> (f32, usize) {
        // Opaque constants: the compiler must not fold the chains ahead of time.
        let a = simd.splat_f32s(std::hint::black_box(0.999_9));
        let b = simd.splat_f32s(std::hint::black_box(1e-4));
        let mut chains: [S::f32s; CHAINS] =
            std::array::from_fn(|i| simd.splat_f32s(std::hint::black_box(i as f32)));
        for _ in 0..self.iterations {
            for x in &mut chains {
                *x = simd.mul_add_e_f32s(*x, a, b);
            }
        }
        let sum = chains
            .into_iter()
            .fold(simd.splat_f32s(0.0), |s, x| simd.add_f32s(s, x));
        (
            simd.reduce_sum_f32s(sum),
            size_of::<S::f32s>() / size_of::<f32>(),
        )
    }
}

/// The FLOP rate of the FMA loop on `threads` threads at once \[GFLOP/s\], best of three.
fn fma_peak(threads: usize) -> f64 {
    const ITERATIONS: u64 = 20_000_000;
    let arch = Arch::new();
    (0..3)
        .map(|_| {
            let started = Instant::now();
            let lanes: Vec<usize> = std::thread::scope(|scope| {
                let runs: Vec<_> = (0..threads)
                    .map(|_| {
                        scope.spawn(move || {
                            let (value, lanes) = arch.dispatch(FmaLoop {
                                iterations: std::hint::black_box(ITERATIONS),
                            });
                            std::hint::black_box(value);
                            lanes
                        })
                    })
                    .collect();
                runs.into_iter()
                    .map(|r| r.join().expect("the FMA loop does not panic"))
                    .collect()
            });
            let flops: f64 = lanes
                .iter()
                .map(|&l| (ITERATIONS * CHAINS as u64 * l as u64 * 2) as f64)
                .sum();
            flops / started.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}

/// Runs the benchmark.
pub(crate) fn run(args: BenchArgs) -> anyhow::Result<()> {
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    if args.child {
        let [workload] = args.workloads[..] else {
            anyhow::bail!("--child runs exactly one workload");
        };
        println!("{}", serde_json::to_string(&child(workload, threads)?)?);
        return Ok(());
    }
    let workloads = match args.workloads.is_empty() {
        true => vec![Workload::P1, Workload::W1, Workload::W2, Workload::W3],
        false => args.workloads,
    };
    let one = fma_peak(1);
    let all = fma_peak(threads);
    println!(
        "peak (FMA loop, 16 chains, widest vectors): {one:.1} GFLOP/s on 1 thread, \
         {all:.1} on {threads}"
    );
    println!(
        "{:<5} {:>8} {:>11} {:>9} {:>13} {:>10} {:>12} {:>11} {:>9} {:>9}",
        "",
        "wall s",
        "samples/s",
        "GFLOP",
        "GFLOP/s/thr",
        "% of peak",
        "conv % peak",
        "outside %",
        "µs/job",
        "peak MB"
    );
    let exe = std::env::current_exe().context("the flotilla binary")?;
    for workload in workloads {
        let name = format!("{workload:?}").to_lowercase();
        let output = Command::new(&exe)
            .args(["bench", "--child", &name, "--threads", &threads.to_string()])
            .output()
            .with_context(|| format!("starting workload {name}"))?;
        if !output.status.success() {
            println!(
                "{name:<5} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
            continue;
        }
        let f: Figures = serde_json::from_slice(&output.stdout)
            .with_context(|| format!("the figures of workload {name}"))?;
        let per_thread = f.job_flops as f64 / f.job_busy_s / 1e9;
        let outside_s = f.threads as f64 * f.wall_s - f.job_busy_s;
        let conv = match f.conv_flops {
            0 => "—".to_string(),
            flops => format!("{:.1}", 100.0 * flops as f64 / f.conv_busy_s / 1e9 / one),
        };
        println!(
            "{name:<5} {:>8.2} {:>11.0} {:>9.1} {:>13.1} {:>10.1} {conv:>12} {:>11.1} {:>9.1} {:>9.0}",
            f.wall_s,
            f.samples as f64 / f.wall_s,
            f.job_flops as f64 / 1e9,
            per_thread,
            100.0 * per_thread / one,
            100.0 * outside_s / (f.threads as f64 * f.wall_s),
            1e6 * outside_s / f.client_jobs.max(1) as f64,
            f.peak_rss_mb
        );
    }
    println!(
        "GFLOP/s/thr: the jobs' declared FLOPs over the time threads spent in them; conv % \
         peak: the convolutions' matrix-product FLOPs over the time threads spent in \
         convolution passes (column matrices included), per thread; outside: the share of \
         threads × wall time not spent in jobs (loading, events, messages, idle threads); \
         µs/job: that time per client job (with --threads 1, the framework's cost per job, \
         setup included)."
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_workload_is_a_valid_configuration_of_its_stated_size() {
        let load = |w: Workload| {
            let (name, sets) = w.config();
            let sets: Vec<String> = sets.iter().map(|s| (*s).to_string()).collect();
            ExperimentConfig::load(&ConfigSource::resolve(name).unwrap(), &sets).unwrap()
        };
        let p1 = load(Workload::P1);
        assert_eq!(
            (p1.rounds, p1.fleet.clients, p1.training.clients_per_round),
            (10, 100, 20)
        );
        assert_eq!((p1.training.local_steps, p1.training.batch_size), (30, 32));
        let w1 = load(Workload::W1);
        assert_eq!(
            (w1.rounds, w1.fleet.clients, w1.fleet.strong),
            (20, 100, Some(20))
        );
        assert_eq!(load(Workload::W2).rounds, 2);
        let w3 = load(Workload::W3);
        assert_eq!(
            (w3.fleet.clients, w3.training.clients_per_round),
            (1_000_000, 1000)
        );
        assert_eq!((w3.rounds, w3.training.local_steps), (5, 5));
        let l = load(Workload::L);
        assert_eq!(
            (l.fleet.clients, l.training.clients_per_round, l.rounds),
            (100_000, 10_000, 3)
        );
    }

    #[test]
    fn the_fma_probe_counts_real_work_and_memory_is_read() {
        let (value, lanes) = Arch::new().dispatch(FmaLoop { iterations: 1000 });
        assert!(value.is_finite() && lanes >= 1);
        let peak = fma_peak(1);
        // Far below any CPU's peak would mean the loop did not run as counted; far above,
        // that it was optimised away (one core cannot do 10 TFLOP/s).
        assert!(peak > 0.1 && peak < 10_000.0, "{peak} GFLOP/s");
        assert!(peak_rss_mb() > 1.0);
    }
}
