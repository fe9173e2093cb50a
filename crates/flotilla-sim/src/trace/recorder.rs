//! The recorder: counts, hashes and optionally writes or keeps every record.

use super::counters::CountersState;
use super::{Counters, TraceError, TraceEvent, TraceRecord, jsonl};
use crate::{SimTime, wire};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::io::{self, BufWriter, Write};

/// A BLAKE3 fingerprint of a trace: equal hashes mean identical runs. Displayed and
/// serialised as 64 hex digits.
///
/// It is BLAKE3 over, for each record in order, the length of the
/// [`wire`](crate::wire) encoding of its `(time, event)` as a little-endian `u64`, then
/// that encoding. So it is independent of JSON formatting, covers float bits exactly, and
/// is the same on every platform: two runs with equal hashes recorded the same events at
/// the same virtual times in the same order.
///
/// A checkpoint folds the hash: from there on the hasher starts over from
/// `"flotilla checkpoint" ‖ hash so far` (and until the next record the hash stays the
/// folded one), so that a resumed run hashes exactly as the uninterrupted run with the
/// same checkpoints; a run without checkpoints has another hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
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

impl Serialize for TraceHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What a finished [`Recorder`] leaves.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSummary {
    /// The hash of every record.
    pub hash: TraceHash,
    /// The final counters.
    pub counters: Counters,
    /// The records, if kept ([`Recorder::with_memory`]); empty otherwise.
    pub records: Vec<TraceRecord>,
}

/// Consumes a run's trace records in order: always counts and hashes them; optionally
/// writes them as JSON lines and keeps them in memory.
///
/// ```
/// use flotilla_sim::{NodeId, Recorder, SimTime, TraceEvent};
///
/// let mut recorder = Recorder::new(vec![false, true]).with_memory();
/// recorder.record(SimTime(1_200), TraceEvent::Timer { node: NodeId(1), tag: 7 })?;
/// let summary = recorder.finish()?;
/// assert_eq!(summary.records.len(), 1);
/// println!("trace {}", summary.hash);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Recorder {
    is_edge: Vec<bool>,
    counters: Counters,
    hasher: blake3::Hasher,
    /// The hash at the last checkpoint, while no record has followed it.
    folded: Option<[u8; 32]>,
    /// Reused for each record's length prefix and wire encoding.
    scratch: Vec<u8>,
    last: SimTime,
    jsonl: Option<BufWriter<Counting>>,
    /// The first JSONL write error; writing stops there and `finish` returns it.
    io_error: Option<io::Error>,
    memory: Option<Vec<TraceRecord>>,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("last", &self.last)
            .field("counters", &self.counters)
            .field("hash", &self.hash())
            .field("jsonl", &self.jsonl.is_some())
            .field("io_error", &self.io_error)
            .field("kept", &self.memory.as_ref().map(Vec::len))
            .finish()
    }
}

impl Recorder {
    /// A recorder that counts and hashes; `is_edge[i]` tells whether node `i` is an edge device
    /// (for [`Counters::bytes_up`] and [`Counters::bytes_down`]; nodes past the end are
    /// not).
    pub fn new(is_edge: Vec<bool>) -> Self {
        Self {
            is_edge,
            counters: Counters::default(),
            hasher: blake3::Hasher::new(),
            folded: None,
            scratch: Vec::with_capacity(64),
            last: SimTime::ZERO,
            jsonl: None,
            io_error: None,
            memory: None,
        }
    }

    /// Also writes every record as a JSON line to `out`, buffered. Write errors do not stop
    /// the run: the first is kept and returned by [`Recorder::finish`].
    pub fn with_jsonl(mut self, out: Box<dyn Write + Send>) -> Self {
        self.jsonl = Some(BufWriter::new(Counting {
            inner: out,
            written: 0,
        }));
        self
    }

    /// Also keeps every record in memory ([`Recorder::records`], [`TraceSummary::records`]).
    pub fn with_memory(mut self) -> Self {
        self.memory = Some(Vec::new());
        self
    }

    /// Records `event` at virtual time `time`, which must not be earlier than the previous
    /// record's. A refused record leaves the recorder unchanged.
    pub fn record(&mut self, time: SimTime, event: TraceEvent) -> Result<(), TraceError> {
        if time < self.last {
            return Err(TraceError::TimeWentBack {
                previous: self.last,
                now: time,
            });
        }
        self.hash_record(time, &event)?;
        self.last = time;
        self.counters.count(&event, &self.is_edge);
        let record = TraceRecord { time, event };
        if let Some(out) = &mut self.jsonl
            && self.io_error.is_none()
            && let Err(e) = jsonl::write_line(out, &record)
        {
            self.io_error = Some(e);
        }
        if let Some(memory) = &mut self.memory {
            memory.push(record);
        }
        Ok(())
    }

    /// Feeds the hasher `len as u64 (LE) ‖ wire bytes` of `(time, event)`, in one update.
    fn hash_record(&mut self, time: SimTime, event: &TraceEvent) -> Result<(), TraceError> {
        const PREFIX: usize = size_of::<u64>();
        self.scratch.clear();
        self.scratch.extend_from_slice(&[0; PREFIX]);
        let len = wire::encode_into(&(time, event), &mut self.scratch)?;
        self.scratch[..PREFIX].copy_from_slice(&(len as u64).to_le_bytes());
        self.hasher.update(&self.scratch);
        self.folded = None;
        Ok(())
    }

    /// The counters so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The hash of the records so far; recording can go on.
    pub fn hash(&self) -> TraceHash {
        TraceHash(
            self.folded
                .unwrap_or_else(|| *self.hasher.finalize().as_bytes()),
        )
    }

    /// The kept records (empty unless [`Recorder::with_memory`]).
    pub fn records(&self) -> &[TraceRecord] {
        self.memory.as_deref().unwrap_or_default()
    }

    /// Flushes the JSONL output and folds the hash (see [`TraceHash`]): the recorder's part
    /// of a checkpoint. A JSONL write error is returned, as [`Recorder::finish`] would.
    pub(crate) fn checkpoint(&mut self) -> io::Result<RecorderState> {
        if let Some(e) = self.io_error.take() {
            return Err(e);
        }
        let jsonl_bytes = match &mut self.jsonl {
            Some(out) => {
                out.flush()?;
                Some(out.get_ref().written)
            }
            None => None,
        };
        let chain = self.hash().0;
        self.hasher = chained(&chain);
        self.folded = Some(chain);
        Ok(RecorderState {
            counters: self.counters.state(),
            chain,
            last: self.last,
            jsonl_bytes,
            records: self
                .memory
                .as_ref()
                .map(|records| {
                    let mut text = Vec::new();
                    records
                        .iter()
                        .try_for_each(|r| jsonl::write_line(&mut text, r))
                        .map(|()| text)
                })
                .transpose()?,
        })
    }

    /// Puts back the state of [`Recorder::checkpoint`], on a recorder built like the saved
    /// one: a JSONL output must continue the saved file (truncated to
    /// [`RecorderState::jsonl_bytes`]), and records are kept if and only if they were.
    pub(crate) fn restore(&mut self, state: RecorderState) -> Result<(), String> {
        if state.jsonl_bytes.is_some() != self.jsonl.is_some() {
            return Err(format!(
                "the checkpoint was taken {} a JSONL trace and is resumed {} one",
                if state.jsonl_bytes.is_some() {
                    "with"
                } else {
                    "without"
                },
                if self.jsonl.is_some() {
                    "with"
                } else {
                    "without"
                },
            ));
        }
        if state.records.is_some() != self.memory.is_some() {
            return Err(
                "the checkpoint and the resumed run differ in keeping trace records".into(),
            );
        }
        self.counters = Counters::from_state(state.counters);
        self.hasher = chained(&state.chain);
        self.folded = Some(state.chain);
        self.last = state.last;
        if let (Some(out), Some(bytes)) = (&mut self.jsonl, state.jsonl_bytes) {
            out.get_mut().written = bytes;
        }
        self.memory = state
            .records
            .map(|text| jsonl::read_jsonl(&text[..]))
            .transpose()
            .map_err(|e| format!("the checkpoint's trace records: {e}"))?;
        Ok(())
    }

    /// Flushes the JSONL output and returns the summary, or the first write error.
    pub fn finish(mut self) -> io::Result<TraceSummary> {
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

/// A hasher that continues a trace folded at a checkpoint whose hash was `chain`.
fn chained(chain: &[u8; 32]) -> blake3::Hasher {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"flotilla checkpoint");
    hasher.update(chain);
    hasher
}

/// The JSONL sink, counting the bytes it passed on: after a flush, the length of the
/// trace file so far (where a resumed run continues it).
struct Counting {
    inner: Box<dyn Write + Send>,
    written: u64,
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A recorder's part of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RecorderState {
    counters: CountersState,
    /// The trace hash at the checkpoint, which the hasher continues from.
    chain: [u8; 32],
    last: SimTime,
    /// Bytes of JSONL trace written, if the run writes one.
    pub(crate) jsonl_bytes: Option<u64>,
    /// The kept records as JSON lines, if the run keeps them (records are internally
    /// tagged for JSON, which the wire format cannot read back).
    records: Option<Vec<u8>>,
}
