//! Example: per-device heterogeneity from a device trace — a synthetic fleet with diurnal
//! online sessions and log-normal speeds, written to a trace file, read back, and applied
//! one device per client; FedAvg runs over it and each client's participation is set
//! against its device's online time and speed.
//!
//! This example demonstrates: `SyntheticTrace` (generating a fleet), the trace file format
//! (`DeviceTrace::write_jsonl` and `DeviceTrace::from_path`, one JSON object per device a
//! line), `TraceDevice::profile_over` (a device's speed and online intervals on top of a
//! preset), `Federation::client` (a client per device, each with its own placement) and
//! per-client books from `Coordinator::history` and `Coordinator::updates`.
//!
//! ```text
//!   trace.jsonl ── device 0 ──► phone #1  ──wifi──┐
//!   (24 devices)   device 1 ──► phone #2  ──wifi──┤
//!                  …                              ├──► server (FedAvg, every client a round,
//!                  device 23 ─► phone #24 ──wifi──┘       rounds close at 4 s at the latest)
//!   each phone: phone-high, with the device's speed and online sessions
//! ```
//!
//! A day is compressed to 40 s of virtual time and speeds are scaled so that the median
//! device needs about a second for a job; a 40-round run then spans four days. An
//! assignment reaches a client only while it is online, and its reply counts only if the
//! client stays online through the job and answers within the deadline: so participation
//! follows a device's online fraction closely (each day holds exactly its fraction), and
//! speed matters only for the slowest devices, which miss the deadline. The run checks the
//! robust part: clients online more than half the time had more updates aggregated, on
//! average, than those online less than a quarter of it.
//!
//! Run: `cargo run --release --example device_traces`

use flotilla::data::{SyntheticConfig, dirichlet};
use flotilla::fl::{
    ClientData, Coordinator, CoordinatorConfig, Fate, FedAvg, FedAvgConfig, Federation,
    LearningTask, LocalTraining, LocalWorker, ModelRole, Participant, Placement, RoundPolicy,
    Synchronous,
};
use flotilla::nn::{LrSchedule, SgdConfig};
use flotilla::sim::{
    DeviceProfile, DeviceTrace, LinkSpec, NetworkModel, NodeId, Purpose, Seed, SimTime, Simulation,
    StopAt, SyntheticTrace, TraceDevice, secs,
};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::sync::Arc;

const DEVICES: u32 = 24;
const ROUNDS: u32 = 40;
const LOCAL_STEPS: usize = 10;

/// One client's books.
#[derive(Default)]
struct Books {
    assigned: u32,
    aggregated: u32,
    late: u32,
}

/// Seconds `device` is online within `[0, until_s)`.
fn online_s(device: &TraceDevice, until_s: f64) -> f64 {
    let on = device.on.iter().flatten();
    on.map(|&(a, b)| (b.min(until_s) - a).max(0.0)).sum()
}

/// The fleet: generated, written to a trace file, and read back as a run would.
fn fleet(job_flops: u64) -> anyhow::Result<DeviceTrace> {
    let synthetic = SyntheticTrace {
        devices: DEVICES,
        seed: 5,
        // The median device takes a second per job; σ = 1 spreads the middle 95 % over 50×.
        speed_median_flops: job_flops as f64,
        speed_sigma: 1.0,
        period_s: 40.0,
        online_fraction: 0.4,
        online_spread: 0.2,
        sessions_per_period: 2,
        horizon_s: 3_600.0,
    };
    let generated = synthetic.generate()?;
    let path = std::env::temp_dir().join(format!("flotilla-fleet-{}.jsonl", std::process::id()));
    generated.write_jsonl(BufWriter::new(File::create(&path)?))?;
    let read = DeviceTrace::from_path(&path);
    let text = std::fs::read_to_string(&path);
    std::fs::remove_file(&path)?;
    let (read, text) = (read?, text?);
    let first = text.lines().next().unwrap_or_default();
    let cut = first
        .char_indices()
        .nth(150)
        .map_or(first.len(), |(i, _)| i);
    println!(
        "the trace file: {} devices, {} bytes, one JSON object a line; the first:\n  {}…\n",
        read.devices.len(),
        text.len(),
        &first[..cut]
    );
    anyhow::ensure!(read == generated, "the trace should read back as written");
    Ok(read)
}

fn main() -> anyhow::Result<()> {
    let seed = Seed(11);
    let (train, test) = SyntheticConfig::default().generate()?;
    let train = Arc::new(train);
    let local = LocalTraining {
        steps: LOCAL_STEPS,
        batch_size: 32,
        sgd: SgdConfig::default(),
    };
    let models = [(ModelRole::Target, "mlp:32-64-10".parse()?)];
    let task = LearningTask::new(train.clone(), Arc::new(test), None, &models, local, seed);
    let task = Arc::new(task?);
    let trace = fleet(task.training_flops(ModelRole::Target, LOCAL_STEPS)?)?;
    let shards = dirichlet(
        train.labels(),
        train.classes(),
        DEVICES as usize,
        1.0,
        10,
        &mut seed.stream(NodeId(0), Purpose::SETUP),
    )?;

    let strategy = FedAvg::new(
        &task,
        FedAvgConfig {
            model: ModelRole::Target,
            clients_per_round: None,
            weighted: true,
            schedule: LrSchedule::Constant(0.05),
        },
    )?;
    let config = CoordinatorConfig {
        rounds: ROUNDS,
        registration_window: secs(10),
        eval_every: ROUNDS,
    };
    let policy = RoundPolicy::wait_all(Some(secs(4)));
    let server_task = task.clone();
    let coordinator =
        move |clients| Coordinator::synchronous(strategy, policy, server_task, config, clients);
    let network = NetworkModel::new(LinkSpec::preset("datacenter")?);
    let mut fed = Federation::new(
        Simulation::builder(seed, network),
        "server",
        coordinator,
        Placement::default(),
    );
    // Device k of the trace is client k + 1 (clients are numbered from 1, in order).
    let base = DeviceProfile::preset("phone-high")?;
    let wifi = LinkSpec::preset("wifi")?;
    let worker = Arc::new(LocalWorker);
    for (device, shard) in trace.devices.iter().zip(shards) {
        let (worker, task) = (worker.clone(), task.clone());
        let data = ClientData::from_labeled(shard);
        let make = move |server| Participant::new(worker, task, data, server);
        let placement = Placement::new(Some(device.profile_over(&base)), Some(wifi.clone()));
        fed.client(
            fed.server(),
            format!("phone-{}", device.id),
            make,
            placement,
        )?;
    }

    let (mut sim, handle) = fed.build()?;
    sim.run(StopAt::Idle);
    let coordinator: &Coordinator<Synchronous<FedAvg>> =
        handle.coordinator(&sim).expect("the server");
    anyhow::ensure!(coordinator.finished(), "every round should run");
    let mut books: BTreeMap<NodeId, Books> = BTreeMap::new();
    for stage in coordinator.history().iter().flat_map(|r| &r.stages) {
        for &client in &stage.assigned {
            books.entry(client).or_default().assigned += 1;
        }
    }
    for update in coordinator.updates() {
        let b = books.entry(update.client).or_default();
        match update.fate {
            Fate::Aggregated => b.aggregated += 1,
            Fate::Late => b.late += 1,
            _ => {}
        }
    }
    let end_s = coordinator
        .finished_at()
        .map_or(f64::NAN, |t| (t - SimTime::ZERO).as_secs_f64());

    // (online fraction during the run, speed, client, its books), by online fraction.
    let mut rows: Vec<_> = trace
        .devices
        .iter()
        .zip(handle.clients())
        .map(|(device, &client)| {
            let speed = device.flops_per_sec.unwrap_or(base.flops_per_sec);
            let b = books.remove(&client).unwrap_or_default();
            (online_s(device, end_s) / end_s, speed, client, b)
        })
        .collect();
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    let job_flops = task.training_flops(ModelRole::Target, LOCAL_STEPS)? as f64;
    println!("client  online  job time  assigned  aggregated  late");
    for (online, speed, client, b) in &rows {
        println!(
            "{:>6}  {:>5.0}%  {:>7.2}s  {:>8}  {:>10}  {:>4}",
            client.to_string(),
            100.0 * online,
            job_flops / speed,
            b.assigned,
            b.aggregated,
            b.late
        );
    }
    let report = sim.world().report();
    let tally = coordinator.tally();
    let accuracy = coordinator
        .history()
        .last()
        .and_then(|r| r.evaluations.first())
        .map_or(f64::NAN, |e| e.accuracy);
    let by_reason = |counts: &BTreeMap<_, u64>| {
        let counts: Vec<String> = counts.iter().map(|(r, n)| format!("{r} {n}")).collect();
        counts.join(", ")
    };
    println!(
        "\n{ROUNDS} rounds in {end_s:.0} s of virtual time, final accuracy {:.2} %",
        100.0 * accuracy
    );
    println!(
        "jobs: {} assigned, {} aggregated, {} late, {} unanswered; messages dropped: {}; \
         jobs lost: {}",
        tally.assigned,
        tally.aggregated,
        tally.late,
        tally.unanswered,
        by_reason(&report.counters.dropped),
        by_reason(&report.counters.jobs_lost)
    );

    let mean_aggregated = |keep: &dyn Fn(f64) -> bool| {
        let picked: Vec<f64> = rows
            .iter()
            .filter(|r| keep(r.0))
            .map(|r| f64::from(r.3.aggregated))
            .collect();
        (
            picked.iter().sum::<f64>() / picked.len() as f64,
            picked.len(),
        )
    };
    let (often, n_often) = mean_aggregated(&|f| f > 0.5);
    let (rarely, n_rarely) = mean_aggregated(&|f| f < 0.25);
    println!(
        "mean aggregated updates: {often:.1} for the {n_often} clients online > 50 % of the \
         run, {rarely:.1} for the {n_rarely} online < 25 %"
    );
    anyhow::ensure!(
        n_often > 0 && n_rarely > 0,
        "the fleet should have clients online more than half and less than a quarter of the run"
    );
    anyhow::ensure!(
        often > rarely,
        "clients online more should contribute more ({often:.1} vs {rarely:.1})"
    );
    Ok(())
}
