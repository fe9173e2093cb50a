//! What a trace records.

use crate::{DropReason, JobId, MessageId, NodeId, SimDuration, SimTime};
use serde::{Deserialize, Serialize};

/// Something that happened in a run. In JSON, `event` names the variant in snake_case and
/// the fields follow (see [`TraceRecord`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum TraceEvent {
    /// A node sent a message (before the network decided its fate).
    Send {
        /// The message.
        id: MessageId,
        /// Sender.
        src: NodeId,
        /// Destination.
        dst: NodeId,
        /// Encoded size \[bytes\].
        bytes: u64,
    },
    /// A message reached its destination and was handed to it.
    Deliver {
        /// The message.
        id: MessageId,
        /// Sender.
        src: NodeId,
        /// Destination.
        dst: NodeId,
        /// Encoded size \[bytes\].
        bytes: u64,
    },
    /// A message was lost.
    Drop {
        /// The message.
        id: MessageId,
        /// Sender.
        src: NodeId,
        /// Destination.
        dst: NodeId,
        /// Encoded size \[bytes\].
        bytes: u64,
        /// Why it was lost.
        reason: DropReason,
    },
    /// A compute job started; it finishes after `duration` unless it is lost first.
    JobStart {
        /// The job.
        job: JobId,
        /// Declared work \[FLOP\].
        flops: u64,
        /// Virtual duration drawn from the device profile \[µs\].
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
        /// Why (dropout, device offline, node failure).
        reason: DropReason,
    },
    /// A timer fired.
    Timer {
        /// The node that set it.
        node: NodeId,
        /// Its tag.
        tag: u64,
    },
    /// A node recorded a value: an aggregation, a metric, a decision.
    Record {
        /// The node.
        node: NodeId,
        /// What the value is, e.g. `test_accuracy`.
        label: String,
        /// The value.
        #[serde(with = "json_f64")]
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

/// One trace line: a virtual time and what happened then.
///
/// # JSONL form
///
/// A trace file has one record per line, in record order (non-decreasing virtual time):
/// `t_us` is the virtual time in microseconds, `event` the event's snake_case name, then
/// the event's fields. Node ids are numbers, message and job ids `{src|node, seq}`
/// objects, durations microseconds, drop reasons snake_case strings (`{"custom": …}` for a
/// user rule's own):
///
/// ```text
/// {"t_us":0,"event":"send","id":{"src":1,"seq":0},"src":1,"dst":0,"bytes":1103}
/// {"t_us":1200,"event":"deliver","id":{"src":1,"seq":0},"src":1,"dst":0,"bytes":1103}
/// {"t_us":1500,"event":"drop","id":{"src":2,"seq":0},"src":2,"dst":0,"bytes":1103,"reason":"loss"}
/// {"t_us":2000,"event":"job_start","job":{"node":1,"seq":0},"flops":5000000,"duration":350000}
/// {"t_us":9000,"event":"record","node":0,"label":"test_accuracy","value":0.91}
/// ```
///
/// A record's `value` that is not finite is written `"NaN"`, `"inf"` or `"-inf"`, since
/// JSON has no such numbers. [`read_jsonl`](crate::read_jsonl) reads the form back with
/// every finite value bit-exact (shortest round-trip printing, and serde_json's
/// `float_roundtrip` parser). The [`TraceHash`](crate::TraceHash) is the fingerprint of a
/// run.
///
/// This flat shape needs a self-describing format: the record itself has no wire
/// encoding; the hash encodes `(time, event)` instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceRecord {
    /// When \[µs of virtual time\].
    #[serde(rename = "t_us")]
    pub time: SimTime,
    /// What happened.
    #[serde(flatten)]
    pub event: TraceEvent,
}

/// `f64` fields in human-readable formats: finite values as numbers, NaN and infinities
/// (which JSON lacks) as `"NaN"`, `"inf"` and `"-inf"`. Binary formats keep the raw bits.
mod json_f64 {
    use serde::de::{self, Deserializer, Unexpected, Visitor};
    use serde::ser::Serializer;
    use std::fmt;

    pub(super) fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() || !s.is_human_readable() {
            s.serialize_f64(*v)
        } else if v.is_nan() {
            s.serialize_str("NaN")
        } else if v.is_sign_positive() {
            s.serialize_str("inf")
        } else {
            s.serialize_str("-inf")
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        d.deserialize_any(F64OrName)
    }

    struct F64OrName;

    impl Visitor<'_> for F64OrName {
        type Value = f64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(r#"a number, "NaN", "inf" or "-inf""#)
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
            Ok(v)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
            Ok(v as f64)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
            Ok(v as f64)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
            match v {
                "NaN" => Ok(f64::NAN),
                "inf" => Ok(f64::INFINITY),
                "-inf" => Ok(f64::NEG_INFINITY),
                _ => Err(E::invalid_value(Unexpected::Str(v), &self)),
            }
        }
    }
}
