//! The learning problem a federation shares: model, data, training hyper-parameters.

use flotilla_data::Dataset;
use flotilla_nn::{ModelSpec, Network, NnError, SgdConfig, Weights};
use flotilla_sim::{NodeId, Purpose, Seed};
use flotilla_train::{BatchLoader, LocalPhase, TrainError, Trainer, evaluate, input_shape};
use std::sync::Arc;

/// Why a learning task could not be set up or a job failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The model does not fit the data.
    #[error(transparent)]
    Nn(#[from] NnError),
    /// Training or evaluation failed.
    #[error(transparent)]
    Train(#[from] TrainError),
}

/// Model, shared datasets and local-training settings. Clients hold an `Arc` of this and
/// their own index lists; nothing copies the data per client.
#[derive(Debug)]
pub struct LearningTask {
    /// The model architecture.
    pub spec: ModelSpec,
    /// Training samples, shared by every client.
    pub train: Arc<Dataset>,
    /// Test samples, used by the server.
    pub test: Arc<Dataset>,
    /// Local SGD steps per round.
    pub local_steps: usize,
    /// Local batch size.
    pub batch_size: usize,
    /// Optimiser settings (the learning rate comes with each task).
    pub sgd: SgdConfig,
    /// Master seed; local training draws from each client's `TRAINING` sub-stream.
    pub seed: Seed,
    flops_per_sample: u64,
    training_memory: u64,
}

impl LearningTask {
    /// A task, checking that the model fits the data.
    pub fn new(
        spec: ModelSpec,
        train: Arc<Dataset>,
        test: Arc<Dataset>,
        local_steps: usize,
        batch_size: usize,
        sgd: SgdConfig,
        seed: Seed,
    ) -> Result<Self, TaskError> {
        sgd.validate()?;
        let net = spec.build(input_shape(&train), train.classes())?;
        let flops_per_sample = net.flops_per_sample();
        let training_memory = net.training_memory_bytes(batch_size);
        Ok(Self {
            spec,
            train,
            test,
            local_steps,
            batch_size,
            sgd,
            seed,
            flops_per_sample,
            training_memory,
        })
    }

    /// Memory one local training run needs \[bytes\] (see
    /// [`Network::training_memory_bytes`]).
    pub fn training_memory_bytes(&self) -> u64 {
        self.training_memory
    }

    /// A fresh network of the task's architecture.
    pub fn network(&self) -> Result<Network, TaskError> {
        Ok(self
            .spec
            .build(input_shape(&self.train), self.train.classes())?)
    }

    /// Declared work of one local training run \[FLOP\]: three forward passes' worth per
    /// sample (forward, input gradient, weight gradient).
    pub fn training_flops(&self) -> u64 {
        3 * self.flops_per_sample * (self.local_steps * self.batch_size) as u64
    }

    /// Declared work of evaluating the test set \[FLOP\].
    pub fn evaluation_flops(&self) -> u64 {
        self.flops_per_sample * self.test.len() as u64
    }

    /// Trains `weights` locally on `indices` for round `round` of client `node`; returns
    /// the trained weights and the mean loss. Draws come from the client's `TRAINING`
    /// sub-stream for that round, so the result does not depend on which thread runs it.
    pub fn train_local(
        &self,
        node: NodeId,
        round: u32,
        mut weights: Weights,
        indices: &[usize],
        lr: f32,
    ) -> Result<(Weights, f32), TaskError> {
        let mut trainer = Trainer::new(self.network()?, self.sgd)?;
        let mut rng = self
            .seed
            .substream(node, Purpose::TRAINING, u64::from(round));
        let loader = BatchLoader::new(&self.train, None);
        let phase = LocalPhase {
            loader: &loader,
            indices,
            steps: self.local_steps,
            batch_size: self.batch_size,
            lr,
        };
        let loss = trainer.train_steps(&mut weights, &phase, &mut rng)?;
        Ok((weights, loss))
    }

    /// Test accuracy and mean loss of `weights`.
    pub fn evaluate(&self, weights: &Weights) -> Result<(f64, f64), TaskError> {
        let stats = evaluate(&mut self.network()?, weights, &self.test, 256)?;
        Ok((stats.accuracy(), stats.mean_loss()))
    }
}
