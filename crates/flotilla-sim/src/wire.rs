//! The network boundary: the one place messages become bytes and bytes become messages.
//!
//! Every message between nodes is encoded here with bincode 2 in serde mode, under one
//! configuration: little-endian, variable-length integers, and a size limit of
//! [`MAX_MESSAGE_BYTES`]. The encoded length is what the bandwidth model charges for.
//!
//! bincode is pinned at `=2.0.1`: the crate is unmaintained (RUSTSEC-2025-0141, recorded in
//! `deny.toml`) and 3.x is an empty placeholder. No other module names it, so replacing it
//! touches this file only.
//!
//! A message a node sends several times in one event (the same model to every client of a
//! round) is encoded once: its node's host checks each send against the previous one's
//! bytes ([`encodes_to`]) and shares them ([`WireBytes`]) when they would be the same, so
//! the copies in flight hold one buffer.
//!
//! Decoding never panics on hostile input: it refuses inputs over the limit, refuses
//! messages that claim more memory than their length can justify (see [`decode_budget`]),
//! reports truncated and invalid bytes with the offset the decoder had reached, and refuses
//! trailing bytes, so one message is exactly one byte string.

use bincode::de::read::{BorrowReader, Reader};
use bincode::de::{BorrowDecode, Decoder, DecoderImpl};
use bincode::error::DecodeError;
use bincode::serde::BorrowCompat;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The largest message \[bytes\]: 256 MiB, both encoded and decoded.
///
/// A ResNet-20 update (0.27 M `f32` parameters) encodes to about 1.1 MB, so models a
/// hundred times larger still fit. A message being decoded gets a much smaller memory
/// budget than this, proportional to its length: see [`decode_budget`].
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// Most bytes of bincode's limit that one encoded byte can legitimately claim: 16.
///
/// bincode's limit does not count input bytes; it counts what decoding *claims*: the
/// in-memory size of each integer, float, bool and enum tag it decodes (`size_of`, not the
/// varint length), plus the length of each string and byte buffer *before* allocating it.
/// The worst honest ratio is a 128-bit integer, which claims 16 bytes from a one-byte
/// varint; a `u64`, a sequence length or an enum tag claims at most 8 from one byte, and
/// floats, chars, strings and bytes claim what they read.
pub const CLAIM_PER_BYTE: usize = 16;

/// The memory a message of `len` encoded bytes may claim while decoding \[bytes\]:
/// `min(CLAIM_PER_BYTE × (len + 1), MAX_MESSAGE_BYTES)`.
///
/// By [`CLAIM_PER_BYTE`] no well-formed message needs more; the `+ 1` is because bincode
/// claims a number before reading it, so an input cut inside a number is reported as
/// truncated rather than over budget (an input cut inside a string may be either: the
/// string's length then claims more than the short input can hold). A length prefix that
/// claims more is refused before
/// bincode allocates for it: a 10-byte message can make bincode allocate at most 176
/// bytes for a string, not the 256 MiB of the global limit. Sequences other than strings
/// and bytes are not claimed ahead by bincode's serde mode: serde pre-allocates at most
/// 1 MiB for each one, then must read every element from the input.
pub fn decode_budget(len: usize) -> usize {
    len.saturating_add(1)
        .saturating_mul(CLAIM_PER_BYTE)
        .min(MAX_MESSAGE_BYTES)
}

/// Why bytes are not a message, or a message could not become bytes.
///
/// None of these stops a run: an inbound message that fails to decode is dropped as
/// [`DropReason::Malformed`](crate::DropReason::Malformed); a message that fails to encode
/// fails the node that sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The message is larger than [`MAX_MESSAGE_BYTES`].
    #[error("message of {len} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        /// Its length \[bytes\].
        len: usize,
        /// The limit \[bytes\].
        limit: usize,
    },
    /// The message claims more memory than [`decode_budget`] allows for its length: a length
    /// prefix declares a string, buffer or value larger than the message could hold.
    #[error(
        "message of {len} bytes claims more than its {budget}-byte decoding budget \
         (a length prefix ending at byte {offset} is too large)"
    )]
    OverBudget {
        /// How far the decoder had read: the offending length prefix ends there.
        offset: usize,
        /// The budget \[bytes\]: [`decode_budget`] of `len`.
        budget: usize,
        /// Input length \[bytes\].
        len: usize,
    },
    /// The input ended inside a value.
    #[error("truncated message: a value at byte {offset} needs {needed} more bytes")]
    Truncated {
        /// Bytes missing for the value being read (the decoder does not look further).
        needed: usize,
        /// Where the value that did not fit starts.
        offset: usize,
    },
    /// The bytes do not form a message of the expected type.
    #[error("invalid message at byte {offset}: {reason}")]
    Invalid {
        /// How far the decoder had read when it gave up; the bad value ends there.
        offset: usize,
        /// What the decoder rejected.
        reason: String,
    },
    /// A whole message decoded from a prefix of the input; the rest is garbage.
    #[error("trailing bytes: the message ends at byte {consumed} of {len}")]
    TrailingBytes {
        /// Bytes the message used.
        consumed: usize,
        /// Input length.
        len: usize,
    },
    /// The message type refused to serialise (a serde error in its `Serialize` impl).
    #[error("could not encode message: {0}")]
    Encode(String),
}

/// The wire configuration: little-endian, varint integers, [`MAX_MESSAGE_BYTES`] limit.
fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_little_endian()
        .with_variable_int_encoding()
        .with_limit::<MAX_MESSAGE_BYTES>()
}

/// Encodes `msg` into its wire bytes (sized first: one allocation and one copy of the
/// weights, where growing the buffer copied them again at each doubling).
pub fn encode<M: Serialize>(msg: &M) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(encoded_len(msg)? as usize);
    encode_into(msg, &mut out)?;
    Ok(out)
}

/// Appends the wire bytes of `msg` to `out` and returns how many were appended; on error
/// `out` is left as it was. Lets a caller reuse one buffer for many messages.
pub fn encode_into<M: Serialize>(msg: &M, out: &mut Vec<u8>) -> Result<usize, WireError> {
    let start = out.len();
    let written = bincode::serde::encode_into_std_write(msg, out, config())
        .map_err(|e| WireError::Encode(e.to_string()))
        .and_then(within_limit);
    if written.is_err() {
        out.truncate(start);
    }
    written
}

/// A message's wire bytes as queued for delivery: shared, so that a message sent unchanged
/// to many nodes is held once however many copies are in flight. (`bytes::Bytes` takes an
/// encoded `Vec` over without copying, and allocates its share count only when a message is
/// actually shared: a million clients' small messages cost no more than before.)
pub type WireBytes = bytes::Bytes;

/// Whether `msg`'s wire bytes are exactly `bytes`, found by comparing as it serialises
/// (a byte string such as a model's weights in one comparison) and stopping at the first
/// difference, without allocating. False for a message that does not encode.
pub fn encodes_to<M: Serialize>(msg: &M, bytes: &[u8]) -> bool {
    let mut same = SameBytes { expected: bytes };
    bincode::serde::encode_into_writer(msg, &mut same, config()).is_ok() && same.expected.is_empty()
}

/// A bincode writer that consumes `expected` as long as what is written matches it, and
/// fails at the first byte that does not.
struct SameBytes<'a> {
    /// What is still to be written.
    expected: &'a [u8],
}

impl bincode::enc::write::Writer for SameBytes<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        match self.expected.split_at_checked(bytes.len()) {
            Some((head, rest)) if head == bytes => {
                self.expected = rest;
                Ok(())
            }
            _ => Err(bincode::error::EncodeError::Other("not the expected bytes")),
        }
    }
}

/// The length of `msg`'s wire bytes \[bytes\], computed without allocating them.
pub fn encoded_len<M: Serialize>(msg: &M) -> Result<u64, WireError> {
    let mut size = bincode::enc::write::SizeWriter::default();
    bincode::serde::encode_into_writer(msg, &mut size, config())
        .map_err(|e| WireError::Encode(e.to_string()))?;
    within_limit(size.bytes_written).map(|len| len as u64)
}

fn within_limit(len: usize) -> Result<usize, WireError> {
    if len > MAX_MESSAGE_BYTES {
        Err(WireError::TooLarge {
            len,
            limit: MAX_MESSAGE_BYTES,
        })
    } else {
        Ok(len)
    }
}

/// Decodes one whole message from `bytes`: never panics, never lets decoding claim more
/// than [`decode_budget`] of the input's length, and refuses bytes left over after the
/// message.
///
/// Byte strings (model weights) are handed to the message's types as slices of `bytes`
/// (bincode's borrowing decoder), so each is copied once, into its owner, and not first
/// into a buffer of its own.
pub fn decode<M: DeserializeOwned>(bytes: &[u8]) -> Result<M, WireError> {
    let len = within_limit(bytes.len())?;
    let budget = decode_budget(len);
    let mut decoder = DecoderImpl::new(OffsetReader { bytes, pos: 0 }, config(), ());
    // bincode's limit is a compile-time constant; spending the part of it this message may
    // not use leaves exactly `budget` for the decode.
    let decoded = decoder
        .claim_bytes_read(MAX_MESSAGE_BYTES - budget)
        .and_then(|()| BorrowCompat::<M>::borrow_decode(&mut decoder));
    let offset = decoder.reader().pos;
    match decoded {
        Ok(BorrowCompat(msg)) if offset == len => Ok(msg),
        Ok(_) => Err(WireError::TrailingBytes {
            consumed: offset,
            len,
        }),
        Err(DecodeError::UnexpectedEnd { additional }) => Err(WireError::Truncated {
            needed: additional,
            offset,
        }),
        Err(DecodeError::LimitExceeded) => Err(WireError::OverBudget {
            offset,
            budget,
            len,
        }),
        Err(e) => Err(WireError::Invalid {
            offset,
            reason: describe(e),
        }),
    }
}

/// A one-line reason for a decode error (bincode's own `Display` is its `Debug`).
fn describe(e: DecodeError) -> String {
    match e {
        DecodeError::UnexpectedVariant {
            type_name, found, ..
        } => format!("no variant {found} in {type_name}"),
        DecodeError::Utf8 { inner } => format!("string is not UTF-8: {inner}"),
        DecodeError::InvalidBooleanValue(b) => format!("{b} is not a bool (0 or 1)"),
        DecodeError::InvalidCharEncoding(b) => format!("{b:?} is not a UTF-8 char"),
        DecodeError::OutsideUsizeRange(n) => format!("length {n} does not fit in usize"),
        DecodeError::OtherString(reason) => reason,
        other => other.to_string(),
    }
}

/// A slice reader that remembers how far decoding got, for error offsets and for
/// detecting trailing bytes.
struct OffsetReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader for OffsetReader<'_> {
    #[inline]
    fn read(&mut self, out: &mut [u8]) -> Result<(), DecodeError> {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        let Some(src) = rest.get(..out.len()) else {
            return Err(DecodeError::UnexpectedEnd {
                additional: out.len() - rest.len(),
            });
        };
        out.copy_from_slice(src);
        self.pos += out.len();
        Ok(())
    }

    #[inline]
    fn peek_read(&mut self, n: usize) -> Option<&[u8]> {
        self.bytes.get(self.pos..)?.get(..n)
    }

    #[inline]
    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.bytes.len());
    }
}

impl<'a> BorrowReader<'a> for OffsetReader<'a> {
    #[inline]
    fn take_bytes(&mut self, length: usize) -> Result<&'a [u8], DecodeError> {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        let Some(taken) = rest.get(..length) else {
            return Err(DecodeError::UnexpectedEnd {
                additional: length - rest.len(),
            });
        };
        self.pos += length;
        Ok(taken)
    }
}
