//! The node side of a run: one node's state machine with its stream and job counter.
//!
//! Both runtimes call [`NodeHost::handle`] the same way; the actix runtime moves each host
//! into its own actor, so different nodes' handlers of one instant — including decoding the
//! messages they receive and encoding those they send — run in parallel.

use crate::wire::WireBytes;
use crate::{
    Command, Context, DeviceProfile, Envelope, Event, JobId, Node, NodeId, Purpose, Seed, SimTime,
    StreamCursor, wire,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

/// Object-safe access to a node as `Any`, so callers can inspect their own node types.
pub(crate) trait AnyNode<M>: Node<M> {
    fn as_any(&self) -> &dyn Any;
}

impl<M, T: Node<M>> AnyNode<M> for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Something that happens to a node, as the clock hands it over: messages still encoded.
#[derive(Debug)]
pub enum Inbound<M> {
    /// The run begins.
    Start,
    /// A message arrives, still in its wire form.
    Message {
        /// Its envelope.
        env: Envelope,
        /// Its encoded bytes (shared with the other copies of a message sent to many).
        bytes: WireBytes,
    },
    /// A timer fires.
    Timer {
        /// The timer's tag.
        tag: u64,
    },
    /// A job finished.
    JobDone {
        /// The job.
        job: JobId,
        /// Its output.
        output: M,
    },
}

/// A command after the node side processed it: sends carry their wire bytes.
pub type Outgoing<M> = Command<M, WireBytes>;

/// What one node's handling of one instant produced.
#[derive(Debug)]
pub struct Handled<M> {
    /// Each inbound message's envelope, in order, with `None` if it decoded or the decode
    /// error.
    pub received: Vec<(Envelope, Option<String>)>,
    /// Commands of the events handled successfully, in issue order.
    pub commands: Vec<Outgoing<M>>,
    /// Why the node failed, if it did; it then handles nothing more.
    pub failure: Option<String>,
}

/// The latest shared message any host of a run decoded, with its bytes: a message sent to
/// many nodes (a round's model to every client) reaches each as the same shared bytes, and is
/// decoded once; the others get a clone of the decoded message (its payloads are shared
/// pointers). Decoding is a function of the bytes, so every node still receives the
/// same value.
pub(crate) struct SharedDecode<M> {
    latest: Mutex<Option<(WireBytes, M)>>,
}

impl<M> Default for SharedDecode<M> {
    fn default() -> Self {
        Self {
            latest: Mutex::new(None),
        }
    }
}

impl<M: Clone + DeserializeOwned> SharedDecode<M> {
    /// Decodes `bytes`, or clones the latest decoding of the same bytes. Bytes held by this
    /// message alone are decoded without keeping anything.
    fn decode(&self, bytes: &WireBytes) -> Result<M, wire::WireError> {
        if bytes.is_unique() {
            return wire::decode(bytes);
        }
        // A poisoned lock only means a panic while it was held; the entry is whole at every
        // point a panic could leave it.
        let latest = || {
            self.latest
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        // The entry holds its bytes, so they cannot be freed and their address reused: the
        // same address and length are the same contents.
        let same = |held: &WireBytes| held.as_ptr() == bytes.as_ptr() && held.len() == bytes.len();
        if let Some((held, msg)) = latest().as_ref()
            && same(held)
        {
            return Ok(msg.clone());
        }
        let msg: M = wire::decode(bytes)?;
        *latest() = Some((bytes.clone(), msg.clone()));
        Ok(msg)
    }
}

/// One node with its own random stream and its job counter.
pub struct NodeHost<M> {
    id: NodeId,
    node: Box<dyn AnyNode<M>>,
    /// Shared with the clock side and every node of the same profile.
    device: Option<Arc<DeviceProfile>>,
    rng: StreamCursor,
    next_job: u64,
    failed: bool,
    /// Shared by every host of the run.
    decoded: Arc<SharedDecode<M>>,
}

impl<M> std::fmt::Debug for NodeHost<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHost")
            .field("id", &self.id)
            .field("failed", &self.failed)
            .finish()
    }
}

impl<M: Clone + Serialize + DeserializeOwned + 'static> NodeHost<M> {
    pub(crate) fn new(
        seed: Seed,
        id: NodeId,
        node: Box<dyn AnyNode<M>>,
        device: Option<Arc<DeviceProfile>>,
        decoded: Arc<SharedDecode<M>>,
    ) -> Self {
        Self {
            id,
            node,
            device,
            rng: seed.cursor(id, Purpose::NODE),
            next_job: 0,
            failed: false,
            decoded,
        }
    }

    /// The node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The node, as its concrete type.
    pub fn node<T: 'static>(&self) -> Option<&T> {
        self.node.as_any().downcast_ref()
    }

    /// Handles one instant's `inbound` items in order at `now`.
    ///
    /// A message that does not decode is reported in [`Handled::received`] and not
    /// shown to the node. A handler error or panic — or a message the node sends that does
    /// not encode — stops the batch: that event's commands are discarded, earlier ones kept,
    /// and the host refuses every later event.
    pub fn handle(&mut self, now: SimTime, inbound: Vec<Inbound<M>>) -> Handled<M> {
        let mut out = Handled {
            received: Vec::new(),
            commands: Vec::new(),
            failure: None,
        };
        let mut rng = self.rng.rng();
        for item in inbound {
            let event = match item {
                Inbound::Start => Event::Start,
                Inbound::Timer { tag } => Event::Timer { tag },
                Inbound::JobDone { job, output } => Event::JobDone { job, output },
                Inbound::Message { env, bytes } => match self.decoded.decode(&bytes) {
                    Ok(msg) => {
                        out.received.push((env, None));
                        Event::Message { from: env.src, msg }
                    }
                    Err(e) => {
                        out.received.push((env, Some(e.to_string())));
                        continue;
                    }
                },
            };
            if self.failed {
                continue;
            }
            match self.dispatch(now, event, &mut rng) {
                Ok(commands) => out.commands.extend(commands),
                Err(reason) => {
                    self.failed = true;
                    out.failure = Some(reason);
                }
            }
        }
        self.rng.save(&rng);
        out
    }

    /// Runs the handler on one event and encodes what it sends.
    fn dispatch(
        &mut self,
        now: SimTime,
        event: Event<M>,
        rng: &mut rand_chacha::ChaCha8Rng,
    ) -> Result<Vec<Outgoing<M>>, String> {
        let device = self.device.as_deref();
        let mut ctx = Context::new(now, self.id, device, rng, &mut self.next_job);
        let node = &mut self.node;
        match catch_unwind(AssertUnwindSafe(|| node.on_event(event, &mut ctx))) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("handler error: {e}")),
            Err(panic) => return Err(format!("handler panicked: {}", panic_message(&panic))),
        }
        let commands = ctx.into_commands();
        let mut out: Vec<Outgoing<M>> = Vec::with_capacity(commands.len());
        // Where the previous send is in `out`: a message sent unchanged to many nodes (the
        // same model to every client of a round) is encoded once, its bytes shared. Only a
        // message actually shared pays for the sharing (a count beside its bytes).
        let mut previous_send = None;
        for command in commands {
            out.push(match command {
                Command::Send { to, msg } => {
                    let same = previous_send.and_then(|i| match out.get(i) {
                        Some(Outgoing::Send { msg: bytes, .. })
                            if wire::encodes_to(&msg, bytes) =>
                        {
                            Some(bytes.clone())
                        }
                        _ => None,
                    });
                    let bytes = match same {
                        Some(bytes) => bytes,
                        None => wire::encode(&msg)
                            .map(WireBytes::from)
                            .map_err(|e| format!("could not encode a message: {e}"))?,
                    };
                    previous_send = Some(out.len());
                    Outgoing::Send { to, msg: bytes }
                }
                Command::Timer { after, tag } => Outgoing::Timer { after, tag },
                Command::Job { id, flops, run } => Outgoing::Job { id, flops, run },
                Command::Record { label, value } => Outgoing::Record { label, value },
            });
        }
        Ok(out)
    }
}

/// A node host's part of a checkpoint: its stream position, job counter and failure, and
/// the node's own state ([`Node::save_state`]); a failed node handles nothing more, so
/// its state is not needed.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HostState {
    rng: StreamCursor,
    next_job: u64,
    failed: bool,
    node: Option<Vec<u8>>,
}

impl<M: 'static> NodeHost<M> {
    /// This host's part of a checkpoint.
    pub(crate) fn checkpoint(&self) -> Result<HostState, String> {
        let node = match self.failed {
            true => None,
            false => Some(self.node.save_state().map_err(|e| e.0)?),
        };
        Ok(HostState {
            rng: self.rng,
            next_job: self.next_job,
            failed: self.failed,
            node,
        })
    }

    /// Puts back a checkpoint's part on a host built from the same configuration.
    pub(crate) fn restore(&mut self, state: HostState) -> Result<(), String> {
        if !state.rng.same_stream(&self.rng) {
            return Err("the checkpoint's node stream is not this run's (another seed?)".into());
        }
        if let Some(node) = &state.node {
            self.node.restore_state(node).map_err(|e| e.0)?;
        }
        self.rng = state.rng;
        self.next_job = state.next_job;
        self.failed = state.failed;
        Ok(())
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(panic: &Box<dyn Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".into()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::Node;

    /// Sends `messages[i]` to node `i + 1` when it starts.
    struct Sender {
        messages: Vec<Vec<f32>>,
    }

    impl Node<Vec<f32>> for Sender {
        fn on_event(
            &mut self,
            event: Event<Vec<f32>>,
            ctx: &mut Context<'_, Vec<f32>>,
        ) -> Result<(), crate::NodeError> {
            if let Event::Start = event {
                for (to, msg) in (1..).zip(&self.messages) {
                    ctx.send(NodeId(to), msg.clone());
                    ctx.record("sent", 1.0);
                }
            }
            Ok(())
        }
    }

    /// A message sent again right after itself shares the bytes of the first copy; any
    /// other send (a different message, or the first one again after it) is encoded anew.
    /// Every send's bytes are its message's encoding.
    #[test]
    fn repeated_sends_share_their_bytes() {
        let (a, b) = (vec![1.0, 2.0, 3.0], vec![1.0, -0.0, 3.0]);
        let messages = vec![a.clone(), a.clone(), a.clone(), b.clone(), a.clone()];
        let node = Sender {
            messages: messages.clone(),
        };
        let mut host = NodeHost::new(Seed(1), NodeId(0), Box::new(node), None, Arc::default());
        let handled = host.handle(SimTime::ZERO, vec![Inbound::Start]);
        assert_eq!(handled.failure, None);
        let sent: Vec<WireBytes> = handled
            .commands
            .into_iter()
            .filter_map(|c| match c {
                Outgoing::Send { msg, .. } => Some(msg),
                _ => None,
            })
            .collect();
        assert_eq!(sent.len(), messages.len());
        for (bytes, msg) in sent.iter().zip(&messages) {
            assert_eq!(bytes[..], wire::encode(msg).unwrap()[..]);
        }
        let at: Vec<*const u8> = sent.iter().map(|b| b.as_ptr()).collect();
        assert!(at[0] == at[1] && at[1] == at[2], "{at:?}");
        assert!(at[3] != at[2] && at[4] != at[3] && at[4] != at[0], "{at:?}");
    }

    /// A message whose bytes many hold is decoded once, the rest cloned from it; the same
    /// contents in other bytes, or bytes held once, are decoded anew.
    #[test]
    fn shared_bytes_are_decoded_once() {
        let shared = SharedDecode::<Arc<Vec<f32>>>::default();
        let msg = Arc::new(vec![1.0f32, -2.5, 3.0]);
        let bytes = WireBytes::from(wire::encode(&msg).unwrap());
        let copies = [bytes.clone(), bytes.clone(), bytes];
        let decoded: Vec<_> = copies.iter().map(|b| shared.decode(b).unwrap()).collect();
        assert!(decoded.iter().all(|d| **d == *msg));
        assert!(Arc::ptr_eq(&decoded[0], &decoded[1]) && Arc::ptr_eq(&decoded[0], &decoded[2]));
        let other = WireBytes::from(wire::encode(&msg).unwrap());
        let (again, alone) = (other.clone(), WireBytes::from(wire::encode(&msg).unwrap()));
        assert!(!Arc::ptr_eq(&shared.decode(&other).unwrap(), &decoded[0]));
        assert!(!Arc::ptr_eq(&shared.decode(&alone).unwrap(), &decoded[0]));
        assert!(Arc::ptr_eq(
            &shared.decode(&again).unwrap(),
            &shared.decode(&other).unwrap()
        ));
    }

    /// Messages of one size, each in fresh bytes freed after use (so the allocator hands
    /// their addresses out again), decode to their own contents: a decoding is never taken
    /// for another message's.
    #[test]
    fn reused_addresses_never_give_a_stale_message() {
        let shared = SharedDecode::<Vec<f32>>::default();
        for i in 0..500u16 {
            let msg = vec![f32::from(i); 64];
            let bytes = WireBytes::from(wire::encode(&msg).unwrap());
            let copy = bytes.clone();
            assert_eq!(shared.decode(&bytes).unwrap(), msg, "message {i}");
            assert_eq!(shared.decode(&copy).unwrap(), msg, "message {i}");
        }
    }
}
