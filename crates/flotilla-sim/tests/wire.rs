//! The wire format: round trips, size, and hostile input.

// Helpers outside #[test] functions unwrap too; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use flotilla_sim::wire::{self, MAX_MESSAGE_BYTES, WireError};
use flotilla_sim::{DropReason, Envelope, MessageId, NodeId, SimTime};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

/// A message enum shaped like real protocol traffic: large float payloads, nested structs,
/// strings, options, integers, nested enums and crate types.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Msg {
    Task {
        round: u64,
        params: Vec<f32>,
        deadline: Option<SimTime>,
    },
    Update(Update),
    Report {
        from: NodeId,
        label: String,
        metrics: Vec<(String, f64)>,
    },
    Lost(Envelope, DropReason),
    Ping,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Update {
    id: MessageId,
    samples: u32,
    staleness: i64,
    delta: Vec<f32>,
    kind: Kind,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Kind {
    Full,
    Sparse { indices: Vec<u32> },
    Distilled(Option<Box<Kind>>),
}

fn node() -> impl Strategy<Value = NodeId> {
    any::<u32>().prop_map(NodeId)
}

fn message_id() -> impl Strategy<Value = MessageId> {
    (node(), any::<u64>()).prop_map(|(src, seq)| MessageId { src, seq })
}

fn floats() -> impl Strategy<Value = Vec<f32>> {
    proptest::collection::vec(any::<f32>(), 0..64)
}

fn kind() -> impl Strategy<Value = Kind> {
    let leaf = prop_oneof![
        Just(Kind::Full),
        proptest::collection::vec(any::<u32>(), 0..8).prop_map(|indices| Kind::Sparse { indices }),
    ];
    leaf.prop_recursive(3, 8, 1, |inner| {
        proptest::option::of(inner).prop_map(|k| Kind::Distilled(k.map(Box::new)))
    })
}

fn reason() -> impl Strategy<Value = DropReason> {
    prop_oneof![
        Just(DropReason::Loss),
        Just(DropReason::Offline),
        Just(DropReason::Malformed),
        ".{0,16}".prop_map(DropReason::Custom),
    ]
}

fn msg() -> impl Strategy<Value = Msg> {
    let update = (message_id(), any::<u32>(), any::<i64>(), floats(), kind()).prop_map(
        |(id, samples, staleness, delta, kind)| Update {
            id,
            samples,
            staleness,
            delta,
            kind,
        },
    );
    let envelope = (message_id(), node(), node(), any::<u64>(), any::<u64>()).prop_map(
        |(id, src, dst, sent_at, bytes)| Envelope {
            id,
            src,
            dst,
            sent_at: SimTime(sent_at),
            bytes,
        },
    );
    prop_oneof![
        (
            any::<u64>(),
            floats(),
            proptest::option::of(any::<u64>().prop_map(SimTime))
        )
            .prop_map(|(round, params, deadline)| Msg::Task {
                round,
                params,
                deadline
            }),
        update.prop_map(Msg::Update),
        (
            node(),
            ".{0,24}",
            proptest::collection::vec((".{0,8}", any::<f64>()), 0..4)
        )
            .prop_map(|(from, label, metrics)| Msg::Report {
                from,
                label,
                metrics
            }),
        (envelope, reason()).prop_map(|(e, r)| Msg::Lost(e, r)),
        Just(Msg::Ping),
    ]
}

proptest! {
    /// Decoding gives back the message bit for bit: re-encoding it reproduces the bytes,
    /// and encoding is injective (floats are written as their raw bits), so NaN payloads
    /// and signed zeros survive even where `==` could not tell.
    #[test]
    fn every_message_round_trips(m in msg()) {
        let bytes = wire::encode(&m).unwrap();
        let back: Msg = wire::decode(&bytes).unwrap();
        prop_assert_eq!(wire::encode(&back).unwrap(), bytes);
    }

    #[test]
    fn encoded_len_is_the_length_of_the_encoding(m in msg()) {
        prop_assert_eq!(wire::encoded_len(&m).unwrap(), wire::encode(&m).unwrap().len() as u64);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        match wire::decode::<Msg>(&bytes) {
            Ok(m) => prop_assert_eq!(wire::decode::<Msg>(&wire::encode(&m).unwrap()).is_ok(), true),
            Err(WireError::Truncated { offset, .. } | WireError::Invalid { offset, .. }) => {
                prop_assert!(offset <= bytes.len());
            }
            Err(WireError::TrailingBytes { consumed, len }) => {
                prop_assert!(consumed < len && len == bytes.len());
            }
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }

    /// Corruption inside a real message reaches deeper decoder paths than random bytes.
    #[test]
    fn corrupted_messages_never_panic(
        m in msg(), at in any::<prop::sample::Index>(), byte in any::<u8>()
    ) {
        let mut bytes = wire::encode(&m).unwrap();
        let at = at.index(bytes.len());
        bytes[at] = byte;
        let _ = wire::decode::<Msg>(&bytes);
    }

    /// No proper prefix of a message is a message: the decoder runs out of input.
    #[test]
    fn every_truncation_is_reported_as_truncated(m in msg()) {
        let bytes = wire::encode(&m).unwrap();
        for cut in 0..bytes.len() {
            match wire::decode::<Msg>(&bytes[..cut]) {
                Err(WireError::Truncated { needed, offset }) => {
                    prop_assert!(needed > 0 && offset <= cut);
                }
                other => prop_assert!(false, "prefix of {} bytes gave {:?}", cut, other),
            }
        }
    }
}

#[test]
fn trailing_bytes_are_refused() {
    let mut bytes = wire::encode(&Msg::Ping).unwrap();
    let len = bytes.len();
    bytes.push(0);
    assert_eq!(
        wire::decode::<Msg>(&bytes).unwrap_err(),
        WireError::TrailingBytes {
            consumed: len,
            len: len + 1
        }
    );
}

#[test]
fn invalid_values_name_their_offset() {
    // Variant index 9 of `Msg` does not exist; it is the first byte.
    let err = wire::decode::<Msg>(&[9]).unwrap_err();
    assert!(
        matches!(&err, WireError::Invalid { offset: 1, reason } if reason.contains('9')),
        "{err}"
    );
    // A bool byte that is neither 0 nor 1, after one byte of prefix.
    let err = wire::decode::<(u8, bool)>(&[7, 2]).unwrap_err();
    assert!(matches!(err, WireError::Invalid { offset: 2, .. }), "{err}");
    // A string that is not UTF-8: length 2, then two invalid bytes.
    let err = wire::decode::<String>(&[2, 0xff, 0xfe]).unwrap_err();
    assert!(matches!(err, WireError::Invalid { .. }), "{err}");
}

#[test]
fn a_huge_claimed_length_is_refused_without_allocating_it() {
    let huge = {
        // varint marker 253: a u64 follows, little-endian.
        let mut b = vec![253];
        b.extend_from_slice(&(1u64 << 40).to_le_bytes());
        b
    };
    // A terabyte string: the limit refuses the claim before any allocation.
    let err = wire::decode::<String>(&huge).unwrap_err();
    assert!(
        matches!(&err, WireError::Invalid { offset: 9, reason } if reason.contains("limit")),
        "{err}"
    );
    // A terabyte of floats: serde pre-allocates at most 1 MiB, then the input runs out.
    let err = wire::decode::<Vec<f32>>(&huge).unwrap_err();
    assert!(
        matches!(err, WireError::Truncated { offset: 9, .. }),
        "{err}"
    );
}

#[test]
fn inputs_over_the_limit_are_refused_unread() {
    let bytes = vec![0u8; MAX_MESSAGE_BYTES + 1];
    assert_eq!(
        wire::decode::<Vec<u8>>(&bytes).unwrap_err(),
        WireError::TooLarge {
            len: MAX_MESSAGE_BYTES + 1,
            limit: MAX_MESSAGE_BYTES
        }
    );
}

#[test]
fn a_megabyte_of_floats_round_trips_bit_exactly() {
    let mut params: Vec<f32> = (0..262_144)
        .map(|i| (i as f32 * 0.001).sin() * 1e3)
        .collect();
    let specials = [
        -0.0,
        0.0,
        f32::from_bits(0x7fc0_1234), // quiet NaN with a payload
        f32::from_bits(0xff80_0001), // signalling NaN, sign bit set
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MIN_POSITIVE / 2.0, // subnormal
        f32::MAX,
    ];
    params[..specials.len()].copy_from_slice(&specials);
    let m = Msg::Task {
        round: 7,
        params,
        deadline: None,
    };
    let bytes = wire::encode(&m).unwrap();
    assert!(bytes.len() >= 4 * 262_144);
    let (Msg::Task { params: sent, .. }, Msg::Task { params: back, .. }) =
        (&m, wire::decode::<Msg>(&bytes).unwrap())
    else {
        panic!("wrong variant");
    };
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&back), bits(sent));
}
