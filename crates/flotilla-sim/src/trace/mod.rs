//! The trace: every send, delivery, drop, job, timer, record and node failure of a run,
//! with its virtual time; the [`Counters`] derived from it; and a [`TraceHash`] that
//! fingerprints the whole run.
//!
//! A [`Recorder`] always counts and hashes; writing JSON lines and keeping records in
//! memory are opt-in, so a run that wants neither pays for a hash update per record only.
//!
//! # JSONL form
//!
//! One object per line, in record order (non-decreasing virtual time): `t_us` is the
//! virtual time in microseconds, `event` the event's snake_case name, then the event's
//! fields. Node ids are numbers, message and job ids `{src|node, seq}` objects, durations
//! microseconds, drop reasons snake_case strings (`{"custom": …}` for a user rule's own).
//!
//! ```text
//! {"t_us":0,"event":"send","id":{"src":1,"seq":0},"src":1,"dst":0,"bytes":1103}
//! {"t_us":1200,"event":"deliver","id":{"src":1,"seq":0},"src":1,"dst":0,"bytes":1103}
//! {"t_us":1500,"event":"drop","id":{"src":2,"seq":0},"src":2,"dst":0,"bytes":1103,"reason":"loss"}
//! {"t_us":2000,"event":"job_start","job":{"node":1,"seq":0},"flops":5000000,"duration":350000}
//! {"t_us":9000,"event":"record","node":0,"label":"test_accuracy","value":0.91}
//! ```
//!
//! A record's `value` that is not finite is written `"NaN"`, `"inf"` or `"-inf"`, since
//! JSON has no such numbers. [`read_jsonl`] reads the form back.
//!
//! # Hash
//!
//! The [`TraceHash`] is BLAKE3 over, for each record in order, the length of the record's
//! [`wire`](crate::wire) encoding of `(time, event)` as a little-endian `u64`, then that
//! encoding. It is independent of JSON formatting, covers float bits exactly and is the
//! same on every platform; two runs with equal hashes recorded the same events at the same
//! virtual times in the same order.

mod counters;
mod event;
mod jsonl;
mod recorder;

pub use counters::Counters;
pub use event::{TraceEvent, TraceRecord};
pub use jsonl::read_jsonl;
pub use recorder::{Recorder, TraceHash, TraceSummary};

use crate::SimTime;
use crate::wire::WireError;

/// Why a record was refused or a trace could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    /// A record was made earlier than the previous one. Virtual time never goes back, so
    /// this is a bug in the runtime; the record is refused and the recorder unchanged.
    #[error("virtual time went back from {previous} to {now}")]
    TimeWentBack {
        /// The previous record's time.
        previous: SimTime,
        /// The refused record's time.
        now: SimTime,
    },
    /// A record could not be encoded for the hash (e.g. a label over the wire limit); the
    /// record is refused and the recorder unchanged.
    #[error("trace record cannot be hashed: {0}")]
    Encode(#[from] WireError),
    /// A JSONL line is not a trace record.
    #[error("trace line {line}: {reason}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading a JSONL trace failed.
    #[error("reading trace line {line}: {source}")]
    Read {
        /// 1-based number of the line being read.
        line: usize,
        /// The I/O error.
        source: std::io::Error,
    },
}
