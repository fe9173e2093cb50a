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
use flotilla::fl::{
    ClientData, ClientGroup, Coordinator, CoordinatorConfig, FedAvg, FedAvgConfig, Federation,
    FlMessage, LearningTask, LocalTraining, LocalWorker, ModelRole, Placement, RoundPolicy, Work,
};
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
    let local = LocalTraining {
        steps: 20,
        batch_size: 32,
        sgd: SgdConfig {
            momentum: 0.9,
            weight_decay: 5e-4,
            nesterov: false,
            clip_norm: None,
        },
    };
    let models = [(ModelRole::Target, "mlp:32-128-10".parse()?)];
    let task = Arc::new(LearningTask::new(
        train.clone(),
        test,
        None,
        &models,
        local,
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

    let strategy = FedAvg::new(
        &task,
        FedAvgConfig {
            model: ModelRole::Target,
            clients_per_round: Some(20),
            weighted: true,
            schedule: LrSchedule::Constant(0.05),
        },
    )?;
    let config = CoordinatorConfig {
        rounds: 15,
        registration_window: secs(10),
        eval_every: 1,
    };
    let policy = RoundPolicy::wait_all(Some(secs(30)));
    let server_task = task.clone();
    let coordinator =
        move |clients| Coordinator::synchronous(strategy, policy, server_task, config, clients);
    // The first 8 shards on edge GPUs over Wi-Fi (ids 1–8), the other 32 on phones.
    let mut data: Vec<ClientData> = shards.into_iter().map(ClientData::from_labeled).collect();
    let phone_data = data.split_off(8);
    let worker = Arc::new(LocalWorker);
    let gpus = ClientGroup::new(worker.clone(), task.clone(), data).placed(Placement::new(
        Some(DeviceProfile::preset("edge-gpu")?),
        Some(LinkSpec::preset("wifi")?),
    ));
    let phones = ClientGroup::new(worker, task.clone(), phone_data).placed(Placement::new(
        Some(DeviceProfile::preset("phone-low")?),
        Some(LinkSpec::preset("cellular-4g")?),
    ));
    let network = NetworkModel::new(LinkSpec::preset("datacenter")?);
    let builder = Simulation::builder(seed, network);
    let mut fleet = Federation::new(builder, "server", coordinator, Placement::default());
    fleet.participants(fleet.server(), gpus)?;
    let phones = fleet.participants(fleet.server(), phones)?;
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

    let (sim, handle) = fleet.build()?;
    let sim: Simulation<FlMessage<Work>> = ActixRuntime::new(2).run(sim, StopAt::Idle)?;
    let history = handle
        .coordinator(&sim)
        .expect("the server")
        .history()
        .to_vec();
    println!("round  closed at   answered  test accuracy");
    let accuracy = |r: &flotilla::fl::RoundRecord| r.evaluations.first().map(|e| e.accuracy);
    for r in &history {
        let stage = &r.stages[0];
        let strong = stage.replied.iter().filter(|id| id.0 <= 8).count();
        println!(
            "{:>5}  {:>8.1}s   {:>2}/{:<2} ({} strong)  {:>6.2}%",
            r.round,
            r.closed_at_s,
            stage.replied.len(),
            stage.assigned.len(),
            strong,
            100.0 * accuracy(r).unwrap_or(f64::NAN)
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
    let last = history.last().and_then(accuracy).unwrap_or(0.0);
    anyhow::ensure!(
        last > 0.5,
        "FedAvg should learn the synthetic task (got {last:.3})"
    );
    Ok(())
}
