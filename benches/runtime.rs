//! The actix runtime: delivered messages per second on a 10k-node message workload, at 1
//! and 2 workers, with the sequential executor on the same workload for comparison.
//!
//! Run: `cargo bench --bench runtime`. Targets (issue 3): ≥ 200 k delivered messages/s
//! through the actix runtime; ≥ 1 M events/s for the sequential executor — each run handles
//! 220 000 events (10 000 starts + 210 000 deliveries), so its delivered messages/s is a
//! lower bound on its events/s.
//!
//! Workload: 10 000 relays; each starts a token and, on every token it receives, passes it
//! on to a random peer (its own `NODE` stream) over a 5 ms link until the token has made 20
//! hops: 10 000 × 21 = 210 000 delivered messages in 21 instants of about 6 300 node batches
//! each (the receivers of an instant), handled in parallel by the node actors.

use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use flotilla::actors::ActixRuntime;
use flotilla::sim::{
    Context, Event, LinkSpec, NetworkModel, Node, NodeError, NodeId, Seed, Simulation, StopAt,
    millis,
};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::time::Duration;

const NODES: u32 = 10_000;
const HOPS: u32 = 20;

/// A token and the hops it has made.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Token {
    hops: u32,
}

/// Passes every token it receives to a random peer until it has made `hops` hops.
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

fn relays() -> Simulation<Token> {
    let mut b = Simulation::builder(Seed(1), NetworkModel::new(LinkSpec::latency(millis(5))));
    for i in 0..NODES {
        b.add_node(
            format!("relay-{i}"),
            Relay {
                peers: NODES,
                hops: HOPS,
            },
            None,
        );
    }
    b.build()
}

fn delivered_messages(c: &mut Criterion) {
    let reference = relays().run(StopAt::Idle);
    let delivered = reference.counters.delivered;
    let mut group = c.benchmark_group("runtime_relay_10k_nodes");
    // Each iteration takes 0.2–0.7 s: few samples of one iteration each, enough time to
    // take them.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(delivered));
    group.bench_function("sequential", |b| {
        b.iter_batched(
            relays,
            |mut sim| {
                let report = sim.run(StopAt::Idle);
                assert_eq!(report.counters.delivered, delivered);
                sim
            },
            BatchSize::PerIteration,
        )
    });
    for workers in [1, 2] {
        group.bench_function(format!("actix_{workers}_workers"), |b| {
            b.iter_batched(
                relays,
                |sim| {
                    let sim = ActixRuntime::new(workers)
                        .run(sim, StopAt::Idle)
                        .expect("the actix runtime works");
                    assert_eq!(sim.world().report(), reference);
                    sim
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, delivered_messages);
criterion_main!(benches);
