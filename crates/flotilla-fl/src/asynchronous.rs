//! Asynchronous federation as one [`ServerLogic`]: a fixed number of clients train at once;
//! each reply is mixed in at once (FedAsync) or buffered until `K` have arrived (FedBuff),
//! discounted by its staleness; a client whose reply arrived is free for new work at once.
//!
//! ```text
//!  start / any slot free:  pick an idle client uniformly (server stream) → assign from the
//!                          current global version v (snapshot of v kept while jobs use it);
//!                          slots freed by replies are refilled once every event of their
//!                          instant is handled (simultaneous replies flush first)
//!  reply of version v₀:    staleness τ = v − v₀
//!     FedAsync:  w ← (1 − α·s(τ))·w + α·s(τ)·x                       → commit (v + 1)
//!     FedBuff:   buffer; at K:  w ← w + η·Σᵢ cᵢ·s(τᵢ)·(xᵢ − w(v₀ᵢ))   → commit (v + 1)
//!  a job out longer than the timeout is given up: its slot goes to another client, and
//!  its reply, if it still comes, is counted cancelled
//! ```
//!
//! On-device KD runs asynchronously with one buffer per model: weak clients train `ws`;
//! strong clients train `ws` and then distil into `wl`, the teacher being the global `ws`
//! they received (the newest global `ws` they hold), in one job whose reply feeds both
//! buffers. Each model counts its own updates (staleness is measured in them); the run's
//! versions (`rounds`, evaluations) are the target's updates.

use crate::checkpoint::check_weights;
use crate::{
    AssignmentId, Fate, FlError, KdConfig, ModelRole, Payload, Reply, Server, ServerLogic, Update,
    Work, WorkOrder, average_weights, decode_state, encode_state,
};
use flotilla_nn::{LrSchedule, Weights};
use flotilla_sim::{NodeId, SimDuration};
use rand::seq::IndexedRandom;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How much an update of staleness `τ` (versions) counts, `s(τ) ∈ (0, 1]` (Xie et al.,
/// FedAsync).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Staleness {
    /// `s(τ) = 1`.
    Constant,
    /// `s(τ) = (τ + 1)^(−a)`, `a > 0` (FedBuff's discount is `a = 0.5`).
    Polynomial {
        /// Exponent.
        a: f64,
    },
    /// `s(τ) = 1` for `τ ≤ b`, else `1 / (a·(τ − b) + 1)`.
    Hinge {
        /// Slope after the hinge.
        a: f64,
        /// Staleness tolerated at full weight.
        b: u32,
    },
}

impl Staleness {
    /// `s(τ)`.
    pub fn weight(self, staleness: u32) -> f64 {
        let tau = f64::from(staleness);
        match self {
            Staleness::Constant => 1.0,
            Staleness::Polynomial { a } => (tau + 1.0).powf(-a),
            Staleness::Hinge { b, .. } if staleness <= b => 1.0,
            Staleness::Hinge { a, b } => 1.0 / (a * (tau - f64::from(b)) + 1.0),
        }
    }

    /// Checks the parameters (`a > 0` and finite), naming the one at fault.
    pub fn validate(self) -> Result<(), FlError> {
        match self {
            Staleness::Constant => Ok(()),
            Staleness::Polynomial { a } | Staleness::Hinge { a, .. } => {
                if a.is_finite() && a > 0.0 {
                    Ok(())
                } else {
                    Err(FlError::Setup(format!(
                        "staleness exponent/slope a = {a}: must be > 0"
                    )))
                }
            }
        }
    }
}

/// The server rule of an asynchronous method.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AsyncRule {
    /// FedAsync: each update is mixed in as it arrives, `w ← (1 − α_t)·w + α_t·x` with
    /// `α_t = α·s(τ)`.
    FedAsync {
        /// Mixing weight `α ∈ (0, 1]`.
        alpha: f64,
        /// Discount `s`.
        staleness: Staleness,
    },
    /// FedBuff (Nguyen et al., 2022): `K` client deltas are buffered, then
    /// `w ← w + η·Σᵢ cᵢ·s(τᵢ)·Δᵢ` with `Δᵢ` the client's change from the version it
    /// started from and `cᵢ = 1/K` (or `nᵢ/Σn` when weighted).
    FedBuff {
        /// Buffer size `K ≥ 1`.
        buffer: usize,
        /// Server learning rate `η > 0`.
        server_lr: f64,
        /// Discount `s`.
        staleness: Staleness,
    },
}

impl AsyncRule {
    fn buffer(self) -> usize {
        match self {
            AsyncRule::FedAsync { .. } => 1,
            AsyncRule::FedBuff { buffer, .. } => buffer,
        }
    }

    fn staleness(self) -> Staleness {
        match self {
            AsyncRule::FedAsync { staleness, .. } | AsyncRule::FedBuff { staleness, .. } => {
                staleness
            }
        }
    }
}

/// What clients train under [`Asynchronous`].
#[derive(Debug, Clone, PartialEq)]
pub enum AsyncMethod {
    /// One model, trained by every client able to.
    FedAvg {
        /// The model.
        model: ModelRole,
    },
    /// On-device KD: `ws` by everyone; strong clients (those announcing `wl`) also distil
    /// the global `ws` into `wl` in the same job.
    OnDeviceKd {
        /// Distillation; its ramp runs over the configured versions.
        kd: KdConfig,
    },
}

/// Settings of [`Asynchronous`].
#[derive(Debug, Clone, PartialEq)]
pub struct AsyncConfig {
    /// What clients train.
    pub method: AsyncMethod,
    /// How replies become new global models.
    pub rule: AsyncRule,
    /// Clients training at once.
    pub concurrency: usize,
    /// Weight updates by sample count.
    pub weighted: bool,
    /// Client learning rate by version.
    pub schedule: LrSchedule,
    /// Give a job up after this long (its slot goes to another client); `None` waits for
    /// every job (a client that dropped out then holds its slot forever).
    pub job_timeout: Option<SimDuration>,
    /// Versions of the run (the KD weight's ramp is a fraction of them).
    pub rounds: u32,
}

impl AsyncConfig {
    /// Checks the settings, naming the one at fault.
    pub fn validate(&self) -> Result<(), FlError> {
        let bad = |what: String| Err(FlError::Setup(what));
        if self.concurrency == 0 {
            return bad("concurrency must be at least 1".into());
        }
        match self.rule {
            AsyncRule::FedAsync { alpha, .. } if !(alpha > 0.0 && alpha <= 1.0) => {
                return bad(format!("FedAsync alpha = {alpha}: must be in (0, 1]"));
            }
            AsyncRule::FedBuff { buffer: 0, .. } => {
                return bad("FedBuff buffer must be at least 1".into());
            }
            AsyncRule::FedBuff { server_lr, .. } if !(server_lr.is_finite() && server_lr > 0.0) => {
                return bad(format!("FedBuff server_lr = {server_lr}: must be > 0"));
            }
            _ => {}
        }
        self.rule.staleness().validate()
    }
}

/// One global model's state: its weights, its own update count, the versions running jobs
/// started from, its buffer.
#[derive(Debug, Serialize, Deserialize)]
struct Track {
    global: Weights,
    /// Server updates of this model so far.
    version: u32,
    /// The weights at each of this model's versions some job started from.
    snapshots: BTreeMap<u32, Weights>,
    /// Buffered updates: the client, its reply cut down to this model, the model version
    /// its work started from.
    buffer: Vec<(NodeId, Reply, u32)>,
}

/// An asynchronous server: FedAsync or FedBuff over one model, or on-device KD with a
/// buffer per model.
///
/// Each model counts its own updates (its staleness is measured in them); the run's
/// versions are the updates of the method's result model (the target under on-device KD),
/// so `rounds` counts those, and only they are evaluated.
#[derive(Debug)]
pub struct Asynchronous {
    config: AsyncConfig,
    state: AsyncState,
}

/// What [`Asynchronous`] changes while running: its checkpoint state.
#[derive(Debug, Serialize, Deserialize)]
struct AsyncState {
    tracks: BTreeMap<ModelRole, Track>,
    /// The job each busy client is on.
    active: BTreeMap<NodeId, AssignmentId>,
    /// For each job not answered yet, the version of each model it started from.
    starts: BTreeMap<(NodeId, AssignmentId), Vec<(ModelRole, u32)>>,
    /// Timeout timers: tag → the job it guards.
    timeouts: BTreeMap<u64, (NodeId, AssignmentId)>,
    next_tag: u64,
    /// A refill is due once this instant's events are handled (see [`REFILL_TAG`]).
    refill_pending: bool,
    /// The record the next flush goes to within the current version: 0, then one more
    /// for each flush of a model other than the result model.
    stage: u32,
}

impl AsyncState {
    /// Checks a restored state against `fresh`, the state of a logic built from the same
    /// configuration: the same models, of the same lengths, and buffered updates of
    /// their own model only.
    fn check(&self, fresh: &AsyncState) -> Result<(), FlError> {
        let mismatch = |what: String| Err(FlError::Checkpoint(format!("asynchronous: {what}")));
        let roles = |s: &AsyncState| s.tracks.keys().copied().collect::<Vec<_>>();
        if roles(self) != roles(fresh) {
            return mismatch(format!(
                "the state has models {:?}, the method trains {:?}",
                roles(self),
                roles(fresh)
            ));
        }
        for ((role, track), model) in self.tracks.iter().zip(fresh.tracks.values()) {
            let fresh = &model.global;
            check_weights(&format!("the global {role} model"), fresh, &track.global)?;
            for (v, w) in &track.snapshots {
                check_weights(&format!("the {role} model of version {v}"), fresh, w)?;
            }
            for (client, reply, _) in &track.buffer {
                let [payload] = reply.models.as_slice() else {
                    return mismatch(format!(
                        "{client}'s buffered {role} update holds {} models",
                        reply.models.len()
                    ));
                };
                if payload.role != *role {
                    return mismatch(format!(
                        "{client}'s {} update is in the {role} buffer",
                        payload.role
                    ));
                }
                check_weights(
                    &format!("{client}'s buffered {role} update"),
                    fresh,
                    &payload.weights,
                )?;
            }
        }
        if let Some((role, _)) = self
            .starts
            .values()
            .flatten()
            .find(|(r, _)| !self.tracks.contains_key(r))
        {
            return mismatch(format!(
                "a job started from a {role} model the method has not"
            ));
        }
        Ok(())
    }
}

/// The timer that refills free slots after every event of the instant it was set in:
/// replies arriving together are all taken (and a buffer they fill flushed) before their
/// clients get new work, so a freed client starts from the newest version of that instant,
/// whatever order the simultaneous replies are handled in. Job-timeout tags count up from
/// 0 and the coordinator's own is `u64::MAX`.
const REFILL_TAG: u64 = u64::MAX - 1;

impl Asynchronous {
    /// The logic, starting from `initial` weights of each model the method trains.
    pub fn new(config: AsyncConfig, initial: Vec<Payload>) -> Result<Self, FlError> {
        config.validate()?;
        let needed: &[ModelRole] = match &config.method {
            AsyncMethod::FedAvg { model } => &[*model][..],
            AsyncMethod::OnDeviceKd { .. } => &[ModelRole::Target, ModelRole::Auxiliary],
        };
        let mut tracks = BTreeMap::new();
        for role in needed.iter().copied() {
            let weights = initial
                .iter()
                .find(|p| p.role == role)
                .map(|p| Weights::clone(&p.weights))
                .ok_or(FlError::MissingModel(role))?;
            tracks.insert(
                role,
                Track {
                    global: weights,
                    version: 0,
                    snapshots: BTreeMap::new(),
                    buffer: Vec::new(),
                },
            );
        }
        Ok(Self {
            config,
            state: AsyncState {
                tracks,
                active: BTreeMap::new(),
                starts: BTreeMap::new(),
                timeouts: BTreeMap::new(),
                next_tag: 0,
                refill_pending: false,
                stage: 0,
            },
        })
    }

    /// The global weights of `role`.
    pub fn global(&self, role: ModelRole) -> Option<&Weights> {
        self.state.tracks.get(&role).map(|t| &t.global)
    }

    /// The role every client trains (and is chosen for).
    fn base_role(&self) -> ModelRole {
        match &self.config.method {
            AsyncMethod::FedAvg { model } => *model,
            AsyncMethod::OnDeviceKd { .. } => ModelRole::Auxiliary,
        }
    }

    /// The role whose updates are the run's versions.
    fn result_role(&self) -> ModelRole {
        match &self.config.method {
            AsyncMethod::FedAvg { model } => *model,
            AsyncMethod::OnDeviceKd { .. } => ModelRole::Target,
        }
    }

    /// What `client` is asked to do at the current version.
    fn order(&self, client: NodeId, server: &Server<'_, '_, Work>) -> WorkOrder<Work> {
        let version = server.version();
        let lr = self.config.schedule.lr_at(version as usize);
        let payload = |role: ModelRole| Payload::of(role, &self.state.tracks[&role].global);
        match &self.config.method {
            AsyncMethod::FedAvg { model } => WorkOrder {
                lr,
                models: vec![payload(*model)],
                work: Work::Train { model: *model },
            },
            AsyncMethod::OnDeviceKd { kd } => {
                let strong = server
                    .fleet()
                    .get(client)
                    .is_some_and(|c| c.trainable.contains(&ModelRole::Target));
                if strong {
                    WorkOrder {
                        lr,
                        models: vec![payload(ModelRole::Target), payload(ModelRole::Auxiliary)],
                        work: Work::TrainThenDistill {
                            trained: ModelRole::Auxiliary,
                            student: ModelRole::Target,
                            plan: kd.plan(version, self.config.rounds),
                        },
                    }
                } else {
                    WorkOrder {
                        lr,
                        models: vec![payload(ModelRole::Auxiliary)],
                        work: Work::Train {
                            model: ModelRole::Auxiliary,
                        },
                    }
                }
            }
        }
    }

    /// Gives work to idle clients until `concurrency` are busy (or none is idle).
    fn fill(&mut self, server: &mut Server<'_, '_, Work>) -> Result<(), FlError> {
        if server.finished() {
            return Ok(());
        }
        let mut idle: Vec<NodeId> = server
            .fleet()
            .capable(self.base_role())
            .into_iter()
            .filter(|c| !self.state.active.contains_key(c))
            .collect();
        while self.state.active.len() < self.config.concurrency && !idle.is_empty() {
            let Some(&client) = idle.choose(server.rng()) else {
                break;
            };
            idle.retain(|&c| c != client);
            let order = self.order(client, server);
            let mut starts = Vec::with_capacity(order.models.len());
            for payload in &order.models {
                if let Some(track) = self.state.tracks.get_mut(&payload.role) {
                    track
                        .snapshots
                        .entry(track.version)
                        .or_insert_with(|| Weights::clone(&payload.weights));
                    starts.push((payload.role, track.version));
                }
            }
            let id = server.assign(client, order)?;
            self.state.active.insert(client, id);
            self.state.starts.insert((client, id), starts);
            if let Some(timeout) = self.config.job_timeout {
                let tag = self.state.next_tag;
                self.state.next_tag += 1;
                self.state.timeouts.insert(tag, (client, id));
                server.set_timer(timeout, tag);
            }
        }
        Ok(())
    }

    /// Drops snapshots no unanswered job started from and no buffered update needs.
    fn prune(&mut self) {
        for (role, track) in self.state.tracks.iter_mut() {
            let mut used: Vec<u32> = self
                .state
                .starts
                .values()
                .flatten()
                .filter(|(r, _)| r == role)
                .map(|(_, v)| *v)
                .chain(track.buffer.iter().map(|(_, _, v)| *v))
                .collect();
            used.sort_unstable();
            track.snapshots.retain(|v, _| used.binary_search(v).is_ok());
        }
    }

    /// `role`'s global model after applying its buffer (in the order held).
    fn flush(&self, role: ModelRole) -> Result<Weights, FlError> {
        let rule = self.config.rule;
        let weighted = self.config.weighted;
        let track = self
            .state
            .tracks
            .get(&role)
            .ok_or(FlError::MissingModel(role))?;
        let missing = |what: &str| FlError::Protocol(format!("{role} buffer: {what}"));
        let buffer = &track.buffer;
        let s = rule.staleness();
        fn part(r: &Reply, missing: impl Fn(&str) -> FlError) -> Result<&Weights, FlError> {
            r.models
                .first()
                .map(|p| p.weights.as_ref())
                .ok_or_else(|| missing("an update without its model"))
        }
        match rule {
            AsyncRule::FedAsync { alpha, .. } => {
                let (_, reply, start) = buffer.first().ok_or_else(|| missing("empty"))?;
                let x = part(reply, missing)?;
                let a = alpha * s.weight(track.version.saturating_sub(*start));
                let terms = [(1.0 - a, &track.global), (a, x)];
                average_weights(terms.into_iter().filter(|(w, _)| *w != 0.0))
                    .ok_or_else(|| missing("mixing weights sum to zero"))
            }
            AsyncRule::FedBuff { server_lr, .. } => {
                // w + η·Σ cᵢ sᵢ (xᵢ − w(v₀ᵢ)) as a weighted mean: terms (γᵢ = η·nᵢ·sᵢ, yᵢ)
                // and (W − Σγᵢ, w), over W = Σnᵢ, where yᵢ = xᵢ + (w − w(v₀ᵢ)) is the
                // client's model moved onto the current version (xᵢ itself when it started
                // from it). With η = 1, no discount and no staleness this is exactly the
                // FedAvg mean, bit for bit; a zero-weight term adds nothing and is left out.
                let mut terms: Vec<(f64, Weights)> = Vec::with_capacity(buffer.len() + 1);
                let mut total = 0.0f64;
                let mut gamma_sum = 0.0f64;
                for (_, reply, start) in buffer {
                    let x = part(reply, missing)?;
                    let n = if weighted {
                        f64::from(reply.samples)
                    } else {
                        1.0
                    };
                    let gamma = server_lr * n * s.weight(track.version.saturating_sub(*start));
                    total += n;
                    gamma_sum += gamma;
                    let y = if *start == track.version {
                        x.clone()
                    } else {
                        let base = track
                            .snapshots
                            .get(start)
                            .ok_or_else(|| missing("the start version of an update is gone"))?;
                        Weights {
                            params: &x.params + &(&track.global.params - &base.params),
                            state: &x.state + &(&track.global.state - &base.state),
                        }
                    };
                    terms.push((gamma, y));
                }
                let rest = total - gamma_sum;
                let mut refs: Vec<(f64, &Weights)> = terms.iter().map(|(g, y)| (*g, y)).collect();
                if rest != 0.0 {
                    refs.push((rest, &track.global));
                }
                average_weights(refs.iter().copied())
                    .ok_or_else(|| missing("update weights sum to zero"))
            }
        }
    }

    /// Buffers the parts of a finite reply (one per model it carries); flushes every full
    /// buffer. A flush of the result model is a new version of the run.
    fn take(
        &mut self,
        client: NodeId,
        reply: Reply,
        server: &mut Server<'_, '_, Work>,
    ) -> Result<(), FlError> {
        let id = reply.assignment;
        let starts = self.state.starts.remove(&(client, id)).unwrap_or_default();
        let fedbuff = matches!(self.config.rule, AsyncRule::FedBuff { .. });
        let mut parts = 0;
        for payload in reply.models {
            let (Some(track), Some(&(_, start))) = (
                self.state.tracks.get_mut(&payload.role),
                starts.iter().find(|(r, _)| *r == payload.role),
            ) else {
                continue;
            };
            // FedBuff applies a change from the start version, which must still be kept.
            if fedbuff && start != track.version && !track.snapshots.contains_key(&start) {
                continue;
            }
            track.buffer.push((
                client,
                Reply {
                    assignment: id,
                    models: vec![payload],
                    samples: reply.samples,
                    stats: reply.stats.clone(),
                },
                start,
            ));
            parts += 1;
        }
        if parts == 0 {
            // A given-up job (its start versions were let go): nothing to apply it to.
            server.discard(client, id, Fate::Cancelled);
            return Ok(());
        }
        let buffer = self.config.rule.buffer();
        let result_role = self.result_role();
        let roles: Vec<ModelRole> = self.state.tracks.keys().copied().collect();
        for role in roles {
            if server.finished() || self.state.tracks[&role].buffer.len() < buffer {
                continue;
            }
            let track = self
                .state
                .tracks
                .get_mut(&role)
                .ok_or(FlError::MissingModel(role))?;
            track.buffer.sort_by_key(|(c, r, _)| (*c, r.assignment));
            let global = self.flush(role)?;
            let track = self
                .state
                .tracks
                .get_mut(&role)
                .ok_or(FlError::MissingModel(role))?;
            track.global = global;
            track.version += 1;
            let flushed = std::mem::take(&mut track.buffer);
            server.aggregated(flushed.iter().map(|(c, r, _)| (*c, r)));
            if role == result_role {
                server.commit(self.global_models())?;
                self.state.stage = 0;
            } else {
                // Another model's step within the version: its own record, so each
                // flush's replies, models and statistics stay apart.
                self.state.stage += 1;
            }
            if !server.finished() {
                server.open_stage(self.state.stage, 0);
            }
        }
        Ok(())
    }
}

impl ServerLogic for Asynchronous {
    type Work = Work;

    fn start(&mut self, server: &mut Server<'_, '_, Work>) -> Result<(), FlError> {
        server.open_stage(0, 0);
        self.fill(server)
    }

    fn on_update(
        &mut self,
        update: Update,
        server: &mut Server<'_, '_, Work>,
    ) -> Result<(), FlError> {
        let Update {
            client,
            reply,
            finite,
            ..
        } = update;
        let id = reply.assignment;
        if self.state.active.get(&client) == Some(&id) {
            self.state.active.remove(&client);
        }
        if finite && !server.finished() {
            self.take(client, reply, server)?;
        } else {
            self.state.starts.remove(&(client, id));
            if finite {
                server.discard(client, id, Fate::Late);
            }
        }
        self.prune();
        if !self.state.refill_pending {
            self.state.refill_pending = true;
            server.set_timer(SimDuration::ZERO, REFILL_TAG);
        }
        Ok(())
    }

    fn on_timer(&mut self, tag: u64, server: &mut Server<'_, '_, Work>) -> Result<(), FlError> {
        if tag == REFILL_TAG {
            self.state.refill_pending = false;
            return self.fill(server);
        }
        if let Some((client, id)) = self.state.timeouts.remove(&tag)
            && self.state.active.get(&client) == Some(&id)
        {
            // Its start versions are let go with it (so a dead device holds no snapshot);
            // if its reply still comes, it is counted cancelled.
            self.state.active.remove(&client);
            self.state.starts.remove(&(client, id));
            server.record("job_given_up", f64::from(client.0));
            self.prune();
            self.fill(server)?;
        }
        Ok(())
    }

    fn on_join(
        &mut self,
        _client: NodeId,
        server: &mut Server<'_, '_, Work>,
    ) -> Result<(), FlError> {
        self.fill(server)
    }

    fn global_models(&self) -> Vec<Payload> {
        self.state
            .tracks
            .iter()
            .map(|(role, t)| Payload::of(*role, &t.global))
            .collect()
    }

    /// Every model's track (weights, version, snapshots, buffer), the busy clients, their
    /// jobs' start versions and timeouts.
    fn save_state(&self) -> Result<Vec<u8>, FlError> {
        encode_state("an asynchronous logic", &self.state)
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<(), FlError> {
        let state: AsyncState = decode_state("an asynchronous logic", state)?;
        state.check(&self.state)?;
        self.state = state;
        Ok(())
    }
}
