//! Round policies and asynchronous methods from the config: every key is checked, every
//! assignment ends in one fate, the study outputs (staleness, time to accuracy, per-client
//! participation, updates.csv) follow from the run, and over-selection and deadlines act
//! as configured.

#![allow(clippy::unwrap_used)]

use flotilla_experiment::report::{Summary, updates_csv};
use flotilla_experiment::{ConfigSource, ExperimentConfig, Method, Prepared, RunOptions};
use flotilla_fl::{Fate, ModelRole};

fn config(extra: &[&str]) -> Result<ExperimentConfig, flotilla_experiment::ExperimentError> {
    let mut sets: Vec<String> = [
        "rounds=4",
        "fleet.clients=12",
        "fleet.strong=3",
        "training.clients_per_round=4",
        "training.local_steps=4",
        "synthetic.train_samples=2400",
        "synthetic.test_samples=300",
        "kd.probe_samples=8",
        "fleet.link=\"wifi\"",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    sets.extend(extra.iter().map(|s| s.to_string()));
    let source = ConfigSource::resolve("quickstart").unwrap();
    ExperimentConfig::load(&source, &sets)
}

fn tiny(extra: &[&str]) -> Prepared {
    Prepared::new(config(extra).unwrap()).unwrap()
}

#[test]
fn bad_policy_and_async_keys_are_refused_by_name() {
    for (set, key) in [
        (
            "round_policy.over_selection=0.5",
            "round_policy.over_selection",
        ),
        (
            "round_policy.over_selection=1000.0",
            "round_policy.over_selection",
        ),
        ("round_policy.deadline_s=0.0", "round_policy.deadline_s"),
        ("round_policy.deadline_s=1e18", "round_policy.deadline_s"),
        (
            "round_policy.min_updates=1000001",
            "round_policy.min_updates",
        ),
        ("async.concurrency=0", "async.concurrency"),
        ("async.concurrency=13", "async.concurrency"),
        ("async.buffer=0", "async.buffer"),
        ("async.server_lr=0.0", "async.server_lr"),
        ("async.alpha=1.5", "async.alpha"),
        (
            "async.staleness={kind=\"polynomial\", a=-1.0}",
            "async.staleness",
        ),
        ("async.job_timeout_s=-1.0", "async.job_timeout_s"),
        ("fleet.rejoin_s=0.0", "fleet.rejoin_s"),
        ("accuracy_targets=[0.5, 80.0]", "accuracy_targets[1]"),
        ("topology.edges=13", "topology.edges"),
        ("topology.local_rounds=0", "topology.local_rounds"),
        ("topology.edge_deadline_s=-2.0", "topology.edge_deadline_s"),
        ("topology.clients_per_edge=0", "topology.clients_per_edge"),
        (
            "topology.edge_link=\"carrier-pigeon\"",
            "topology.edge_link",
        ),
    ] {
        let e = config(&[set]).map(|_| ()).unwrap_err().to_string();
        assert!(e.contains(key), "{set}: {e}");
    }
    for unknown in ["round_policy.deadline=3.0", "async.buffr=3"] {
        assert!(config(&[unknown]).is_err(), "{unknown} accepted");
    }
}

#[test]
fn every_assignment_of_every_method_ends_in_one_fate() {
    let prepared = tiny(&[
        "fleet.dropout=0.2",
        "fleet.link={latency = {kind = \"fixed\", ms = 20.0}, loss = 0.1}",
        "fleet.rejoin_s=30.0",
        "async.concurrency=4",
        "async.buffer=2",
        "async.job_timeout_s=20.0",
        "round_policy.deadline_s=15.0",
    ]);
    for method in [
        Method::OndeviceKd,
        Method::WeakOnly,
        Method::Fedasync,
        Method::Fedbuff,
        Method::OndeviceKdAsync,
    ] {
        let o = prepared.run(method, 3, RunOptions::default()).unwrap();
        assert!(o.jobs.adds_up(), "{method}: {:?}", o.jobs);
        // Every unanswered assignment has a cause the simulation counted.
        let why = o.unanswered.unwrap();
        assert_eq!(
            why.total(),
            o.jobs.unanswered,
            "{method}: {why:?} vs {:?}",
            o.jobs
        );
        assert!(o.jobs.aggregated > 0, "{method}: {:?}", o.jobs);
        // One update record per reply that arrived; the unanswered are the rest.
        assert_eq!(
            o.updates.len() as u64 + o.jobs.unanswered + o.jobs.unused,
            o.jobs.assigned,
            "{method}"
        );
        let aggregated = o
            .updates
            .iter()
            .filter(|u| u.fate == Fate::Aggregated)
            .count() as u64;
        assert_eq!(aggregated, o.jobs.aggregated, "{method}");
        assert_eq!(
            o.staleness_histogram().values().sum::<u64>(),
            o.jobs.aggregated,
            "{method}"
        );
        let participation = o.client_participation();
        assert_eq!(participation.len(), 12);
        assert_eq!(
            participation
                .iter()
                .map(|p| u64::from(p.aggregated))
                .sum::<u64>(),
            aggregated,
            "{method}"
        );
        // The federation's end is the last round's close, never after the simulation's.
        let last_close = o.rounds.last().unwrap().closed_at_s;
        assert_eq!(o.virtual_time_s, last_close, "{method}");
        assert!(o.virtual_time_s <= o.simulation_end_s, "{method}");
        assert_eq!(o.rounds.len(), 4, "{method}: one record per version");
    }
}

#[test]
fn synchronous_replies_are_never_stale_and_asynchronous_ones_can_be() {
    let prepared = tiny(&["fleet.dropout=0.0", "async.concurrency=8", "async.buffer=2"]);
    let sync = prepared
        .run(Method::WeakOnly, 1, RunOptions::default())
        .unwrap();
    assert_eq!(sync.staleness_histogram().keys().collect::<Vec<_>>(), [&0]);
    let fedbuff = prepared
        .run(Method::Fedbuff, 1, RunOptions::default())
        .unwrap();
    // Eight clients at once, two per step: most updates come back after a step.
    assert!(
        fedbuff.staleness_histogram().keys().any(|&s| s > 0),
        "{:?}",
        fedbuff.staleness_histogram()
    );
    // FedBuff trains `fedavg.model` (the target by default), asynchronous KD both models.
    assert!(fedbuff.final_accuracy(ModelRole::Target).is_some());
    // Strong clients' jobs are the longest (train, then distil): give them versions to
    // arrive in.
    let kd = tiny(&[
        "rounds=16",
        "fleet.dropout=0.0",
        "async.concurrency=8",
        "async.buffer=2",
    ])
    .run(Method::OndeviceKdAsync, 1, RunOptions::default())
    .unwrap();
    assert!(kd.final_accuracy(ModelRole::Target).is_some());
    assert!(kd.final_accuracy(ModelRole::Auxiliary).is_some());
    // Both models were updated, and the records show it: each model's step has its own
    // stage record within a version.
    for role in [ModelRole::Target, ModelRole::Auxiliary] {
        assert!(kd.verdict(role).is_ok(), "{role}: {:?}", kd.verdict(role));
    }
    // Strong clients' replies carry both models (ws trained, wl distilled).
    let strong_stats = kd
        .rounds
        .iter()
        .flat_map(|r| &r.stages)
        .flat_map(|s| s.client_stats.keys())
        .any(|k| k == "auxiliary_ce_loss");
    assert!(strong_stats);
}

#[test]
fn over_selection_aggregates_the_first_k_and_cancels_the_rest() {
    let prepared = tiny(&[
        "fleet.dropout=0.0",
        "round_policy.over_selection=2.0",
        "round_policy.deadline_s=600.0",
    ]);
    let o = prepared
        .run(Method::WeakOnly, 2, RunOptions::default())
        .unwrap();
    for round in &o.rounds {
        let stage = &round.stages[0];
        assert_eq!(stage.assigned.len(), 8, "ceil(2·4) clients asked");
        assert_eq!(stage.replied.len(), 4, "the first 4 aggregated");
    }
    // The four slower clients of each round come back after their stage closed.
    assert_eq!(o.jobs.cancelled, 4 * 4, "{:?}", o.jobs);
    assert!(o.jobs.adds_up());
}

#[test]
fn a_minimum_of_updates_retries_then_skips_a_short_stage() {
    // No client can ever reply in time: every stage is short.
    let prepared = tiny(&[
        "fleet.dropout=0.0",
        "round_policy.deadline_s=0.000001",
        "round_policy.min_updates=1",
        "round_policy.max_retries=1",
    ]);
    let o = prepared
        .run(Method::WeakOnly, 2, RunOptions::default())
        .unwrap();
    for round in &o.rounds {
        let attempts: Vec<u16> = round.stages.iter().map(|s| s.attempt).collect();
        assert_eq!(attempts, [0, 1], "round {}: tried, retried", round.round);
        assert!(round.stages.iter().all(|s| s.replied.is_empty()));
    }
    assert_eq!(o.jobs.aggregated, 0);
    assert!(o.jobs.late > 0);
    assert!(o.jobs.adds_up());
}

#[test]
fn time_to_accuracy_and_updates_csv_follow_the_run() {
    let prepared = tiny(&["fleet.dropout=0.0", "accuracy_targets=[0.05, 0.99]"]);
    let o = prepared
        .run(Method::WeakOnly, 4, RunOptions::default())
        .unwrap();
    let t = o.time_to_accuracy(ModelRole::Auxiliary, &[0.05, 0.99]);
    // Any trained model beats 5 % on ten balanced classes after its first round.
    assert_eq!(t[0].round, Some(0));
    assert_eq!(t[0].virtual_time_s, Some(o.rounds[0].closed_at_s));
    assert_eq!(t[1].virtual_time_s, None);
    let summary = Summary::new(&prepared.config, std::slice::from_ref(&o));
    let m = &summary.methods[0];
    assert_eq!(m.time_to_accuracy[0].reached, 1);
    assert_eq!(m.time_to_accuracy[1].reached, 0);
    assert!(summary.table().contains("s to 99%"), "{}", summary.table());
    let csv = updates_csv(std::slice::from_ref(&o));
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), o.updates.len());
    assert!(rows.iter().all(|r| r.starts_with("weak_only,4,")));
    assert!(rows.iter().all(|r| r.ends_with(",aggregated")));
}

#[test]
fn a_topology_is_one_of_edges_or_edge_per_group_and_synchronous() {
    let both = config(&["topology.edges=2", "topology.edge_per_group=true"]);
    assert!(both.unwrap_err().to_string().contains("topology.edges"));
    let fedbuff = config(&["topology.edges=2", "methods=[\"fedbuff\"]"]);
    let e = fedbuff.unwrap_err().to_string();
    assert!(e.contains("topology.edges") && e.contains("fedbuff"), "{e}");
}

#[test]
fn clients_under_edges_are_accounted_for_in_the_edges_books() {
    let prepared = tiny(&[
        "fleet.dropout=0.1",
        "topology.edges=3",
        "topology.local_rounds=2",
        "topology.edge_deadline_s=20.0",
    ]);
    let o = prepared
        .run(Method::WeakOnly, 6, RunOptions::default())
        .unwrap();
    assert_eq!(o.edges.len(), 3);
    // Edges are nodes after the clients; each holds a third of the twelve clients.
    assert_eq!(
        o.edges
            .iter()
            .map(|e| (e.node.0, e.clients))
            .collect::<Vec<_>>(),
        [(13, 4), (14, 4), (15, 4)]
    );
    // The server's stages assign edges only; each edge's books add up.
    for stage in o.rounds.iter().flat_map(|r| &r.stages) {
        assert!(
            stage.assigned.iter().all(|n| n.0 >= 13),
            "{:?}",
            stage.assigned
        );
    }
    assert!(o.jobs.adds_up());
    for e in &o.edges {
        assert!(e.jobs.adds_up(), "{:?}", e.jobs);
        assert!(e.jobs.aggregated > 0);
    }
    // Every client is counted where it worked: at its edge.
    let participation = o.client_participation();
    assert!(
        participation.iter().all(|p| p.assigned > 0),
        "{participation:?}"
    );
    let aggregated: u64 = o.edges.iter().map(|e| e.jobs.aggregated).sum();
    assert_eq!(
        participation
            .iter()
            .map(|p| u64::from(p.aggregated))
            .sum::<u64>(),
        aggregated
    );
    let csv = updates_csv(std::slice::from_ref(&o));
    assert!(csv.lines().nth(1).is_some());
    assert!(
        csv.lines()
            .skip(1)
            .any(|r| r.split(',').nth(2) == Some("13"))
    );
    assert!(o.final_accuracy(ModelRole::Auxiliary).is_some());
}

#[test]
fn a_programs_own_strategy_is_selected_by_name_from_the_toml() {
    use flotilla_experiment::Strategies;
    use flotilla_fl::{FedAvg, FedAvgConfig, Synchronous};
    // Unregistered, a name that is not built in is refused before anything loads.
    let cfg = config(&["methods=[\"fedavg_weighted\"]"]).unwrap();
    let e = Prepared::new(cfg.clone()).unwrap_err().to_string();
    assert!(
        e.contains("methods[0]") && e.contains("fedavg_weighted"),
        "{e}"
    );
    assert!(config(&["methods=[\"Not A Name\"]"]).is_err());

    let mut strategies = Strategies::default();
    strategies
        .register("fedavg_weighted", |ctx| {
            let fedavg = FedAvg::new(
                ctx.task,
                FedAvgConfig {
                    model: ModelRole::Target,
                    clients_per_round: Some(ctx.config.training.clients_per_round),
                    weighted: true,
                    schedule: ctx.schedule.clone(),
                },
            )?;
            Ok(Box::new(Synchronous::new(fedavg, ctx.policy.clone())))
        })
        .unwrap();
    assert!(strategies.register("fedavg", |_| unreachable!()).is_err());
    assert!(
        strategies
            .register("fedavg_weighted", |_| unreachable!())
            .is_err()
    );
    let prepared = Prepared::with_strategies(cfg, strategies).unwrap();
    let method = prepared.config.methods[0];
    assert_eq!(method.name(), "fedavg_weighted");
    let o = prepared.run(method, 2, RunOptions::default()).unwrap();
    assert!(o.final_accuracy(ModelRole::Target).is_some());
    assert!(o.jobs.adds_up() && o.jobs.aggregated > 0);
    let summary = Summary::new(&prepared.config, std::slice::from_ref(&o));
    let json = serde_json::to_string(&summary).unwrap();
    assert!(json.contains("\"method\":\"fedavg_weighted\""), "{json}");
}
