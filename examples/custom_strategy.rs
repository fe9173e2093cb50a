//! Example: a strategy defined outside the library, through the same public traits the
//! built-in strategies use.
//!
//! `FedAvgM` (Hsu et al., 2019): the server keeps momentum on the averaged update
//! ("pseudo-gradient") instead of replacing the global model by the average. Its client
//! half trains for a number of steps the server picks per client from what the client
//! announced (here: about one epoch of its labeled data, capped), a work description the
//! built-in `Work` enum does not have, so the example defines its own.
//!
//! It runs FedAvgM and the built-in FedAvg on the same non-IID synthetic fleet, on actix,
//! and prints both accuracy curves.
//!
//! Run: `cargo run --release --example custom_strategy`

use flotilla::actors::ActixRuntime;
use flotilla::data::{SyntheticConfig, dirichlet};
use flotilla::fl::{
    Assignment, ClientData, ClientEnv, ClientGroup, ClientStrategy, Coordinator, CoordinatorConfig,
    FedAvg, FedAvgConfig, Federation, FlError, LearningTask, LocalTraining, LocalWorker, ModelRole,
    Payload, Reply, RoundPolicy, Selection, ServerJob, ServerStrategy, WorkOrder, average_replies,
};
use flotilla::nn::{SgdConfig, Weights};
use flotilla::sim::{LinkSpec, NetworkModel, NodeId, Purpose, Seed, Simulation, StopAt, secs};
use flotilla::train::{LocalPhase, Trainer};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The work vocabulary of this strategy pair.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Steps {
    /// Local SGD steps for this client.
    steps: usize,
}

/// Server half: FedAvg with server momentum.
#[derive(Debug)]
struct FedAvgM {
    global: Weights,
    velocity: Option<Weights>,
    beta: f32,
    clients_per_round: usize,
    lr: f32,
    max_steps: usize,
    batch: usize,
}

impl ServerStrategy for FedAvgM {
    type Work = Steps;

    fn assign(
        &mut self,
        _round: u32,
        stage: u32,
        selection: &mut Selection<'_>,
    ) -> Option<Vec<(NodeId, WorkOrder<Steps>)>> {
        if stage > 0 {
            return None;
        }
        let pool = selection.fleet().capable(ModelRole::Target);
        let chosen = selection.sample(&pool, Some(self.clients_per_round));
        let fleet = selection.fleet();
        // One copy of the global model for the whole round: the orders share it (an `Arc`).
        let global = Payload::of(ModelRole::Target, &self.global);
        Some(
            chosen
                .into_iter()
                .map(|c| {
                    // About one local epoch, from the sample count the client announced.
                    let labeled = fleet.get(c).map_or(0, |caps| caps.labeled as usize);
                    let steps = labeled.div_ceil(self.batch).clamp(1, self.max_steps);
                    let assignment = WorkOrder {
                        lr: self.lr,
                        models: vec![global.clone()],
                        work: Steps { steps },
                    };
                    (c, assignment)
                })
                .collect(),
        )
    }

    fn aggregate(
        &mut self,
        _round: u32,
        _stage: u32,
        replies: &BTreeMap<NodeId, Reply>,
    ) -> Result<Option<ServerJob>, FlError> {
        let Some(mean) = average_replies(replies, ModelRole::Target, true) else {
            return Ok(None);
        };
        // v ← β·v + (mean − global); global ← global + v. Batch-norm state is averaged.
        let delta = &mean.params - &self.global.params;
        let velocity = match self.velocity.take() {
            Some(v) => Weights {
                params: v.params * self.beta + &delta,
                state: mean.state.clone(),
            },
            None => Weights {
                params: delta,
                state: mean.state.clone(),
            },
        };
        self.global.params += &velocity.params;
        self.global.state = mean.state;
        self.velocity = Some(velocity);
        Ok(None)
    }

    fn global_models(&self) -> Vec<Payload> {
        vec![Payload::of(ModelRole::Target, &self.global)]
    }
}

/// Client half: cross-entropy for the number of steps the server asked for.
#[derive(Debug)]
struct StepsWorker;

impl ClientStrategy for StepsWorker {
    type Work = Steps;

    fn flops(&self, env: &ClientEnv, a: &Assignment<Steps>) -> Result<u64, FlError> {
        env.task.training_flops(ModelRole::Target, a.work.steps)
    }

    fn execute(&self, env: &ClientEnv, a: Assignment<Steps>) -> Result<Reply, FlError> {
        let task = &env.task;
        // The global model is shared by the round's orders: train a copy of it.
        let mut weights = Weights::clone(&a.models[0].weights);
        let mut trainer = Trainer::new(task.network(ModelRole::Target)?, task.local.sgd)?;
        // The job's own stream: the same bits on any thread.
        let mut rng = env.job_rng(a.id);
        let loader = task.loader();
        let phase = LocalPhase {
            loader: &loader,
            indices: &env.data.labeled,
            steps: a.work.steps,
            batch_size: task.local.batch_size,
            lr: a.lr,
        };
        let loss = trainer.train_steps(&mut weights, &phase, &mut rng)?;
        Ok(Reply {
            assignment: a.id,
            models: vec![Payload::new(ModelRole::Target, weights)],
            samples: env.data.labeled.len() as u32,
            stats: BTreeMap::from([("ce_loss".to_string(), f64::from(loss))]),
        })
    }
}

const CLIENTS: usize = 30;
const ROUNDS: u32 = 15;

/// Runs `server` with one `client` half per shard; returns accuracy after each round.
fn simulate<S, C>(
    task: &Arc<LearningTask>,
    shards: &[Vec<usize>],
    server: S,
    client: C,
) -> anyhow::Result<Vec<f64>>
where
    S: ServerStrategy,
    C: ClientStrategy<Work = S::Work>,
{
    let seed = task.seed;
    let config = CoordinatorConfig {
        rounds: ROUNDS,
        registration_window: secs(10),
        eval_every: 1,
    };
    let policy = RoundPolicy::wait_all(Some(secs(60)));
    let server_task = task.clone();
    let coordinator =
        move |clients| Coordinator::synchronous(server, policy, server_task, config, clients);
    let data = shards
        .iter()
        .cloned()
        .map(ClientData::from_labeled)
        .collect();
    let clients = ClientGroup::new(Arc::new(client), task.clone(), data);
    let network = NetworkModel::new(LinkSpec::preset("wifi")?);
    let fed = Federation::star(Simulation::builder(seed, network), coordinator, clients);
    let (sim, handle) = fed.build()?;
    let sim = ActixRuntime::new(2).run(sim, StopAt::Idle)?;
    let coordinator = handle
        .coordinator(&sim)
        .ok_or_else(|| anyhow::anyhow!("no coordinator"))?;
    Ok(coordinator
        .history()
        .iter()
        .filter_map(|r| r.evaluations.first().map(|e| e.accuracy))
        .collect())
}

fn main() -> anyhow::Result<()> {
    let seed = Seed(7);
    let (train, test) = SyntheticConfig::default().generate()?;
    let train = Arc::new(train);
    let local = LocalTraining {
        steps: 20,
        batch_size: 32,
        sgd: SgdConfig {
            momentum: 0.0,
            weight_decay: 0.0,
            nesterov: false,
            clip_norm: None,
        },
    };
    let models = [(ModelRole::Target, "mlp:32-128-10".parse()?)];
    let task = Arc::new(LearningTask::new(
        train.clone(),
        Arc::new(test),
        None,
        &models,
        local,
        seed,
    )?);
    let shards = dirichlet(
        train.labels(),
        train.classes(),
        CLIENTS,
        0.3,
        10,
        &mut seed.stream(NodeId(0), Purpose::SETUP),
    )?;
    let fedavgm = FedAvgM {
        global: task.initial_weights(ModelRole::Target)?,
        velocity: None,
        beta: 0.7,
        clients_per_round: 10,
        lr: 0.05,
        max_steps: 40,
        batch: 32,
    };
    let fedavg = FedAvg::new(
        &task,
        FedAvgConfig {
            model: ModelRole::Target,
            clients_per_round: Some(10),
            weighted: true,
            schedule: flotilla::nn::LrSchedule::Constant(0.05),
        },
    )?;
    let with_momentum = simulate(&task, &shards, fedavgm, StepsWorker)?;
    let plain = simulate(&task, &shards, fedavg, LocalWorker)?;
    println!("round  FedAvgM (custom)  FedAvg (built-in)");
    for (r, (m, p)) in with_momentum.iter().zip(&plain).enumerate() {
        println!("{r:>5}  {:>15.2}%  {:>16.2}%", 100.0 * m, 100.0 * p);
    }
    let last = with_momentum.last().copied().unwrap_or(0.0);
    anyhow::ensure!(last > 0.5, "FedAvgM should learn the task (got {last:.3})");
    Ok(())
}
