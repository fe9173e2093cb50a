//! Example: a network rule of your own — a closure in user code, not a built-in — that
//! models a metered uplink at rush hour: commuters' phones cannot upload models while
//! they are on the train. The same FedAvg run, on the same seed, with and without it.
//!
//! This example demonstrates: writing a rule as a closure over `Envelope` (sender,
//! receiver, size) and the send time, installing it with `Federation::network().rule`,
//! dropping with a reason of your own (`DropReason::Custom`), and reading what it did from
//! the network's books (drops by reason) and the coordinator's (each job's fate).
//!
//! ```text
//!   home phones      x12 ──wifi──────────────┐
//!                                            ├──► server (FedAvg, all 24 clients a round,
//!   commuter phones  x12 ──cellular-4g───────┘              rounds close at 2 s at the latest)
//!                    │
//!                    └─ rule: during rush hour, 1.5 s of every 5 s "day", their uploads
//!                       of more than 1 kB are dropped with reason "rush hour"
//! ```
//!
//! A day is compressed to 5 s of virtual time so that a 30-round run at this tiny budget
//! (rounds take a quarter of a second) crosses rush hours. A round that overlaps one loses
//! the commuters' updates and waits out its deadline. Links are lossless and devices never
//! drop out, so every reply the server misses is the rule's doing: the run prints both
//! runs' books and checks that the rule's drops equal the jobs the server never heard back
//! from, that all of those were commuters', and that the run without the rule lost none.
//!
//! Run: `cargo run --release --example custom_network_rule`

use flotilla::data::{SyntheticConfig, dirichlet};
use flotilla::fl::{
    ClientData, ClientGroup, Coordinator, CoordinatorConfig, FedAvg, FedAvgConfig, Federation,
    JobTally, LearningTask, LocalTraining, LocalWorker, ModelRole, Placement, RoundPolicy,
    Synchronous,
};
use flotilla::nn::{LrSchedule, SgdConfig};
use flotilla::sim::{
    DeviceProfile, DropReason, Envelope, LinkSpec, NetworkModel, NodeId, Purpose, Seed, SimTime,
    Simulation, StopAt, Verdict, secs,
};
use std::collections::BTreeMap;
use std::sync::Arc;

const CLIENTS_PER_GROUP: usize = 12;
const ROUNDS: u32 = 30;
/// The compressed day and its rush hour, `[from, until)` within each day \[µs\].
const DAY_US: u64 = 5_000_000;
const RUSH_US: (u64, u64) = (2_000_000, 3_500_000);
/// Uploads above this size are metered: model updates are, a client's hello is not.
const METERED_BYTES: u64 = 1_000;

/// What one run did.
struct Outcome {
    drops: BTreeMap<DropReason, u64>,
    tally: JobTally,
    /// The commuters' ids.
    commuters: Vec<NodeId>,
    /// Jobs never answered, by client.
    unanswered: BTreeMap<NodeId, u64>,
    /// Rounds that aggregated fewer replies than they assigned.
    short_rounds: usize,
    accuracy: f64,
    /// When the last round was committed \[virtual s\].
    finished_s: f64,
}

/// One FedAvg run; with `rush_hour`, the commuters' uploads obey the rule.
fn run(rush_hour: bool) -> anyhow::Result<Outcome> {
    let seed = Seed(7);
    let (train, test) = SyntheticConfig::default().generate()?;
    let train = Arc::new(train);
    let local = LocalTraining {
        steps: 10,
        batch_size: 32,
        sgd: SgdConfig::default(),
    };
    let models = [(ModelRole::Target, "mlp:32-64-10".parse()?)];
    let task = LearningTask::new(train.clone(), Arc::new(test), None, &models, local, seed);
    let task = Arc::new(task?);
    let shards = dirichlet(
        train.labels(),
        train.classes(),
        2 * CLIENTS_PER_GROUP,
        1.0,
        10,
        &mut seed.stream(NodeId(0), Purpose::SETUP),
    )?;
    let mut home: Vec<ClientData> = shards.into_iter().map(ClientData::from_labeled).collect();
    let commuting = home.split_off(CLIENTS_PER_GROUP);

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
        eval_every: 1,
    };
    let policy = RoundPolicy::wait_all(Some(secs(2)));
    let server_task = task.clone();
    let coordinator =
        move |clients| Coordinator::synchronous(strategy, policy, server_task, config, clients);

    // No random loss and no dropout: whatever goes missing, the rule took.
    let phone = DeviceProfile {
        dropout: 0.0,
        ..DeviceProfile::preset("phone-high")?
    };
    let lossless = |name: &str| -> anyhow::Result<LinkSpec> {
        Ok(LinkSpec {
            loss: 0.0,
            ..LinkSpec::preset(name)?
        })
    };
    let worker = Arc::new(LocalWorker);
    let group = |data, link| {
        ClientGroup::new(worker.clone(), task.clone(), data)
            .placed(Placement::new(Some(phone.clone()), Some(link)))
    };
    let network = NetworkModel::new(LinkSpec::preset("datacenter")?);
    let mut fed = Federation::new(
        Simulation::builder(seed, network),
        "server",
        coordinator,
        Placement::default(),
    );
    fed.participants(fed.server(), group(home, lossless("wifi")?))?;
    let commuters = fed.participants(fed.server(), group(commuting, lossless("cellular-4g")?))?;
    // The server is node 0: a federation numbers it first (see `Federation`).
    let server = NodeId(0);

    if rush_hour {
        // The rule: any closure from (message, send time) to a verdict. It may also
        // deliver after a delay of its own (`Verdict::Deliver`), which then replaces the
        // link's delay, or pass, leaving the message to later rules and the links.
        let rush = RUSH_US.0..RUSH_US.1;
        let metered = commuters.clone();
        fed.network().rule(move |env: &Envelope, now: SimTime| {
            let upload = metered.contains(&env.src) && env.dst == server;
            let in_rush = rush.contains(&(now.0 % DAY_US));
            if upload && env.bytes > METERED_BYTES && in_rush {
                Verdict::Drop(DropReason::Custom("rush hour".into()))
            } else {
                Verdict::Pass
            }
        });
    }

    let (mut sim, handle) = fed.build()?;
    sim.run(StopAt::Idle);
    let coordinator: &Coordinator<Synchronous<FedAvg>> =
        handle.coordinator(&sim).expect("the server");
    anyhow::ensure!(coordinator.finished(), "every round should run");
    let tally = coordinator.tally();
    anyhow::ensure!(
        tally.adds_up(),
        "the server's books do not add up: {tally:?}"
    );
    // A job is unanswered if its client was assigned and no reply came, in time or late.
    let mut unanswered: BTreeMap<NodeId, u64> = BTreeMap::new();
    for stage in coordinator.history().iter().flat_map(|r| &r.stages) {
        for &client in &stage.assigned {
            *unanswered.entry(client).or_default() += 1;
        }
    }
    for update in coordinator.updates() {
        if let Some(n) = unanswered.get_mut(&update.client) {
            *n -= 1;
        }
    }
    unanswered.retain(|_, n| *n > 0);
    let history = coordinator.history();
    let short_rounds = history
        .iter()
        .filter(|r| r.stages.iter().any(|s| s.replied.len() < s.assigned.len()))
        .count();
    let accuracy = history
        .last()
        .and_then(|r| r.evaluations.first())
        .map_or(f64::NAN, |e| e.accuracy);
    let finished_s = coordinator
        .finished_at()
        .map_or(f64::NAN, |t| (t - SimTime::ZERO).as_secs_f64());
    Ok(Outcome {
        drops: sim.world().report().counters.dropped,
        tally,
        commuters,
        unanswered,
        short_rounds,
        accuracy,
        finished_s,
    })
}

fn main() -> anyhow::Result<()> {
    let without = run(false)?;
    let with = run(true)?;
    println!(
        "                  jobs  aggregated  late  unanswered  short rounds  accuracy  virtual time  drops"
    );
    for (name, o) in [("without the rule", &without), ("with the rule", &with)] {
        let t = &o.tally;
        let drops: Vec<String> = o.drops.iter().map(|(r, n)| format!("{r} ×{n}")).collect();
        println!(
            "{name:<16}  {:>4}  {:>10}  {:>4}  {:>10}  {:>12}  {:>7.2}%  {:>10.1} s  [{}]",
            t.assigned,
            t.aggregated,
            t.late,
            t.unanswered,
            o.short_rounds,
            100.0 * o.accuracy,
            o.finished_s,
            drops.join(", ")
        );
    }
    let missed: Vec<String> = with
        .unanswered
        .iter()
        .map(|(id, n)| format!("{id}×{n}"))
        .collect();
    println!("unanswered with the rule, by client: {}", missed.join(" "));

    let rush = DropReason::Custom("rush hour".into());
    let dropped = with.drops.get(&rush).copied().unwrap_or(0);
    anyhow::ensure!(
        without.drops.is_empty() && without.tally.unanswered == 0,
        "without the rule nothing should be lost: {:?}, {:?}",
        without.drops,
        without.tally
    );
    anyhow::ensure!(dropped > 0, "the rule should have dropped uploads");
    anyhow::ensure!(
        with.drops.len() == 1 && dropped == with.tally.unanswered,
        "every drop should be the rule's, and each a reply the server never got \
         ({dropped} dropped, {} unanswered, drops {:?})",
        with.tally.unanswered,
        with.drops
    );
    anyhow::ensure!(
        with.unanswered.keys().all(|id| with.commuters.contains(id)),
        "only commuters should go unanswered: {:?}",
        with.unanswered
    );
    println!(
        "the rush-hour rule dropped {dropped} uploads, {:.0} % of the commuters' jobs; \
         the run took {:.1} s of virtual time instead of {:.1} s",
        100.0 * dropped as f64 / (f64::from(ROUNDS) * CLIENTS_PER_GROUP as f64),
        with.finished_s,
        without.finished_s
    );
    Ok(())
}
