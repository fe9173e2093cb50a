//! The clock side of a run: the event queue, devices, the trace.
//!
//! A runtime drives a run as a loop of instants:
//! 1. [`World::begin_instant`] pops every queued item of the earliest time and turns them
//!    into per-node batches, in node-id order (dropping messages whose receiver is offline,
//!    failed or unknown);
//! 2. each node's [`NodeHost`](crate::NodeHost) handles its batch — in any order, on any
//!    thread — decoding what it receives and encoding what it sends;
//! 3. [`World::commit`] applies each node's result **in node-id order**, commands in issue
//!    order: timers and job completions are queued, records traced, sends collected;
//! 4. the [`Router`](crate::Router) decides the collected sends' fates in that same order,
//!    and [`World::deliver`] queues them.
//!
//! Every order and every draw is decided in steps 1, 3 and 4, on one thread each, so the
//! result cannot depend on how step 2 was scheduled.

use crate::host::{Handled, Inbound, Outgoing};
use crate::jobs::JobRunner;
use crate::queue::EventQueue;
use crate::trace::{Counters, Recorder, RecorderState, TraceEvent, TraceHash, TraceSummary};
use crate::wire::WireBytes;
use crate::{
    AvailabilityState, DeviceProfile, DropReason, Envelope, JobId, MessageId, NodeError, NodeId,
    Purpose, Seed, SimDuration, SimTime, StreamCursor,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;

/// How many of the most recent distinct device profiles registration compares against.
const PROFILE_LOOKBACK: usize = 16;

/// When a run stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopAt {
    /// When nothing is left to happen.
    Idle,
    /// After the last instant at or before this time (later events stay queued).
    Time(SimTime),
    /// When nothing is left to happen, or after the first instant in which a node failed
    /// (a run whose results would be incomplete stops at once).
    IdleOrFailure,
}

impl StopAt {
    fn limit(self) -> SimTime {
        match self {
            StopAt::Idle | StopAt::IdleOrFailure => SimTime::MAX,
            StopAt::Time(t) => t,
        }
    }
}

/// A node that failed and was isolated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFailure {
    /// The node.
    pub node: NodeId,
    /// Its name.
    pub name: String,
    /// When it failed.
    pub time: SimTime,
    /// What went wrong.
    pub reason: String,
}

/// The outcome of a run (or of the run so far).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    /// Virtual time of the last instant processed.
    pub end_time: SimTime,
    /// Instants processed.
    pub instants: u64,
    /// Events handed to nodes.
    pub events: u64,
    /// Message, byte and job counters.
    pub counters: Counters,
    /// Hash of the whole trace so far: equal hashes mean identical runs.
    pub trace_hash: TraceHash,
    /// Nodes that failed, in failure order.
    pub failures: Vec<NodeFailure>,
    /// FLOPs declared by the jobs handed to the job runner (a job lost at its start is not
    /// run, and not counted).
    pub job_flops: u64,
}

/// What is queued: payloads are bytes, so the queue is independent of the message type.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Pending {
    Start(NodeId),
    Deliver { env: Envelope, bytes: WireBytes },
    Timer { node: NodeId, tag: u64 },
    JobDone(JobId),
    JobLost { job: JobId, reason: DropReason },
}

/// What one node receives in one instant.
#[derive(Debug)]
pub struct Batch<M> {
    /// The node.
    pub node: NodeId,
    /// Its items, in the total order.
    pub inbound: Vec<Inbound<M>>,
}

/// Per-node state kept by the clock: streams, counters, availability, failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct NodeClock {
    name: String,
    device: Option<u32>,
    compute: StreamCursor,
    dropout: StreamCursor,
    availability: StreamCursor,
    availability_state: AvailabilityState,
    sent: u64,
    failed: bool,
}

/// The clock side of a run (see the module docs).
pub struct World<M> {
    now: SimTime,
    queue: EventQueue<Pending>,
    nodes: Vec<NodeClock>,
    profiles: Vec<Arc<DeviceProfile>>,
    recorder: Recorder,
    failures: Vec<NodeFailure>,
    /// Sends committed in the current instant, awaiting the router.
    sends: Vec<(Envelope, WireBytes)>,
    instants: u64,
    events: u64,
    job_flops: u64,
    /// A record label after whose instant the run pauses (see [`World::pause_after_record`]).
    pause_label: Option<String>,
    /// Whether the last instant made such a record.
    paused: bool,
    _message: PhantomData<fn() -> M>,
}

/// The clock side's part of a checkpoint: everything but the device profiles, which are
/// rebuilt from the configuration (each node's profile index and name are checked).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WorldState {
    now: SimTime,
    queue: Vec<(SimTime, u64, Pending)>,
    next_seq: u64,
    nodes: Vec<NodeClock>,
    pub(crate) recorder: RecorderState,
    failures: Vec<NodeFailure>,
    instants: u64,
    events: u64,
    job_flops: u64,
}

impl WorldState {
    /// The virtual time of the last instant before the checkpoint.
    pub(crate) fn now(&self) -> SimTime {
        self.now
    }
}

/// A job's output as a checkpoint keeps it: the wire bytes of the output, or the job's
/// error. Jobs still running at a checkpoint are waited for, so their outputs travel in the
/// checkpoint and their completions arrive at the same virtual times after a resume.
pub(crate) type SavedJob = (JobId, Result<Vec<u8>, String>);

impl<M> std::fmt::Debug for World<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("now", &self.now)
            .field("nodes", &self.nodes.len())
            .field("queued", &self.queue.len())
            .finish()
    }
}

/// A node's registration: name and device profile (none for servers and other nodes that
/// compute instantly and are always available).
#[derive(Debug, Clone)]
pub(crate) struct Registration {
    pub(crate) name: String,
    pub(crate) device: Option<DeviceProfile>,
    /// Whether the node is an edge device, whose traffic is uplink and downlink.
    pub(crate) edge: bool,
}

impl<M> World<M> {
    pub(crate) fn new(
        seed: Seed,
        registrations: Vec<Registration>,
        recorder: impl FnOnce(Vec<bool>) -> Recorder,
    ) -> Self {
        let mut profiles: Vec<Arc<DeviceProfile>> = Vec::new();
        let mut nodes = Vec::with_capacity(registrations.len());
        let mut is_edge = Vec::with_capacity(registrations.len());
        let mut queue = EventQueue::new();
        for (i, reg) in registrations.into_iter().enumerate() {
            let id = NodeId(i as u32);
            is_edge.push(reg.edge);
            // Many clients share a preset: store each profile once when it repeats one of the
            // last few distinct ones (a bounded look-back keeps registration linear even when
            // every device of a trace file is different).
            let device = reg.device.map(|p| {
                let recent = profiles.len().saturating_sub(PROFILE_LOOKBACK);
                match profiles[recent..].iter().position(|q| **q == p) {
                    Some(k) => (recent + k) as u32,
                    None => {
                        profiles.push(Arc::new(p));
                        (profiles.len() - 1) as u32
                    }
                }
            });
            nodes.push(NodeClock {
                name: reg.name,
                device,
                compute: seed.cursor(id, Purpose::COMPUTE),
                dropout: seed.cursor(id, Purpose::DROPOUT),
                availability: seed.cursor(id, Purpose::AVAILABILITY),
                availability_state: AvailabilityState::default(),
                sent: 0,
                failed: false,
            });
            queue.push(SimTime::ZERO, Pending::Start(id));
        }
        Self {
            now: SimTime::ZERO,
            queue,
            nodes,
            profiles,
            recorder: recorder(is_edge),
            failures: Vec::new(),
            sends: Vec::new(),
            instants: 0,
            events: 0,
            job_flops: 0,
            pause_label: None,
            paused: false,
            _message: PhantomData,
        }
    }

    /// The current virtual time.
    pub fn now(&self) -> SimTime {
        self.now
    }

    /// The number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// A node's name.
    pub fn name(&self, node: NodeId) -> &str {
        &self.nodes[node.index()].name
    }

    /// A node's device profile, if it has one.
    pub fn device(&self, node: NodeId) -> Option<&DeviceProfile> {
        self.shared_device(node).map(|p| &**p)
    }

    /// A node's device profile as the shared handle the node side holds.
    pub(crate) fn shared_device(&self, node: NodeId) -> Option<&Arc<DeviceProfile>> {
        let k = self.nodes.get(node.index())?.device?;
        self.profiles.get(k as usize)
    }

    /// Messages queued for delivery right now: the in-flight count, measured directly
    /// (the counters derive theirs from sent, delivered and dropped).
    pub fn queued_messages(&self) -> u64 {
        self.queue
            .iter()
            .filter(|p| matches!(p, Pending::Deliver { .. }))
            .count() as u64
    }

    /// Instants processed so far.
    pub fn instants(&self) -> u64 {
        self.instants
    }

    /// The counters so far.
    pub fn counters(&self) -> &Counters {
        self.recorder.counters()
    }

    /// The report of the run so far.
    pub fn report(&self) -> RunReport {
        RunReport {
            end_time: self.now,
            instants: self.instants,
            events: self.events,
            counters: self.recorder.counters().clone(),
            trace_hash: self.recorder.hash(),
            failures: self.failures.clone(),
            job_flops: self.job_flops,
        }
    }

    /// Flushes and closes the trace, returning the recorder's outcome.
    pub fn finish_trace(self) -> std::io::Result<TraceSummary> {
        self.recorder.finish()
    }

    /// Makes the run pause after every instant in which a node records `label`: the
    /// runtime returns as at a stop (with the rest of the run still queued), and
    /// [`World::take_pause`] tells that it paused. A checkpoint is taken at such a pause.
    pub fn pause_after_record(&mut self, label: impl Into<String>) {
        self.pause_label = Some(label.into());
    }

    /// Whether the run paused (see [`World::pause_after_record`]); clears the pause, so the
    /// next run goes on.
    pub fn take_pause(&mut self) -> bool {
        std::mem::take(&mut self.paused)
    }

    fn trace(&mut self, event: TraceEvent) {
        if let TraceEvent::Record { label, .. } = &event
            && self.pause_label.as_ref() == Some(label)
        {
            self.paused = true;
        }
        // Records are only ever made at `self.now`, which never decreases, and every
        // record is far below the wire limit (labels and reasons are short strings).
        self.recorder
            .record(self.now, event)
            .expect("records are made at the current time and encode");
    }

    /// Step 1: pops the next instant if it is not later than `stop`, and returns its
    /// batches in node-id order (nodes with nothing to do are absent). `None` when the run
    /// is over.
    pub fn begin_instant(
        &mut self,
        stop: StopAt,
        runner: &mut dyn JobRunner<M>,
    ) -> Option<(SimTime, Vec<Batch<M>>)> {
        if self.paused
            || self.queue.peek_time()? > stop.limit()
            || (stop == StopAt::IdleOrFailure && !self.failures.is_empty())
        {
            return None;
        }
        let (now, items) = self.queue.pop_instant()?;
        self.now = now;
        self.instants += 1;
        let mut inbound: Vec<(NodeId, Inbound<M>)> = Vec::with_capacity(items.len());
        for item in items {
            let (node, item) = match item {
                Pending::Start(node) => (node, Inbound::Start),
                Pending::Deliver { env, bytes } => {
                    if let Some(reason) = self.refusal(env.dst) {
                        self.drop_message(&env, reason);
                        continue;
                    }
                    (env.dst, Inbound::Message { env, bytes })
                }
                Pending::Timer { node, tag } => {
                    if self.nodes[node.index()].failed {
                        continue;
                    }
                    self.trace(TraceEvent::Timer { node, tag });
                    (node, Inbound::Timer { tag })
                }
                Pending::JobDone(job) => {
                    if self.nodes[job.node.index()].failed {
                        runner.discard(job);
                        self.trace(TraceEvent::JobLost {
                            job,
                            reason: DropReason::NodeFailed,
                        });
                        continue;
                    }
                    match runner.take(job) {
                        Ok(output) => {
                            self.trace(TraceEvent::JobDone { job });
                            (job.node, Inbound::JobDone { job, output })
                        }
                        Err(e) => {
                            self.trace(TraceEvent::JobLost {
                                job,
                                reason: DropReason::NodeFailed,
                            });
                            self.fail(job.node, format!("job {} failed: {e}", job.seq));
                            continue;
                        }
                    }
                }
                Pending::JobLost { job, reason } => {
                    self.trace(TraceEvent::JobLost { job, reason });
                    continue;
                }
            };
            inbound.push((node, item));
        }
        self.events += inbound.len() as u64;
        // Stable: each node's items keep their FIFO order.
        inbound.sort_by_key(|(node, _)| *node);
        let mut batches: Vec<Batch<M>> = Vec::new();
        for (node, item) in inbound {
            match batches.last_mut() {
                Some(b) if b.node == node => b.inbound.push(item),
                _ => batches.push(Batch {
                    node,
                    inbound: vec![item],
                }),
            }
        }
        Some((now, batches))
    }

    /// Why a message to `dst` cannot be delivered now, if it cannot.
    fn refusal(&mut self, dst: NodeId) -> Option<DropReason> {
        match self.nodes.get(dst.index()).map(|n| n.failed) {
            None => Some(DropReason::UnknownNode),
            Some(true) => Some(DropReason::NodeFailed),
            Some(false) if !self.available(dst) => Some(DropReason::Offline),
            Some(false) => None,
        }
    }

    fn drop_message(&mut self, env: &Envelope, reason: DropReason) {
        self.trace(TraceEvent::Drop {
            id: env.id,
            src: env.src,
            dst: env.dst,
            bytes: env.bytes,
            reason,
        });
    }

    fn available(&mut self, node: NodeId) -> bool {
        let now = self.now;
        let clock = &mut self.nodes[node.index()];
        let Some(k) = clock.device else { return true };
        let availability = &self.profiles[k as usize].availability;
        let state = &mut clock.availability_state;
        clock
            .availability
            .with(|rng| state.is_available(availability, now, rng))
    }

    /// Step 3: applies one node's results. Call once per batch, in node-id order.
    pub fn commit(&mut self, node: NodeId, handled: Handled<M>, runner: &mut dyn JobRunner<M>) {
        for (env, error) in &handled.received {
            match error {
                None => self.trace(TraceEvent::Deliver {
                    id: env.id,
                    src: env.src,
                    dst: env.dst,
                    bytes: env.bytes,
                }),
                Some(_) => self.drop_message(env, DropReason::Malformed),
            }
        }
        let mut failure = handled.failure;
        for command in handled.commands {
            match command {
                Outgoing::Send { to, msg } => self.send(node, to, msg),
                Outgoing::Timer { after, tag } => match self.now.checked_add(after) {
                    Some(at) => self.queue.push(at, Pending::Timer { node, tag }),
                    None => {
                        // The node's later commands are dropped with it.
                        failure = Some(format!(
                            "timer {tag} set {after} after {}: beyond the virtual clock's range",
                            self.now
                        ));
                        break;
                    }
                },
                Outgoing::Job { id, flops, run } => {
                    if let Err(reason) = self.start_job(id, flops, run, runner) {
                        failure = Some(reason);
                        break;
                    }
                }
                Outgoing::Record { label, value } => {
                    self.trace(TraceEvent::Record { node, label, value });
                }
            }
        }
        if let Some(reason) = failure {
            self.fail(node, reason);
        }
    }

    fn send(&mut self, src: NodeId, dst: NodeId, bytes: WireBytes) {
        let clock = &mut self.nodes[src.index()];
        let id = MessageId {
            src,
            seq: clock.sent,
        };
        clock.sent += 1;
        let env = Envelope {
            id,
            src,
            dst,
            sent_at: self.now,
            bytes: bytes.len() as u64,
        };
        self.trace(TraceEvent::Send {
            id,
            src,
            dst,
            bytes: env.bytes,
        });
        if dst.index() >= self.nodes.len() {
            self.drop_message(&env, DropReason::UnknownNode);
        } else {
            self.sends.push((env, bytes));
        }
    }

    /// Step 4, first half: the envelopes of this instant's sends, in commit order, for the
    /// router.
    pub fn pending_sends(&self) -> Vec<Envelope> {
        self.sends.iter().map(|(env, _)| *env).collect()
    }

    /// Step 4, second half: queues or drops this instant's sends by the router's verdicts
    /// (one per [`World::pending_sends`] entry, same order).
    ///
    /// # Panics
    /// If the number of verdicts differs from the number of pending sends (a runtime bug).
    pub fn deliver(&mut self, verdicts: Vec<Result<SimDuration, DropReason>>) {
        let sends = std::mem::take(&mut self.sends);
        assert_eq!(sends.len(), verdicts.len(), "one verdict per pending send");
        for ((env, bytes), verdict) in sends.into_iter().zip(verdicts) {
            match verdict.map(|delay| (delay, env.sent_at.checked_add(delay))) {
                Ok((_, Some(at))) => self.queue.push(at, Pending::Deliver { env, bytes }),
                Ok((delay, None)) => {
                    // A delay the clock cannot count is the sender's link's doing: the
                    // message is lost with its sender rather than delivered at "never".
                    self.drop_message(&env, DropReason::NodeFailed);
                    self.fail(
                        env.src,
                        format!(
                            "message {} to node {} sent at {} with delay {delay}: delivery \
                             beyond the virtual clock's range",
                            env.id.seq, env.dst.0, env.sent_at
                        ),
                    );
                }
                Err(reason) => self.drop_message(&env, reason),
            }
        }
    }

    /// Starts a job, or says why it cannot run: its virtual duration is beyond the clock.
    fn start_job(
        &mut self,
        job: JobId,
        flops: u64,
        run: crate::Job<M>,
        runner: &mut dyn JobRunner<M>,
    ) -> Result<(), String> {
        let now = self.now;
        let clock = &mut self.nodes[job.node.index()];
        let beyond = |what: String| format!("job {} of {flops} FLOP {what}", job.seq);
        let (duration, done, lost) = match clock.device {
            None => (SimDuration::ZERO, now, None),
            Some(k) => {
                let profile = &self.profiles[k as usize];
                // Fixed draw order: compute time, then dropout, then availability.
                let duration = clock
                    .compute
                    .with(|rng| profile.job_duration(flops, rng))
                    .ok_or_else(|| {
                        beyond("takes longer than the virtual clock can count".into())
                    })?;
                let done = now.checked_add(duration).ok_or_else(|| {
                    beyond(format!(
                        "started at {now} for {duration} ends beyond the virtual clock's range"
                    ))
                })?;
                let dropout = clock
                    .dropout
                    .with(|rng| profile.draw_dropout(duration, rng));
                // The offset lies within the job, so `now + offset` is at most `done`.
                let mut lost = dropout.map(|offset| (now + offset, DropReason::Dropout));
                let state = &mut clock.availability_state;
                let availability = &profile.availability;
                let off = clock
                    .availability
                    .with(|rng| state.next_off_after(availability, now, rng));
                if off < done && lost.as_ref().is_none_or(|(at, _)| off < *at) {
                    lost = Some((off, DropReason::Offline));
                }
                (duration, done, lost)
            }
        };
        self.trace(TraceEvent::JobStart {
            job,
            flops,
            duration,
        });
        match lost {
            Some((at, reason)) => self.queue.push(at, Pending::JobLost { job, reason }),
            None => {
                runner.submit(job, done, run);
                self.job_flops = self.job_flops.saturating_add(flops);
                self.queue.push(done, Pending::JobDone(job));
            }
        }
        Ok(())
    }

    fn fail(&mut self, node: NodeId, reason: String) {
        let clock = &mut self.nodes[node.index()];
        if clock.failed {
            return;
        }
        clock.failed = true;
        let name = clock.name.clone();
        self.trace(TraceEvent::NodeFailed {
            node,
            reason: reason.clone(),
        });
        self.failures.push(NodeFailure {
            node,
            name,
            time: self.now,
            reason,
        });
    }
}

impl<M: Serialize + DeserializeOwned + Send + 'static> World<M> {
    /// The clock side's part of a checkpoint, between instants. Jobs still running are
    /// waited for through `runner`; their outputs are returned encoded and handed back to
    /// `runner`, so the run goes on unchanged.
    pub(crate) fn checkpoint(
        &mut self,
        runner: &mut dyn JobRunner<M>,
    ) -> Result<(WorldState, Vec<SavedJob>), String> {
        if !self.sends.is_empty() {
            return Err("a checkpoint is taken between instants, not within one".into());
        }
        let running: Vec<(SimTime, JobId)> = self
            .queue
            .entries()
            .into_iter()
            .filter_map(|(due, _, p)| match p {
                Pending::JobDone(job) => Some((due, *job)),
                _ => None,
            })
            .collect();
        let mut jobs = Vec::with_capacity(running.len());
        for (due, job) in running {
            let output = runner.take(job);
            let saved = match &output {
                Ok(m) => Ok(crate::wire::encode(m).map_err(|e| {
                    format!("output of job {} of node {}: {e}", job.seq, job.node.0)
                })?),
                Err(e) => Err(e.0.clone()),
            };
            jobs.push((job, saved));
            runner.submit(job, due, Box::new(move || output));
        }
        jobs.sort_by_key(|(job, _)| *job);
        let recorder = self
            .recorder
            .checkpoint()
            .map_err(|e| format!("the trace could not be written: {e}"))?;
        let state = WorldState {
            now: self.now,
            queue: self
                .queue
                .entries()
                .into_iter()
                .map(|(time, seq, p)| (time, seq, p.clone()))
                .collect(),
            next_seq: self.queue.next_seq(),
            nodes: self.nodes.clone(),
            recorder,
            failures: self.failures.clone(),
            instants: self.instants,
            events: self.events,
            job_flops: self.job_flops,
        };
        Ok((state, jobs))
    }

    /// Puts back a checkpoint's clock side on a world built from the same configuration
    /// and not yet run; the saved jobs' outputs go to `runner`.
    pub(crate) fn restore(
        &mut self,
        state: WorldState,
        jobs: Vec<SavedJob>,
        runner: &mut dyn JobRunner<M>,
    ) -> Result<(), String> {
        if self.instants != 0 {
            return Err("a checkpoint is restored onto a run that has not started".into());
        }
        if state.nodes.len() != self.nodes.len() {
            return Err(format!(
                "the checkpoint has {} nodes, the run {}",
                state.nodes.len(),
                self.nodes.len()
            ));
        }
        for (i, (saved, built)) in state.nodes.iter().zip(&self.nodes).enumerate() {
            if saved.name != built.name || saved.device != built.device {
                return Err(format!(
                    "node {i} is `{}` in the checkpoint and `{}` in the run, or its device \
                     differs",
                    saved.name, built.name
                ));
            }
            for (a, b) in [
                (&saved.compute, &built.compute),
                (&saved.dropout, &built.dropout),
                (&saved.availability, &built.availability),
            ] {
                if !a.same_stream(b) {
                    return Err(format!(
                        "node {i} (`{}`): the checkpoint's random streams are not this run's \
                         (another seed?)",
                        built.name
                    ));
                }
            }
        }
        let running: BTreeMap<JobId, SimTime> = state
            .queue
            .iter()
            .filter_map(|(due, _, p)| match p {
                Pending::JobDone(job) => Some((*job, *due)),
                _ => None,
            })
            .collect();
        if !running.keys().eq(jobs.iter().map(|(job, _)| job)) {
            return Err("the checkpoint's job outputs do not match its queued jobs".into());
        }
        self.queue = EventQueue::from_entries(state.queue, state.next_seq)?;
        self.recorder.restore(state.recorder)?;
        self.now = state.now;
        self.nodes = state.nodes;
        self.failures = state.failures;
        self.instants = state.instants;
        self.events = state.events;
        self.job_flops = state.job_flops;
        for (job, output) in jobs {
            runner.submit(
                job,
                running[&job],
                Box::new(move || match output {
                    Ok(bytes) => crate::wire::decode::<M>(&bytes).map_err(|e| {
                        NodeError(format!(
                            "saved output of job {} does not decode: {e}",
                            job.seq
                        ))
                    }),
                    Err(reason) => Err(NodeError(reason)),
                }),
            );
        }
        Ok(())
    }
}
