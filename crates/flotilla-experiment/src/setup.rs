//! From a configuration to what a run needs: data, its split, the task, the devices.

use crate::fleet::{self, Client, Group};
use crate::{ConfigError, ExperimentConfig, ExperimentError, Method, RunOutcome, SplitKind};
use flotilla_data::{
    Augmentation, Dataset, LabeledUnlabeled, dirichlet_labeled_unlabeled, fraction_split, iid,
    partition_file_json, read_partition_file,
};
use flotilla_fl::{
    ClientData, FlError, LearningTask, LocalTraining, LocalWorker, ModelRole, Offload, OffloadKind,
    run_offloaded,
};
use flotilla_nn::{ModelSpec, Network, SgdConfig, Weights, load_safetensors, save_safetensors};
use flotilla_sim::{DeviceProfile, DeviceTrace, LinkSpec, NodeId, Purpose, Seed};
use flotilla_train::input_shape;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// An experiment with its data loaded and its models and devices checked against each
/// other; runs of every method and seed start from it.
#[derive(Debug)]
pub struct Prepared {
    /// The configuration.
    pub config: ExperimentConfig,
    train: Arc<Dataset>,
    test: Arc<Dataset>,
    augmentation: Option<Augmentation>,
    writers: Option<Vec<Vec<usize>>>,
    /// The split read from `data.partition_file` (`split = "file"`), checked against the
    /// training set.
    partition: Option<LabeledUnlabeled>,
    target: ModelSpec,
    auxiliary: ModelSpec,
    /// Training memory of the target and the auxiliary model \[bytes\].
    pub memory: (u64, u64),
    /// Starting weights loaded with [`Prepared::init_from`], per model.
    initial: BTreeMap<ModelRole, Weights>,
    groups: Vec<Group>,
    traces: Vec<Option<DeviceTrace>>,
    server: (DeviceProfile, LinkSpec),
    /// The latest seed's split ([`Prepared::split`]): the check at preparation and every
    /// method's run of that seed share it instead of drawing it again (runs go seed by
    /// seed, so one is enough).
    latest_split: Mutex<Option<(u64, Vec<ClientData>)>>,
    /// Strategies the program registered, selectable by name in `methods`.
    pub(crate) strategies: crate::Strategies,
}

/// `0, 1, 2, …` for a list of client numbers (the first 10, then how many more).
fn describe_clients(clients: &[usize]) -> String {
    if clients.is_empty() {
        return "none".into();
    }
    let shown: Vec<String> = clients.iter().take(10).map(usize::to_string).collect();
    let more = clients.len().saturating_sub(10);
    if more > 0 {
        format!("clients {} and {more} more", shown.join(", "))
    } else {
        format!("clients {}", shown.join(", "))
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

impl Prepared {
    /// Checks the models (their size before anything is allocated, then against the data
    /// and the devices), loads the data and checks the split and the declared work.
    pub fn new(config: ExperimentConfig) -> Result<Self, ExperimentError> {
        Self::with_strategies(config, crate::Strategies::default())
    }

    /// As [`Prepared::new`], with the program's own `strategies` selectable by name; every
    /// method the config names must be built in or registered.
    pub fn with_strategies(
        config: ExperimentConfig,
        strategies: crate::Strategies,
    ) -> Result<Self, ExperimentError> {
        strategies.check(&config)?;
        let d = &config.data;
        let parse = |key: &str, text: &str| -> Result<ModelSpec, ConfigError> {
            text.parse::<ModelSpec>()
                .map_err(|e| ConfigError::new(key, text, e.to_string()))
        };
        let target = parse("models.target", &config.models.target)?;
        let auxiliary = parse("models.auxiliary", &config.models.auxiliary)?;
        let load = || {
            let standardize = d
                .standardize
                .unwrap_or_else(|| d.dataset.default_standardize());
            d.dataset
                .load(d.path.as_deref(), d.augment, &config.synthetic, standardize)
        };
        // Counted from the specs with checked arithmetic, and held to the training-memory
        // cap, before the data (except an npz file's, which holds the shapes) or any weights
        // are allocated.
        let (early, (input, classes)) = match d.dataset.input(&config.synthetic) {
            Some(known) => (None, known),
            None => {
                let loaded = load()?;
                let known = (input_shape(&loaded.train), loaded.train.classes());
                (Some(loaded), known)
            }
        };
        let memory_of = |key: &str, value: &dyn ToString, spec: &ModelSpec, batch| {
            spec.footprint(input, classes, batch)
                .and_then(|f| {
                    f.check_training_memory(spec)
                        .map(|()| f.training_memory_bytes)
                })
                .map_err(|e| ConfigError::new(key, value.to_string(), e.to_string()))
        };
        let batch = config.training.batch_size;
        let memory = (
            memory_of("models.target", &target, &target, batch)?,
            memory_of("models.auxiliary", &auxiliary, &auxiliary, batch)?,
        );
        if config.methods.contains(&Method::ServerLogitEnsemble) {
            let se_batch = config.server_ensemble.batch_size;
            memory_of("server_ensemble.batch_size", &se_batch, &target, se_batch)?;
        }
        let groups = config.fleet.groups()?;
        let server = config.fleet.server()?;
        let traces = Self::load_traces(&groups)?;
        let loaded = match early {
            Some(loaded) => loaded,
            None => load()?,
        };
        let partition = match &d.partition_file {
            Some(path) if d.split == SplitKind::File => Some(
                read_partition_file(path, loaded.train.len()).map_err(|source| {
                    ExperimentError::Data {
                        dataset: d.dataset.name().to_string(),
                        source,
                    }
                })?,
            ),
            _ => None,
        };
        let (train, test) = (Arc::new(loaded.train), Arc::new(loaded.test));
        let prepared = Self {
            strategies,
            config,
            train,
            test,
            augmentation: loaded.augmentation,
            writers: loaded.writers,
            partition,
            target,
            auxiliary,
            memory,
            initial: BTreeMap::new(),
            groups,
            traces,
            server,
            latest_split: Mutex::new(None),
        };
        prepared.check_devices()?;
        // Fail now, not in the middle of the run, if the split is impossible or the work
        // cannot be counted.
        prepared.split(prepared.config.seed)?;
        // A file's split is the same for every seed, but which clients are strong may not be.
        if prepared.partition.is_some() {
            for seed in prepared.config.seed_list() {
                prepared.split(seed)?;
            }
        }
        let task = prepared.task(prepared.config.seed)?;
        prepared.check_work(&task)?;
        Ok(prepared)
    }

    /// Refuses schedules whose declared work overflows the FLOP count (the clients'
    /// and the server's jobs would fail mid-run): the largest local assignment, on-device
    /// distillation (`2·H` training steps of the student, `H` batches through the
    /// teacher), and, for `server_logit_ensemble`, the server's distillation steps (a
    /// training step counts more than the teachers' forward pass on its batch).
    fn check_work(&self, task: &LearningTask) -> Result<(), ConfigError> {
        let (t, se) = (&self.config.training, &self.config.server_ensemble);
        let h = t.local_steps;
        let local = |role| -> Result<u64, FlError> {
            let too_many =
                || FlError::FlopOverflow(format!("{h} local steps at batch {}", t.batch_size));
            task.training_flops(role, h.checked_mul(2).ok_or_else(too_many)?)?;
            task.inference_flops(role, h.checked_mul(t.batch_size).ok_or_else(too_many)?)
        };
        let server = self.config.methods.contains(&Method::ServerLogitEnsemble);
        for role in ModelRole::ALL {
            local(role).map_err(|e| ConfigError::new("training.local_steps", h, e.to_string()))?;
            if server {
                task.step_flops(role, se.steps, se.batch_size)
                    .map_err(|e| {
                        ConfigError::new("server_ensemble.steps", se.steps, e.to_string())
                    })?;
            }
        }
        Ok(())
    }

    /// Loads each group's trace file and checks it covers the group.
    fn load_traces(groups: &[Group]) -> Result<Vec<Option<DeviceTrace>>, ConfigError> {
        groups
            .iter()
            .map(|g| {
                let Some(path) = &g.trace else {
                    return Ok(None);
                };
                let key = format!("{}.trace", g.key);
                let trace = DeviceTrace::from_path(path)
                    .map_err(|e| ConfigError::new(&key, path.display(), e.to_string()))?;
                if trace.devices.len() < g.clients.len() {
                    return Err(ConfigError::new(
                        &key,
                        path.display(),
                        format!(
                            "has {} devices for the group's {} clients (one each, in file order)",
                            trace.devices.len(),
                            g.clients.len()
                        ),
                    ));
                }
                Ok(Some(trace))
            })
            .collect()
    }

    /// The groups of the fleet.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// The server's device and link.
    pub fn server(&self) -> &(DeviceProfile, LinkSpec) {
        &self.server
    }

    /// Every client's device and link for `seed` (see [`fleet`](crate::fleet)).
    pub fn clients(&self, seed: u64) -> Vec<Client> {
        fleet::clients(&self.groups, &self.traces, seed)
    }

    /// The strong clients, which hold the unlabeled data: those whose device holds the
    /// target model's training memory (in a two-tier fleet, the `fleet.strong` declared
    /// ones, which the checks hold to the same rule whenever a method needs them).
    pub fn strong_clients(&self, clients: &[Client]) -> Vec<usize> {
        if self.config.fleet.is_two_tier() {
            return self.groups[0].clients.clone().collect();
        }
        (0..clients.len())
            .filter(|&c| clients[c].device.fits(self.memory.0))
            .collect()
    }

    /// Checks every client's device against the models: each can train the auxiliary
    /// model, some can train the target when a method needs strong clients, and
    /// `training.strong_per_round` does not exceed them.
    fn check_devices(&self) -> Result<(), ConfigError> {
        let c = &self.config;
        let (target, auxiliary) = self.memory;
        let clients = self.clients(c.seed);
        if let Some(client) = clients.iter().find(|cl| !cl.device.fits(auxiliary)) {
            let group = &self.groups[client.group];
            // A two-tier fleet's groups are `strong` then `weak`, each with its memory key.
            let key = if c.fleet.is_two_tier() {
                ["fleet.strong_memory_mb", "fleet.weak_memory_mb"][client.group].to_string()
            } else {
                format!("{}.device", group.key)
            };
            return Err(ConfigError::new(
                key,
                mb(client.device.memory_bytes),
                format!(
                    "the {} clients' devices cannot train the auxiliary model (needs {})",
                    group.name,
                    mb(auxiliary)
                ),
            ));
        }
        let strong = self.strong_clients(&clients).len();
        let needs_strong = c.methods.iter().any(|m| m.needs_strong_clients());
        if c.fleet.is_two_tier() {
            let tier = |g: usize| &self.groups[g];
            if !tier(0).clients.is_empty() && !tier(0).device.fits(target) {
                return Err(ConfigError::new(
                    "models.target",
                    &c.models.target,
                    format!(
                        "fits no device: needs {} to train, strong devices have {}",
                        mb(target),
                        mb(tier(0).device.memory_bytes)
                    ),
                ));
            }
            if needs_strong && !tier(1).clients.is_empty() && tier(1).device.fits(target) {
                return Err(ConfigError::new(
                    "fleet.weak_memory_mb",
                    mb(tier(1).device.memory_bytes),
                    format!(
                        "weak devices could train the target (needs {}), so every client would \
                         be strong; give them less memory",
                        mb(target)
                    ),
                ));
            }
            if needs_strong && strong == 0 {
                return Err(ConfigError::new(
                    "fleet.strong",
                    0,
                    "ondevice_kd, strong_only and server_logit_ensemble need strong clients",
                ));
            }
        } else if needs_strong && strong == 0 {
            let largest = clients.iter().map(|cl| cl.device.memory_bytes).max();
            return Err(ConfigError::new(
                "models.target",
                &c.models.target,
                format!(
                    "fits no client's device (needs {} to train, the largest has {}); \
                     ondevice_kd, strong_only and server_logit_ensemble need strong clients",
                    mb(target),
                    mb(largest.unwrap_or(0))
                ),
            ));
        }
        if let Some(k) = c.training.strong_per_round
            && k > strong
        {
            return Err(ConfigError::new(
                "training.strong_per_round",
                k,
                format!("must be at most the {strong} strong clients"),
            ));
        }
        Ok(())
    }

    /// Every client's device and link for `method` and `seed`; for `fedavg_all_large`,
    /// every device gets the memory the target needs (the upper bound ignores device
    /// limits, nothing else about the devices).
    pub fn fleet(&self, method: Method, seed: u64) -> Vec<Client> {
        let mut clients = self.clients(seed);
        if method == Method::FedavgAllLarge {
            for c in &mut clients {
                c.device.memory_bytes = c.device.memory_bytes.max(self.memory.0);
            }
        }
        clients
    }

    /// Each client's labeled and unlabeled samples for `seed` (the strong clients hold
    /// the unlabeled data). The latest seed's split is kept and handed out again.
    pub fn split(&self, seed: u64) -> Result<Vec<ClientData>, ExperimentError> {
        // A poisoned lock only means a panic elsewhere while it was held; the cache is
        // whole at every point a panic could leave it.
        let mut latest = self
            .latest_split
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((cached, split)) = latest.as_ref()
            && *cached == seed
        {
            return Ok(split.clone());
        }
        let split = self.draw_split(seed)?;
        *latest = Some((seed, split.clone()));
        Ok(split)
    }

    /// Draws the split of `seed` (see [`Prepared::split`]).
    fn draw_split(&self, seed: u64) -> Result<Vec<ClientData>, ExperimentError> {
        let d = &self.config.data;
        let f = &self.config.fleet;
        let holders = self.strong_clients(&self.clients(seed));
        let mut rng = Seed(seed).stream(NodeId(0), Purpose::SETUP);
        let wrap = |source| ExperimentError::Data {
            dataset: d.dataset.name().to_string(),
            source,
        };
        let split = match d.split {
            SplitKind::Dirichlet => dirichlet_labeled_unlabeled(
                self.train.labels(),
                self.train.classes(),
                f.clients,
                &holders,
                d.unlabeled_shards_per_strong,
                d.unlabeled_shards_used
                    .unwrap_or(d.unlabeled_shards_per_strong),
                d.alpha,
                d.min_shard_samples,
                &mut rng,
            )
            .map_err(wrap)?,
            SplitKind::Natural => {
                let writers = self.writers.as_ref().ok_or_else(|| {
                    ConfigError::new("data.split", "natural", "the dataset has no writers")
                })?;
                if writers.len() < f.clients {
                    return Err(ConfigError::new(
                        "fleet.clients",
                        f.clients,
                        format!("the natural split has only {} writers", writers.len()),
                    )
                    .into());
                }
                let mut partition = vec![Vec::new(); f.clients];
                for (w, samples) in writers.iter().enumerate() {
                    partition[w % f.clients].extend_from_slice(samples);
                }
                fraction_split(&partition, d.unlabeled_fraction, &holders, &mut rng)
                    .map_err(wrap)?
            }
            SplitKind::Iid => {
                let partition = iid(self.train.len(), f.clients, &mut rng).map_err(wrap)?;
                fraction_split(&partition, d.unlabeled_fraction, &holders, &mut rng)
                    .map_err(wrap)?
            }
            SplitKind::File => self.file_split(&holders)?,
        };
        Ok(split
            .labeled
            .into_iter()
            .zip(split.unlabeled)
            .map(|(labeled, unlabeled)| ClientData {
                labeled: labeled.into(),
                unlabeled: unlabeled.into(),
            })
            .collect())
    }

    /// The split of the partition file, checked against the fleet: one entry per client,
    /// and unlabeled indices only for the strong clients `holders` (only they distil; any
    /// other client's are refused rather than dropped).
    fn file_split(&self, holders: &[usize]) -> Result<LabeledUnlabeled, ConfigError> {
        let d = &self.config.data;
        let path = d
            .partition_file
            .as_deref()
            .map_or("(missing)".into(), |p| p.display().to_string());
        let refuse = |reason: String| ConfigError::new("data.partition_file", &path, reason);
        let Some(split) = &self.partition else {
            return Err(refuse("data.split = \"file\" needs the file".into()));
        };
        let clients = self.config.fleet.clients;
        if split.labeled.len() != clients {
            return Err(refuse(format!(
                "lists {} clients but fleet.clients = {clients}; the file needs one entry per \
                 client",
                split.labeled.len()
            )));
        }
        if let Some((client, unlabeled)) = split
            .unlabeled
            .iter()
            .enumerate()
            .find(|(c, u)| !u.is_empty() && !holders.contains(c))
        {
            return Err(refuse(format!(
                "client {client} is not a strong client but holds {} unlabeled indices \
                 (clients[{client}].unlabeled[0] = {}); only strong clients ({}) hold \
                 unlabeled data, since only they distil",
                unlabeled.len(),
                unlabeled[0],
                describe_clients(holders)
            )));
        }
        Ok(split.clone())
    }

    /// The split of `seed` as a partition file (see [`flotilla_data::read_partition_file`]):
    /// reading it back with `data.split = "file"` gives the same split, so a run with this
    /// seed gives the same results.
    pub fn split_file(&self, seed: u64) -> Result<String, ExperimentError> {
        let (labeled, unlabeled) = self
            .split(seed)?
            .into_iter()
            .map(|c| (c.labeled.to_vec(), c.unlabeled.to_vec()))
            .unzip();
        Ok(partition_file_json(
            &LabeledUnlabeled { labeled, unlabeled },
            self.train.len(),
        ))
    }

    /// A fresh network of `role`'s architecture for this data.
    pub fn network(&self, role: ModelRole) -> Result<Network, ExperimentError> {
        let spec = match role {
            ModelRole::Target => &self.target,
            ModelRole::Auxiliary => &self.auxiliary,
        };
        Ok(spec
            .build(input_shape(&self.train), self.train.classes())
            .map_err(flotilla_fl::FlError::from)?)
    }

    /// Starts `role` from the weights in the safetensors file `path` (PyTorch names and
    /// layouts, as [`Prepared::save_models`] writes them) in every run, instead of the
    /// seed's draw.
    ///
    /// # Errors
    /// A [`ConfigError`] for `--init` when the file is missing, corrupt or does not match
    /// the model (a missing tensor, a wrong shape), naming the file and the tensor.
    pub fn init_from(&mut self, role: ModelRole, path: &Path) -> Result<(), ExperimentError> {
        let weights = load_safetensors(path, &self.network(role)?).map_err(|e| {
            ConfigError::new(
                "--init",
                format!("{role}={}", path.display()),
                e.to_string(),
            )
        })?;
        self.initial.insert(role, weights);
        Ok(())
    }

    /// Writes the final global models of `outcome` into `dir` as
    /// `<method>_seed<seed>_<model>.safetensors` (PyTorch names and layouts; see
    /// `flotilla_nn::save_safetensors`), returning the files written.
    pub fn save_models(
        &self,
        outcome: &RunOutcome,
        dir: &Path,
    ) -> Result<Vec<PathBuf>, ExperimentError> {
        std::fs::create_dir_all(dir).map_err(|source| ExperimentError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let mut written = Vec::new();
        for payload in &outcome.final_models {
            let path = dir.join(format!(
                "{}_seed{}_{}.safetensors",
                outcome.method, outcome.seed, payload.role
            ));
            save_safetensors(&path, &self.network(payload.role)?, &payload.weights)
                .map_err(flotilla_fl::FlError::from)?;
            written.push(path);
        }
        Ok(written)
    }

    /// Test accuracy of always predicting the most frequent test label.
    pub fn chance_accuracy(&self) -> f64 {
        crate::health::chance_accuracy(self.test.labels())
    }

    /// The learning task of a run with `seed`.
    pub fn task(&self, seed: u64) -> Result<Arc<LearningTask>, ExperimentError> {
        self.task_offloaded(seed, None, 1)
    }

    /// The learning task of a run with `seed`, computing its clients' training and its
    /// evaluations with `offload` if given, else evaluating on up to `evaluation_threads`
    /// threads (the figures do not depend on it).
    pub fn task_offloaded(
        &self,
        seed: u64,
        offload: Option<Arc<dyn Offload>>,
        evaluation_threads: usize,
    ) -> Result<Arc<LearningTask>, ExperimentError> {
        let t = &self.config.training;
        let local = LocalTraining {
            steps: t.local_steps,
            batch_size: t.batch_size,
            sgd: SgdConfig {
                momentum: t.momentum,
                weight_decay: t.weight_decay,
                nesterov: false,
                clip_norm: t.clip_grad_norm,
            },
        };
        let mut task = LearningTask::new(
            self.train.clone(),
            self.test.clone(),
            self.augmentation,
            &[
                (ModelRole::Target, self.target.clone()),
                (ModelRole::Auxiliary, self.auxiliary.clone()),
            ],
            local,
            Seed(seed),
        )?;
        for (&role, weights) in &self.initial {
            task.set_initial_weights(role, weights.clone())?;
        }
        if let Some(offload) = offload {
            task.set_offload(offload);
        }
        task.set_evaluation_threads(evaluation_threads);
        Ok(Arc::new(task))
    }
}

/// Computes offloaded jobs ([`flotilla_fl::OffloadJob`]) of an experiment on a worker (e.g.
/// an MPI rank): builds each seed's task from the same configuration as the simulating
/// process (once per seed) and runs the job as that process would have.
#[derive(Debug)]
pub struct JobServer<'a> {
    prepared: &'a Prepared,
    tasks: BTreeMap<u64, Arc<LearningTask>>,
}

impl<'a> JobServer<'a> {
    /// Serves the jobs of the experiment `prepared` (with its `--init` models set, as on
    /// the simulating process).
    pub fn new(prepared: &'a Prepared) -> Self {
        Self {
            prepared,
            tasks: BTreeMap::new(),
        }
    }

    /// Runs one job; returns its encoded output.
    ///
    /// # Errors
    /// A malformed job, or the job's own failure.
    pub fn run(
        &mut self,
        kind: OffloadKind,
        seed: u64,
        header: &[u8],
        parts: &[&[u8]],
    ) -> Result<Vec<u8>, ExperimentError> {
        let task = match self.tasks.get(&seed) {
            Some(task) => task.clone(),
            None => {
                let task = self.prepared.task(seed)?;
                self.tasks.insert(seed, task.clone());
                task
            }
        };
        Ok(run_offloaded(&LocalWorker, &task, kind, header, parts)?)
    }
}
