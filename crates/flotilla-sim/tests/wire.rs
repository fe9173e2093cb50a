//! The wire format: round trips, size, and hostile input.

// Helpers outside #[test] functions unwrap too; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use flotilla_sim::wire::{self, CLAIM_PER_BYTE, MAX_MESSAGE_BYTES, WireError};
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
            Err(WireError::OverBudget { offset, budget, len }) => {
                prop_assert!(offset <= len && len == bytes.len());
                prop_assert_eq!(budget, wire::decode_budget(len));
            }
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }

    /// A message "encodes to" given bytes exactly when its encoding is those bytes: equal
    /// messages share, and any difference (one byte, a missing or extra tail) does not.
    #[test]
    fn encodes_to_is_equality_of_the_encodings(
        first in msg(), second in msg(), same in any::<bool>(), cut in any::<prop::sample::Index>()
    ) {
        let second = if same { first.clone() } else { second };
        let bytes = wire::encode(&first).unwrap();
        let equal = wire::encode(&second).unwrap() == bytes;
        prop_assert_eq!(wire::encodes_to(&second, &bytes), equal);
        // A strict prefix, or the bytes with one more at the end, is never a match.
        let cut = cut.index(bytes.len());
        prop_assert!(!wire::encodes_to(&first, &bytes[..cut]));
        let mut longer = bytes.clone();
        longer.push(0);
        prop_assert!(!wire::encodes_to(&first, &longer));
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

    /// No proper prefix of a message is a message: the decoder runs out of input, or
    /// finds a string's length prefix claiming more than the short input could hold.
    #[test]
    fn every_truncation_is_reported_as_truncated(m in msg()) {
        let bytes = wire::encode(&m).unwrap();
        for cut in 0..bytes.len() {
            match wire::decode::<Msg>(&bytes[..cut]) {
                Err(WireError::Truncated { needed, offset }) => {
                    prop_assert!(needed > 0 && offset <= cut);
                }
                Err(WireError::OverBudget { offset, len, .. }) => {
                    prop_assert!(offset <= cut && len == cut);
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

/// A 9-byte length prefix (varint marker 253, then a little-endian `u64`) claiming `n`.
fn length_prefix(n: u64) -> Vec<u8> {
    let mut b = vec![253];
    b.extend_from_slice(&n.to_le_bytes());
    b
}

/// Regression: the budget used to be the global 256 MiB limit whatever the input's
/// length, so ten bytes could make bincode allocate a 200 MiB string before finding the
/// input empty.
#[test]
fn a_short_message_declaring_a_huge_string_is_refused_before_allocating() {
    let mut bytes = length_prefix(200 << 20);
    bytes.push(b'x');
    let mut result = None;
    let alloc = allocation_counter::measure(|| result = Some(wire::decode::<String>(&bytes)));
    assert_eq!(
        result.unwrap().unwrap_err(),
        WireError::OverBudget {
            offset: 9,
            budget: 11 * CLAIM_PER_BYTE,
            len: 10
        }
    );
    assert!(alloc.bytes_max < 4096, "decoding allocated {alloc:?}");

    // A terabyte string is refused the same way.
    let err = wire::decode::<String>(&length_prefix(1 << 40)).unwrap_err();
    assert!(
        matches!(err, WireError::OverBudget { offset: 9, .. }),
        "{err}"
    );
}

/// Sequences are not claimed ahead by bincode's serde mode: serde pre-allocates at most
/// 1 MiB for one, and the input then runs out.
#[test]
fn a_short_message_declaring_a_huge_vec_allocates_at_most_a_mebibyte() {
    let bytes = length_prefix(1 << 40);
    let mut result = None;
    let alloc = allocation_counter::measure(|| result = Some(wire::decode::<Vec<f32>>(&bytes)));
    let err = result.unwrap().unwrap_err();
    assert!(
        matches!(err, WireError::Truncated { offset: 9, .. }),
        "{err}"
    );
    assert!(alloc.bytes_max <= 1 << 20, "decoding allocated {alloc:?}");
}

/// The budget is exactly `CLAIM_PER_BYTE` × (length + 1): the prefix itself claims 8
/// bytes (a `usize`), so a 9-byte message may declare a string of `16 × 10 − 8` bytes, and
/// not one more. (The first is then truncated: the bytes are not there.)
#[test]
fn the_budget_is_claim_per_byte_times_the_length_plus_one() {
    let budget = wire::decode_budget(9);
    assert_eq!(budget, 10 * CLAIM_PER_BYTE);
    let fits = length_prefix(budget as u64 - 8);
    let err = wire::decode::<String>(&fits).unwrap_err();
    assert!(
        matches!(err, WireError::Truncated { offset: 9, .. }),
        "{err}"
    );
    let over = length_prefix(budget as u64 - 7);
    let err = wire::decode::<String>(&over).unwrap_err();
    assert!(
        matches!(err, WireError::OverBudget { offset: 9, .. }),
        "{err}"
    );
    assert_eq!(wire::decode_budget(usize::MAX), MAX_MESSAGE_BYTES);
    // The empty input runs out before anything is over budget.
    let err = wire::decode::<u32>(&[]).unwrap_err();
    assert!(
        matches!(err, WireError::Truncated { offset: 0, .. }),
        "{err}"
    );
}

/// The worst honest claim ratios still decode: each one-byte `0u128` claims 16 bytes, each
/// `0u64` 8, and each empty string 8 for its length.
#[test]
fn messages_of_the_densest_claims_fit_their_budget() {
    let wide = vec![0u128; 1000];
    assert_eq!(
        wire::decode::<Vec<u128>>(&wire::encode(&wide).unwrap()).unwrap(),
        wide
    );
    let narrow = vec![0u64; 1000];
    assert_eq!(
        wire::decode::<Vec<u64>>(&wire::encode(&narrow).unwrap()).unwrap(),
        narrow
    );
    let empties = vec![String::new(); 1000];
    assert_eq!(
        wire::decode::<Vec<String>>(&wire::encode(&empties).unwrap()).unwrap(),
        empties
    );
    assert_eq!(
        wire::decode::<u128>(&wire::encode(&0u128).unwrap()).unwrap(),
        0
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

/// Signed zeros compare equal as floats but encode apart, so they are not the same bytes.
#[test]
fn a_signed_zero_is_not_the_same_message() {
    let task = |zero: f32| Msg::Task {
        round: 1,
        params: vec![1.0, zero, 2.0],
        deadline: None,
    };
    let positive = wire::encode(&task(0.0)).unwrap();
    assert!(wire::encodes_to(&task(0.0), &positive));
    assert!(!wire::encodes_to(&task(-0.0), &positive));
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
