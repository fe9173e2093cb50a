//! One run: a method with a seed, simulated on actors.

use crate::{ExperimentError, Method, Prepared};
use flotilla_actors::ActixRuntime;
use flotilla_fl::{
    ClientData, Coordinator, CoordinatorConfig, Evaluation, FedAvg, FedAvgConfig, KdConfig,
    LearningTask, LocalWorker, ModelRole, Observer, OnDeviceKd, OnDeviceKdConfig, Participant,
    RoundRecord, ServerEnsembleConfig, ServerLogitEnsemble, ServerStrategy, Work,
};
use flotilla_nn::LrSchedule;
use flotilla_sim::{
    Counters, DeviceProfile, LinkSpec, NetworkModel, NodeId, Seed, SimDuration, Simulation, StopAt,
    secs,
};
use serde::Serialize;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

/// How to run: threads, trace output, progress.
#[derive(Default)]
pub struct RunOptions {
    /// Actor arbiters and job threads (results do not depend on it).
    pub threads: usize,
    /// Where to write the JSONL trace, if anywhere.
    pub trace: Option<Box<dyn Write + Send>>,
    /// Called with every evaluation as it completes.
    pub observer: Option<Observer>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("threads", &self.threads)
            .field("trace", &self.trace.is_some())
            .finish_non_exhaustive()
    }
}

/// What one run produced.
#[derive(Debug, Clone, Serialize)]
pub struct RunOutcome {
    /// The method.
    pub method: Method,
    /// The seed.
    pub seed: u64,
    /// Every evaluation, in round order, target before auxiliary.
    pub evaluations: Vec<Evaluation>,
    /// The coordinator's record of each round (stages, replies, client and server stats).
    pub rounds: Vec<RoundRecord>,
    /// Messages, bytes and jobs.
    pub counters: Counters,
    /// Clients that announced themselves, and how many of them can train the target.
    pub clients: (usize, usize),
    /// Training samples moved off the devices.
    pub samples_centralised: u64,
    /// Virtual time at the end of the run \[s\].
    pub virtual_time_s: f64,
    /// Wall-clock time of the simulation \[s\] (reported only; never in metrics).
    pub wall_time_s: f64,
    /// Hash of the whole trace: equal hashes mean identical runs.
    pub trace_hash: String,
}

impl RunOutcome {
    /// The last evaluation of `role`.
    pub fn final_accuracy(&self, role: ModelRole) -> Option<f64> {
        self.evaluations
            .iter()
            .rev()
            .find(|e| e.role == role)
            .map(|e| e.accuracy)
    }

    /// The best evaluation of `role`.
    pub fn best_accuracy(&self, role: ModelRole) -> Option<f64> {
        self.evaluations
            .iter()
            .filter(|e| e.role == role)
            .map(|e| e.accuracy)
            .reduce(f64::max)
    }
}

impl Prepared {
    /// The learning-rate schedule: `lr`, divided by 10 at each milestone fraction.
    fn schedule(&self) -> LrSchedule {
        let c = &self.config;
        let rounds = f64::from(c.rounds);
        LrSchedule::Step {
            base: c.training.lr,
            gamma: 0.1,
            milestones: c
                .training
                .lr_milestones
                .iter()
                .map(|m| (m * rounds).round() as usize)
                .collect(),
        }
    }

    /// Runs `method` with `seed`.
    pub fn run(
        &self,
        method: Method,
        seed: u64,
        options: RunOptions,
    ) -> Result<RunOutcome, ExperimentError> {
        let c = &self.config;
        let t = &c.training;
        let task = self.task(seed)?;
        let split = self.split(seed)?;
        let schedule = self.schedule();
        let fedavg = |model, clients_per_round| {
            FedAvg::new(
                &task,
                FedAvgConfig {
                    model,
                    clients_per_round,
                    weighted: t.weighted,
                    schedule: schedule.clone(),
                },
            )
        };
        let k = Some(t.clients_per_round);
        match method {
            Method::OndeviceKd => {
                let kd = &c.kd;
                let strategy = OnDeviceKd::new(
                    &task,
                    OnDeviceKdConfig {
                        clients_per_round: t.clients_per_round,
                        strong_per_round: t.strong_per_round,
                        weighted: t.weighted,
                        schedule,
                        kd: KdConfig {
                            mode: kd.mode,
                            temperature: kd.temperature,
                            lambda: kd.lambda,
                            ramp_rounds: (kd.ramp * f64::from(c.rounds)).round() as u32,
                            teacher_bn: kd.teacher_bn,
                            fresh_optimizer: kd.fresh_optimizer,
                            probe_samples: kd.probe_samples,
                        },
                    },
                )?;
                self.simulate(method, seed, task, split, strategy, options)
            }
            Method::StrongOnly => {
                let strategy = fedavg(ModelRole::Target, t.strong_per_round)?;
                self.simulate(method, seed, task, split, strategy, options)
            }
            Method::WeakOnly => {
                let strategy = fedavg(ModelRole::Auxiliary, k)?;
                self.simulate(method, seed, task, split, strategy, options)
            }
            Method::Fedavg => {
                let strategy = fedavg(c.fedavg.model, k)?;
                self.simulate(method, seed, task, split, strategy, options)
            }
            Method::FedavgAllLarge => {
                let strategy = fedavg(ModelRole::Target, k)?;
                self.simulate(method, seed, task, split, strategy, options)
            }
            Method::ServerLogitEnsemble => {
                let se = &c.server_ensemble;
                let centralised: Vec<usize> = split
                    .iter()
                    .flat_map(|d| d.unlabeled.iter().copied())
                    .collect();
                let strategy = ServerLogitEnsemble::new(
                    task.clone(),
                    ServerEnsembleConfig {
                        clients_per_round: t.clients_per_round,
                        strong_per_round: t.strong_per_round,
                        weighted: t.weighted,
                        schedule,
                        temperature: se.temperature.unwrap_or(c.kd.temperature),
                        server_steps: se.steps,
                        server_batch: se.batch_size,
                        server_lr: se.lr,
                    },
                    centralised.into(),
                    SERVER,
                )?;
                self.simulate(method, seed, task, split, strategy, options)
            }
        }
    }

    fn simulate<S: ServerStrategy<Work = Work>>(
        &self,
        method: Method,
        seed: u64,
        task: Arc<LearningTask>,
        split: Vec<ClientData>,
        strategy: S,
        options: RunOptions,
    ) -> Result<RunOutcome, ExperimentError> {
        let c = &self.config;
        let link = |name: &str, key: &str| {
            LinkSpec::preset(name).map_err(|e| crate::ConfigError::new(key, name, e.to_string()))
        };
        let mut builder = Simulation::builder(
            Seed(seed),
            NetworkModel::new(link("datacenter", "(the server's link preset)")?),
        );
        if let Some(out) = options.trace {
            builder = builder.trace_jsonl(out);
        }
        let timeout = c.training.stage_timeout_s;
        let stage_timeout = SimDuration::from_secs_f64(timeout).ok_or_else(|| {
            crate::ConfigError::new(
                "training.stage_timeout_s",
                timeout,
                "not a duration the virtual clock can count",
            )
        })?;
        let mut coordinator = Coordinator::new(
            strategy,
            task.clone(),
            CoordinatorConfig {
                rounds: c.rounds,
                stage_timeout: Some(stage_timeout),
                registration_window: secs(60),
                eval_every: c.eval_every,
            },
            c.fleet.clients,
        );
        if let Some(observer) = options.observer {
            coordinator = coordinator.with_observer(observer);
        }
        let server_device = DeviceProfile::preset("server")
            .map_err(|e| crate::ConfigError::new("server", "server", e.to_string()))?;
        let server = builder.add_infrastructure_node("server", coordinator, server_device);
        debug_assert_eq!(server, SERVER);
        let client_link = link(&c.fleet.link, "fleet.link")?;
        let worker = Arc::new(LocalWorker);
        let devices = self.devices(method)?;
        for (i, (data, device)) in split.into_iter().zip(devices).enumerate() {
            let participant = Participant::new(worker.clone(), task.clone(), data, server);
            let id = builder.add_node(format!("client-{i}"), participant, Some(device));
            builder.network().set_node_link(id, client_link.clone());
        }
        let sim = builder.build();
        let started = Instant::now();
        let sim = ActixRuntime::new(options.threads.max(1)).run(sim, StopAt::Idle)?;
        let wall_time_s = started.elapsed().as_secs_f64();
        let report = sim.world().report();
        let coordinator =
            sim.node::<Coordinator<S>>(server)
                .ok_or_else(|| ExperimentError::Incomplete {
                    method: method.to_string(),
                    seed,
                    reason: "the coordinator is gone".into(),
                })?;
        if !coordinator.finished() {
            let failures: Vec<String> = report
                .failures
                .iter()
                .map(|f| format!("{f:?}"))
                .take(3)
                .collect();
            return Err(ExperimentError::Incomplete {
                method: method.to_string(),
                seed,
                reason: format!(
                    "stopped after {} of {} rounds; failures: {}",
                    coordinator.history().len(),
                    c.rounds,
                    if failures.is_empty() {
                        "none".to_string()
                    } else {
                        failures.join("; ")
                    }
                ),
            });
        }
        let mut evaluations: Vec<Evaluation> = coordinator
            .history()
            .iter()
            .flat_map(|r| r.evaluations.iter().cloned())
            .collect();
        evaluations.sort_by_key(|e| (e.round, e.role));
        let fleet = coordinator.fleet();
        let outcome = RunOutcome {
            method,
            seed,
            evaluations,
            rounds: coordinator.history().to_vec(),
            counters: report.counters.clone(),
            clients: (fleet.len(), fleet.capable(ModelRole::Target).len()),
            samples_centralised: coordinator.strategy().centralised_samples(),
            virtual_time_s: report.end_time.as_secs_f64(),
            wall_time_s,
            trace_hash: report.trace_hash.to_string(),
        };
        sim.finish().map_err(|source| ExperimentError::Io {
            path: "trace".into(),
            source,
        })?;
        Ok(outcome)
    }
}

/// The coordinator's node id (it is added first).
pub const SERVER: NodeId = NodeId(0);
