//! The trace: every send, delivery, drop, job, timer, record and node failure of a run,
//! with its virtual time; the [`Counters`] derived from it; and a [`TraceHash`] that
//! fingerprints the whole run.
//!
//! A [`Recorder`] always counts and hashes; writing JSON lines and keeping records in
//! memory are opt-in, so a run that wants neither pays for a hash update per record only.
//! The JSONL form is documented on [`TraceRecord`], the hash on [`TraceHash`].

mod counters;
mod event;
mod jsonl;
mod recorder;

pub use counters::Counters;
pub use event::{TraceEvent, TraceRecord};
pub use jsonl::read_jsonl;
pub(crate) use recorder::RecorderState;
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
