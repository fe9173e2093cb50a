//! Target `wire`: bytes arriving at a node, decoded as the runtime decodes them.
//!
//! The message type is the one the simulation sends, `FlMessage<Work>`, through
//! `flotilla_sim::wire::decode` (what `flotilla_sim::host` calls on every inbound message).
//! Properties: decoding never panics; whatever decodes re-encodes, its `encoded_len` is the
//! length of that encoding, and the encoding decodes to the same value. "Same" is checked
//! on the bytes: encoding is injective (floats are written as raw bits), so equal
//! re-encodings mean equal values even where NaN defeats `==`.

use flotilla_fl::{
    Assignment, AssignmentId, Capabilities, Evaluation, FlMessage, KdMode, KdPlan, ModelRole,
    Payload, Reply, ServerWorkDone, Work,
};
use flotilla_nn::{ModelSpec, Shape, Weights};
use flotilla_sim::wire;
use rand::SeedableRng;
use std::collections::BTreeMap;

/// The message type on the wire.
pub type Message = FlMessage<Work>;

/// Decodes `data`; if it is a message, checks the round trip.
pub fn check(data: &[u8]) {
    let Ok(msg) = wire::decode::<Message>(data) else {
        return;
    };
    let bytes = wire::encode(&msg).expect("a decoded message encodes");
    assert_eq!(wire::encoded_len(&msg), Ok(bytes.len() as u64));
    let again: Message = match wire::decode(&bytes) {
        Ok(m) => m,
        Err(e) => panic!("the re-encoding of a decoded message does not decode: {e}"),
    };
    let bytes_again = wire::encode(&again).expect("a decoded message encodes");
    assert_eq!(bytes_again, bytes, "decode(encode(m)) differs from m");
}

/// Encoded messages of every kind, with real (initialised) weights of a small network.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let net = "mlp:6-4-3"
        .parse::<ModelSpec>()
        .and_then(|s| s.build(Shape::flat(6), 3))
        .expect("the seed network builds");
    let weights: Weights = net.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
    let models = vec![
        Payload::of(ModelRole::Auxiliary, &weights),
        Payload::of(ModelRole::Target, &weights),
    ];
    let stats = BTreeMap::from([("loss".to_string(), 0.75), ("grad_norm".to_string(), 2.5)]);
    let plan = KdPlan {
        mode: KdMode::TwoPhase,
        temperature: 2.0,
        weight: 0.5,
        teacher_bn: Default::default(),
        fresh_optimizer: false,
        probe_samples: 16,
    };
    let assign = |work| {
        FlMessage::Assign(Assignment {
            id: AssignmentId {
                round: 3,
                stage: 1,
                attempt: 0,
            },
            lr: 0.05,
            models: models.clone(),
            work,
        })
    };
    let messages: Vec<(&str, Message)> = vec![
        (
            "hello",
            FlMessage::Hello(Capabilities {
                trainable: vec![ModelRole::Auxiliary, ModelRole::Target],
                labeled: 120,
                unlabeled: 480,
            }),
        ),
        (
            "assign-train",
            assign(Work::Train {
                model: ModelRole::Target,
            }),
        ),
        (
            "assign-distill",
            assign(Work::Distill {
                student: ModelRole::Target,
                teacher: ModelRole::Auxiliary,
                plan,
            }),
        ),
        (
            "assign-train-then-distill",
            assign(Work::TrainThenDistill {
                trained: ModelRole::Auxiliary,
                student: ModelRole::Target,
                plan,
            }),
        ),
        (
            "reply",
            FlMessage::Reply(Reply {
                assignment: AssignmentId {
                    round: 3,
                    stage: 0,
                    attempt: 2,
                },
                models: models.clone(),
                samples: 120,
                stats: stats.clone(),
            }),
        ),
        (
            "server-work",
            FlMessage::ServerWork(ServerWorkDone {
                round: 3,
                stage: 2,
                models,
                stats,
            }),
        ),
        (
            "evaluated",
            FlMessage::Evaluated(Evaluation {
                round: 3,
                role: ModelRole::Target,
                virtual_time_s: 812.5,
                accuracy: 0.61,
                loss: 1.2,
            }),
        ),
    ];
    messages
        .into_iter()
        .map(|(name, m)| {
            let bytes = wire::encode(&m).expect("a seed message encodes");
            (name.to_string(), bytes)
        })
        .collect()
}
