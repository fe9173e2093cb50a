//! Runs of the built-in methods on a tiny synthetic fleet: who is asked to do what follows
//! from device memory, the centralised-data count is the strong clients' unlabeled data,
//! and the same seed gives the same run.

#![allow(clippy::unwrap_used)]

use flotilla_experiment::{ConfigSource, ExperimentConfig, Method, Prepared, RunOptions};
use flotilla_fl::ModelRole;
use flotilla_sim::NodeId;

fn tiny(extra: &[&str]) -> Prepared {
    let mut sets: Vec<String> = [
        "rounds=2",
        "fleet.clients=12",
        "fleet.strong=3",
        "training.clients_per_round=4",
        "training.local_steps=4",
        "synthetic.train_samples=2400",
        "synthetic.test_samples=300",
        "server_ensemble.steps=5",
        "kd.probe_samples=8",
        "fleet.dropout=0.0",
        "fleet.link=\"datacenter\"",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    sets.extend(extra.iter().map(|s| s.to_string()));
    let source = ConfigSource::resolve("quickstart").unwrap();
    Prepared::new(ExperimentConfig::load(&source, &sets).unwrap()).unwrap()
}

#[test]
fn only_clients_whose_memory_holds_the_target_are_asked_to_train_it() {
    let prepared = tiny(&[]);
    let outcome = prepared
        .run(Method::OndeviceKd, 5, RunOptions::default())
        .unwrap();
    // Clients are nodes 1..=12; the first three have the strong device.
    let strong: Vec<NodeId> = (1..=3).map(NodeId).collect();
    assert_eq!(outcome.clients, (12, 3));
    for round in &outcome.rounds {
        assert_eq!(round.stages.len(), 2);
        assert_eq!(round.stages[0].assigned.len(), 4);
        assert_eq!(round.stages[1].assigned, strong, "round {}", round.round);
        let stats = &round.stages[1].client_stats;
        for key in ["kd_loss", "kd_grad_norm", "teacher_probe_accuracy_batch_bn"] {
            assert!(stats.contains_key(key), "{key} missing: {stats:?}");
        }
    }
    assert_eq!(outcome.samples_centralised, 0);
    assert!(outcome.final_accuracy(ModelRole::Target).is_some());
    assert!(outcome.final_accuracy(ModelRole::Auxiliary).is_some());
}

/// The kept split is handed out only for its own seed: another seed's draw replaces it,
/// and drawing the first seed again gives the same split as the first time.
#[test]
fn a_seed_gets_its_own_split_whichever_seed_came_before() {
    let prepared = tiny(&[]);
    let first = prepared.split(4).unwrap();
    let other = prepared.split(5).unwrap();
    assert_ne!(first, other, "two seeds drew the same split");
    assert_eq!(prepared.split(4).unwrap(), first);
    assert_eq!(prepared.split(4).unwrap(), first);
    assert_eq!(prepared.split(5).unwrap(), other);
}

#[test]
fn the_ensemble_baseline_counts_every_unlabeled_sample_it_moved() {
    let prepared = tiny(&[]);
    let unlabeled: usize = prepared
        .split(9)
        .unwrap()
        .iter()
        .map(|d| d.unlabeled.len())
        .sum();
    assert!(unlabeled > 0);
    let outcome = prepared
        .run(Method::ServerLogitEnsemble, 9, RunOptions::default())
        .unwrap();
    assert_eq!(outcome.samples_centralised, unlabeled as u64);
    let server = &outcome.rounds[1].stages[1].server_stats;
    assert_eq!(server.get("ensemble_members"), Some(&7.0), "{server:?}");
}

#[test]
fn the_upper_bound_lets_every_client_train_the_target() {
    let prepared = tiny(&[]);
    let outcome = prepared
        .run(Method::FedavgAllLarge, 2, RunOptions::default())
        .unwrap();
    assert_eq!(outcome.clients, (12, 12));
    let weak_only = prepared
        .run(Method::WeakOnly, 2, RunOptions::default())
        .unwrap();
    assert!(weak_only.final_accuracy(ModelRole::Target).is_none());
}

#[test]
fn the_same_seed_gives_the_same_run_at_any_thread_count() {
    let prepared = tiny(&["kd.mode=\"joint\""]);
    let run = |threads| {
        prepared
            .run(
                Method::OndeviceKd,
                3,
                RunOptions {
                    threads,
                    ..RunOptions::default()
                },
            )
            .unwrap()
    };
    let (a, b) = (run(1), run(2));
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.evaluations, b.evaluations);
    let c = prepared
        .run(Method::OndeviceKd, 4, RunOptions::default())
        .unwrap();
    assert_ne!(a.trace_hash, c.trace_hash, "another seed, another run");
}

#[test]
fn the_server_sends_the_teacher_down_and_nothing_extra_comes_back_up() {
    let prepared = tiny(&[]);
    let task = prepared.task(6).unwrap();
    let aux = task.initial_weights(ModelRole::Auxiliary).unwrap();
    let aux_bytes = (4 * (aux.params.len() + aux.state.len())) as f64;
    let outcome = prepared
        .run(Method::OndeviceKd, 6, RunOptions::default())
        .unwrap();
    let teachers: usize = outcome
        .rounds
        .iter()
        .map(|r| r.stages[1].assigned.len())
        .sum();
    let (up, down) = (outcome.counters.bytes_up, outcome.counters.bytes_down);
    // Uplink and downlink carry the same models except the teacher `ws` that goes down
    // with every stage-2 assignment; handshakes, plans and reply statistics add a little
    // to both (with this 11 kB model, about 3 % of the difference).
    let extra_down = down as f64 - up as f64;
    let expected = teachers as f64 * aux_bytes;
    assert!(
        (0.9 * expected..1.05 * expected).contains(&extra_down),
        "up {up}, down {down}, {teachers} teachers of {aux_bytes} bytes"
    );
}
