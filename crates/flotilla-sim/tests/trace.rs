//! The trace: counters, hash, JSONL, and the monotone-time rule.

// Helpers outside #[test] functions unwrap too; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use flotilla_sim::{
    Counters, DropReason, JobId, MessageId, NodeId, Recorder, SimDuration, SimTime, TraceError,
    TraceEvent, TraceRecord, read_jsonl, wire,
};
use proptest::prelude::*;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

const SERVER: NodeId = NodeId(0);
const PHONE: NodeId = NodeId(1);

fn mid(src: NodeId, seq: u64) -> MessageId {
    MessageId { src, seq }
}

fn job(seq: u64) -> JobId {
    JobId { node: PHONE, seq }
}

fn send(id: MessageId, dst: NodeId, bytes: u64) -> TraceEvent {
    TraceEvent::Send {
        id,
        src: id.src,
        dst,
        bytes,
    }
}

fn deliver(id: MessageId, dst: NodeId, bytes: u64) -> TraceEvent {
    TraceEvent::Deliver {
        id,
        src: id.src,
        dst,
        bytes,
    }
}

fn drop(id: MessageId, dst: NodeId, reason: DropReason) -> TraceEvent {
    TraceEvent::Drop {
        id,
        src: id.src,
        dst,
        bytes: 1,
        reason,
    }
}

/// A small round: the server sends a task to the phone, the phone trains and answers,
/// the network loses some messages.
fn round() -> Vec<(SimTime, TraceEvent)> {
    vec![
        (SimTime(0), send(mid(SERVER, 0), PHONE, 100)),
        (SimTime(0), send(mid(SERVER, 1), NodeId(2), 100)),
        (SimTime(0), send(mid(SERVER, 2), NodeId(3), 100)),
        (SimTime(10), deliver(mid(SERVER, 0), PHONE, 100)),
        (
            SimTime(10),
            drop(mid(SERVER, 1), NodeId(2), DropReason::Loss),
        ),
        (
            SimTime(10),
            TraceEvent::JobStart {
                job: job(0),
                flops: 5_000,
                duration: SimDuration(40),
            },
        ),
        (SimTime(50), TraceEvent::JobDone { job: job(0) }),
        (SimTime(50), send(mid(PHONE, 0), SERVER, 30)),
        (
            SimTime(50),
            TraceEvent::JobLost {
                job: job(1),
                reason: DropReason::Dropout,
            },
        ),
        (
            SimTime(60),
            drop(mid(PHONE, 0), SERVER, DropReason::Custom("jammed".into())),
        ),
        (
            SimTime(60),
            TraceEvent::Timer {
                node: SERVER,
                tag: 3,
            },
        ),
        (
            SimTime(70),
            TraceEvent::Record {
                node: SERVER,
                label: "aggregate".into(),
                value: 0.5,
            },
        ),
        (
            SimTime(70),
            TraceEvent::NodeFailed {
                node: NodeId(3),
                reason: "panicked".into(),
            },
        ),
    ]
}

/// Node 1 is the only device.
fn recorder() -> Recorder {
    Recorder::new(vec![false, true])
}

fn record_all(mut r: Recorder, events: &[(SimTime, TraceEvent)]) -> Recorder {
    for (t, e) in events {
        r.record(*t, e.clone()).unwrap();
    }
    r
}

#[test]
fn counters_count_every_kind_and_conserve_messages() {
    let c = record_all(recorder(), &round()).counters().clone();
    assert_eq!((c.sent, c.delivered, c.dropped_total()), (4, 1, 2));
    assert_eq!(c.in_flight(), 1);
    assert_eq!(c.sent, c.delivered + c.dropped_total() + c.in_flight());
    assert_eq!(c.dropped[&DropReason::Loss], 1);
    assert_eq!(c.dropped[&DropReason::Custom("jammed".into())], 1);
    // Up: the phone's 30-byte answer. Down: the 100-byte task to the phone; nodes 2 and 3
    // are past the device table, so not devices.
    assert_eq!((c.bytes_up, c.bytes_down), (30, 100));
    assert_eq!((c.jobs_started, c.jobs_done), (1, 1));
    assert_eq!(c.jobs_lost[&DropReason::Dropout], 1);
    assert_eq!(c.node_failures, 1);
}

#[test]
#[should_panic(expected = "conservation")]
fn in_flight_refuses_broken_conservation() {
    let c = Counters {
        sent: 1,
        delivered: 2,
        ..Counters::default()
    };
    c.in_flight();
}

#[test]
fn counters_serialise_drop_reasons_as_names() {
    let c = record_all(recorder(), &round()).counters().clone();
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(json["dropped"]["loss"], 1);
    assert_eq!(json["dropped"]["custom:jammed"], 1);
    assert_eq!(json["jobs_lost"]["dropout"], 1);
}

/// The hash is exactly the documented function of the records, so anyone can recompute it.
#[test]
fn hash_is_blake3_over_length_prefixed_wire_records() {
    let mut expected = blake3::Hasher::new();
    for (t, e) in round() {
        let bytes = wire::encode(&(t, &e)).unwrap();
        expected.update(&(bytes.len() as u64).to_le_bytes());
        expected.update(&bytes);
    }
    let hash = record_all(recorder(), &round()).hash();
    assert_eq!(hash.0, *expected.finalize().as_bytes());
    assert_eq!(hash.to_string().len(), 64);
    assert_eq!(
        serde_json::to_value(hash).unwrap(),
        serde_json::Value::String(hash.to_string())
    );
}

#[test]
fn hash_mid_run_does_not_end_the_stream() {
    let events = round();
    let (head, tail) = events.split_at(5);
    let mut r = record_all(recorder(), head);
    assert_eq!(r.hash(), record_all(recorder(), head).hash());
    for (t, e) in tail {
        r.record(*t, e.clone()).unwrap();
    }
    assert_eq!(r.hash(), record_all(recorder(), &events).hash());
}

#[test]
fn any_change_changes_the_hash() {
    let events = round();
    let base = record_all(recorder(), &events).hash();
    let mut swapped = events.clone();
    swapped.swap(1, 2); // two sends at the same time, in the other order
    let mut later = events.clone();
    later[12].0 = SimTime(71);
    let mut value = events.clone();
    value[11].1 = TraceEvent::Record {
        node: SERVER,
        label: "aggregate".into(),
        value: 0.5000000000000001,
    };
    let mut reason = events.clone();
    reason[4].1 = drop(mid(SERVER, 1), NodeId(2), DropReason::Outage);
    for (what, changed) in [
        ("order", swapped),
        ("time", later),
        ("value", value),
        ("reason", reason),
    ] {
        assert_ne!(record_all(recorder(), &changed).hash(), base, "{what}");
    }
    // Counters are not hashed: the device table changes them, never the hash.
    assert_eq!(record_all(Recorder::new(vec![]), &events).hash(), base);
}

#[test]
fn time_going_back_is_refused_and_changes_nothing() {
    let mut r = recorder().with_memory();
    r.record(SimTime(5), send(mid(SERVER, 0), PHONE, 10))
        .unwrap();
    let (hash, counters) = (r.hash(), r.counters().clone());
    let err = r
        .record(SimTime(4), send(mid(SERVER, 1), PHONE, 10))
        .unwrap_err();
    assert!(matches!(
        err,
        TraceError::TimeWentBack {
            previous: SimTime(5),
            now: SimTime(4)
        }
    ));
    assert_eq!((r.hash(), r.counters()), (hash, &counters));
    assert_eq!(r.records().len(), 1);
    // The same instant again is fine.
    r.record(SimTime(5), send(mid(SERVER, 1), PHONE, 10))
        .unwrap();
}

/// A `Write` whose bytes the test can read after the recorder took it.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

fn to_jsonl(events: &[(SimTime, TraceEvent)]) -> String {
    let out = Shared::default();
    record_all(recorder().with_jsonl(Box::new(out.clone())), events)
        .finish()
        .unwrap();
    out.text()
}

#[test]
fn jsonl_lines_are_json_objects_with_virtual_time_and_event_name() {
    let text = to_jsonl(&round());
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), round().len());
    for (line, (t, _)) in lines.iter().zip(round()) {
        assert_eq!(line["t_us"], t.0);
    }
    assert_eq!(
        lines[3],
        serde_json::json!({"t_us": 10, "event": "deliver", "id": {"src": 0, "seq": 0},
                           "src": 0, "dst": 1, "bytes": 100})
    );
    assert_eq!(lines[5]["event"], "job_start");
    assert_eq!(lines[5]["duration"], 40);
    assert_eq!(lines[9]["reason"], serde_json::json!({"custom": "jammed"}));
}

#[test]
fn jsonl_round_trips_through_read_jsonl() {
    let text = to_jsonl(&round());
    let expected: Vec<TraceRecord> = round()
        .into_iter()
        .map(|(time, event)| TraceRecord { time, event })
        .collect();
    assert_eq!(read_jsonl(text.as_bytes()).unwrap(), expected);
}

/// The lines shown in `TraceRecord`'s docs are real records.
#[test]
fn documented_jsonl_examples_parse() {
    let doc = r#"
{"t_us":0,"event":"send","id":{"src":1,"seq":0},"src":1,"dst":0,"bytes":1103}
{"t_us":1200,"event":"deliver","id":{"src":1,"seq":0},"src":1,"dst":0,"bytes":1103}
{"t_us":1500,"event":"drop","id":{"src":2,"seq":0},"src":2,"dst":0,"bytes":1103,"reason":"loss"}
{"t_us":2000,"event":"job_start","job":{"node":1,"seq":0},"flops":5000000,"duration":350000}
{"t_us":9000,"event":"record","node":0,"label":"test_accuracy","value":0.91}
"#;
    let records = read_jsonl(doc.as_bytes()).unwrap();
    assert_eq!(records.len(), 5);
    assert_eq!(
        to_jsonl(
            &records
                .iter()
                .map(|r| (r.time, r.event.clone()))
                .collect::<Vec<_>>()
        ),
        doc.trim_start()
    );
}

#[test]
fn non_finite_record_values_survive_jsonl() {
    let values = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY];
    let events: Vec<_> = values
        .iter()
        .map(|&value| {
            let label = "loss".to_string();
            (
                SimTime(1),
                TraceEvent::Record {
                    node: SERVER,
                    label,
                    value,
                },
            )
        })
        .collect();
    let text = to_jsonl(&events);
    assert!(text.contains(r#""value":"NaN""#), "{text}");
    let back: Vec<f64> = read_jsonl(text.as_bytes())
        .unwrap()
        .into_iter()
        .map(|r| match r.event {
            TraceEvent::Record { value, .. } => value,
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(back[0].is_nan());
    assert_eq!(&back[1..], &values[1..]);
}

#[test]
fn malformed_jsonl_names_the_line() {
    let good = r#"{"t_us":1,"event":"timer","node":0,"tag":2}"#;
    let text = format!("{good}\n\n{good}\n{{\"t_us\":3,\"event\":\"teleport\"}}\n");
    let err = read_jsonl(text.as_bytes()).unwrap_err();
    assert!(
        matches!(err, TraceError::Malformed { line: 4, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("line 4"), "{err}");
}

/// A writer that always fails.
struct Broken;

impl Write for Broken {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::other("disk full"))
    }

    fn flush(&mut self) -> io::Result<()> {
        Err(io::Error::other("disk full"))
    }
}

#[test]
fn write_errors_are_kept_for_finish_and_do_not_stop_recording() {
    let events = round();
    let r = record_all(recorder().with_jsonl(Box::new(Broken)), &events);
    assert_eq!(r.counters().sent, 4);
    assert_eq!(r.finish().unwrap_err().to_string(), "disk full");
}

#[test]
fn records_are_kept_only_when_asked() {
    let plain = record_all(recorder(), &round());
    assert!(plain.records().is_empty());
    let kept = record_all(recorder().with_memory(), &round());
    assert_eq!(kept.records().len(), round().len());
    let summary = kept.finish().unwrap();
    assert_eq!(summary.records.len(), round().len());
    assert_eq!(summary.hash, plain.hash());
    assert_eq!(summary.counters, *plain.counters());
}

fn event() -> impl Strategy<Value = TraceEvent> {
    let node = || (0u32..4).prop_map(NodeId);
    let id = || (node(), 0u64..4).prop_map(|(src, seq)| MessageId { src, seq });
    let reason = || {
        prop_oneof![
            Just(DropReason::Loss),
            Just(DropReason::Partition),
            "[a-z]{0,6}".prop_map(DropReason::Custom),
        ]
    };
    let job = || (node(), 0u64..4).prop_map(|(node, seq)| JobId { node, seq });
    // Up to a terabyte per message, so byte counters cannot overflow.
    let bytes = || 0u64..1 << 40;
    prop_oneof![
        (id(), node(), bytes()).prop_map(|(id, dst, bytes)| send(id, dst, bytes)),
        (id(), node(), bytes()).prop_map(|(id, dst, bytes)| deliver(id, dst, bytes)),
        (id(), node(), reason()).prop_map(|(id, dst, r)| drop(id, dst, r)),
        (job(), any::<u64>(), any::<u64>()).prop_map(|(job, flops, d)| TraceEvent::JobStart {
            job,
            flops,
            duration: SimDuration(d)
        }),
        job().prop_map(|job| TraceEvent::JobDone { job }),
        (job(), reason()).prop_map(|(job, reason)| TraceEvent::JobLost { job, reason }),
        (node(), any::<u64>()).prop_map(|(node, tag)| TraceEvent::Timer { node, tag }),
        // Any finite value, at full precision: JSONL must give back the same bits.
        (
            node(),
            ".{0,12}",
            any::<f64>().prop_filter("finite", |v| v.is_finite())
        )
            .prop_map(|(node, label, value)| TraceEvent::Record { node, label, value }),
        (node(), ".{0,12}").prop_map(|(node, reason)| TraceEvent::NodeFailed { node, reason }),
    ]
}

/// Events at non-decreasing times: each step adds 0..3 µs.
fn trace() -> impl Strategy<Value = Vec<(SimTime, TraceEvent)>> {
    proptest::collection::vec((0u64..3, event()), 1..40).prop_map(|steps| {
        let mut t = 0;
        steps
            .into_iter()
            .map(|(dt, e)| {
                t += dt;
                (SimTime(t), e)
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn same_records_same_hash_and_jsonl_reads_back(events in trace()) {
        let a = record_all(recorder(), &events).hash();
        prop_assert_eq!(a, record_all(recorder(), &events).hash());
        let back = read_jsonl(to_jsonl(&events).as_bytes()).unwrap();
        let back: Vec<_> = back.into_iter().map(|r| (r.time, r.event)).collect();
        prop_assert_eq!(&back, &events);
    }

    #[test]
    fn swapping_two_different_events_changes_the_hash(
        events in trace(), i in any::<prop::sample::Index>(), j in any::<prop::sample::Index>()
    ) {
        let (i, j) = (i.index(events.len()), j.index(events.len()));
        prop_assume!(events[i].1 != events[j].1);
        let mut swapped = events.clone();
        let (ei, ej) = (events[i].1.clone(), events[j].1.clone());
        swapped[i].1 = ej;
        swapped[j].1 = ei;
        prop_assert_ne!(record_all(recorder(), &swapped).hash(), record_all(recorder(), &events).hash());
    }

    /// Whatever times the runtime offers, what the recorder accepts never goes back.
    #[test]
    fn recorded_virtual_time_never_decreases(times in proptest::collection::vec(0u64..20, 1..40)) {
        let mut r = recorder().with_memory();
        let mut latest = 0;
        for t in times {
            let accepted = r.record(SimTime(t), TraceEvent::Timer { node: SERVER, tag: t }).is_ok();
            prop_assert_eq!(accepted, t >= latest);
            latest = latest.max(t);
        }
        prop_assert!(r.records().windows(2).all(|w| w[0].time <= w[1].time));
    }
}
