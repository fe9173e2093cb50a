//! Example: FedAvg over a two-tier fleet — edge GPUs on Wi-Fi, low-end phones on a lossy
//! cellular link — on the built-in synthetic task, hosted on actix.
//!
//! This example demonstrates: device profiles and per-node links, a closure as a network
//! rule (a cellular outage), round timeouts, and how stragglers and dropouts emerge from
//! the profiles rather than from the algorithm.
//!
//! ```text
//!   edge-gpu  x8  ──wifi──────────────┐
//!                                     ├──► server (FedAvg, 20 clients/round, 30 s timeout)
//!   phone-low x32 ──cellular-4g───────┘     cellular tier dark from t = 60 s to t = 90 s
//! ```
//!
//! Run: `cargo run --release --example fedavg_two_tier`

use flotilla::actors::ActixRuntime;
use flotilla::data::{SyntheticConfig, dirichlet};
use flotilla::fl::{FedAvgClient, FedAvgConfig, FedAvgServer, FlMessage, LearningTask};
use flotilla::nn::{LrSchedule, SgdConfig};
use flotilla::sim::{
    DeviceProfile, DropReason, Envelope, LinkSpec, NetworkModel, NodeId, Purpose, Seed, SimTime,
    Simulation, StopAt, Verdict, secs,
};
use std::sync::Arc;

fn main() -> anyhow::Result<()> {
    let seed = Seed(42);
    let (train, test) = SyntheticConfig::default().generate()?;
    let (train, test) = (Arc::new(train), Arc::new(test));
    let sgd = SgdConfig {
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 5e-4,
        nesterov: false,
    };
    let task = Arc::new(LearningTask::new(
        "mlp:32-128-10".parse()?,
        train.clone(),
        test,
        20,
        32,
        sgd,
        seed,
    )?);
    let shards = dirichlet(
        train.labels(),
        train.classes(),
        40,
        0.5,
        10,
        &mut seed.stream(NodeId(0), Purpose::SETUP),
    )?;

    let mut fleet = Simulation::builder(seed, NetworkModel::new(LinkSpec::preset("datacenter")?));
    let server = NodeId(0);
    let clients: Vec<NodeId> = (1..=40).map(NodeId).collect();
    let config = FedAvgConfig {
        rounds: 15,
        clients_per_round: 20,
        schedule: LrSchedule::Constant(0.05),
        round_timeout: Some(secs(30)),
        weighted: true,
    };
    let initial = task
        .network()?
        .init(&mut seed.stream(server, Purpose::SETUP));
    fleet.add_node(
        "server",
        FedAvgServer::new(task.clone(), config, clients, initial),
        None,
    );
    let mut phones = Vec::new();
    for (i, shard) in shards.into_iter().enumerate() {
        let id = NodeId(i as u32 + 1);
        let (profile, link) = if i < 8 {
            (
                DeviceProfile::preset("edge-gpu")?,
                LinkSpec::preset("wifi")?,
            )
        } else {
            phones.push(id);
            (
                DeviceProfile::preset("phone-low")?,
                LinkSpec::preset("cellular-4g")?,
            )
        };
        fleet.network().set_node_link(id, link);
        fleet.add_node(
            format!("client-{}", i + 1),
            FedAvgClient::new(task.clone(), shard, server),
            Some(profile),
        );
    }
    // Any closure is a rule: the cellular tier goes dark for thirty seconds.
    let dark = SimTime::ZERO + secs(60)..SimTime::ZERO + secs(90);
    fleet.network().rule(move |env: &Envelope, now: SimTime| {
        let cellular = phones.contains(&env.src) || phones.contains(&env.dst);
        if cellular && dark.contains(&now) {
            Verdict::Drop(DropReason::Outage)
        } else {
            Verdict::Pass
        }
    });

    let sim: Simulation<FlMessage> = ActixRuntime::new(2).run(fleet.build(), StopAt::Idle)?;
    let history = sim
        .node::<FedAvgServer>(server)
        .expect("the server")
        .history()
        .to_vec();
    println!("round  closed at   answered  test accuracy");
    for r in &history {
        let strong = r.arrived.iter().filter(|id| id.0 <= 8).count();
        println!(
            "{:>5}  {:>8.1}s   {:>2}/{:<2} ({} strong)  {:>6.2}%",
            r.round,
            r.closed_at_s,
            r.arrived.len(),
            r.sampled.len(),
            strong,
            100.0 * r.accuracy.unwrap_or(f64::NAN)
        );
    }
    let report = sim.world().report();
    let c = &report.counters;
    println!(
        "\nmessages: {} sent, {} delivered, {} dropped {:?}; jobs lost {:?}; virtual time {}; trace {}",
        c.sent,
        c.delivered,
        c.dropped_total(),
        c.dropped,
        c.jobs_lost,
        report.end_time,
        report.trace_hash
    );
    let last = history.last().and_then(|r| r.accuracy).unwrap_or(0.0);
    anyhow::ensure!(
        last > 0.5,
        "FedAvg should learn the synthetic task (got {last:.3})"
    );
    Ok(())
}
