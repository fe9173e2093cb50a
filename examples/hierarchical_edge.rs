//! Example: hierarchical FedAvg — phones answer edge aggregators, which run two local
//! rounds over their phones per cloud round and send the cloud one averaged model each,
//! weighted by the samples behind it. The same phones in a flat star are the baseline.
//!
//! This example demonstrates: `Federation` (a custom topology in a few calls, the
//! `hierarchical` and `star` fixtures), `EdgeAggregator` settings, and reading the edges'
//! books (every child reply counted, late ones included).
//!
//! ```text
//!                          cloud (FedAvg over the edges, sample-weighted)
//!              ┌─────────────┼─────────────┐        ethernet
//!            edge-0        edge-1        edge-2     2 local rounds, 20 s deadline each
//!          ┌──┬┴─┬──┐    ┌──┬┴─┬──┐    ┌──┬┴─┬──┐   wifi
//!          6 phones      6 phones      6 phones     (phone-high)
//! ```
//!
//! Run: `cargo run --release --example hierarchical_edge`

use flotilla::data::{SyntheticConfig, dirichlet};
use flotilla::fl::{
    ClientData, ClientGroup, Coordinator, CoordinatorConfig, EdgeConfig, FedAvg, FedAvgConfig,
    Federation, LearningTask, LocalTraining, LocalWorker, ModelRole, Placement, RoundPolicy,
    Synchronous,
};
use flotilla::nn::{LrSchedule, SgdConfig};
use flotilla::sim::{
    DeviceProfile, LinkSpec, NetworkModel, NodeId, Purpose, Seed, Simulation, StopAt, secs,
};
use std::sync::Arc;

const EDGES: usize = 3;
const PHONES_PER_EDGE: usize = 6;
const ROUNDS: u32 = 8;

/// The cloud's coordinator: FedAvg weighted by samples, waiting up to `deadline` seconds.
fn cloud(
    task: &Arc<LearningTask>,
    deadline: u64,
) -> anyhow::Result<impl FnOnce(usize) -> Coordinator<Synchronous<FedAvg>> + 'static> {
    let strategy = FedAvg::new(
        task,
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
    let task = task.clone();
    let policy = RoundPolicy::wait_all(Some(secs(deadline)));
    Ok(move |children| Coordinator::synchronous(strategy, policy, task, config, children))
}

/// Accuracy after each round and when the last round closed \[virtual s\].
fn curve(coordinator: &Coordinator<Synchronous<FedAvg>>) -> (Vec<f64>, f64) {
    let history = coordinator.history();
    let accuracy = history
        .iter()
        .filter_map(|r| r.evaluations.first().map(|e| e.accuracy))
        .collect();
    (accuracy, history.last().map_or(f64::NAN, |r| r.closed_at_s))
}

fn main() -> anyhow::Result<()> {
    let seed = Seed(21);
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
    let phones = EDGES * PHONES_PER_EDGE;
    let shards = dirichlet(
        train.labels(),
        train.classes(),
        phones,
        0.5,
        10,
        &mut seed.stream(NodeId(0), Purpose::SETUP),
    )?;
    let data: Vec<ClientData> = shards.into_iter().map(ClientData::from_labeled).collect();
    let phone = Placement::new(
        Some(DeviceProfile::preset("phone-high")?),
        Some(LinkSpec::preset("wifi")?),
    );
    let worker = Arc::new(LocalWorker);
    let group = |data: &[ClientData]| {
        ClientGroup::new(worker.clone(), task.clone(), data.to_vec()).placed(phone.clone())
    };
    let network = || -> anyhow::Result<_> {
        Ok(Simulation::builder(
            seed,
            NetworkModel::new(LinkSpec::preset("datacenter")?),
        ))
    };

    // Cloud (id 0), the phones (ids 1–18, as in the star), the edges (19–21).
    let edge = EdgeConfig {
        task: task.clone(),
        local_rounds: 2,
        policy: RoundPolicy::wait_all(Some(secs(20))),
        weighted: true,
        clients_per_round: None,
        registration_window: secs(5),
    };
    let groups = data.chunks(PHONES_PER_EDGE).map(group).collect();
    let edge_site = Placement::new(None, Some(LinkSpec::preset("ethernet")?));
    let tree = Federation::hierarchical(network()?, cloud(&task, 120)?, edge, edge_site, groups)?;
    let (mut sim, tree) = tree.build()?;
    sim.run(StopAt::Idle);
    let (hierarchical, tree_time) = curve(tree.coordinator(&sim).expect("the cloud"));
    println!("edge  phones  local rounds  child replies (aggregated/late/unanswered)  samples");
    for &id in tree.edges() {
        let edge = tree.edge(&sim, id).expect("an edge");
        let t = edge.tally();
        anyhow::ensure!(t.adds_up(), "edge {id}'s books do not add up: {t:?}");
        println!(
            "{id:>4}  {:>6}  {:>12}  {:>20}/{}/{}  {:>20}",
            edge.fleet().len(),
            edge.history().len(),
            t.aggregated,
            t.late,
            t.unanswered,
            edge.fleet().clients().map(|(_, c)| c.labeled).sum::<u32>()
        );
    }

    // The baseline: the same phones (same ids, data, devices and links) in a flat star.
    let star = Federation::star(network()?, cloud(&task, 30)?, group(&data));
    let (mut sim, star) = star.build()?;
    sim.run(StopAt::Idle);
    let (flat, star_time) = curve(star.coordinator(&sim).expect("the server"));

    println!("\nround  hierarchical  flat star");
    for (r, (h, f)) in hierarchical.iter().zip(&flat).enumerate() {
        println!("{r:>5}  {:>11.2}%  {:>8.2}%", 100.0 * h, 100.0 * f);
    }
    println!("virtual time: hierarchical {tree_time:.1} s, flat star {star_time:.1} s");
    let (h, f) = (
        hierarchical.last().copied().unwrap_or(0.0),
        flat.last().copied().unwrap_or(0.0),
    );
    anyhow::ensure!(
        h > 0.5,
        "hierarchical FedAvg should learn (got {h:.3}, chance 0.1)"
    );
    anyhow::ensure!(
        h > f - 0.1,
        "two local rounds per edge should not fall far behind the star ({h:.3} vs {f:.3})"
    );
    Ok(())
}
