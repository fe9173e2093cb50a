//! Building a run and driving it on one thread: the reference executor.

use crate::host::{AnyNode, NodeHost, SharedDecode};
use crate::jobs::{InlineRunner, JobRunner};
use crate::router::Router;
use crate::trace::Recorder;
use crate::trace::TraceSummary;
use crate::world::{Registration, RunReport, StopAt, World};
use crate::{Checkpoint, CheckpointError, DeviceProfile, NetworkModel, Node, NodeId, Seed};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::Write;
use std::sync::Arc;

/// Assembles nodes, their devices and the network into a [`Simulation`].
pub struct SimulationBuilder<M> {
    seed: Seed,
    network: NetworkModel,
    registrations: Vec<Registration>,
    nodes: Vec<Box<dyn AnyNode<M>>>,
    jsonl: Option<Box<dyn Write + Send>>,
    keep_records: bool,
}

impl<M> std::fmt::Debug for SimulationBuilder<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulationBuilder")
            .field("seed", &self.seed)
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

impl<M: Clone + Serialize + DeserializeOwned + 'static> SimulationBuilder<M> {
    /// A run with master seed `seed` over `network`.
    pub fn new(seed: Seed, network: NetworkModel) -> Self {
        Self {
            seed,
            network,
            registrations: Vec::new(),
            nodes: Vec::new(),
            jsonl: None,
            keep_records: false,
        }
    }

    /// Adds a node; `device` is its hardware (none: it computes instantly and is always
    /// available, like a server). A node with hardware is an edge device: its traffic counts
    /// as uplink and downlink. Ids are given in call order from 0.
    pub fn add_node(
        &mut self,
        name: impl Into<String>,
        node: impl Node<M>,
        device: Option<DeviceProfile>,
    ) -> NodeId {
        let edge = device.is_some();
        self.register(name.into(), Box::new(node), device, edge)
    }

    /// Adds an infrastructure node (a server or an aggregator) whose compute is modelled by
    /// `device`. Unlike [`SimulationBuilder::add_node`], its traffic is not edge traffic: a
    /// message it sends to a device counts as that device's downlink only.
    pub fn add_infrastructure_node(
        &mut self,
        name: impl Into<String>,
        node: impl Node<M>,
        device: DeviceProfile,
    ) -> NodeId {
        self.register(name.into(), Box::new(node), Some(device), false)
    }

    fn register(
        &mut self,
        name: String,
        node: Box<dyn AnyNode<M>>,
        device: Option<DeviceProfile>,
        edge: bool,
    ) -> NodeId {
        let id = NodeId(self.nodes.len() as u32);
        self.registrations.push(Registration { name, device, edge });
        self.nodes.push(node);
        id
    }

    /// The network model, to add rules or links after nodes are known.
    pub fn network(&mut self) -> &mut NetworkModel {
        &mut self.network
    }

    /// Writes every trace record as a JSON line to `out`.
    pub fn trace_jsonl(mut self, out: Box<dyn Write + Send>) -> Self {
        self.jsonl = Some(out);
        self
    }

    /// Keeps every trace record in memory (see [`Simulation::finish`]).
    pub fn keep_records(mut self) -> Self {
        self.keep_records = true;
        self
    }

    /// The simulation, ready to run.
    pub fn build(self) -> Simulation<M> {
        let (jsonl, keep) = (self.jsonl, self.keep_records);
        let router = Router::new(self.seed, self.registrations.len(), self.network);
        let world = World::new(self.seed, self.registrations, move |edge| {
            let mut recorder = Recorder::new(edge);
            if let Some(out) = jsonl {
                recorder = recorder.with_jsonl(out);
            }
            if keep {
                recorder = recorder.with_memory();
            }
            recorder
        });
        let decoded = Arc::new(SharedDecode::default());
        let hosts = self
            .nodes
            .into_iter()
            .enumerate()
            .map(|(i, node)| {
                let id = NodeId(i as u32);
                let device = world.shared_device(id).cloned();
                NodeHost::new(self.seed, id, node, device, Arc::clone(&decoded))
            })
            .collect();
        Simulation {
            inline: InlineRunner::default(),
            world,
            router,
            hosts,
        }
    }
}

/// A run: the clock side ([`World`]), the network side ([`Router`]) and the node side (one
/// [`NodeHost`] per node).
///
/// Messages `M` travel encoded (serde, bincode) and are `Clone`: a message sent to many nodes
/// is decoded once and cloned for the others (keep large payloads behind an `Arc` and the
/// clone is cheap).
#[derive(Debug)]
pub struct Simulation<M> {
    world: World<M>,
    router: Router,
    /// Jobs started by [`Simulation::run`]: kept across calls, so a run stopped at a time
    /// resumes with its jobs.
    inline: InlineRunner<M>,
    hosts: Vec<NodeHost<M>>,
}

impl<M: Clone + Serialize + DeserializeOwned + 'static> Simulation<M> {
    /// A builder with master seed `seed` over `network`.
    pub fn builder(seed: Seed, network: NetworkModel) -> SimulationBuilder<M> {
        SimulationBuilder::new(seed, network)
    }

    /// Runs on the calling thread until `stop`, jobs inline: the reference executor.
    pub fn run(&mut self, stop: StopAt) -> RunReport {
        let mut inline = std::mem::take(&mut self.inline);
        let report = self.run_with(stop, &mut inline);
        self.inline = inline;
        report
    }

    /// Jobs started by [`Simulation::run`] whose completion has not been reached yet.
    pub fn pending_jobs(&self) -> usize {
        self.inline.pending()
    }

    /// Runs on the calling thread until `stop`, with jobs executed by `runner`. Resume a
    /// run with the same runner: jobs still running live in it.
    pub fn run_with(&mut self, stop: StopAt, runner: &mut dyn JobRunner<M>) -> RunReport {
        while let Some((now, batches)) = self.world.begin_instant(stop, runner) {
            for batch in batches {
                let handled = self.hosts[batch.node.index()].handle(now, batch.inbound);
                self.world.commit(batch.node, handled, runner);
            }
            let verdicts = self.router.route_all(&self.world.pending_sends());
            self.world.deliver(verdicts);
        }
        self.world.report()
    }

    /// Makes the run pause after every instant in which a node records `label` (see
    /// [`World::pause_after_record`]): the moments to take a checkpoint.
    pub fn pause_after_record(&mut self, label: impl Into<String>) {
        self.world.pause_after_record(label);
    }

    /// Whether the last run paused rather than stopped (see
    /// [`Simulation::pause_after_record`]); clears the pause.
    pub fn take_pause(&mut self) -> bool {
        self.world.take_pause()
    }

    /// The clock side.
    pub fn world(&self) -> &World<M> {
        &self.world
    }

    /// A node by id, as its concrete type.
    pub fn node<T: 'static>(&self, id: NodeId) -> Option<&T> {
        self.hosts.get(id.index())?.node()
    }

    /// Splits the run into its clock, network and node sides, for other runtimes.
    ///
    /// Jobs started by [`Simulation::run`] and still pending ([`Simulation::pending_jobs`])
    /// stay behind: split a fresh run, or one run with a runner you keep, not one half-run
    /// by [`Simulation::run`] with jobs in flight (their nodes would fail when the jobs'
    /// completions arrive).
    pub fn into_parts(self) -> (World<M>, Router, Vec<NodeHost<M>>) {
        (self.world, self.router, self.hosts)
    }

    /// Joins parts split by [`Simulation::into_parts`].
    pub fn from_parts(world: World<M>, router: Router, hosts: Vec<NodeHost<M>>) -> Self {
        Self {
            world,
            router,
            inline: InlineRunner::default(),
            hosts,
        }
    }

    /// Takes a checkpoint of the run as it stands between instants (see
    /// [`Checkpoint`]), jobs executed by `runner` (the runner the run uses: jobs still
    /// running are waited for). The run goes on unchanged, but for the trace hash, which
    /// a checkpoint folds (see [`TraceHash`](crate::TraceHash)).
    ///
    /// # Errors
    /// A node that does not support checkpoints or fails to save, a job output that does
    /// not encode, a trace write error.
    pub fn checkpoint_with(
        &mut self,
        runner: &mut dyn JobRunner<M>,
    ) -> Result<Checkpoint, CheckpointError>
    where
        M: Send,
    {
        let hosts = self
            .hosts
            .iter()
            .map(|host| {
                host.checkpoint().map_err(|reason| CheckpointError::Node {
                    node: host.id().0,
                    name: self.world.name(host.id()).to_string(),
                    reason,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (world, jobs) = self
            .world
            .checkpoint(runner)
            .map_err(CheckpointError::Mismatch)?;
        Ok(Checkpoint {
            world,
            router: self.router.checkpoint(),
            hosts,
            jobs,
        })
    }

    /// [`Simulation::checkpoint_with`] for a run driven by [`Simulation::run`].
    ///
    /// # Errors
    /// As [`Simulation::checkpoint_with`].
    pub fn checkpoint(&mut self) -> Result<Checkpoint, CheckpointError>
    where
        M: Send,
    {
        let mut inline = std::mem::take(&mut self.inline);
        let checkpoint = self.checkpoint_with(&mut inline);
        self.inline = inline;
        checkpoint
    }

    /// Puts `checkpoint` back on this simulation, built from the same configuration as the
    /// one saved and not yet run, with the saved jobs' outputs going to `runner` (the
    /// runner the resumed run will use). Running it then continues the saved run.
    ///
    /// # Errors
    /// The checkpoint does not fit this simulation (another seed, other nodes or devices),
    /// or a node refuses its state. The simulation must then not be run.
    pub fn restore_with(
        &mut self,
        checkpoint: Checkpoint,
        runner: &mut dyn JobRunner<M>,
    ) -> Result<(), CheckpointError>
    where
        M: Send,
    {
        if checkpoint.hosts.len() != self.hosts.len() {
            return Err(CheckpointError::Mismatch(format!(
                "the checkpoint has {} nodes, the run {}",
                checkpoint.hosts.len(),
                self.hosts.len()
            )));
        }
        self.world
            .restore(checkpoint.world, checkpoint.jobs, runner)
            .map_err(CheckpointError::Mismatch)?;
        self.router
            .restore(checkpoint.router)
            .map_err(CheckpointError::Mismatch)?;
        for (host, state) in self.hosts.iter_mut().zip(checkpoint.hosts) {
            let id = host.id();
            host.restore(state)
                .map_err(|reason| CheckpointError::Node {
                    node: id.0,
                    name: self.world.name(id).to_string(),
                    reason,
                })?;
        }
        Ok(())
    }

    /// [`Simulation::restore_with`] for a run to be driven by [`Simulation::run`].
    ///
    /// # Errors
    /// As [`Simulation::restore_with`].
    pub fn restore(&mut self, checkpoint: Checkpoint) -> Result<(), CheckpointError>
    where
        M: Send,
    {
        let mut inline = std::mem::take(&mut self.inline);
        let restored = self.restore_with(checkpoint, &mut inline);
        self.inline = inline;
        restored
    }

    /// Flushes the trace and returns its summary (hash, counters, kept records).
    pub fn finish(self) -> std::io::Result<TraceSummary> {
        self.world.finish_trace()
    }
}
