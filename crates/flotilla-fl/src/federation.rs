//! Wiring a federation: a coordinator, its clients and any edge aggregators between them,
//! registered in one fixed order so that nobody hand-numbers a star again.
//!
//! Node ids: the server is 0, the clients follow from 1 in the order they were added, the
//! edges come last in the order they were added. A client thus has the same id — and the
//! same random streams — whether it answers the server directly or through an edge, so a
//! hierarchy and a star over the same clients compare on equal terms.
//!
//! ```text
//!  star:           server ◄── client 1 … client N
//!  two_tier:       server ◄── strong clients (their device and link), weak clients (theirs)
//!  hierarchical:   cloud  ◄── edge 1 ◄── clients of group 1
//!                         ◄── edge E ◄── clients of group E
//! ```
//!
//! A custom topology: a cloud with a device, one edge over phones, workstations answering
//! the cloud directly.
//!
//! ```
//! # use flotilla_data::SyntheticConfig;
//! # use flotilla_fl::*;
//! # use flotilla_nn::{LrSchedule, SgdConfig};
//! # use flotilla_sim::*;
//! # use std::sync::Arc;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let (train, test) = SyntheticConfig { train_samples: 120, test_samples: 40, ..Default::default() }.generate()?;
//! # let local = LocalTraining { steps: 1, batch_size: 8, sgd: SgdConfig::default() };
//! # let models = [(ModelRole::Target, "mlp:32-8-10".parse()?)];
//! let seed = Seed(1);
//! let task = Arc::new(LearningTask::new(
//!     Arc::new(train), Arc::new(test), None, &models, local, seed,
//! )?);
//! let shard = |k: usize| ClientData::from_labeled((k * 20..(k + 1) * 20).collect::<Vec<_>>());
//! let fedavg = FedAvg::new(&task, FedAvgConfig {
//!     model: ModelRole::Target,
//!     clients_per_round: None,
//!     weighted: true,
//!     schedule: LrSchedule::Constant(0.05),
//! })?;
//! let config = CoordinatorConfig { rounds: 2, registration_window: secs(10), eval_every: 1 };
//! let policy = RoundPolicy::wait_all(Some(secs(60)));
//! let coordinator_task = task.clone();
//! let mut fed = Federation::new(
//!     Simulation::builder(seed, NetworkModel::new(LinkSpec::latency(millis(5)))),
//!     "cloud",
//!     move |children| Coordinator::synchronous(fedavg, policy, coordinator_task, config, children),
//!     Placement::new(Some(DeviceProfile::preset("edge-gpu")?), None),
//! );
//! let edge = fed.edge(fed.server(), "edge-0", EdgeConfig {
//!     task: task.clone(),
//!     local_rounds: 2,
//!     policy: RoundPolicy::wait_all(Some(secs(30))),
//!     weighted: true,
//!     clients_per_round: None,
//!     registration_window: secs(5),
//! }, Placement::default())?;
//! let worker = Arc::new(LocalWorker);
//! let phones = ClientGroup::new(worker.clone(), task.clone(), (0..3).map(shard).collect())
//!     .placed(Placement::new(Some(DeviceProfile::preset("phone-low")?), Some(LinkSpec::preset("cellular-4g")?)));
//! fed.participants(edge, phones)?;
//! fed.participants(fed.server(), ClientGroup::new(worker, task, (3..5).map(shard).collect()))?;
//! let (mut sim, handle) = fed.build()?;
//! sim.run(StopAt::Idle);
//! assert_eq!(handle.clients().len(), 5);
//! let cloud = handle.coordinator(&sim).ok_or("no coordinator")?;
//! assert!(cloud.finished());
//! // The cloud's fleet: the two workstations and the edge (ids 4, 5 and 6).
//! assert_eq!(cloud.fleet().len(), 3);
//! assert_eq!(handle.edge(&sim, handle.edges()[0]).ok_or("no edge")?.jobs().answered, 2);
//! # Ok(())
//! # }
//! ```

use crate::{
    ClientData, ClientStrategy, Coordinator, EdgeAggregator, EdgeConfig, FlError, FlMessage,
    LearningTask, Participant, ServerLogic,
};
use flotilla_sim::{
    DeviceProfile, LinkSpec, NetworkModel, Node, NodeId, Simulation, SimulationBuilder,
};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

/// Why a federation could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TopologyError {
    /// The simulation builder given to [`Federation::new`] already held nodes.
    #[error(
        "the simulation builder already held {nodes} node(s); a federation numbers its nodes from 0 and needs an empty builder"
    )]
    BuilderNotEmpty {
        /// Nodes it held.
        nodes: u32,
    },
    /// A node was attached to a parent of another federation.
    #[error("{name} answers edge #{edge}, which this federation does not have")]
    UnknownParent {
        /// The node attached.
        name: String,
        /// The parent's index among the edges.
        edge: usize,
    },
    /// An edge nobody answers: it could never train anything.
    #[error("edge {name} has no clients")]
    ChildlessEdge {
        /// The edge.
        name: String,
    },
    /// An edge's settings were refused.
    #[error("edge {name}: {source}")]
    Edge {
        /// The edge.
        name: String,
        /// Why.
        source: FlError,
    },
}

/// Where a node runs: its device (none: it computes instantly, like a server) and its
/// link (none: the network model's default).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Placement {
    /// The node's hardware.
    pub device: Option<DeviceProfile>,
    /// The node's link.
    pub link: Option<LinkSpec>,
}

impl Placement {
    /// On `device`, over `link`.
    pub fn new(device: Option<DeviceProfile>, link: Option<LinkSpec>) -> Self {
        Self { device, link }
    }
}

/// A node clients (and edges) can answer: the server or an edge of one federation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Parent(Upstream);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Upstream {
    Server,
    Edge(usize),
}

/// Participants that share a worker, a task and a placement, one per data shard.
#[derive(Debug, Clone)]
pub struct ClientGroup<C> {
    /// The client half of the strategy.
    pub worker: Arc<C>,
    /// The shared task.
    pub task: Arc<LearningTask>,
    /// One client per entry, in order.
    pub data: Vec<ClientData>,
    /// Every client's device and link.
    pub placement: Placement,
}

impl<C> ClientGroup<C> {
    /// One client per entry of `data`, without a device, on the default link.
    pub fn new(worker: Arc<C>, task: Arc<LearningTask>, data: Vec<ClientData>) -> Self {
        Self {
            worker,
            task,
            data,
            placement: Placement::default(),
        }
    }

    /// Every client on `placement`.
    pub fn placed(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }
}

type Message<L> = FlMessage<<L as ServerLogic>::Work>;

/// Registers one node: given the builder, its name and device, its parent's id and how
/// many nodes answer it.
type Register<M> = Box<
    dyn FnOnce(
        &mut SimulationBuilder<M>,
        String,
        Option<DeviceProfile>,
        NodeId,
        usize,
    ) -> Result<NodeId, TopologyError>,
>;

struct Planned<M> {
    name: String,
    parent: Upstream,
    placement: Placement,
    register: Register<M>,
}

/// A federation being wired: a server ([`Coordinator`] of logic `L`), clients (any node
/// speaking the protocol) and edge aggregators, each attached to a [`Parent`]. Nodes are
/// registered on [`Federation::build`], where each coordinator learns how many nodes
/// answer it (see the module docs for the ids).
pub struct Federation<L: ServerLogic> {
    builder: SimulationBuilder<Message<L>>,
    server: Planned<Message<L>>,
    clients: Vec<Planned<Message<L>>>,
    edges: Vec<Planned<Message<L>>>,
    _logic: PhantomData<fn() -> L>,
}

impl<L: ServerLogic> fmt::Debug for Federation<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Federation")
            .field("server", &self.server.name)
            .field("clients", &self.clients.len())
            .field("edges", &self.edges.len())
            .finish_non_exhaustive()
    }
}

/// Adds `node` as infrastructure on its device, or as a device-less node.
fn add_infrastructure<M: Clone + serde::Serialize + serde::de::DeserializeOwned + 'static>(
    b: &mut SimulationBuilder<M>,
    name: String,
    node: impl Node<M>,
    device: Option<DeviceProfile>,
) -> NodeId {
    match device {
        Some(device) => b.add_infrastructure_node(name, node, device),
        None => b.add_node(name, node, None),
    }
}

impl<L: ServerLogic> Federation<L> {
    /// A federation on `builder` (which must hold no node yet) whose server, named `name`,
    /// is the coordinator `coordinator` makes for the number of nodes answering it.
    pub fn new(
        builder: SimulationBuilder<Message<L>>,
        name: impl Into<String>,
        coordinator: impl FnOnce(usize) -> Coordinator<L> + 'static,
        placement: Placement,
    ) -> Self {
        let register: Register<Message<L>> = Box::new(move |b, name, device, _, children| {
            Ok(add_infrastructure(b, name, coordinator(children), device))
        });
        Self {
            builder,
            server: Planned {
                name: name.into(),
                parent: Upstream::Server,
                placement,
                register,
            },
            clients: Vec::new(),
            edges: Vec::new(),
            _logic: PhantomData,
        }
    }

    /// A star: every client of `clients` answers the server (`"server"`, no device).
    pub fn star<C: ClientStrategy<Work = L::Work>>(
        builder: SimulationBuilder<Message<L>>,
        coordinator: impl FnOnce(usize) -> Coordinator<L> + 'static,
        clients: ClientGroup<C>,
    ) -> Self {
        let mut fed = Self::new(builder, "server", coordinator, Placement::default());
        fed.attach_group(Upstream::Server, clients);
        fed
    }

    /// Two device groups answering the server directly: `strong` (ids from 1), then `weak`.
    pub fn two_tier<C: ClientStrategy<Work = L::Work>>(
        builder: SimulationBuilder<Message<L>>,
        coordinator: impl FnOnce(usize) -> Coordinator<L> + 'static,
        strong: ClientGroup<C>,
        weak: ClientGroup<C>,
    ) -> Self {
        let mut fed = Self::star(builder, coordinator, strong);
        fed.attach_group(Upstream::Server, weak);
        fed
    }

    /// Cloud → edges → clients: the server (`"cloud"`, no device) and one edge
    /// (`"edge-e"`, on `edge_placement`, with `edge` settings) per group of clients.
    pub fn hierarchical<C: ClientStrategy<Work = L::Work>>(
        builder: SimulationBuilder<Message<L>>,
        coordinator: impl FnOnce(usize) -> Coordinator<L> + 'static,
        edge: EdgeConfig,
        edge_placement: Placement,
        groups: Vec<ClientGroup<C>>,
    ) -> Result<Self, TopologyError> {
        let mut fed = Self::new(builder, "cloud", coordinator, Placement::default());
        for (e, group) in groups.into_iter().enumerate() {
            let parent = fed.server();
            let edge = fed.edge(
                parent,
                format!("edge-{e}"),
                edge.clone(),
                edge_placement.clone(),
            )?;
            fed.participants(edge, group)?;
        }
        Ok(fed)
    }

    /// The server, as a parent.
    pub fn server(&self) -> Parent {
        Parent(Upstream::Server)
    }

    /// The network model, for rules (links are set from the placements on build).
    pub fn network(&mut self) -> &mut NetworkModel {
        self.builder.network()
    }

    fn check_parent(&self, parent: Parent, name: &str) -> Result<Upstream, TopologyError> {
        match parent.0 {
            Upstream::Edge(edge) if edge >= self.edges.len() => Err(TopologyError::UnknownParent {
                name: name.to_string(),
                edge,
            }),
            upstream => Ok(upstream),
        }
    }

    /// Adds a client: the node `make` builds from its parent's id (a [`Participant`] or a
    /// node of your own). Returns its id.
    pub fn client<N: Node<Message<L>>>(
        &mut self,
        parent: Parent,
        name: impl Into<String>,
        make: impl FnOnce(NodeId) -> N + 'static,
        placement: Placement,
    ) -> Result<NodeId, TopologyError> {
        let name = name.into();
        let parent = self.check_parent(parent, &name)?;
        Ok(self.push_client(name, parent, make, placement))
    }

    fn push_client<N: Node<Message<L>>>(
        &mut self,
        name: String,
        parent: Upstream,
        make: impl FnOnce(NodeId) -> N + 'static,
        placement: Placement,
    ) -> NodeId {
        self.clients.push(Planned {
            name,
            parent,
            placement,
            register: Box::new(move |b, name, device, parent, _| {
                Ok(b.add_node(name, make(parent), device))
            }),
        });
        NodeId(self.clients.len() as u32)
    }

    /// Adds one [`Participant`] per shard of `group` (named `client-<id>`), answering
    /// `parent`. Returns their ids.
    pub fn participants<C: ClientStrategy<Work = L::Work>>(
        &mut self,
        parent: Parent,
        group: ClientGroup<C>,
    ) -> Result<Vec<NodeId>, TopologyError> {
        let parent = self.check_parent(parent, "a client group")?;
        Ok(self.attach_group(parent, group))
    }

    fn attach_group<C: ClientStrategy<Work = L::Work>>(
        &mut self,
        parent: Upstream,
        group: ClientGroup<C>,
    ) -> Vec<NodeId> {
        let ClientGroup {
            worker,
            task,
            data,
            placement,
        } = group;
        data.into_iter()
            .map(|data| {
                let (worker, task) = (worker.clone(), task.clone());
                let name = format!("client-{}", self.clients.len() + 1);
                let make = move |parent| Participant::new(worker, task, data, parent);
                self.push_client(name, parent, make, placement.clone())
            })
            .collect()
    }

    /// Adds an [`EdgeAggregator`] with `config`, answering `parent` (the server or another
    /// edge); attach its clients with it as their parent.
    pub fn edge(
        &mut self,
        parent: Parent,
        name: impl Into<String>,
        config: EdgeConfig,
        placement: Placement,
    ) -> Result<Parent, TopologyError> {
        let name = name.into();
        let upstream = self.check_parent(parent, &name)?;
        config.check().map_err(|source| TopologyError::Edge {
            name: name.clone(),
            source,
        })?;
        self.edges.push(Planned {
            name,
            parent: upstream,
            placement,
            register: Box::new(move |b, name, device, parent, children| {
                if children == 0 {
                    return Err(TopologyError::ChildlessEdge { name });
                }
                match EdgeAggregator::new(config, parent, children) {
                    Ok(edge) => Ok(add_infrastructure(b, name, edge, device)),
                    Err(source) => Err(TopologyError::Edge { name, source }),
                }
            }),
        });
        Ok(Parent(Upstream::Edge(self.edges.len() - 1)))
    }

    /// Registers every node (server, clients, edges; see the module docs for the ids),
    /// sets the links of the placements, and returns the simulation with a handle to find
    /// the nodes again.
    pub fn build(self) -> Result<(Simulation<Message<L>>, FederationHandle<L>), TopologyError> {
        let Self {
            mut builder,
            server,
            clients,
            edges,
            ..
        } = self;
        let edge_base = 1 + clients.len() as u32;
        let id_of = |parent: Upstream| match parent {
            Upstream::Server => NodeId(0),
            Upstream::Edge(e) => NodeId(edge_base + e as u32),
        };
        // How many nodes answer each parent: [server, edge 0, edge 1, …].
        let slot = |parent: Upstream| match parent {
            Upstream::Server => 0,
            Upstream::Edge(e) => 1 + e,
        };
        let mut children = vec![0usize; 1 + edges.len()];
        for planned in clients.iter().chain(&edges) {
            children[slot(planned.parent)] += 1;
        }
        let mut parents = Vec::with_capacity(1 + clients.len() + edges.len());
        let mut register =
            |planned: Planned<Message<L>>, answering: usize| -> Result<NodeId, TopologyError> {
                let Planned {
                    name,
                    parent,
                    placement: Placement { device, link },
                    register,
                } = planned;
                let parent = id_of(parent);
                let id = register(&mut builder, name, device, parent, answering)?;
                if let Some(link) = link {
                    builder.network().set_node_link(id, link);
                }
                parents.push(parent);
                Ok(id)
            };
        let server_id = register(server, children[0])?;
        if server_id != NodeId(0) {
            return Err(TopologyError::BuilderNotEmpty { nodes: server_id.0 });
        }
        let mut client_ids = Vec::with_capacity(clients.len());
        for planned in clients {
            client_ids.push(register(planned, 0)?);
        }
        let mut edge_ids = Vec::with_capacity(edges.len());
        for (e, planned) in edges.into_iter().enumerate() {
            edge_ids.push(register(planned, children[1 + e])?);
        }
        let handle = FederationHandle {
            server: server_id,
            clients: client_ids,
            edges: edge_ids,
            parents,
            _logic: PhantomData,
        };
        Ok((builder.build(), handle))
    }
}

/// Finds a built federation's nodes again, typed: the coordinator of logic `L`, the edges.
pub struct FederationHandle<L: ServerLogic> {
    server: NodeId,
    clients: Vec<NodeId>,
    edges: Vec<NodeId>,
    /// Each node's parent, by node id (the server's is itself).
    parents: Vec<NodeId>,
    _logic: PhantomData<fn() -> L>,
}

impl<L: ServerLogic> fmt::Debug for FederationHandle<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FederationHandle")
            .field("server", &self.server)
            .field("clients", &self.clients)
            .field("edges", &self.edges)
            .finish_non_exhaustive()
    }
}

impl<L: ServerLogic> FederationHandle<L> {
    /// The server's id (0).
    pub fn server(&self) -> NodeId {
        self.server
    }

    /// The clients, in the order they were added (ids from 1).
    pub fn clients(&self) -> &[NodeId] {
        &self.clients
    }

    /// The edges, in the order they were added (after the clients).
    pub fn edges(&self) -> &[NodeId] {
        &self.edges
    }

    /// The node `node` answers (`None` for the server and for nodes of no federation).
    pub fn parent(&self, node: NodeId) -> Option<NodeId> {
        (node != self.server)
            .then(|| self.parents.get(node.index()).copied())
            .flatten()
    }

    /// The nodes answering `node`, in id order.
    pub fn children(&self, node: NodeId) -> Vec<NodeId> {
        (1..self.parents.len())
            .map(|i| NodeId(i as u32))
            .filter(|&c| self.parents[c.index()] == node)
            .collect()
    }

    /// The coordinator, in `sim` (this federation's simulation, or what a runtime returned
    /// of it).
    pub fn coordinator<'s>(&self, sim: &'s Simulation<Message<L>>) -> Option<&'s Coordinator<L>> {
        sim.node::<Coordinator<L>>(self.server)
    }

    /// The edge aggregator `edge`, in `sim`.
    pub fn edge<'s>(
        &self,
        sim: &'s Simulation<Message<L>>,
        edge: NodeId,
    ) -> Option<&'s EdgeAggregator<L::Work>> {
        sim.node::<EdgeAggregator<L::Work>>(edge)
    }
}
