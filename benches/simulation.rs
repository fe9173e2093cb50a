//! The simulation core: sequential executor throughput, the wire cost of a model update,
//! and the memory of a million registered idle clients.
//!
//! Run: `cargo bench --bench simulation`. Targets (issue 3): ≥ 1 M events/s on a 10k-node
//! message workload (sequential executor); ≥ 200 k delivered messages/s through the actix
//! runtime; encode + decode of a 1 MB update; 1 M idle clients under 2 GB resident.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flotilla::actors::ActixRuntime;
use flotilla::fl::{FedAvgClient, FlMessage, LearningTask};
use flotilla::nn::SgdConfig;
use flotilla::sim::{
    Context, Event, LinkSpec, NetworkModel, Node, NodeError, NodeId, Seed, Simulation, StopAt,
    millis, wire,
};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::hint::black_box;
use std::sync::Arc;

/// A token passed between random peers until it has made `hops` hops.
#[derive(Debug, Serialize, Deserialize)]
struct Token {
    hops: u32,
}

#[derive(Debug)]
struct Relay {
    peers: u32,
    hops: u32,
}

impl Node<Token> for Relay {
    fn on_event(
        &mut self,
        event: Event<Token>,
        ctx: &mut Context<'_, Token>,
    ) -> Result<(), NodeError> {
        let hops = match event {
            Event::Start => 0,
            Event::Message { msg, .. } if msg.hops < self.hops => msg.hops + 1,
            _ => return Ok(()),
        };
        let to = NodeId(ctx.rng().random_range(0..self.peers));
        ctx.send(to, Token { hops });
        Ok(())
    }
}

/// `nodes` relays passing tokens for `hops` hops each.
fn relays(nodes: u32, hops: u32) -> Simulation<Token> {
    let mut b = Simulation::builder(Seed(1), NetworkModel::new(LinkSpec::latency(millis(5))));
    for i in 0..nodes {
        b.add_node(format!("relay-{i}"), Relay { peers: nodes, hops }, None);
    }
    b.build()
}

/// Runs to the end; returns the events handled (10k relays × 20 hops: 10k starts + 210k
/// deliveries).
fn run(mut sim: Simulation<Token>) -> u64 {
    let report = sim.run(StopAt::Idle);
    report.events
}

fn sequential_events(c: &mut Criterion) {
    let events = run(relays(10_000, 20));
    let mut group = c.benchmark_group("sequential_executor");
    group.sample_size(10);
    group.throughput(Throughput::Elements(events));
    group.bench_function("relay_10k_nodes_events", |b| {
        b.iter_batched(|| relays(10_000, 20), run, criterion::BatchSize::LargeInput)
    });
    group.finish();
}

fn actix_messages(c: &mut Criterion) {
    let mut reference = relays(10_000, 20);
    let delivered = reference.run(StopAt::Idle).counters.delivered;
    let mut group = c.benchmark_group("actix_runtime");
    group.sample_size(10);
    group.throughput(Throughput::Elements(delivered));
    for workers in [1, 2] {
        group.bench_function(
            format!("relay_10k_nodes_delivered_{workers}_workers"),
            |b| {
                b.iter_batched(
                    || relays(10_000, 20),
                    |sim| {
                        ActixRuntime::new(workers)
                            .run(sim, StopAt::Idle)
                            .expect("actix run")
                    },
                    criterion::BatchSize::LargeInput,
                )
            },
        );
    }
    group.finish();
}

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
/// one shared dataset, no model copy) plus nothing else; returns it to keep it alive.
fn idle_fleet(n: u32) -> Simulation<FlMessage> {
    let (train, test) = flotilla::data::SyntheticConfig {
        train_samples: 10_000,
        test_samples: 100,
        ..Default::default()
    }
    .generate()
    .expect("synthetic data");
    let task = LearningTask::new(
        "mlp:32-16-10".parse().expect("spec"),
        Arc::new(train),
        Arc::new(test),
        10,
        32,
        SgdConfig::default(),
        Seed(1),
    )
    .expect("task");
    let task = Arc::new(task);
    let profile = flotilla::sim::DeviceProfile::preset("phone-low").expect("preset");
    let mut b = Simulation::builder(Seed(1), NetworkModel::new(LinkSpec::latency(millis(5))));
    for i in 0..n {
        let indices = vec![(i as usize * 7) % 10_000, (i as usize * 13) % 10_000];
        b.add_node(
            format!("c{i}"),
            FedAvgClient::new(task.clone(), indices, NodeId(0)),
            Some(profile.clone()),
        );
    }
    b.build()
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

criterion_group!(
    benches,
    sequential_events,
    actix_messages,
    wire_update,
    million_idle_clients
);
criterion_main!(benches);
