//! The messages between rank 0 and a worker, as bytes.
//!
//! A frame is `[envelope length: u32 LE][envelope][raw bytes]`: the envelope (encoded with
//! [`flotilla_sim::wire`], so its decoding never panics and names the offset at fault) says
//! what the raw bytes after it are — a job's header and the parts the worker has not cached
//! yet, or a job's output. Raw bytes are not passed through serde, so a megabyte of weights
//! is copied once, not encoded byte by byte.

use crate::MpiError;
use flotilla_fl::OffloadKind;
use serde::{Deserialize, Serialize};

/// A part's identity: the BLAKE3 hash of its bytes.
pub(crate) type Hash = [u8; 32];

/// One input part of a job: cached on the worker already, or carried in the frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PartRef {
    /// Its content hash (the worker's cache key).
    pub hash: Hash,
    /// Its length if its bytes follow in this frame; `None` if the worker has it.
    pub inline: Option<u64>,
}

/// Rank 0 → worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// Compute a job; its header, then its inline parts, follow the envelope.
    Job {
        /// Rank 0's id of the job, echoed in the answer.
        id: u64,
        /// What it computes.
        kind: OffloadKind,
        /// The seed of its task.
        seed: u64,
        /// Length of the header that follows.
        header: u64,
        /// Its parts, in order.
        parts: Vec<PartRef>,
        /// Parts to drop from the cache once this job's parts are resolved.
        evict: Vec<Hash>,
    },
    /// No more jobs: the worker ends.
    Stop,
}

/// Worker → rank 0: a job's answer; its output (or nothing) follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Done {
    /// The job's id.
    pub id: u64,
    /// Wall time the worker spent computing it \[ns\] (for the overhead figures only).
    pub compute_ns: u64,
    /// `None`: the output follows; `Some(reason)`: the job failed.
    pub failed: Option<String>,
}

/// Builds a frame from an envelope and its raw byte strings.
pub(crate) fn encode<E: Serialize>(envelope: &E, raw: &[&[u8]]) -> Result<Vec<u8>, MpiError> {
    let head = flotilla_sim::wire::encode(envelope)
        .map_err(|e| MpiError::Protocol(format!("could not encode a frame: {e}")))?;
    let head_len = u32::try_from(head.len())
        .map_err(|_| MpiError::Protocol("a frame envelope over 4 GiB".into()))?;
    let total = 4 + head.len() + raw.iter().map(|r| r.len()).sum::<usize>();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&head_len.to_le_bytes());
    out.extend_from_slice(&head);
    for r in raw {
        out.extend_from_slice(r);
    }
    Ok(out)
}

/// Splits a frame into its envelope and the raw bytes after it.
pub(crate) fn decode<E: for<'de> Deserialize<'de>>(frame: &[u8]) -> Result<(E, &[u8]), MpiError> {
    let malformed = |what: String| MpiError::Protocol(format!("malformed frame: {what}"));
    let Some((len, rest)) = frame.split_first_chunk::<4>() else {
        return Err(malformed(format!(
            "{} bytes, shorter than its 4-byte length",
            frame.len()
        )));
    };
    let len = u32::from_le_bytes(*len) as usize;
    if rest.len() < len {
        return Err(malformed(format!(
            "its envelope claims {len} bytes at offset 4, {} follow",
            rest.len()
        )));
    }
    let (head, raw) = rest.split_at(len);
    let envelope = flotilla_sim::wire::decode(head)
        .map_err(|e| malformed(format!("envelope at offset 4: {e}")))?;
    Ok((envelope, raw))
}

/// Cuts `lengths` consecutive byte strings off the front of `raw`, which must hold
/// exactly that many bytes.
pub(crate) fn split<'a>(raw: &'a [u8], lengths: &[u64]) -> Result<Vec<&'a [u8]>, MpiError> {
    let mut out = Vec::with_capacity(lengths.len());
    let mut rest = raw;
    for &len in lengths {
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= rest.len())
            .ok_or_else(|| {
                MpiError::Protocol(format!(
                    "malformed frame: a part of {len} bytes at raw offset {}, {} bytes left",
                    raw.len() - rest.len(),
                    rest.len()
                ))
            })?;
        let (part, tail) = rest.split_at(len);
        out.push(part);
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(MpiError::Protocol(format!(
            "malformed frame: {} bytes after its last part",
            rest.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn job(parts: Vec<PartRef>) -> ToWorker {
        ToWorker::Job {
            id: 7,
            kind: OffloadKind::Train,
            seed: 3,
            header: 2,
            parts,
            evict: vec![[9; 32]],
        }
    }

    #[test]
    fn a_frame_round_trips() {
        let parts = vec![
            PartRef {
                hash: [1; 32],
                inline: Some(3),
            },
            PartRef {
                hash: [2; 32],
                inline: None,
            },
        ];
        let frame = encode(&job(parts.clone()), &[b"hd", b"abc"]).unwrap();
        let (back, raw): (ToWorker, _) = decode(&frame).unwrap();
        assert_eq!(back, job(parts));
        assert_eq!(split(raw, &[2, 3]).unwrap(), vec![&b"hd"[..], &b"abc"[..]]);
    }

    #[test]
    fn lengths_that_do_not_add_up_are_refused() {
        assert!(split(b"abcd", &[2, 3]).is_err());
        assert!(split(b"abcd", &[2, 1]).is_err());
        assert!(split(b"abcd", &[u64::MAX]).is_err());
        let frame = encode(&ToWorker::Stop, &[]).unwrap();
        let err = decode::<ToWorker>(&frame[..frame.len() - 1]).unwrap_err();
        assert!(err.to_string().contains("offset"), "{err}");
        assert!(decode::<ToWorker>(&[1, 0]).is_err());
    }

    proptest! {
        #[test]
        fn malformed_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode::<ToWorker>(&bytes);
            let _ = decode::<Done>(&bytes);
        }

        #[test]
        fn any_cut_of_a_frame_is_refused(cut in 0usize..60) {
            let frame = encode(&job(vec![]), &[b"hd"]).unwrap();
            let cut = cut.min(frame.len() - 1);
            match decode::<ToWorker>(&frame[..cut]) {
                Err(_) => {}
                // A cut inside the raw bytes leaves the envelope whole: the split refuses it.
                Ok((_, raw)) => prop_assert!(split(raw, &[2]).is_err()),
            }
        }
    }
}
