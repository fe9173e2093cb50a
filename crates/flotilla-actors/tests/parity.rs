//! Parity: the actix runtime, at any worker count, gives the same run as the sequential
//! reference executor — same trace hash, counters, end time and failures — on a scenario
//! with jobs, timers, node-local randomness, jittery devices that drop out or go offline,
//! lossy links, an outage, and nodes that panic or fail.
//!
//! `FLOTILLA_SEED=n` reruns the fixed-seed tests with seed `n`.

use flotilla_actors::{ActixRuntime, DEFAULT_MAX_LIVE_NODES, PoolRunner};
use flotilla_sim::{
    Availability, Context, DeviceProfile, DropReason, Event, LinkSpec, NetworkModel, Node,
    NodeError, NodeId, Outage, RunReport, Seed, SimDuration, SimTime, Simulation, StopAt, millis,
    secs,
};
use proptest::prelude::*;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::Once;

/// Keeps the panics the scenario provokes on purpose out of the test output.
fn quiet_expected_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let msg = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("");
            if !(msg.contains("poisoned") || msg.contains("job exploded")) {
                default(info);
            }
        }));
    });
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Msg {
    /// Coordinator → worker: compute on `input`.
    Work { round: u32, input: u64 },
    /// Worker → coordinator: the result.
    Answer { round: u32, value: u64 },
    /// A job's output, back to its worker.
    Computed { round: u32, value: u64 },
    /// Makes fragile workers fail.
    Poison,
}

/// Every `period` (with node-local jitter) sends work to a random subset of its workers,
/// for `rounds` rounds; folds the answers into a digest.
#[derive(Debug)]
struct Coordinator {
    workers: Vec<NodeId>,
    rounds: u32,
    round: u32,
    period: SimDuration,
    poison: Option<(u32, NodeId)>,
    answers: u64,
    digest: u64,
}

impl Node<Msg> for Coordinator {
    fn on_event(&mut self, event: Event<Msg>, ctx: &mut Context<'_, Msg>) -> Result<(), NodeError> {
        match event {
            Event::Start => ctx.set_timer(self.period, 0),
            Event::Timer { .. } => {
                self.round += 1;
                for &w in &self.workers {
                    if ctx.rng().random_bool(0.8) {
                        let input = ctx.rng().random();
                        ctx.send(
                            w,
                            Msg::Work {
                                round: self.round,
                                input,
                            },
                        );
                    }
                }
                if let Some((round, target)) = self.poison
                    && round == self.round
                {
                    ctx.send(target, Msg::Poison);
                }
                ctx.record("round", f64::from(self.round));
                if self.round < self.rounds {
                    let jitter = millis(ctx.rng().random_range(0..200));
                    ctx.set_timer(self.period + jitter, 0);
                }
            }
            Event::Message {
                from,
                msg: Msg::Answer { round, value },
            } => {
                self.answers += 1;
                self.digest = self.digest.rotate_left(7) ^ value ^ u64::from(round) ^ from.0 as u64;
                ctx.record("answer", (value % 1000) as f64);
            }
            Event::Message { .. } | Event::JobDone { .. } => {
                return Err(NodeError::new("coordinator got an unexpected event"));
            }
            _ => {}
        }
        Ok(())
    }
}

/// How a worker misbehaves.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Flaw {
    None,
    /// Panics in its handler on `Poison`.
    PanicsOnPoison,
    /// Returns an error on `Poison`.
    FailsOnPoison,
    /// Its third job panics.
    JobPanics,
}

/// Trains (computes a hash chain) on each request and answers after its device's time.
#[derive(Debug)]
struct Worker {
    coordinator: NodeId,
    flaw: Flaw,
    jobs: u32,
    answered: u64,
}

/// A deterministic CPU-bound computation.
fn hash_chain(mut x: u64, steps: u32) -> u64 {
    for _ in 0..steps {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x = z ^ (z >> 31);
    }
    x
}

impl Node<Msg> for Worker {
    fn on_event(&mut self, event: Event<Msg>, ctx: &mut Context<'_, Msg>) -> Result<(), NodeError> {
        match event {
            Event::Message {
                msg: Msg::Work { round, input },
                ..
            } => {
                let flops = 500_000_000 * ctx.rng().random_range(1..=5u64);
                let steps = 2_000 + (input % 8_000) as u32;
                let panics = self.flaw == Flaw::JobPanics && self.jobs == 2;
                self.jobs += 1;
                ctx.spawn_job(flops, move || {
                    if panics {
                        panic!("job exploded on input {input}");
                    }
                    Ok(Msg::Computed {
                        round,
                        value: hash_chain(input, steps),
                    })
                });
                // A per-round deadline timer, to mix timers into busy instants.
                ctx.set_timer(secs(3), u64::from(round));
            }
            Event::JobDone {
                output: Msg::Computed { round, value },
                ..
            } => {
                self.answered += 1;
                ctx.send(self.coordinator, Msg::Answer { round, value });
            }
            Event::Message {
                msg: Msg::Poison, ..
            } => match self.flaw {
                Flaw::PanicsOnPoison => panic!("worker {} poisoned", ctx.id()),
                Flaw::FailsOnPoison => return Err(NodeError::new("poisoned")),
                _ => {}
            },
            Event::Timer { tag } => ctx.record("deadline", tag as f64),
            _ => {}
        }
        Ok(())
    }
}

/// The shape of a scenario.
#[derive(Debug, Clone, Copy)]
struct Topology {
    seed: u64,
    coordinators: usize,
    workers: usize,
    /// Index into [`LINKS`].
    link: usize,
    rounds: u32,
}

/// Link presets; `fixed` is a fixed 20 ms latency, so that a round's work requests arrive
/// together and many workers handle the same instant in parallel.
const LINKS: [&str; 4] = ["fixed", "wifi", "cellular-4g", "cellular-3g"];

fn link(i: usize) -> LinkSpec {
    match LINKS[i] {
        "fixed" => LinkSpec::latency(millis(20)),
        name => LinkSpec::preset(name).expect("known link"),
    }
}

fn device(i: usize) -> DeviceProfile {
    let preset = |name| DeviceProfile::preset(name).expect("known preset");
    match i % 4 {
        0 => preset("phone-low"),
        1 => preset("phone-high"),
        2 => DeviceProfile {
            dropout: 0.25,
            ..preset("phone-low")
        },
        _ => DeviceProfile {
            availability: Availability::Markov {
                mean_on_s: 4.0,
                mean_off_s: 1.5,
                start_on: 0.8,
            },
            ..preset("laptop")
        },
    }
}

fn build(t: Topology) -> Simulation<Msg> {
    quiet_expected_panics();
    let mut link = link(t.link);
    link.loss = link.loss.max(0.05);
    let mut b = Simulation::builder(Seed(t.seed), NetworkModel::new(link));
    let first_worker = t.coordinators;
    let workers_of = |c: usize| -> Vec<NodeId> {
        (0..t.workers)
            .filter(|w| w % t.coordinators == c)
            .map(|w| NodeId((first_worker + w) as u32))
            .collect()
    };
    for c in 0..t.coordinators {
        let workers = workers_of(c);
        // Coordinator c poisons its first worker in round 2 + c.
        let poison = Some((2 + c as u32, workers[0]));
        b.add_node(
            format!("coordinator-{c}"),
            Coordinator {
                workers,
                rounds: t.rounds,
                round: 0,
                period: secs(1),
                poison,
                answers: 0,
                digest: 0,
            },
            None,
        );
    }
    for w in 0..t.workers {
        let flaw = match w {
            0 => Flaw::PanicsOnPoison,
            1 => Flaw::FailsOnPoison,
            2 => Flaw::JobPanics,
            _ => Flaw::None,
        };
        b.add_node(
            format!("worker-{w}"),
            Worker {
                coordinator: NodeId((w % t.coordinators) as u32),
                flaw,
                jobs: 0,
                answered: 0,
            },
            Some(device(w)),
        );
    }
    let net = b.network();
    net.set_node_link(NodeId(0), LinkSpec::preset("ethernet").expect("known link"));
    net.rule(Outage {
        nodes: Some(BTreeSet::from([NodeId(first_worker as u32 + 3)])),
        windows: vec![(SimTime::ZERO + secs(2), SimTime::ZERO + millis(3500))],
    });
    b.build()
}

/// What a run produced: its report and every coordinator's digest and answer count.
#[derive(Debug, PartialEq)]
struct Outcome {
    report: RunReport,
    coordinators: Vec<(u64, u64)>,
    answered: Vec<u64>,
}

fn outcome(sim: &Simulation<Msg>, t: Topology) -> Outcome {
    let coordinators = (0..t.coordinators)
        .map(|c| {
            let node: &Coordinator = sim.node(NodeId(c as u32)).expect("a coordinator");
            (node.answers, node.digest)
        })
        .collect();
    let answered = (0..t.workers)
        .map(|w| {
            let node: &Worker = sim
                .node(NodeId((t.coordinators + w) as u32))
                .expect("a worker");
            node.answered
        })
        .collect();
    Outcome {
        report: sim.world().report(),
        coordinators,
        answered,
    }
}

fn sequential(t: Topology) -> Outcome {
    let mut sim = build(t);
    sim.run(StopAt::Idle);
    outcome(&sim, t)
}

fn actix(t: Topology, workers: usize) -> Outcome {
    actix_live(t, workers, DEFAULT_MAX_LIVE_NODES)
}

/// With at most `live` node actors alive at once.
fn actix_live(t: Topology, workers: usize, live: usize) -> Outcome {
    let sim = ActixRuntime::new(workers)
        .with_max_live_nodes(live)
        .run(build(t), StopAt::Idle)
        .expect("the actix runtime works");
    outcome(&sim, t)
}

fn seed_from_env(default: u64) -> u64 {
    std::env::var("FLOTILLA_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn fixed(seed: u64) -> Topology {
    Topology {
        seed: seed_from_env(seed),
        coordinators: 2,
        workers: 12,
        link: 0,
        rounds: 6,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn actix_matches_sequential_across_seeds_and_topologies(
        seed in any::<u64>(),
        coordinators in 1usize..=3,
        extra_workers in 0usize..24,
        link in 0usize..LINKS.len(),
        rounds in 2u32..6,
    ) {
        let t = Topology { seed, coordinators, workers: coordinators + extra_workers, link, rounds };
        let reference = sequential(t);
        for workers in [1, 2, 8] {
            let got = actix(t, workers);
            prop_assert_eq!(&got, &reference, "seed {} with {} workers: {:?}", seed, workers, t);
        }
        // Fewer live actors than nodes: actors passivated and started again mid-run, and
        // instants handled in chunks (one node at a time with 1).
        for live in [1, 3] {
            let got = actix_live(t, 2, live);
            prop_assert_eq!(&got, &reference, "seed {} with {} live actors: {:?}", seed, live, t);
        }
    }
}

#[test]
fn actix_matches_sequential_on_the_fixed_scenario() {
    let t = fixed(11);
    let reference = sequential(t);
    for workers in [1, 2, 8] {
        assert_eq!(
            actix(t, workers),
            reference,
            "seed {} workers {workers}",
            t.seed
        );
    }
    for live in [1, 2, 5] {
        assert_eq!(
            actix_live(t, 2, live),
            reference,
            "seed {} live {live}",
            t.seed
        );
    }
}

#[test]
fn the_fixed_scenario_exercises_failures_drops_and_lost_jobs() {
    let t = fixed(11);
    let report = actix(t, 2).report;
    let c = &report.counters;
    let failed: BTreeSet<String> = report.failures.iter().map(|f| f.reason.clone()).collect();
    assert!(
        failed
            .iter()
            .any(|r| r.contains("panicked") && r.contains("poisoned")),
        "a handler panic is contained: {failed:?}"
    );
    assert!(
        failed.iter().any(|r| r.contains("handler error: poisoned")),
        "a handler error is contained: {failed:?}"
    );
    assert!(
        failed.iter().any(|r| r.contains("job exploded")),
        "a job panic is contained: {failed:?}"
    );
    assert!(c.dropped.contains_key(&DropReason::Loss), "{c:?}");
    assert!(c.dropped.contains_key(&DropReason::Outage), "{c:?}");
    assert!(c.dropped.contains_key(&DropReason::NodeFailed), "{c:?}");
    assert!(c.jobs_lost.contains_key(&DropReason::Dropout), "{c:?}");
    assert!(c.jobs_done > 10 && c.delivered > 20, "{c:?}");
    assert_eq!(c.in_flight(), 0, "the run went idle");
}

#[test]
fn different_seeds_give_different_runs() {
    let a = fixed(11);
    let b = Topology {
        seed: a.seed ^ 1,
        ..a
    };
    let (ra, rb) = (actix(a, 2).report, actix(b, 2).report);
    assert_ne!(ra.trace_hash, rb.trace_hash);
    assert_eq!(ra, actix(a, 2).report, "while the same seed repeats");
}

#[test]
fn pool_runner_with_the_sequential_executor_matches_inline_jobs() {
    let t = fixed(5);
    let reference = sequential(t);
    for threads in [1, 4] {
        let mut sim = build(t);
        let report = sim.run_with(StopAt::Idle, &mut PoolRunner::new(threads));
        assert_eq!(report, reference.report, "{threads} pool threads");
        assert_eq!(outcome(&sim, t), reference);
    }
}

#[test]
fn a_run_stopped_at_a_time_resumes_where_it_stopped() {
    let t = fixed(23);
    let reference = sequential(t);
    let stop = StopAt::Time(SimTime::ZERO + millis(2500));

    // Sequential, first leg only: the reference for the actix first leg.
    let mut first = build(t);
    let mut pool = PoolRunner::new(2);
    let at_stop = first.run_with(stop, &mut pool);

    // Few live actors: some nodes are passivated across the stop, some still in actors.
    let runtime = ActixRuntime::new(2).with_max_live_nodes(4);
    let (sim, pool) = runtime
        .run_with_pool(build(t), stop, PoolRunner::new(2))
        .expect("first leg");
    assert_eq!(sim.world().report(), at_stop);
    assert!(sim.world().report().end_time <= SimTime::ZERO + millis(2500));
    assert!(pool.pending() > 0, "jobs are in flight across the stop");

    let (sim, _) = runtime
        .run_with_pool(sim, StopAt::Idle, pool)
        .expect("second leg");
    assert_eq!(outcome(&sim, t), reference);
}

#[test]
fn zero_workers_means_one() {
    assert_eq!(ActixRuntime::new(0).workers, 1);
    let t = fixed(3);
    let sim = ActixRuntime {
        workers: 0,
        max_live_nodes: 0,
    }
    .run(build(t), StopAt::Idle)
    .expect("runs");
    assert_eq!(outcome(&sim, t), sequential(t));
}
