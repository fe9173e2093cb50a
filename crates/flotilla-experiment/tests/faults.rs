//! Random fleets under random faults (dropout, message loss, outages, a client that
//! panics): a run either completes with every count conserved and every model evaluated
//! (a model nothing reached is flagged, never reported as a result), or fails with an
//! error naming the faulty node, the method, the seed and the round.

#![allow(clippy::unwrap_used)]

use flotilla_experiment::{
    ConfigSource, ExperimentConfig, ExperimentError, Faults, Method, Prepared, RunOptions, Verdict,
};
use flotilla_fl::ModelRole;
use flotilla_sim::{SimDuration, SimTime};
use proptest::prelude::*;

const METHODS: [Method; 5] = [
    Method::OndeviceKd,
    Method::StrongOnly,
    Method::WeakOnly,
    Method::FedavgAllLarge,
    Method::ServerLogitEnsemble,
];

fn prepared(clients: usize, strong: usize, dropout: f64, timeout_s: f64) -> Prepared {
    let sets: Vec<String> = vec![
        "rounds=3".into(),
        format!("fleet.clients={clients}"),
        format!("fleet.strong={strong}"),
        format!("training.clients_per_round={}", clients.div_ceil(2)),
        "training.local_steps=3".into(),
        format!("training.stage_timeout_s={timeout_s}"),
        "synthetic.train_samples=1200".into(),
        "synthetic.test_samples=200".into(),
        "server_ensemble.steps=3".into(),
        "kd.probe_samples=8".into(),
        format!("fleet.dropout={dropout}"),
        "fleet.link=\"wifi\"".into(),
    ];
    let source = ConfigSource::resolve("quickstart").unwrap();
    Prepared::new(ExperimentConfig::load(&source, &sets).unwrap()).unwrap()
}

fn at(secs: f64) -> SimTime {
    SimTime::ZERO + SimDuration::from_secs_f64(secs).unwrap()
}

/// The models each method trains.
fn roles(method: Method) -> &'static [ModelRole] {
    match method {
        Method::StrongOnly | Method::FedavgAllLarge => &[ModelRole::Target],
        Method::WeakOnly => &[ModelRole::Auxiliary],
        _ => &[ModelRole::Target, ModelRole::Auxiliary],
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn a_faulty_run_completes_with_counts_conserved_or_fails_naming_the_fault(
        clients in 4usize..10,
        strong_share in 0.2f64..0.8,
        method in 0usize..METHODS.len(),
        seed in 1u64..1_000,
        dropout in prop_oneof![Just(0.0), 0.0f64..0.6, Just(1.0)],
        loss in prop_oneof![Just(None), (0.0f64..0.4).prop_map(Some)],
        outage in proptest::option::of((0usize..10, 0.0f64..200.0, 1.0f64..200.0)),
        panic in proptest::option::of((0usize..10, 0u32..3)),
        timeout_s in prop_oneof![Just(30.0), 0.5f64..5.0],
    ) {
        let strong = ((clients as f64 * strong_share) as usize).clamp(1, clients - 1);
        let method = METHODS[method];
        let prepared = prepared(clients, strong, dropout, timeout_s);
        let faults = Faults {
            loss,
            outages: outage
                .map(|(c, from, len)| {
                    (c % clients, at(from), at(from + len))
                })
                .into_iter()
                .collect(),
            panic: panic.map(|(c, r)| (c % clients, r)),
        };
        let options = RunOptions { threads: 2, faults: faults.clone(), ..RunOptions::default() };
        match prepared.run(method, seed, options) {
            Err(ExperimentError::NodeFailed { method: m, seed: s, node, round, reason, .. }) => {
                let (client, panic_round) = faults.panic.expect("only the injected panic fails a node");
                prop_assert_eq!(m, method.to_string());
                prop_assert_eq!(s, seed);
                prop_assert_eq!(node, format!("client-{client}"));
                prop_assert_eq!(round, format!("in round {panic_round}"));
                prop_assert!(reason.contains("injected fault"), "{}", reason);
            }
            Err(e) => prop_assert!(false, "unexpected error: {e}"),
            Ok(o) => {
                let c = &o.counters;
                prop_assert_eq!(c.in_flight(), 0, "every message delivered or dropped");
                let lost: u64 = c.jobs_lost.values().sum();
                prop_assert_eq!(c.jobs_started, c.jobs_done + lost, "every job done or lost");
                prop_assert_eq!(c.node_failures, 0);
                prop_assert_eq!(o.rounds.len(), 3);
                for r in &o.rounds {
                    for st in &r.stages {
                        prop_assert!(st.replied.len() + st.rejected.len() <= st.assigned.len());
                        prop_assert!(st.replied.iter().all(|n| st.assigned.contains(n)));
                    }
                }
                for &role in roles(method) {
                    let last = o.evaluations.iter().rev().find(|e| e.role == role);
                    prop_assert!(last.is_some_and(|e| e.round == 2), "{role} not evaluated after the last round");
                    // A model no reply ever reached is flagged, not reported.
                    let reached = o.rounds.iter().flat_map(|r| &r.stages).any(|s| s.models.contains(&role));
                    prop_assert_eq!(o.verdict(role) == Verdict::NoUpdate, !reached);
                }
                if dropout == 1.0 {
                    for &role in roles(method) {
                        prop_assert_eq!(o.verdict(role), Verdict::NoUpdate);
                    }
                }
            }
        }
    }
}

#[test]
fn a_client_that_panics_fails_the_run_naming_it_and_its_round() {
    let prepared = prepared(6, 2, 0.0, 30.0);
    let clean = prepared
        .run(Method::WeakOnly, 3, RunOptions::default())
        .unwrap();
    // A client that the clean run assigned work in round 1 (node i + 1 is client i).
    let node = clean.rounds[1].stages[0].assigned[0];
    let client = node.0 as usize - 1;
    let faults = Faults {
        panic: Some((client, 1)),
        ..Faults::default()
    };
    let options = RunOptions {
        faults,
        ..RunOptions::default()
    };
    let err = prepared.run(Method::WeakOnly, 3, options).unwrap_err();
    let text = err.to_string();
    for part in [
        "weak_only",
        "seed 3",
        &format!("client-{client}"),
        "in round 1",
        "injected fault",
    ] {
        assert!(text.contains(part), "`{part}` missing from: {text}");
    }
}
