//! The simulation core's costs beside the executors (those are in `runtime.rs`): the wire
//! cost of a model update and the memory of a million registered idle clients.
//!
//! Run: `cargo bench --bench simulation`. Targets (issue 3): encode + decode of a 1 MB
//! update; 1 M idle clients under 2 GB resident (printed before the timings).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flotilla::fl::{
    ClientData, ClientGroup, Coordinator, CoordinatorConfig, FedAvg, FedAvgConfig, Federation,
    FlMessage, LearningTask, LocalTraining, LocalWorker, ModelRole, Placement, RoundPolicy, Work,
};
use flotilla::nn::{LrSchedule, SgdConfig};
use flotilla::sim::{LinkSpec, NetworkModel, Seed, Simulation, millis, secs, wire};
use std::hint::black_box;
use std::sync::Arc;

fn wire_update(c: &mut Criterion) {
    let update: Vec<f32> = (0..262_144).map(|i| (i as f32).sin()).collect();
    let mut group = c.benchmark_group("wire");
    group.throughput(Throughput::Bytes(4 * update.len() as u64));
    group.bench_function("encode_decode_1MB_update", |b| {
        b.iter(|| {
            let bytes = wire::encode(black_box(&update)).expect("encodes");
            black_box(wire::decode::<Vec<f32>>(&bytes).expect("decodes"))
        })
    });
    group.finish();
}

/// Resident set size of this process \[bytes\], from /proc (Linux).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Builds a simulation of `n` idle FedAvg clients (each holding a few sample indices into
/// one shared dataset, no model copy) and their coordinator (one model copy); returns it to
/// keep it alive.
fn idle_fleet(n: u32) -> Simulation<FlMessage<Work>> {
    let (train, test) = flotilla::data::SyntheticConfig {
        train_samples: 10_000,
        test_samples: 100,
        ..Default::default()
    }
    .generate()
    .expect("synthetic data");
    let local = LocalTraining {
        steps: 10,
        batch_size: 32,
        sgd: SgdConfig::default(),
    };
    let models = [(ModelRole::Target, "mlp:32-16-10".parse().expect("spec"))];
    let task = LearningTask::new(
        Arc::new(train),
        Arc::new(test),
        None,
        &models,
        local,
        Seed(1),
    )
    .expect("task");
    let task = Arc::new(task);
    let profile = flotilla::sim::DeviceProfile::preset("phone-low").expect("preset");
    let strategy = FedAvg::new(
        &task,
        FedAvgConfig {
            model: ModelRole::Target,
            clients_per_round: None,
            weighted: true,
            schedule: LrSchedule::Constant(0.05),
        },
    )
    .expect("strategy");
    let config = CoordinatorConfig {
        rounds: 1,
        registration_window: secs(10),
        eval_every: 1,
    };
    let policy = RoundPolicy::wait_all(None);
    let server_task = task.clone();
    let coordinator =
        move |clients| Coordinator::synchronous(strategy, policy, server_task, config, clients);
    let data = (0..n as usize)
        .map(|i| ClientData::from_labeled([(i * 7) % 10_000, (i * 13) % 10_000]))
        .collect();
    let clients = ClientGroup::new(Arc::new(LocalWorker), task, data)
        .placed(Placement::new(Some(profile), None));
    let network = NetworkModel::new(LinkSpec::latency(millis(5)));
    Federation::star(Simulation::builder(Seed(1), network), coordinator, clients)
        .build()
        .expect("a star")
        .0
}

fn million_idle_clients(c: &mut Criterion) {
    let before = resident_bytes().unwrap_or(0);
    let fleet = idle_fleet(1_000_000);
    let after = resident_bytes().unwrap_or(0);
    eprintln!(
        "1M idle clients: {:.0} MB resident added ({:.0} bytes per client; process total {:.0} MB)",
        after.saturating_sub(before) as f64 / 1e6,
        after.saturating_sub(before) as f64 / 1_000_000.0,
        after as f64 / 1e6
    );
    drop(fleet);
    let mut group = c.benchmark_group("fleet");
    group.sample_size(10);
    group.bench_function("register_100k_idle_clients", |b| {
        b.iter(|| black_box(idle_fleet(100_000)))
    });
    group.finish();
}

criterion_group!(benches, wire_update, million_idle_clients);
criterion_main!(benches);
