//! The trace: every send, delivery, drop, job and record of a run, with its virtual time;
//! the counters derived from it; and a hash that fingerprints the whole run.
//!
//! JSONL form: one object per line, `{"t_us": 1200, "event": "deliver", ...fields}`, in
//! record order (non-decreasing virtual time). [`read_jsonl`] reads it back.

use crate::{DropReason, JobId, MessageId, NodeId, SimDuration, SimTime, wire};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, BufWriter, Write};

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum TraceEvent {
    /// A node sent a message (before the network decided its fate).
    Send {
        /// Message id.
        id: MessageId,
        /// Sender.
        src: NodeId,
        /// Destination.
        dst: NodeId,
        /// Encoded size.
        bytes: u64,
    },
    /// A message reached its destination.
    Deliver {
        /// Message id.
        id: MessageId,
        /// Sender.
        src: NodeId,
        /// Destination.
        dst: NodeId,
        /// Encoded size.
        bytes: u64,
    },
    /// A message was lost.
    Drop {
        /// Message id.
        id: MessageId,
        /// Sender.
        src: NodeId,
        /// Destination.
        dst: NodeId,
        /// Encoded size.
        bytes: u64,
        /// Why.
        reason: DropReason,
    },
    /// A compute job started; it will finish after `duration` unless lost.
    JobStart {
        /// The job.
        job: JobId,
        /// Declared work.
        flops: u64,
        /// Virtual duration drawn from the device profile.
        duration: SimDuration,
    },
    /// A compute job finished and its output went to its node.
    JobDone {
        /// The job.
        job: JobId,
    },
    /// A compute job never finished.
    JobLost {
        /// The job.
        job: JobId,
        /// Why (dropout, offline, node failure).
        reason: DropReason,
    },
    /// A timer fired.
    Timer {
        /// Its node.
        node: NodeId,
        /// Its tag.
        tag: u64,
    },
    /// A node recorded a value (an aggregation, a metric).
    Record {
        /// The node.
        node: NodeId,
        /// What.
        label: String,
        /// Its value.
        value: f64,
    },
    /// A node's handler failed; the node is isolated from now on.
    NodeFailed {
        /// The node.
        node: NodeId,
        /// What went wrong.
        reason: String,
    },
}

/// One trace line: a virtual time and an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceRecord {
    /// Virtual time \[µs\].
    #[serde(rename = "t_us")]
    pub time: SimTime,
    /// What happened.
    #[serde(flatten)]
    pub event: TraceEvent,
}

/// Counts over the trace.
///
/// Conservation: `sent = delivered + dropped_total() + in_flight()` and
/// `jobs_started = jobs_done + lost jobs + running jobs`, at any point of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Messages sent.
    pub sent: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Messages dropped, by reason.
    pub dropped: BTreeMap<DropReason, u64>,
    /// Bytes of sent messages whose sender is a device (client uplink).
    pub bytes_up: u64,
    /// Bytes of sent messages whose receiver is a device (client downlink).
    pub bytes_down: u64,
    /// Jobs started.
    pub jobs_started: u64,
    /// Jobs finished.
    pub jobs_done: u64,
    /// Jobs lost, by reason.
    pub jobs_lost: BTreeMap<DropReason, u64>,
    /// Nodes that failed.
    pub node_failures: u64,
}

impl Counters {
    /// Messages dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }

    /// Messages sent but neither delivered nor dropped yet.
    ///
    /// # Panics
    /// If more messages were delivered or dropped than sent: the conservation invariant is
    /// broken, which is a bug in the runtime.
    pub fn in_flight(&self) -> u64 {
        self.sent
            .checked_sub(self.delivered + self.dropped_total())
            .expect("conservation: no message is delivered or dropped without being sent")
    }

    fn count(&mut self, event: &TraceEvent, is_device: &[bool]) {
        let device = |n: &NodeId| is_device.get(n.index()).copied().unwrap_or(false);
        match event {
            TraceEvent::Send {
                src, dst, bytes, ..
            } => {
                self.sent += 1;
                if device(src) {
                    self.bytes_up += bytes;
                }
                if device(dst) {
                    self.bytes_down += bytes;
                }
            }
            TraceEvent::Deliver { .. } => self.delivered += 1,
            TraceEvent::Drop { reason, .. } => {
                *self.dropped.entry(reason.clone()).or_default() += 1
            }
            TraceEvent::JobStart { .. } => self.jobs_started += 1,
            TraceEvent::JobDone { .. } => self.jobs_done += 1,
            TraceEvent::JobLost { reason, .. } => {
                *self.jobs_lost.entry(reason.clone()).or_default() += 1;
            }
            TraceEvent::NodeFailed { .. } => self.node_failures += 1,
            TraceEvent::Timer { .. } | TraceEvent::Record { .. } => {}
        }
    }
}

/// A BLAKE3 fingerprint of a trace: equal hashes mean identical runs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct TraceHash(pub [u8; 32]);

impl fmt::Display for TraceHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for TraceHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceHash({self})")
    }
}

/// Problems with a trace.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    /// A record was made earlier than the previous one (a runtime bug).
    #[error("virtual time went back from {previous} to {now}")]
    TimeWentBack {
        /// The previous record's time.
        previous: SimTime,
        /// The offending time.
        now: SimTime,
    },
    /// A JSONL line is not a trace record.
    #[error("trace line {line}: {reason}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Reading the trace failed.
    #[error("reading the trace: {0}")]
    Io(#[from] std::io::Error),
}

/// What a finished recorder leaves.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSummary {
    /// The trace's hash.
    pub hash: TraceHash,
    /// Its counters.
    pub counters: Counters,
    /// The records, if kept ([`Recorder::with_memory`]); empty otherwise.
    pub records: Vec<TraceRecord>,
}

/// Consumes trace records: always counts and hashes them; optionally writes JSONL and keeps
/// them in memory.
pub struct Recorder {
    is_device: Vec<bool>,
    counters: Counters,
    hasher: blake3::Hasher,
    scratch: Vec<u8>,
    last: SimTime,
    jsonl: Option<BufWriter<Box<dyn Write + Send>>>,
    io_error: Option<std::io::Error>,
    memory: Option<Vec<TraceRecord>>,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("counters", &self.counters)
            .field("jsonl", &self.jsonl.is_some())
            .field("kept", &self.memory.as_ref().map(Vec::len))
            .finish()
    }
}

impl Recorder {
    /// A recorder; `is_device[i]` tells whether node `i` is a device (for bytes up/down).
    pub fn new(is_device: Vec<bool>) -> Self {
        Self {
            is_device,
            counters: Counters::default(),
            hasher: blake3::Hasher::new(),
            scratch: Vec::with_capacity(64),
            last: SimTime::ZERO,
            jsonl: None,
            io_error: None,
            memory: None,
        }
    }

    /// Also writes every record as a JSON line to `out`.
    pub fn with_jsonl(mut self, out: Box<dyn Write + Send>) -> Self {
        self.jsonl = Some(BufWriter::new(out));
        self
    }

    /// Also keeps every record in memory.
    pub fn with_memory(mut self) -> Self {
        self.memory = Some(Vec::new());
        self
    }

    /// Records `event` at `time`.
    pub fn record(&mut self, time: SimTime, event: TraceEvent) -> Result<(), TraceError> {
        if time < self.last {
            return Err(TraceError::TimeWentBack {
                previous: self.last,
                now: time,
            });
        }
        self.last = time;
        self.counters.count(&event, &self.is_device);
        let record = TraceRecord { time, event };
        // bincode encodings of records are self-delimiting, so hashing them back to back
        // is unambiguous; one buffer, one hasher update per record.
        self.scratch.clear();
        wire::encode_into(&(record.time, &record.event), &mut self.scratch)
            .expect("trace records encode");
        self.hasher.update(&self.scratch);
        if let Some(out) = &mut self.jsonl
            && self.io_error.is_none()
        {
            let line = serde_json::to_string(&record).expect("trace records serialise");
            if let Err(e) = writeln!(out, "{line}") {
                self.io_error = Some(e);
            }
        }
        if let Some(memory) = &mut self.memory {
            memory.push(record);
        }
        Ok(())
    }

    /// The counters so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The hash of the records so far.
    pub fn hash(&self) -> TraceHash {
        TraceHash(*self.hasher.finalize().as_bytes())
    }

    /// The kept records (empty unless [`Recorder::with_memory`]).
    pub fn records(&self) -> &[TraceRecord] {
        self.memory.as_deref().unwrap_or(&[])
    }

    /// Flushes the JSONL output and returns the summary; the first write error, if any.
    pub fn finish(mut self) -> std::io::Result<TraceSummary> {
        if let Some(e) = self.io_error.take() {
            return Err(e);
        }
        if let Some(out) = &mut self.jsonl {
            out.flush()?;
        }
        Ok(TraceSummary {
            hash: self.hash(),
            counters: self.counters,
            records: self.memory.unwrap_or_default(),
        })
    }
}

/// Reads a JSONL trace back; a bad line is an error naming its number.
pub fn read_jsonl(reader: impl BufRead) -> Result<Vec<TraceRecord>, TraceError> {
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(&line).map_err(|e| TraceError::Malformed {
            line: i + 1,
            reason: e.to_string(),
        })?;
        out.push(record);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn msg(seq: u64) -> MessageId {
        MessageId {
            src: NodeId(1),
            seq,
        }
    }

    fn sample() -> Vec<(SimTime, TraceEvent)> {
        let job = JobId {
            node: NodeId(1),
            seq: 0,
        };
        vec![
            (
                SimTime(0),
                TraceEvent::Send {
                    id: msg(0),
                    src: NodeId(1),
                    dst: NodeId(0),
                    bytes: 10,
                },
            ),
            (
                SimTime(0),
                TraceEvent::Send {
                    id: msg(1),
                    src: NodeId(1),
                    dst: NodeId(0),
                    bytes: 20,
                },
            ),
            (
                SimTime(5),
                TraceEvent::Deliver {
                    id: msg(0),
                    src: NodeId(1),
                    dst: NodeId(0),
                    bytes: 10,
                },
            ),
            (
                SimTime(5),
                TraceEvent::JobStart {
                    job,
                    flops: 100,
                    duration: SimDuration(7),
                },
            ),
            (
                SimTime(9),
                TraceEvent::Record {
                    node: NodeId(0),
                    label: "acc".into(),
                    value: 0.5,
                },
            ),
            (
                SimTime(12),
                TraceEvent::JobLost {
                    job,
                    reason: DropReason::Dropout,
                },
            ),
        ]
    }

    fn record_all(events: &[(SimTime, TraceEvent)]) -> Recorder {
        let mut r = Recorder::new(vec![false, true]).with_memory();
        for (t, e) in events {
            r.record(*t, e.clone()).unwrap();
        }
        r
    }

    #[test]
    fn counters_and_conservation() {
        let r = record_all(&sample());
        let c = r.counters();
        assert_eq!(
            (c.sent, c.delivered, c.dropped_total(), c.in_flight()),
            (2, 1, 0, 1)
        );
        assert_eq!((c.bytes_up, c.bytes_down), (30, 0));
        assert_eq!(c.jobs_lost.get(&DropReason::Dropout), Some(&1));
    }

    #[test]
    fn hash_is_stable_and_sensitive() {
        let events = sample();
        assert_eq!(record_all(&events).hash(), record_all(&events).hash());
        let mut swapped = events.clone();
        swapped.swap(0, 1);
        assert_ne!(record_all(&events).hash(), record_all(&swapped).hash());
        let mut changed = events.clone();
        changed[4].1 = TraceEvent::Record {
            node: NodeId(0),
            label: "acc".into(),
            value: 0.51,
        };
        assert_ne!(record_all(&events).hash(), record_all(&changed).hash());
    }

    #[test]
    fn time_going_back_is_rejected() {
        let mut r = Recorder::new(vec![]);
        r.record(
            SimTime(5),
            TraceEvent::Timer {
                node: NodeId(0),
                tag: 1,
            },
        )
        .unwrap();
        let err = r
            .record(
                SimTime(4),
                TraceEvent::Timer {
                    node: NodeId(0),
                    tag: 2,
                },
            )
            .unwrap_err();
        assert!(matches!(err, TraceError::TimeWentBack { .. }));
    }

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn jsonl_round_trips_with_virtual_timestamps() {
        let out = Shared::default();
        let mut r = Recorder::new(vec![false, true]).with_jsonl(Box::new(out.clone()));
        for (t, e) in sample() {
            r.record(t, e).unwrap();
        }
        r.finish().unwrap();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["t_us"], 0);
        assert_eq!(first["event"], "send");
        let back = read_jsonl(text.as_bytes()).unwrap();
        let expected: Vec<TraceRecord> = sample()
            .into_iter()
            .map(|(time, event)| TraceRecord { time, event })
            .collect();
        assert_eq!(back, expected);
        let err = read_jsonl("{\"t_us\":1}\nnot json\n".as_bytes()).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }
}
