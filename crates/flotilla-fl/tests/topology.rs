//! Topologies wired with `Federation`: the built star is the hand-wired star, bit for bit;
//! a hierarchy of equal groups with one local round per edge averages to the flat star's
//! model (up to f32 rounding of the intermediate means); an edge counts its late children.

#![allow(clippy::unwrap_used)]

use flotilla_data::SyntheticConfig;
use flotilla_fl::{
    ClientData, ClientGroup, Coordinator, CoordinatorConfig, EdgeConfig, Fate, FedAvg,
    FedAvgConfig, Federation, FlMessage, LearningTask, LocalTraining, LocalWorker, ModelRole,
    Participant, Placement, RoundPolicy, Synchronous, Work,
};
use flotilla_nn::{LrSchedule, SgdConfig, Weights};
use flotilla_sim::{
    Availability, DeviceProfile, LinkSpec, NetworkModel, NodeId, Seed, Simulation,
    SimulationBuilder, StopAt, millis, secs,
};
use proptest::prelude::*;
use std::sync::Arc;

type Cloud = Coordinator<Synchronous<FedAvg>>;

const SHARD: usize = 40;

/// A small synthetic task: `clients` shards of 40 samples, an `mlp:32-8-10`, 3 local steps.
fn task(seed: Seed, clients: usize) -> Arc<LearningTask> {
    let (train, test) = SyntheticConfig {
        train_samples: clients * SHARD,
        test_samples: 100,
        ..Default::default()
    }
    .generate()
    .unwrap();
    let local = LocalTraining {
        steps: 3,
        batch_size: 16,
        sgd: SgdConfig::default(),
    };
    let models = [(ModelRole::Target, "mlp:32-8-10".parse().unwrap())];
    let task = LearningTask::new(Arc::new(train), Arc::new(test), None, &models, local, seed);
    Arc::new(task.unwrap())
}

fn shards(range: std::ops::Range<usize>) -> Vec<ClientData> {
    range
        .map(|k| ClientData::from_labeled((k * SHARD..(k + 1) * SHARD).collect::<Vec<_>>()))
        .collect()
}

/// The coordinator of FedAvg (unweighted) for `rounds` rounds, waiting for everyone.
fn cloud(
    task: &Arc<LearningTask>,
    rounds: u32,
    weighted: bool,
) -> impl FnOnce(usize) -> Cloud + 'static {
    let strategy = FedAvg::new(
        task,
        FedAvgConfig {
            model: ModelRole::Target,
            clients_per_round: None,
            weighted,
            schedule: LrSchedule::Constant(0.05),
        },
    )
    .unwrap();
    let task = task.clone();
    move |clients| {
        Coordinator::synchronous(
            strategy,
            RoundPolicy::wait_all(None),
            task,
            CoordinatorConfig {
                rounds,
                registration_window: secs(10),
                eval_every: 1,
            },
            clients,
        )
    }
}

fn edge_config(task: &Arc<LearningTask>, local_rounds: u32, deadline: Option<f64>) -> EdgeConfig {
    EdgeConfig {
        task: task.clone(),
        local_rounds,
        policy: RoundPolicy::wait_all(deadline.map(|s| flotilla_sim::micros((s * 1e6) as u64))),
        weighted: false,
        clients_per_round: None,
        registration_window: secs(5),
    }
}

fn instant_network(seed: Seed) -> SimulationBuilder<FlMessage<Work>> {
    Simulation::builder(seed, NetworkModel::new(LinkSpec::latency(millis(0))))
}

fn global(sim: &Simulation<FlMessage<Work>>, server: NodeId) -> Weights {
    let cloud = sim.node::<Cloud>(server).unwrap();
    assert!(cloud.finished());
    cloud.logic().strategy().global().clone()
}

/// The flat star over `clients` clients and the hierarchy of `edges` equal groups of
/// the same clients, after `rounds` rounds: (star model, hierarchy model, edge models).
fn star_and_hierarchy(
    seed: Seed,
    edges: usize,
    group: usize,
    rounds: u32,
    weighted: bool,
) -> (Weights, Weights, Vec<Weights>) {
    let clients = edges * group;
    let task = task(seed, clients);
    let worker = Arc::new(LocalWorker);
    let all = ClientGroup::new(worker.clone(), task.clone(), shards(0..clients));
    let (mut sim, star) =
        Federation::star(instant_network(seed), cloud(&task, rounds, weighted), all)
            .build()
            .unwrap();
    sim.run(StopAt::Idle);
    let flat = global(&sim, star.server());

    let groups = (0..edges)
        .map(|e| {
            ClientGroup::new(
                worker.clone(),
                task.clone(),
                shards(e * group..(e + 1) * group),
            )
        })
        .collect();
    let mut edge = edge_config(&task, 1, None);
    edge.weighted = weighted;
    let fed = Federation::hierarchical(
        instant_network(seed),
        cloud(&task, rounds, weighted),
        edge,
        Placement::default(),
        groups,
    )
    .unwrap();
    let (mut sim, tree) = fed.build().unwrap();
    sim.run(StopAt::Idle);
    // The clients keep the star's ids; the edges come after them.
    assert_eq!(tree.clients(), star.clients());
    assert_eq!(tree.edges().len(), edges);
    let edge_models = tree
        .edges()
        .iter()
        .map(|&e| {
            let edge = tree.edge(&sim, e).unwrap();
            assert_eq!(edge.jobs().answered, u64::from(rounds));
            assert!(edge.tally().adds_up());
            assert_eq!(edge.tally().aggregated, u64::from(rounds) * group as u64);
            Weights::clone(&edge.models()[0].weights)
        })
        .collect();
    (flat, global(&sim, tree.server()), edge_models)
}

const U: f32 = f32::EPSILON / 2.0; // 2⁻²⁴, the unit roundoff of f32

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    /// One round: every client's update is the same bits in both (same ids, hence the same
    /// job streams, same starting model). The star rounds one f64 mean to f32 (error
    /// ≤ u·|f|); the hierarchy rounds each group mean mₑ to f32 (error ≤ u·|mₑ| each, so
    /// ≤ u·maxₑ|mₑ| on their mean) and then the mean of those (≤ u·|h|). Hence
    /// |h − f| ≤ u·(|f| + |h| + maxₑ|mₑ|), plus 1e-12 for the f64 sums.
    #[test]
    fn a_hierarchy_of_equal_groups_averages_to_the_flat_star(
        seed in 0u64..1_000,
        edges in 2usize..4,
        group in 1usize..4,
        weighted in any::<bool>(),
    ) {
        let (flat, tree, edge_models) = star_and_hierarchy(Seed(seed), edges, group, 1, weighted);
        prop_assert_eq!(flat.params.len(), tree.params.len());
        for j in 0..flat.params.len() {
            let (f, h) = (flat.params[j], tree.params[j]);
            let m = edge_models.iter().map(|w| w.params[j].abs()).fold(0.0f32, f32::max);
            let bound = U * (f.abs() + h.abs() + m) + 1e-12;
            prop_assert!((f - h).abs() <= bound, "param {}: star {} hierarchy {} bound {}", j, f, h, bound);
        }
        // And the hierarchy did train: the model moved from where it started.
        let start = task(Seed(seed), edges * group).initial_weights(ModelRole::Target).unwrap();
        prop_assert!(start.params != tree.params);
    }
}

/// Three rounds: the one-round rounding difference (≤ ~1e-7 relative) enters the next
/// round's local SGD, which moves it by at most its Lipschitz factor over a few steps;
/// 1e-5·(1 + |w|) leaves two orders of magnitude of room while a real mismatch (other
/// batches, other weights) differs by 1e-3 or more.
#[test]
fn over_rounds_the_hierarchy_stays_within_rounding_of_the_star() {
    let (flat, tree, _) = star_and_hierarchy(Seed(9), 3, 2, 3, false);
    for (f, h) in flat.params.iter().zip(&tree.params) {
        assert!(
            (f - h).abs() <= 1e-5 * (1.0 + f.abs()),
            "star {f} hierarchy {h}"
        );
    }
}

/// The star of `protocol.rs` wired by hand: server 0, clients 1–3, FedAvg unweighted.
fn hand_wired_star(seed: Seed, task: &Arc<LearningTask>) -> Simulation<FlMessage<Work>> {
    let mut b = Simulation::builder(seed, NetworkModel::new(LinkSpec::latency(millis(1))));
    let server = b.add_node("server", cloud(task, 2, false)(3), None);
    let worker = Arc::new(LocalWorker);
    for (k, data) in shards(0..3).into_iter().enumerate() {
        b.add_node(
            format!("client-{}", k + 1),
            Participant::new(worker.clone(), task.clone(), data, server),
            None,
        );
    }
    b.build()
}

#[test]
fn the_built_star_is_the_hand_wired_star_bit_for_bit() {
    let seed = Seed(5);
    let task = task(seed, 3);
    let mut by_hand = hand_wired_star(seed, &task);
    let hand_report = by_hand.run(StopAt::Idle);

    let network = NetworkModel::new(LinkSpec::latency(millis(1)));
    let clients = ClientGroup::new(Arc::new(LocalWorker), task.clone(), shards(0..3));
    let fed = Federation::star(
        Simulation::builder(seed, network),
        cloud(&task, 2, false),
        clients,
    );
    let (mut built, handle) = fed.build().unwrap();
    let built_report = built.run(StopAt::Idle);

    assert_eq!(handle.server(), NodeId(0));
    assert_eq!(handle.clients(), [NodeId(1), NodeId(2), NodeId(3)]);
    assert_eq!(handle.children(NodeId(0)), handle.clients());
    assert_eq!(handle.parent(NodeId(2)), Some(NodeId(0)));
    let (a, b) = (global(&by_hand, NodeId(0)), global(&built, handle.server()));
    let bits = |w: &Weights| w.params.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a), bits(&b));
    assert_eq!(
        by_hand.node::<Cloud>(NodeId(0)).unwrap().history(),
        handle.coordinator(&built).unwrap().history()
    );
    assert_eq!(hand_report.trace_hash, built_report.trace_hash);
}

fn device(flops_per_sec: f64) -> DeviceProfile {
    DeviceProfile {
        flops_per_sec,
        compute_jitter: 0.0,
        memory_bytes: 4 << 30,
        availability: Availability::Always,
        dropout: 0.0,
    }
}

/// One edge over three children, the last `slowdown` times slower than the others, with a
/// local-round deadline of `deadline` seconds: (edge tally, edge jobs answered, the
/// children whose replies were late).
fn edge_with_a_slow_child(
    seed: Seed,
    slowdown: f64,
    deadline: f64,
) -> (flotilla_fl::JobTally, u64, Vec<NodeId>, u32) {
    let task = task(seed, 3);
    let worker = Arc::new(LocalWorker);
    let network = NetworkModel::new(LinkSpec::latency(millis(1)));
    let mut fed = Federation::new(
        Simulation::builder(seed, network),
        "cloud",
        cloud(&task, 2, true),
        Placement::default(),
    );
    let edge = fed
        .edge(
            fed.server(),
            "edge",
            edge_config(&task, 2, Some(deadline)),
            Placement::default(),
        )
        .unwrap();
    // 3 steps × 16 samples of an mlp:32-8-10 are ~10⁵ FLOP: 0.1 s at 1 MFLOP/s.
    let fast = ClientGroup::new(worker.clone(), task.clone(), shards(0..2))
        .placed(Placement::new(Some(device(1e6)), None));
    let slow = ClientGroup::new(worker, task.clone(), shards(2..3))
        .placed(Placement::new(Some(device(1e6 / slowdown)), None));
    fed.participants(edge, fast).unwrap();
    fed.participants(edge, slow).unwrap();
    let (mut sim, handle) = fed.build().unwrap();
    sim.run(StopAt::Idle);
    let cloud = handle.coordinator(&sim).unwrap();
    assert!(cloud.finished());
    let edge = handle.edge(&sim, handle.edges()[0]).unwrap();
    let mut late: Vec<NodeId> = edge
        .updates()
        .iter()
        .filter(|u| u.fate == Fate::Late)
        .map(|u| u.client)
        .collect();
    late.dedup();
    let cloud_rounds = cloud.history().len() as u32;
    (edge.tally(), edge.jobs().answered, late, cloud_rounds)
}

#[test]
fn late_child_replies_at_an_edge_are_counted() {
    // The slow child needs ~1 s per job; the edge closes each local round after 0.5 s.
    let (tally, answered, late, rounds) = edge_with_a_slow_child(Seed(3), 10.0, 0.5);
    assert_eq!(rounds, 2);
    assert_eq!(answered, 2);
    // 2 cloud rounds × 2 local rounds × 3 children.
    assert_eq!(tally.assigned, 12);
    assert_eq!(tally.aggregated, 8, "{tally:?}");
    assert_eq!(tally.late, 4, "every slow reply is counted late: {tally:?}");
    assert_eq!(tally.unanswered, 0);
    assert!(tally.adds_up());
    assert_eq!(late, vec![NodeId(3)]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// Whatever the deadline and the slowdown, every child assignment is accounted for:
    /// run to idle, each reply was aggregated or counted late, and only the slow child
    /// can be late.
    #[test]
    fn an_edge_accounts_for_every_child_reply(
        seed in 0u64..100,
        slowdown in 1.0f64..30.0,
        deadline in 0.2f64..2.0,
    ) {
        let (tally, answered, late, _) = edge_with_a_slow_child(Seed(seed), slowdown, deadline);
        prop_assert!(tally.adds_up());
        prop_assert_eq!(tally.assigned, 12);
        prop_assert_eq!(tally.aggregated + tally.late, 12, "{:?}", tally);
        prop_assert_eq!(answered, 2);
        prop_assert!(late.iter().all(|&c| c == NodeId(3)), "{:?}", late);
    }
}

#[test]
fn two_tier_numbers_the_strong_group_first_and_each_tier_announces_its_own_device() {
    let seed = Seed(4);
    let task = task(seed, 5);
    let needed = task.model(ModelRole::Target).unwrap().training_memory_bytes;
    let worker = Arc::new(LocalWorker);
    let strong = ClientGroup::new(worker.clone(), task.clone(), shards(0..2))
        .placed(Placement::new(Some(device(1e9)), None));
    let weak = ClientGroup::new(worker, task.clone(), shards(2..5)).placed(Placement::new(
        Some(DeviceProfile {
            memory_bytes: needed - 1,
            ..device(1e8)
        }),
        None,
    ));
    let fed = Federation::two_tier(instant_network(seed), cloud(&task, 1, true), strong, weak);
    let (mut sim, handle) = fed.build().unwrap();
    sim.run(StopAt::Idle);
    assert_eq!(handle.clients(), (1..=5).map(NodeId).collect::<Vec<_>>());
    let cloud = handle.coordinator(&sim).unwrap();
    assert_eq!(cloud.fleet().len(), 5);
    assert_eq!(
        cloud.fleet().capable(ModelRole::Target),
        [NodeId(1), NodeId(2)]
    );
    assert_eq!(cloud.history()[0].stages[0].replied, [NodeId(1), NodeId(2)]);
}

#[test]
fn a_childless_edge_and_a_used_builder_are_refused() {
    let seed = Seed(1);
    let task = task(seed, 1);
    let mut fed = Federation::new(
        instant_network(seed),
        "cloud",
        cloud(&task, 1, true),
        Placement::default(),
    );
    fed.edge(
        fed.server(),
        "lonely",
        edge_config(&task, 1, None),
        Placement::default(),
    )
    .unwrap();
    let err = fed.build().unwrap_err();
    assert!(
        err.to_string().contains("edge lonely has no clients"),
        "{err}"
    );

    let mut fed = Federation::new(
        instant_network(seed),
        "cloud",
        cloud(&task, 1, true),
        Placement::default(),
    );
    let parent = fed.server();
    let refused = fed
        .edge(
            parent,
            "e",
            edge_config(&task, 0, None),
            Placement::default(),
        )
        .unwrap_err();
    assert!(
        refused.to_string().contains("local_rounds is 0"),
        "{refused}"
    );

    let mut used = instant_network(seed);
    used.add_node(
        "stray",
        Participant::new(
            Arc::new(LocalWorker),
            task.clone(),
            shards(0..1).remove(0),
            NodeId(0),
        ),
        None,
    );
    let clients = ClientGroup::new(Arc::new(LocalWorker), task.clone(), shards(0..1));
    let err = Federation::star(used, cloud(&task, 1, true), clients)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("already held 1 node"), "{err}");
}
