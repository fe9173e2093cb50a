//! Experiment configuration: TOML with `--set key=value` overrides, checked before
//! anything runs. Every absent key takes the documented default below (the reference's
//! value where the method spec has one); every present key is checked, and a mistake is a
//! [`ConfigError`] naming the key and the value.

use crate::policy::{AsyncSection, RoundPolicyConfig};
use crate::topology::TopologyConfig;
use crate::{ConfigError, ExperimentError, FleetConfig, Method, Named, Standardize};
use flotilla_data::SyntheticConfig;
use flotilla_fl::{KdConfig, ModelRole, ServerDistillation};
use flotilla_sim::{
    LinkSpec, NetworkError, NetworkModel, OutageConfig, PartitionConfig, SimDuration, install_rules,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Upper bounds on the keys that size what a run allocates or schedules, checked by
/// [`ExperimentConfig::validate`] before anything is loaded. Model and dataset sizes are
/// bounded by the bytes they need instead: [`flotilla_nn::MAX_TRAINING_MEMORY_BYTES`] and
/// [`flotilla_data::MAX_SYNTHETIC_BYTES`] (16 GiB each).
pub mod limits {
    /// `seeds`: runs per method.
    pub const SEEDS: usize = 10_000;
    /// `rounds`: each round keeps a record in the run's history.
    pub const ROUNDS: u32 = 1_000_000;
    /// `fleet.clients`: one simulated node (and actor) each; a million is the scale the
    /// `flotilla bench` workload W3 runs.
    pub const CLIENTS: usize = 1_000_000;
    /// `data.unlabeled_shards_per_strong`: Dirichlet shards per strong client.
    pub const UNLABELED_SHARDS_PER_STRONG: usize = 100;
    /// `synthetic.classes`: per-class tables are sized by it.
    pub const SYNTHETIC_CLASSES: usize = 10_000;
    /// `training.batch_size` and `server_ensemble.batch_size`.
    pub const BATCH_SIZE: usize = 1_000_000;
    /// `fleet.weak_memory_mb` and `fleet.strong_memory_mb` \[MB\] (a petabyte).
    pub const DEVICE_MEMORY_MB: f64 = 1e9;
    /// Durations such as `training.stage_timeout_s` \[s\] (about 116 days): far below
    /// the virtual clock's range, so rounds of them cannot run it out.
    pub const DURATION_S: f64 = 1e7;
}

/// The built-in configurations, by name: `(name, TOML text)`.
pub const BUILT_IN: [(&str, &str); 5] = [
    (
        "quickstart",
        include_str!("../../../configs/quickstart.toml"),
    ),
    ("mnist", include_str!("../../../configs/mnist.toml")),
    ("femnist", include_str!("../../../configs/femnist.toml")),
    (
        "cifar10_paper",
        include_str!("../../../configs/cifar10_paper.toml"),
    ),
    (
        "cifar10_small",
        include_str!("../../../configs/cifar10_small.toml"),
    ),
];

/// A whole experiment: which methods, on what data, fleet and schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// A name for the output (default `experiment`).
    #[serde(default = "default_name")]
    pub name: String,
    /// Methods compared, each run once per seed.
    pub methods: Vec<Method>,
    /// First seed.
    #[serde(default = "one")]
    pub seed: u64,
    /// Seeds run: `seed, seed + 1, …` (`--seeds` overrides).
    #[serde(default = "one_usize")]
    pub seeds: usize,
    /// Communication rounds.
    pub rounds: u32,
    /// Evaluate every this many rounds (and after the last).
    #[serde(default = "one_u32")]
    pub eval_every: u32,
    /// Data and its split.
    pub data: DataConfig,
    /// Generator settings when `data.dataset = "synthetic"` (its `seed` is the dataset's,
    /// fixed across runs; the run seed does not regenerate the data).
    #[serde(default)]
    pub synthetic: SyntheticConfig,
    /// The two models.
    pub models: ModelsConfig,
    /// Clients and their devices.
    pub fleet: FleetConfig,
    /// Local training and the round schedule.
    #[serde(default)]
    pub training: TrainingConfig,
    /// On-device distillation (`ondevice_kd`).
    #[serde(default)]
    pub kd: KdConfig,
    /// Server-side ensemble distillation (`server_logit_ensemble`).
    #[serde(default)]
    pub server_ensemble: ServerDistillation,
    /// Plain FedAvg (`fedavg`).
    #[serde(default)]
    pub fedavg: FedAvgSection,
    /// Outages and partitions on top of the fleet's links.
    #[serde(default)]
    pub network: NetworkRules,
    /// When a synchronous stage closes and what it aggregates.
    #[serde(default)]
    pub round_policy: RoundPolicyConfig,
    /// The asynchronous methods' server (`fedasync`, `fedbuff`, `ondevice_kd_async`).
    #[serde(default, rename = "async")]
    pub asynchronous: AsyncSection,
    /// Who answers whom: a star (absent) or clients under edge aggregators.
    #[serde(default)]
    pub topology: TopologyConfig,
    /// Test accuracies (fractions in (0, 1]) whose first reaching each run reports, in
    /// virtual seconds (`summary.json` and the table).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accuracy_targets: Vec<f64>,
}

/// Rules on top of the fleet's links, as `flotilla_sim::NetworkConfig` writes them: outage
/// windows and partitions over node ids as a run numbers them (the server is node 0, client
/// `c` is node `c + 1`; `flotilla fleet` prints each group's nodes), times in seconds.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkRules {
    /// Windows in which some nodes (all, when none are named) are cut off.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outages: Vec<OutageConfig>,
    /// Windows in which groups of nodes cannot reach each other.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionConfig>,
}

impl NetworkRules {
    /// Installs the rules on `model`; errors name the key under `network` and the value.
    pub fn install(&self, model: &mut NetworkModel) -> Result<(), ConfigError> {
        install_rules(&self.outages, &self.partitions, model).map_err(|e| match e {
            NetworkError::Invalid {
                field,
                value,
                reason,
            } => ConfigError::new(format!("network.{field}"), value, reason),
            other => ConfigError::new("network", "(section)", other.to_string()),
        })
    }

    /// Checks the windows, and that every node named is in a run of `clients` clients.
    fn validate(&self, clients: usize) -> Result<(), ConfigError> {
        self.install(&mut NetworkModel::new(LinkSpec::latency(SimDuration::ZERO)))?;
        let last = clients as u64;
        // The first node of `nodes` beyond the run, named under `key`.
        fn beyond(key: String, last: u64, nodes: Vec<u64>) -> Result<(), ConfigError> {
            nodes.into_iter().find(|&n| n > last).map_or(Ok(()), |n| {
                Err(ConfigError::new(
                    key,
                    n,
                    format!("is not a node of the run (the server is 0, clients 1..={last})"),
                ))
            })
        }
        for (i, o) in self.outages.iter().enumerate() {
            let key = format!("network.outages[{i}]");
            beyond(
                format!("{key}.nodes"),
                last,
                o.nodes.iter().map(|&n| u64::from(n)).collect(),
            )?;
            if let Some([_, end]) = o.node_range {
                let end = u64::from(end).saturating_sub(1);
                beyond(format!("{key}.node_range"), last, vec![end])?;
            }
        }
        for (i, p) in self.partitions.iter().enumerate() {
            let nodes = p.groups.iter().flatten().map(|&n| u64::from(n)).collect();
            beyond(format!("network.partitions[{i}].groups"), last, nodes)?;
        }
        Ok(())
    }
}

fn default_name() -> String {
    "experiment".into()
}
fn one() -> u64 {
    1
}
fn one_usize() -> usize {
    1
}
fn one_u32() -> u32 {
    1
}

/// How the training set is split over clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitKind {
    /// The reference: `clients + strong · unlabeled_shards_per_strong` Dirichlet(α) shards;
    /// shard `i` is client `i`'s labeled data, the rest the strong clients' unlabeled data.
    Dirichlet,
    /// One writer (or several, round-robin) per client; strong clients keep
    /// `1 − unlabeled_fraction` of their samples labeled. Needs a dataset with writers
    /// (FEMNIST).
    Natural,
    /// Uniformly random equal shares; strong clients' shares split as in `natural`.
    Iid,
    /// Read from `data.partition_file` (JSON, one entry per client with its `labeled` and
    /// optional `unlabeled` training-set indices; see [`flotilla_data::read_partition_file`]),
    /// the same for every seed. Only strong clients may hold unlabeled indices.
    File,
}

/// Where the data comes from and how it is split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// `synthetic`, `mnist`, `femnist`, `cifar10` or `npz`.
    pub dataset: Named,
    /// Folder holding the dataset's files (default: `<data root>/<dataset>`, the data root
    /// being `$FLOTILLA_DATA` or `../shared/data`); for `npz`, required: the `.npz` file
    /// (relative to the config file's folder when written in a config file).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// The split.
    #[serde(default = "default_split")]
    pub split: SplitKind,
    /// The partition file of `split = "file"` (relative to the config file's folder when
    /// written in a config file).
    #[serde(default)]
    pub partition_file: Option<PathBuf>,
    /// Feature standardisation (absent: the dataset's usual one,
    /// [`Named::default_standardize`]).
    #[serde(default)]
    pub standardize: Option<Standardize>,
    /// Dirichlet concentration α (> 0); smaller is more skewed.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Unlabeled Dirichlet shards per strong client (`dirichlet` split; reference 5).
    #[serde(default = "default_unlabeled_shards")]
    pub unlabeled_shards_per_strong: usize,
    /// Of each strong client's `unlabeled_shards_per_strong` shards, how many it holds
    /// (`dirichlet` split; absent: all); the rest go unused. The labeled shards stay the same
    /// whatever this is, so a sweep over it varies only the unlabeled data.
    #[serde(default)]
    pub unlabeled_shards_used: Option<usize>,
    /// Fraction of a strong client's samples that are unlabeled (`natural`, `iid`).
    #[serde(default = "default_unlabeled_fraction")]
    pub unlabeled_fraction: f64,
    /// Minimum samples per Dirichlet shard.
    #[serde(default = "default_min_shard")]
    pub min_shard_samples: usize,
    /// Pad-and-crop + flip augmentation of training batches (CIFAR-10 only).
    #[serde(default)]
    pub augment: bool,
}

fn default_split() -> SplitKind {
    SplitKind::Dirichlet
}
fn default_alpha() -> f64 {
    0.1
}
fn default_unlabeled_shards() -> usize {
    5
}
fn default_unlabeled_fraction() -> f64 {
    0.5
}
fn default_min_shard() -> usize {
    10
}

/// The target and auxiliary architectures (model specs such as `resnet20`,
/// `resnet20:0.25`, `cnn`, `mlp:784-256-10`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    /// The large model `wl`.
    pub target: String,
    /// The small model `ws`.
    pub auxiliary: String,
}

/// Local training and the learning-rate schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingConfig {
    /// SGD steps per local phase (`H`).
    pub local_steps: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Initial learning rate.
    pub lr: f32,
    /// Fractions of the rounds at which the rate is divided by 10.
    pub lr_milestones: Vec<f64>,
    /// SGD momentum.
    pub momentum: f32,
    /// Weight decay on kernels.
    pub weight_decay: f32,
    /// Clip every local step's gradient to this global L2 norm (absent: no clipping); applies
    /// to the clients' training and distillation and to the server's distillation.
    pub clip_grad_norm: Option<f32>,
    /// Clients sampled per round for the auxiliary model (and by `fedavg` and
    /// `fedavg_all_large`).
    pub clients_per_round: usize,
    /// Strong clients sampled per round (absent: all, the reference).
    pub strong_per_round: Option<usize>,
    /// Average by sample count instead of equally.
    pub weighted: bool,
    /// Close a stage this many virtual seconds after it opened, whoever has not answered.
    pub stage_timeout_s: f64,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        Self {
            local_steps: 30,
            batch_size: 32,
            lr: 0.2,
            lr_milestones: vec![0.5, 0.75],
            momentum: 0.9,
            weight_decay: 2e-4,
            clip_grad_norm: None,
            clients_per_round: 20,
            strong_per_round: None,
            weighted: false,
            stage_timeout_s: 600.0,
        }
    }
}

/// Plain FedAvg settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FedAvgSection {
    /// The model `fedavg` trains.
    pub model: ModelRole,
}

impl Default for FedAvgSection {
    fn default() -> Self {
        Self {
            model: ModelRole::Target,
        }
    }
}

/// Where a configuration's text comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// A built-in configuration, by name.
    BuiltIn(String),
    /// A TOML file.
    File(PathBuf),
    /// TOML text, e.g. a config written inline in a program or test (relative paths in it
    /// are relative to the working folder).
    Text(String),
}

impl ConfigSource {
    /// A file if `arg` names one, else the built-in configuration of that name.
    pub fn resolve(arg: &str) -> Result<Self, ExperimentError> {
        let path = PathBuf::from(arg);
        if path.is_file() {
            return Ok(ConfigSource::File(path));
        }
        let name = arg.trim_end_matches(".toml");
        if BUILT_IN.iter().any(|(n, _)| *n == name) {
            return Ok(ConfigSource::BuiltIn(name.to_string()));
        }
        let names: Vec<&str> = BUILT_IN.iter().map(|(n, _)| *n).collect();
        Err(ConfigError::new(
            "CONFIG",
            arg,
            format!(
                "no such file, and not a built-in config ({})",
                names.join(", ")
            ),
        )
        .into())
    }

    fn read(&self) -> Result<(String, String), ExperimentError> {
        match self {
            ConfigSource::BuiltIn(name) => BUILT_IN
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, text)| (format!("built-in config {name}"), (*text).to_string()))
                .ok_or_else(|| ConfigError::new("CONFIG", name, "not a built-in config").into()),
            ConfigSource::Text(text) => Ok(("inline config".to_string(), text.clone())),
            ConfigSource::File(path) => std::fs::read_to_string(path)
                .map(|text| (path.display().to_string(), text))
                .map_err(|source| ExperimentError::Io {
                    path: path.display().to_string(),
                    source,
                }),
        }
    }
}

impl ExperimentConfig {
    /// Reads `source`, applies `overrides` (`key.path=value`, the value as TOML, or as a
    /// string if it does not parse as TOML), and checks the result.
    pub fn load(source: &ConfigSource, overrides: &[String]) -> Result<Self, ExperimentError> {
        let (origin, text) = source.read()?;
        let mut table: toml::Table =
            toml::from_str(&text).map_err(|e| ExperimentError::Syntax {
                origin: origin.clone(),
                message: e.to_string(),
            })?;
        for item in overrides {
            apply_override(&mut table, item)?;
        }
        let root = toml::Value::Table(table);
        let mut config: ExperimentConfig =
            serde_path_to_error::deserialize(root.clone()).map_err(|e| {
                let key = e.path().to_string();
                let value = lookup(&root, &key).map_or("(missing)".to_string(), |v| v.to_string());
                let reason = e.into_inner().to_string();
                // The TOML deserializer appends "in `key`"; the key is already named.
                let reason = reason
                    .split("\nin `")
                    .next()
                    .unwrap_or(&reason)
                    .trim()
                    .to_string();
                ConfigError::new(key, value, reason)
            })?;
        // Trace files are named relative to the config file's folder, and so are the partition
        // file and an npz file when the config file names them (a `--set` value is a path
        // as typed, relative to the working folder).
        if let ConfigSource::File(path) = source {
            let folder = path.parent().unwrap_or(Path::new(""));
            for group in &mut config.fleet.groups {
                if let Some(trace) = &mut group.trace
                    && trace.is_relative()
                {
                    *trace = folder.join(&*trace);
                }
            }
            let set_on_command_line = |key: &str| {
                overrides
                    .iter()
                    .any(|o| o.split_once('=').is_some_and(|(k, _)| k.trim() == key))
            };
            let d = &mut config.data;
            let npz = d.dataset == Named::Npz;
            for (key, file) in [
                ("data.partition_file", d.partition_file.as_mut()),
                ("data.path", d.path.as_mut().filter(|_| npz)),
            ] {
                if let Some(file) = file
                    && file.is_relative()
                    && !set_on_command_line(key)
                {
                    *file = folder.join(&*file);
                }
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// The seeds run, in order: `seed, seed + 1, …` (validation checks that the last one
    /// fits in `u64` and that there are at most [`limits::SEEDS`]).
    pub fn seed_list(&self) -> Vec<u64> {
        (0..self.seeds as u64).map(|i| self.seed + i).collect()
    }

    /// Checks every range and cross-field rule that does not need the data.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |key: &str, value: &dyn ToString, reason: &str| {
            Err(ConfigError::new(key, value.to_string(), reason))
        };
        if self.methods.is_empty() {
            return err("methods", &"[]", "name at least one method");
        }
        if let Some((i, m)) = self
            .methods
            .iter()
            .enumerate()
            .find(|(i, m)| self.methods[..*i].contains(m))
        {
            return err(
                &format!("methods[{i}]"),
                m,
                "is listed twice; each method runs once per seed",
            );
        }
        if !(1..=limits::SEEDS).contains(&self.seeds) {
            return err(
                "seeds",
                &self.seeds,
                &format!("must be in 1..={}", limits::SEEDS),
            );
        }
        if self.seed.checked_add(self.seeds as u64 - 1).is_none() {
            return err(
                "seed",
                &self.seed,
                &format!("the last of {} seeds would be beyond u64::MAX", self.seeds),
            );
        }
        if !(1..=limits::ROUNDS).contains(&self.rounds) {
            return err(
                "rounds",
                &self.rounds,
                &format!("must be in 1..={}", limits::ROUNDS),
            );
        }
        if self.eval_every == 0 {
            return err("eval_every", &0, "must be at least 1");
        }
        let d = &self.data;
        if !(d.alpha > 0.0 && d.alpha.is_finite()) {
            return err("data.alpha", &d.alpha, "must be a finite number > 0");
        }
        if !(0.0..=1.0).contains(&d.unlabeled_fraction) {
            return err(
                "data.unlabeled_fraction",
                &d.unlabeled_fraction,
                "must be in [0, 1]",
            );
        }
        if d.split == SplitKind::Natural && d.dataset != Named::Femnist {
            return err(
                "data.split",
                &"natural",
                "needs a dataset with writers (femnist)",
            );
        }
        if d.unlabeled_shards_per_strong > limits::UNLABELED_SHARDS_PER_STRONG {
            return err(
                "data.unlabeled_shards_per_strong",
                &d.unlabeled_shards_per_strong,
                &format!("must be at most {}", limits::UNLABELED_SHARDS_PER_STRONG),
            );
        }
        match d.unlabeled_shards_used {
            Some(used) if d.split != SplitKind::Dirichlet => {
                return err(
                    "data.unlabeled_shards_used",
                    &used,
                    "applies to the dirichlet split only",
                );
            }
            Some(used) if used > d.unlabeled_shards_per_strong => {
                return err(
                    "data.unlabeled_shards_used",
                    &used,
                    &format!(
                        "must be at most data.unlabeled_shards_per_strong ({})",
                        d.unlabeled_shards_per_strong
                    ),
                );
            }
            _ => {}
        }
        if d.dataset == Named::Synthetic && d.path.is_some() {
            return err(
                "data.path",
                &"(set)",
                "the synthetic dataset reads no files",
            );
        }
        match (&d.path, d.dataset) {
            (None, Named::Npz) => {
                return err(
                    "data.path",
                    &"(missing)",
                    "the npz dataset needs data.path: the .npz file",
                );
            }
            (Some(path), Named::Npz) if !path.is_file() => {
                return err(
                    "data.path",
                    &path.display(),
                    "is not a file (the npz dataset reads one .npz file)",
                );
            }
            (Some(path), named) if named != Named::Npz && !path.is_dir() => {
                return err("data.path", &path.display(), "is not a directory");
            }
            _ => {}
        }
        match (&d.partition_file, d.split) {
            (None, SplitKind::File) => {
                return err(
                    "data.partition_file",
                    &"(missing)",
                    "data.split = \"file\" reads the split from this JSON file",
                );
            }
            (Some(path), SplitKind::File) if !path.is_file() => {
                return err("data.partition_file", &path.display(), "is not a file");
            }
            (Some(path), split) if split != SplitKind::File => {
                return err(
                    "data.partition_file",
                    &path.display(),
                    "is only read with data.split = \"file\"; remove it or set the split",
                );
            }
            _ => {}
        }
        let s = &self.synthetic;
        if !(2..=limits::SYNTHETIC_CLASSES).contains(&s.classes) {
            return err(
                "synthetic.classes",
                &s.classes,
                &format!("must be in 2..={}", limits::SYNTHETIC_CLASSES),
            );
        }
        if !(s.cluster_std > 0.0 && s.cluster_std.is_finite()) {
            return err("synthetic.cluster_std", &s.cluster_std, "must be > 0");
        }
        for (key, n) in [
            ("synthetic.train_samples", s.train_samples),
            ("synthetic.test_samples", s.test_samples),
        ] {
            if n == 0 {
                return err(
                    key,
                    &0,
                    "must be at least 1 (an empty split cannot be used)",
                );
            }
        }
        // Zero sizes, and the bytes of both splits and the centres (checked arithmetic,
        // at most 16 GiB), before anything is generated.
        if let Err(e) = s.validate() {
            return Err(match e {
                flotilla_data::DataError::InvalidParameter {
                    name,
                    value,
                    reason,
                } => ConfigError::new(format!("synthetic.{name}"), value, reason),
                other => ConfigError::new("synthetic", "(section)", other.to_string()),
            });
        }
        let f = &self.fleet;
        f.groups()?;
        f.server()?;
        self.network.validate(f.clients)?;
        self.round_policy.policy(self.training.stage_timeout_s)?;
        self.asynchronous.validate(f.clients)?;
        self.topology.validate(f.clients)?;
        if self.topology.hierarchical()
            && let Some(m) = self.methods.iter().find(|m| m.is_asynchronous())
        {
            return err(
                "topology.edges",
                &self.topology.edges,
                &format!(
                    "edge aggregators run synchronous rounds; {m} runs on a star (leave \
                     [topology] out for it)"
                ),
            );
        }
        if let Some(rejoin) = f.rejoin_s {
            crate::policy::duration("fleet.rejoin_s", rejoin)?;
        }
        if self.accuracy_targets.len() > 100 {
            return err(
                "accuracy_targets",
                &self.accuracy_targets.len(),
                "at most 100 targets",
            );
        }
        if let Some((i, a)) = self
            .accuracy_targets
            .iter()
            .enumerate()
            .find(|(_, a)| !(**a > 0.0 && **a <= 1.0))
        {
            return err(
                &format!("accuracy_targets[{i}]"),
                a,
                "must be a fraction in (0, 1] (0.8 for 80 %)",
            );
        }
        let t = &self.training;
        if t.local_steps == 0 {
            return err("training.local_steps", &0, "must be at least 1");
        }
        if !(1..=limits::BATCH_SIZE).contains(&t.batch_size) {
            return err(
                "training.batch_size",
                &t.batch_size,
                &format!("must be in 1..={}", limits::BATCH_SIZE),
            );
        }
        if !(t.lr > 0.0 && t.lr.is_finite()) {
            return err("training.lr", &t.lr, "must be > 0");
        }
        if let Some(m) = t.lr_milestones.iter().find(|m| !(**m > 0.0 && **m < 1.0)) {
            return err(
                "training.lr_milestones",
                m,
                "each milestone is a fraction of the rounds in (0, 1)",
            );
        }
        if !(0.0..1.0).contains(&t.momentum) {
            return err("training.momentum", &t.momentum, "must be in [0, 1)");
        }
        if !(t.weight_decay >= 0.0 && t.weight_decay.is_finite()) {
            return err("training.weight_decay", &t.weight_decay, "must be ≥ 0");
        }
        if let Some(c) = t.clip_grad_norm
            && !(c > 0.0 && c.is_finite())
        {
            return err("training.clip_grad_norm", &c, "must be > 0");
        }
        if t.clients_per_round == 0 || t.clients_per_round > f.clients {
            return err(
                "training.clients_per_round",
                &t.clients_per_round,
                &format!("must be in 1..={}", f.clients),
            );
        }
        if t.strong_per_round == Some(0) {
            return err("training.strong_per_round", &0, "must be at least 1");
        }
        if !(t.stage_timeout_s > 0.0 && t.stage_timeout_s <= limits::DURATION_S) {
            return err(
                "training.stage_timeout_s",
                &t.stage_timeout_s,
                &format!("must be > 0 and at most {:e} s", limits::DURATION_S),
            );
        }
        let kd = &self.kd;
        if !(kd.temperature > 0.0 && kd.temperature.is_finite()) {
            return err("kd.temperature", &kd.temperature, "must be > 0");
        }
        if !(kd.lambda >= 0.0 && kd.lambda.is_finite()) {
            return err("kd.lambda", &kd.lambda, "must be ≥ 0");
        }
        if !(0.0..=1.0).contains(&kd.ramp) {
            return err("kd.ramp", &kd.ramp, "must be in [0, 1]");
        }
        let se = &self.server_ensemble;
        if !(1..=limits::BATCH_SIZE).contains(&se.batch_size) {
            return err(
                "server_ensemble.batch_size",
                &se.batch_size,
                &format!("must be in 1..={}", limits::BATCH_SIZE),
            );
        }
        if let Some(lr) = se.lr
            && !(lr > 0.0 && lr.is_finite())
        {
            return err("server_ensemble.lr", &lr, "must be > 0");
        }
        if let Some(t) = se.temperature
            && !(t > 0.0 && t.is_finite())
        {
            return err("server_ensemble.temperature", &t, "must be > 0");
        }
        Ok(())
    }
}

/// The value at a dotted path such as `data.alpha` or `methods[1]`.
fn lookup<'a>(root: &'a toml::Value, path: &str) -> Option<&'a toml::Value> {
    let mut node = root;
    for segment in path.split('.') {
        let (name, indices) = segment
            .split_once('[')
            .map_or((segment, ""), |(n, rest)| (n, rest));
        if !name.is_empty() {
            node = node.get(name)?;
        }
        for index in indices.split('[').filter(|i| !i.is_empty()) {
            node = node.get(index.trim_end_matches(']').parse::<usize>().ok()?)?;
        }
    }
    Some(node)
}

/// Sets `key.path = value` in `table`; the value is parsed as TOML (numbers, booleans,
/// arrays, quoted strings) or taken as a bare string.
fn apply_override(table: &mut toml::Table, item: &str) -> Result<(), ConfigError> {
    let Some((key, raw)) = item.split_once('=') else {
        return Err(ConfigError::new(
            "--set",
            item,
            "expected KEY=VALUE, e.g. data.alpha=1.0",
        ));
    };
    let key = key.trim();
    let raw = raw.trim();
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(ConfigError::new("--set", item, "empty key segment"));
    }
    let mut node = table;
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            node.insert((*part).to_string(), value);
            return Ok(());
        }
        let entry = node
            .entry((*part).to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = match entry {
            toml::Value::Table(t) => t,
            other => {
                return Err(ConfigError::new(
                    parts[..=i].join("."),
                    other.to_string(),
                    format!("is not a table, so `{key}` cannot be set"),
                ));
            }
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(sets: &[&str]) -> Result<ExperimentConfig, ExperimentError> {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        ExperimentConfig::load(&ConfigSource::BuiltIn("quickstart".into()), &sets)
    }

    /// The error of `sets`, which must name `key` and `value`.
    fn rejects(sets: &[&str], key: &str, value: &str) -> ConfigError {
        match load(sets) {
            Err(ExperimentError::Config(e)) => {
                assert_eq!(e.key, key, "{sets:?}: {e}");
                assert_eq!(e.value, value, "{sets:?}: {e}");
                e
            }
            other => panic!("{sets:?} gave {other:?}"),
        }
    }

    #[test]
    fn the_config_files_partition_and_npz_paths_are_relative_to_it() {
        let dir =
            std::env::temp_dir().join(format!("flotilla-config-paths-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for file in ["split.json", "data.npz"] {
            std::fs::write(dir.join(file), "").unwrap();
        }
        let text = BUILT_IN[0].1.replace(
            "dataset = \"synthetic\"",
            "dataset = \"npz\"\npath = \"data.npz\"\npartition_file = \"split.json\"",
        );
        let text = text.replace("split = \"dirichlet\"", "split = \"file\"");
        let config_path = dir.join("c.toml");
        std::fs::write(&config_path, text).unwrap();
        let source = ConfigSource::File(config_path);
        let config = ExperimentConfig::load(&source, &[]).unwrap();
        assert_eq!(config.data.path, Some(dir.join("data.npz")));
        assert_eq!(config.data.partition_file, Some(dir.join("split.json")));
        // A `--set` path is as typed (relative to the working folder), so it is missing here.
        let e = ExperimentConfig::load(&source, &["data.partition_file=split.json".into()])
            .unwrap_err();
        assert!(
            matches!(&e, ExperimentError::Config(c) if c.key == "data.partition_file"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn seeds_are_bounded_and_the_last_seed_must_fit() {
        load(&["seeds=10000"]).unwrap();
        rejects(&["seeds=10001"], "seeds", "10001");
        rejects(&["seeds=1000000000000"], "seeds", "1000000000000");
        rejects(&["seeds=0"], "seeds", "0");
        // TOML integers stop at i64::MAX; a library caller can go up to u64::MAX.
        let mut config = load(&["seeds=3"]).unwrap();
        config.seed = u64::MAX - 2;
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(
            config.seed_list(),
            vec![u64::MAX - 2, u64::MAX - 1, u64::MAX]
        );
        config.seed = u64::MAX - 1;
        let e = config.validate().unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.value.clone()),
            ("seed", (u64::MAX - 1).to_string())
        );
        assert!(e.reason.contains("3 seeds"), "{e}");
    }

    #[test]
    fn unlabeled_shards_used_is_checked_against_the_split() {
        load(&["data.unlabeled_shards_used=0"]).unwrap();
        load(&["data.unlabeled_shards_used=5"]).unwrap();
        let e = rejects(
            &["data.unlabeled_shards_used=6"],
            "data.unlabeled_shards_used",
            "6",
        );
        assert!(e.reason.contains("unlabeled_shards_per_strong (5)"), "{e}");
        let e = rejects(
            &["data.split=\"iid\"", "data.unlabeled_shards_used=1"],
            "data.unlabeled_shards_used",
            "1",
        );
        assert!(e.reason.contains("dirichlet"), "{e}");
    }

    #[test]
    fn a_method_listed_twice_is_named() {
        let e = rejects(
            &["methods=[\"strong_only\", \"weak_only\", \"strong_only\"]"],
            "methods[2]",
            "strong_only",
        );
        assert!(e.reason.contains("twice"), "{e}");
    }

    #[test]
    fn synthetic_sizes_are_checked_before_generating() {
        rejects(&["synthetic.test_samples=0"], "synthetic.test_samples", "0");
        rejects(
            &["synthetic.train_samples=0"],
            "synthetic.train_samples",
            "0",
        );
        // 10¹¹ training samples: 13 TB, refused by bytes, not by allocating them.
        let e = rejects(
            &["synthetic.train_samples=100000000000"],
            "synthetic.train_samples",
            "100000000000",
        );
        assert!(e.reason.contains("16 GiB"), "{e}");
        // Sizes whose bytes overflow usize are named too.
        let e = rejects(
            &["synthetic.dim=4611686018427387904"],
            "synthetic.dim",
            "4611686018427387904",
        );
        assert!(e.reason.contains("16 GiB"), "{e}");
        rejects(&["synthetic.classes=10001"], "synthetic.classes", "10001");
        rejects(
            &["synthetic.clusters_per_class=0"],
            "synthetic.clusters_per_class",
            "0",
        );
        rejects(&["synthetic.dim=0"], "synthetic.dim", "0");
    }

    #[test]
    fn durations_are_bounded_far_inside_the_clock() {
        load(&["training.stage_timeout_s=1e7"]).unwrap();
        for bad in ["1e18", "10000000.5", "0.0", "-1.0", "inf", "nan"] {
            let value = load(&[&format!("training.stage_timeout_s={bad}")])
                .map(|_| ())
                .unwrap_err();
            let ExperimentError::Config(e) = value else {
                panic!("{bad}: {value:?}")
            };
            assert_eq!(e.key, "training.stage_timeout_s", "{bad}");
            assert!(e.reason.contains("1e7"), "{e}");
        }
    }

    #[test]
    fn keys_that_size_allocations_are_bounded() {
        for (set, key, value) in [
            ("rounds=1000001", "rounds", "1000001"),
            ("fleet.clients=1000001", "fleet.clients", "1000001"),
            (
                "training.batch_size=1000001",
                "training.batch_size",
                "1000001",
            ),
            (
                "server_ensemble.batch_size=1000001",
                "server_ensemble.batch_size",
                "1000001",
            ),
            (
                "data.unlabeled_shards_per_strong=101",
                "data.unlabeled_shards_per_strong",
                "101",
            ),
            (
                "fleet.weak_memory_mb=1e10",
                "fleet.weak_memory_mb",
                "10000000000",
            ),
            (
                "fleet.strong_memory_mb=inf",
                "fleet.strong_memory_mb",
                "inf",
            ),
        ] {
            rejects(&[set], key, value);
        }
        // At the bounds themselves, the configuration is valid.
        load(&[
            "rounds=1000000",
            "fleet.clients=100000",
            "training.batch_size=1000000",
            "server_ensemble.batch_size=1000000",
            "data.unlabeled_shards_per_strong=100",
            "synthetic.classes=10000",
            "fleet.weak_memory_mb=1e9",
        ])
        .unwrap();
    }
}
