//! The network boundary: the one place messages become bytes and bytes become messages.
//!
//! Every message between nodes is encoded here with bincode 2 (serde mode, standard
//! configuration: little-endian, variable-length integers) and a size limit. The encoded
//! length is what the bandwidth model charges for. bincode is pinned at `=2.0.1`: the crate
//! is unmaintained (RUSTSEC-2025-0141, recorded in `deny.toml`) and 3.x is an empty
//! placeholder, so no other module names it and a replacement touches this file only.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The largest message accepted [bytes]: 256 MiB. A ResNet-20 update is about 1.1 MB; the
/// limit leaves room for much larger models while refusing a garbage length prefix that
/// would otherwise ask for gigabytes.
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// Why bytes are not a message, or a message could not become bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The input is larger than [`MAX_MESSAGE_BYTES`].
    #[error("message of {len} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        /// Input length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The input ended before the message did.
    #[error("truncated message: {needed} more bytes needed after {len} bytes")]
    Truncated {
        /// Bytes missing, as far as the decoder could tell.
        needed: usize,
        /// Input length.
        len: usize,
    },
    /// The bytes do not form a message of the expected type.
    #[error("invalid message bytes ({len} bytes): {reason}")]
    Invalid {
        /// Input length.
        len: usize,
        /// What the decoder rejected.
        reason: String,
    },
    /// A message decoded from a prefix of the input; the rest is garbage.
    #[error("{trailing} trailing bytes after a {consumed}-byte message")]
    TrailingBytes {
        /// Bytes the message used.
        consumed: usize,
        /// Bytes left over.
        trailing: usize,
    },
    /// The message could not be encoded (a serializer error in the message type).
    #[error("could not encode message: {0}")]
    Encode(String),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_MESSAGE_BYTES>()
}

/// Encodes `msg` into its wire bytes.
pub fn encode<M: Serialize>(msg: &M) -> Result<Vec<u8>, WireError> {
    bincode::serde::encode_to_vec(msg, config()).map_err(|e| WireError::Encode(e.to_string()))
}

/// Encodes `msg` straight into `out` (no intermediate buffer); returns the bytes written.
pub fn encode_into<M: Serialize, W: std::io::Write>(
    msg: &M,
    out: &mut W,
) -> Result<usize, WireError> {
    bincode::serde::encode_into_std_write(msg, out, config())
        .map_err(|e| WireError::Encode(e.to_string()))
}

/// Decodes a whole message from `bytes`: never panics, never allocates beyond the limit.
pub fn decode<M: DeserializeOwned>(bytes: &[u8]) -> Result<M, WireError> {
    let len = bytes.len();
    if len > MAX_MESSAGE_BYTES {
        return Err(WireError::TooLarge {
            len,
            limit: MAX_MESSAGE_BYTES,
        });
    }
    match bincode::serde::decode_from_slice(bytes, config()) {
        Ok((msg, consumed)) if consumed == len => Ok(msg),
        Ok((_, consumed)) => Err(WireError::TrailingBytes {
            consumed,
            trailing: len - consumed,
        }),
        Err(bincode::error::DecodeError::UnexpectedEnd { additional }) => {
            Err(WireError::Truncated {
                needed: additional,
                len,
            })
        }
        Err(e) => Err(WireError::Invalid {
            len,
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Sample {
        Params {
            round: u32,
            values: Vec<f32>,
            tag: Option<String>,
        },
        Nested(Inner, Vec<Inner>),
        Empty,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Inner {
        id: u64,
        weight: f64,
        flag: bool,
    }

    fn inner() -> impl Strategy<Value = Inner> {
        (any::<u64>(), -1e6f64..1e6, any::<bool>()).prop_map(|(id, weight, flag)| Inner {
            id,
            weight,
            flag,
        })
    }

    fn sample() -> impl Strategy<Value = Sample> {
        prop_oneof![
            (
                any::<u32>(),
                proptest::collection::vec(-1e3f32..1e3, 0..64),
                proptest::option::of(".{0,12}")
            )
                .prop_map(|(round, values, tag)| Sample::Params { round, values, tag }),
            (inner(), proptest::collection::vec(inner(), 0..4))
                .prop_map(|(a, b)| Sample::Nested(a, b)),
            Just(Sample::Empty),
        ]
    }

    proptest! {
        #[test]
        fn round_trips(msg in sample()) {
            let bytes = encode(&msg).unwrap();
            prop_assert_eq!(decode::<Sample>(&bytes).unwrap(), msg);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode::<Sample>(&bytes);
        }

        #[test]
        fn every_truncation_is_an_error(msg in sample()) {
            let bytes = encode(&msg).unwrap();
            for cut in 0..bytes.len() {
                prop_assert!(decode::<Sample>(&bytes[..cut]).is_err(), "prefix of {} bytes decoded", cut);
            }
        }
    }

    #[test]
    fn trailing_garbage_is_rejected() {
        let mut bytes = encode(&Sample::Empty).unwrap();
        bytes.push(0);
        assert!(matches!(
            decode::<Sample>(&bytes),
            Err(WireError::TrailingBytes { trailing: 1, .. })
        ));
    }

    #[test]
    fn a_huge_claimed_length_is_refused_without_allocating_it() {
        // Variant 0 (Params), round 0, then a vec length of u64::MAX (varint marker 253).
        let mut bytes = vec![0u8, 0u8, 253];
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode::<Sample>(&bytes).is_err());
    }

    #[test]
    fn a_megabyte_of_floats_round_trips_bit_exactly() {
        let mut values: Vec<f32> = (0..262_144).map(|i| (i as f32).sin() * 1e3).collect();
        values[0] = -0.0;
        values[1] = f32::from_bits(0x7fc0_1234); // a NaN with a payload
        values[2] = f32::INFINITY;
        let msg = Sample::Params {
            round: 7,
            values: values.clone(),
            tag: None,
        };
        let bytes = encode(&msg).unwrap();
        assert!(bytes.len() >= 4 * values.len());
        let Sample::Params { values: back, .. } = decode::<Sample>(&bytes).unwrap() else {
            panic!("wrong variant")
        };
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(&values));
    }
}
