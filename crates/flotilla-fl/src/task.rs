//! The learning problem a federation shares: models, data, local-training settings.

use crate::{FlError, Offload};
use flotilla_data::{Augmentation, Dataset};
use flotilla_nn::layer::checked_product;
use flotilla_nn::{ModelSpec, Network, SgdConfig, Weights};
use flotilla_sim::{DeviceProfile, NodeId, Purpose, Seed};
use flotilla_train::{BatchLoader, evaluate_parts, input_shape};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Which of a run's models a weight vector belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelRole {
    /// The large model `wl` the federation is after.
    Target,
    /// The small model `ws` every device can train.
    Auxiliary,
}

impl ModelRole {
    /// Both roles, target first.
    pub const ALL: [ModelRole; 2] = [ModelRole::Target, ModelRole::Auxiliary];

    /// `target` or `auxiliary`.
    pub fn name(self) -> &'static str {
        match self {
            ModelRole::Target => "target",
            ModelRole::Auxiliary => "auxiliary",
        }
    }
}

impl fmt::Display for ModelRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Local-training settings shared by every client.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalTraining {
    /// SGD steps per local phase (`H`).
    pub steps: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Optimiser settings (the learning rate comes with each assignment).
    pub sgd: SgdConfig,
}

/// What the run knows about one model architecture.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// The architecture.
    pub spec: ModelSpec,
    /// Trainable parameters.
    pub params: usize,
    /// Forward FLOPs per sample.
    pub flops_per_sample: u64,
    /// Memory one local training run needs at the task's batch size \[bytes\] (see
    /// [`Network::training_memory_bytes`]).
    pub training_memory_bytes: u64,
}

/// Models, shared datasets and local-training settings. Clients hold an `Arc` of this and
/// their own index lists; nothing copies the data per client.
#[derive(Debug)]
pub struct LearningTask {
    /// Training samples, shared by every client (each sees only its own indices).
    pub train: Arc<Dataset>,
    /// Test samples, used by the server.
    pub test: Arc<Dataset>,
    /// Augmentation of training batches (labeled and unlabeled alike), if any.
    pub augmentation: Option<Augmentation>,
    /// Local-training settings.
    pub local: LocalTraining,
    /// Master seed: initial weights and every client's training draws derive from it.
    pub seed: Seed,
    models: BTreeMap<ModelRole, ModelInfo>,
    /// Starting weights given by the user, replacing the seeded draw.
    initial: BTreeMap<ModelRole, Weights>,
    /// Where clients' training and evaluations compute, if not on the simulation's threads.
    offload: Option<Arc<dyn Offload>>,
    /// Threads one evaluation may use (see [`LearningTask::set_evaluation_threads`]).
    evaluation_threads: usize,
}

/// The parts an evaluation's test set is cut into ([`flotilla_train::evaluate_parts`]):
/// fixed, so that the figures do not depend on how many threads compute them; enough to
/// keep 8 threads busy.
pub const EVALUATION_PARTS: usize = 8;

impl LearningTask {
    /// A task over `models`, checking that each fits the data and that the optimiser
    /// settings are valid.
    pub fn new(
        train: Arc<Dataset>,
        test: Arc<Dataset>,
        augmentation: Option<Augmentation>,
        models: &[(ModelRole, ModelSpec)],
        local: LocalTraining,
        seed: Seed,
    ) -> Result<Self, FlError> {
        local.sgd.validate()?;
        let mut infos = BTreeMap::new();
        for (role, spec) in models {
            let footprint =
                spec.footprint(input_shape(&train), train.classes(), local.batch_size)?;
            infos.insert(
                *role,
                ModelInfo {
                    spec: spec.clone(),
                    params: footprint.params,
                    flops_per_sample: footprint.flops_per_sample,
                    training_memory_bytes: footprint.training_memory_bytes,
                },
            );
        }
        Ok(Self {
            train,
            test,
            augmentation,
            local,
            seed,
            models: infos,
            initial: BTreeMap::new(),
            offload: None,
            evaluation_threads: 1,
        })
    }

    /// Lets one evaluation use up to `threads` threads (at least 1; 1 at first): the
    /// simulation's job-thread count, since a synchronous server evaluates when a round has
    /// closed and the clients' threads are idle. The figures do not depend on it.
    pub fn set_evaluation_threads(&mut self, threads: usize) {
        self.evaluation_threads = threads.max(1);
    }

    /// Computes the clients' training and the global models' evaluations with `offload`
    /// (e.g. on other MPI ranks) instead of on the simulation's job threads. Results are
    /// the same bits: only wall time changes.
    pub fn set_offload(&mut self, offload: Arc<dyn Offload>) {
        self.offload = Some(offload);
    }

    /// Where jobs compute when not on the simulation's threads (see
    /// [`LearningTask::set_offload`]).
    pub fn offload(&self) -> Option<&Arc<dyn Offload>> {
        self.offload.as_ref()
    }

    /// Starts `role` from `weights` instead of the seeded draw (for every method and seed
    /// run on this task).
    ///
    /// # Errors
    /// [`FlError::Setup`] when `weights` does not have the model's parameter and state
    /// lengths.
    pub fn set_initial_weights(
        &mut self,
        role: ModelRole,
        weights: Weights,
    ) -> Result<(), FlError> {
        let net = self.network(role)?;
        if weights.params.len() != net.param_len() || weights.state.len() != net.state_len() {
            return Err(FlError::Setup(format!(
                "initial {role} weights hold {} parameters and {} state values, the model has \
                 {} and {}",
                weights.params.len(),
                weights.state.len(),
                net.param_len(),
                net.state_len()
            )));
        }
        self.initial.insert(role, weights);
        Ok(())
    }

    /// The roles this task has models for, target first.
    pub fn roles(&self) -> impl Iterator<Item = ModelRole> + '_ {
        self.models.keys().copied()
    }

    /// The model playing `role`.
    pub fn model(&self, role: ModelRole) -> Result<&ModelInfo, FlError> {
        self.models.get(&role).ok_or(FlError::MissingModel(role))
    }

    /// Whether `device` can hold a training run of `role` (no profile: an unconstrained
    /// node).
    pub fn fits(&self, role: ModelRole, device: Option<&DeviceProfile>) -> Result<bool, FlError> {
        let needed = self.model(role)?.training_memory_bytes;
        Ok(device.is_none_or(|d| d.fits(needed)))
    }

    /// A fresh network of `role`'s architecture.
    pub fn network(&self, role: ModelRole) -> Result<Network, FlError> {
        Ok(self
            .model(role)?
            .spec
            .build(input_shape(&self.train), self.train.classes())?)
    }

    /// The initial global weights of `role`: those given to
    /// [`LearningTask::set_initial_weights`], else drawn from the seed's `INIT` stream, so
    /// every method run with one seed starts from the same models.
    pub fn initial_weights(&self, role: ModelRole) -> Result<Weights, FlError> {
        if let Some(w) = self.initial.get(&role) {
            return Ok(w.clone());
        }
        let mut rng = self.seed.substream(NodeId(0), Purpose::INIT, role as u64);
        Ok(self.network(role)?.init(&mut rng))
    }

    /// Declared work of `steps` training steps of `role` at the task's batch size
    /// \[FLOP\] (see [`LearningTask::step_flops`]).
    pub fn training_flops(&self, role: ModelRole, steps: usize) -> Result<u64, FlError> {
        self.step_flops(role, steps, self.local.batch_size)
    }

    /// Declared work of `steps` training steps of `role` on batches of `batch` \[FLOP\]:
    /// three forward passes' worth per sample (forward, input gradient, weight gradient).
    /// Errors ([`FlError::FlopOverflow`]) if the count overflows `u64`.
    pub fn step_flops(&self, role: ModelRole, steps: usize, batch: usize) -> Result<u64, FlError> {
        let model = self.model(role)?;
        checked_product(&[3, steps, batch])
            .and_then(|passes| passes.checked_mul(model.flops_per_sample))
            .ok_or_else(|| {
                FlError::FlopOverflow(format!(
                    "{steps} training steps of the {role} model ({}) at batch {batch}",
                    model.spec
                ))
            })
    }

    /// Declared work of `samples` forward passes of `role` \[FLOP\]. Errors
    /// ([`FlError::FlopOverflow`]) if the count overflows `u64`.
    pub fn inference_flops(&self, role: ModelRole, samples: usize) -> Result<u64, FlError> {
        let model = self.model(role)?;
        (samples as u64)
            .checked_mul(model.flops_per_sample)
            .ok_or_else(|| {
                FlError::FlopOverflow(format!(
                    "{samples} forward passes of the {role} model ({})",
                    model.spec
                ))
            })
    }

    /// Declared work of evaluating `role` on the test set \[FLOP\].
    pub fn evaluation_flops(&self, role: ModelRole) -> Result<u64, FlError> {
        self.inference_flops(role, self.test.len())
    }

    /// A loader of training batches, with the task's augmentation.
    pub fn loader(&self) -> BatchLoader<'_> {
        BatchLoader::new(&self.train, self.augmentation)
    }

    /// Test accuracy and mean loss of `weights` as model `role`, on the test set cut into
    /// [`EVALUATION_PARTS`] computed on up to [`LearningTask::set_evaluation_threads`]
    /// threads.
    pub fn evaluate(&self, role: ModelRole, weights: &Weights) -> Result<(f64, f64), FlError> {
        let threads = self.evaluation_threads.min(EVALUATION_PARTS);
        let mut nets = (0..threads)
            .map(|_| self.network(role))
            .collect::<Result<Vec<_>, _>>()?;
        let (stats, helper_time) =
            evaluate_parts(&mut nets, weights, &self.test, 256, EVALUATION_PARTS)?;
        flotilla_sim::count_helper_time(helper_time);
        Ok((stats.accuracy(), stats.mean_loss()))
    }
}

/// One client's samples: indices into the task's training set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientData {
    /// Labeled samples.
    pub labeled: Arc<[usize]>,
    /// Unlabeled samples (their labels are never read for training; only instrumentation
    /// compares predictions with them).
    pub unlabeled: Arc<[usize]>,
}

impl ClientData {
    /// A client holding the labeled samples `indices` and no unlabeled ones.
    pub fn from_labeled(indices: impl Into<Arc<[usize]>>) -> Self {
        Self {
            labeled: indices.into(),
            unlabeled: Arc::from([]),
        }
    }

    /// A fingerprint of an index list, order included (FNV-1a over the indices as
    /// little-endian `u64`s, cut to 53 bits so a trace record's `f64` holds it exactly).
    /// Participants record it for their labeled and unlabeled lists at start
    /// (`labeled_fingerprint`, `unlabeled_fingerprint`), so a trace shows which samples
    /// each client trained on.
    pub fn fingerprint(indices: &[usize]) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for &i in indices {
            for byte in (i as u64).to_le_bytes() {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        }
        hash & ((1 << 53) - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_data::SyntheticConfig;

    fn task(steps: usize, batch_size: usize) -> LearningTask {
        let (train, test) = SyntheticConfig {
            train_samples: 20,
            test_samples: 10,
            ..SyntheticConfig::default()
        }
        .generate()
        .unwrap();
        let local = LocalTraining {
            steps,
            batch_size,
            sgd: SgdConfig::default(),
        };
        let models = [(ModelRole::Target, "mlp:32-8-10".parse().unwrap())];
        LearningTask::new(
            Arc::new(train),
            Arc::new(test),
            None,
            &models,
            local,
            Seed(1),
        )
        .unwrap()
    }

    #[test]
    fn flop_counts_are_checked_and_name_what_overflowed() {
        let task = task(30, 32);
        let per_sample = task.model(ModelRole::Target).unwrap().flops_per_sample;
        assert_eq!(per_sample, 2 * 32 * 8 + 8 + 8 + 2 * 8 * 10 + 10);
        assert_eq!(
            task.training_flops(ModelRole::Target, 30).unwrap(),
            3 * 30 * 32 * per_sample
        );
        // 10¹⁸ local steps: formerly a wrapped product, now an error naming the work.
        let e = task
            .training_flops(ModelRole::Target, 1_000_000_000_000_000_000)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("1000000000000000000 training steps of the target model (mlp:32-8-10)")
                && e.contains("at batch 32")
                && e.contains("overflows u64"),
            "{e}"
        );
        let e = task
            .inference_flops(ModelRole::Target, usize::MAX)
            .unwrap_err()
            .to_string();
        assert!(e.contains("forward passes of the target model"), "{e}");
    }
}
