//! Fleets from config: groups with counts or fractions, devices and links by preset or in
//! full, speed distributions, the server's device and link, and every mistake named by
//! its key and value.

#![allow(clippy::unwrap_used)]

use flotilla_experiment::{ConfigError, ConfigSource, ExperimentConfig, ExperimentError, Prepared};
use std::path::Path;

/// A tiny synthetic experiment around `fleet` (the `[fleet]` section and its groups).
fn config_text(fleet: &str) -> String {
    format!(
        r#"name = "fleet-test"
methods = ["ondevice_kd", "weak_only"]
rounds = 2
[data]
dataset = "synthetic"
alpha = 1.0
[synthetic]
train_samples = 2400
test_samples = 300
[models]
target = "mlp:32-256-256-10"
auxiliary = "mlp:32-64-10"
[training]
clients_per_round = 4
local_steps = 4
stage_timeout_s = 30.0
[kd]
probe_samples = 8
{fleet}
"#
    )
}

/// Three groups, as in a straggler study: edge boxes on Wi-Fi, mid phones with log-normal
/// speeds on 4G, low phones with little memory on 3G.
const THREE_GROUPS: &str = r#"[fleet]
clients = 10
[fleet.server]
device = "server"
link = { latency = { kind = "fixed", ms = 1.0 }, up_bytes_per_sec = 1.25e8, down_bytes_per_sec = 1.25e8 }
[[fleet.groups]]
name = "edge"
fraction = 0.2
device = "edge-gpu"
link = "wifi"
[[fleet.groups]]
name = "mid"
fraction = 0.5
device = { preset = "phone-high", speed = { kind = "log_normal", median = 2e10, sigma = 0.5 }, memory_mb = 0.5 }
link = "cellular-4g"
[[fleet.groups]]
name = "low"
fraction = 0.3
device = { speed = 2e9, memory_mb = 0.5, dropout = 0.0, availability = { kind = "periodic", period_s = 120.0, on_s = 60.0 } }
link = "cellular-3g"
"#;

/// A fresh, empty folder for one test, removed with everything in it when the guard drops.
fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("flotilla-fleet-{name}-"))
        .tempdir()
        .unwrap()
}

fn load_in(dir: &Path, text: &str) -> Result<ExperimentConfig, ExperimentError> {
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    ExperimentConfig::load(&ConfigSource::File(path), &[])
}

/// The config error of `fleet`, loaded and prepared.
fn error_of(dir: &Path, fleet: &str) -> ConfigError {
    let result = load_in(dir, &config_text(fleet)).and_then(Prepared::new);
    match result {
        Err(ExperimentError::Config(e)) => e,
        other => panic!("expected a config error for\n{fleet}\ngot {other:?}"),
    }
}

#[test]
fn three_groups_resolve_to_counts_devices_and_links() {
    let scratch_dir = scratch("three");
    let dir = scratch_dir.path();
    let prepared = Prepared::new(load_in(dir, &config_text(THREE_GROUPS)).unwrap()).unwrap();
    let groups = prepared.groups();
    let sizes: Vec<(&str, usize)> = groups
        .iter()
        .map(|g| (g.name.as_str(), g.clients.len()))
        .collect();
    assert_eq!(sizes, vec![("edge", 2), ("mid", 5), ("low", 3)]);
    let clients = prepared.clients(1);
    // Strong emerges from memory: only the edge boxes hold the target.
    assert_eq!(prepared.strong_clients(&clients), vec![0, 1]);
    let mid: Vec<f64> = clients[2..7]
        .iter()
        .map(|c| c.device.flops_per_sec)
        .collect();
    assert!(
        mid.iter().any(|s| *s != mid[0]),
        "drawn speeds differ: {mid:?}"
    );
    assert_eq!(clients[9].device.flops_per_sec, 2e9);
    assert_eq!(
        clients[9].link,
        flotilla_sim::LinkSpec::preset("cellular-3g").unwrap()
    );
    let (_, server_link) = prepared.server();
    assert_eq!(server_link.up_bytes_per_sec, 1.25e8);
    let report = prepared.fleet_report().unwrap();
    for needle in ["edge", "mid", "low", "(server)", "50%"] {
        assert!(report.contains(needle), "{needle} missing:\n{report}");
    }
}

#[test]
fn every_fleet_key_is_checked_and_named() {
    let scratch_dir = scratch("bad");
    let dir = scratch_dir.path();
    let group = |body: &str| {
        format!(
            "[fleet]\nclients = 10\n[[fleet.groups]]\nname = \"edge\"\ncount = 2\ndevice = \"edge-gpu\"\n\
             [[fleet.groups]]\nname = \"rest\"\n{body}\n"
        )
    };
    let missing_trace = dir.join("no-such-trace.jsonl").display().to_string();
    let cases: Vec<(String, &str, &str)> = vec![
        (
            group("count = 8\ndevice = \"abacus\""),
            "fleet.groups[1].device",
            "abacus",
        ),
        (
            group("count = 8\ndevice = { preset = \"abacus\" }"),
            "fleet.groups[1].device.preset",
            "abacus",
        ),
        (
            group("count = 8\ndevice = { preset = \"phone-low\", speed = -1.0 }"),
            "fleet.groups[1].device.speed",
            "-1",
        ),
        (
            group(
                "count = 8\ndevice = { preset = \"phone-low\", speed = { kind = \"log_normal\", median = 1e9, sigma = 9.0 } }",
            ),
            "fleet.groups[1].device.speed.sigma",
            "9",
        ),
        (
            group(
                "count = 8\ndevice = { preset = \"phone-low\", speed = { kind = \"uniform\", min = 3e9, max = 1e9 } }",
            ),
            "fleet.groups[1].device.speed.min",
            "3000000000",
        ),
        (
            group("count = 8\ndevice = { memory_mb = 1.0 }"),
            "fleet.groups[1].device.speed",
            "(missing)",
        ),
        (
            group("count = 8\ndevice = { preset = \"phone-low\", memory_mb = 0.0 }"),
            "fleet.groups[1].device.memory_mb",
            "0",
        ),
        (
            group("count = 8\ndevice = { preset = \"phone-low\", dropout = 1.5 }"),
            "fleet.groups[1].device.dropout",
            "1.5",
        ),
        (
            group("count = 8\ndevice = { preset = \"phone-low\", compute_jitter = -0.1 }"),
            "fleet.groups[1].device.compute_jitter",
            "-0.1",
        ),
        (
            group(
                "count = 8\ndevice = { preset = \"phone-low\", availability = { kind = \"periodic\", period_s = 10.0, on_s = 20.0 } }",
            ),
            "fleet.groups[1].device.availability.on_s",
            "20",
        ),
        (
            group("count = 8\ndevice = \"phone-low\"\nlink = \"carrier-pigeon\""),
            "fleet.groups[1].link",
            "\"carrier-pigeon\"",
        ),
        (
            group(
                "count = 8\ndevice = \"phone-low\"\nlink = { latency = { kind = \"fixed\", ms = 1.0 }, loss = 2.0 }",
            ),
            "fleet.groups[1].link.loss",
            "2",
        ),
        (
            group(
                "count = 8\ndevice = \"phone-low\"\nlink = { latency = { kind = \"fixed\", ms = 1.0 }, shared = \"yes\" }",
            ),
            "fleet.groups[1].link.shared",
            "\"yes\"",
        ),
        (
            group("count = 7\ndevice = \"phone-low\""),
            "fleet.groups",
            "9 clients by count + fractions 0",
        ),
        (
            group("count = 8\nfraction = 0.8\ndevice = \"phone-low\""),
            "fleet.groups[1].count",
            "8",
        ),
        (
            group("device = \"phone-low\""),
            "fleet.groups[1].count",
            "(missing)",
        ),
        (
            group("fraction = 1.5\ndevice = \"phone-low\""),
            "fleet.groups[1].fraction",
            "1.5",
        ),
        (
            group("count = 8\ndevice = \"phone-low\"\n[fleet.server]\ndevice = \"mainframe\""),
            "fleet.server.device",
            "mainframe",
        ),
        (
            group("count = 8\ndevice = \"phone-low\"\n[fleet.server]\nlink = \"dialup\""),
            "fleet.server.link",
            "\"dialup\"",
        ),
        (
            format!("strong = 2\n{}", group("count = 8\ndevice = \"phone-low\"")).replacen(
                "strong = 2\n[fleet]\n",
                "[fleet]\nstrong = 2\n",
                1,
            ),
            "fleet.strong",
            "(set)",
        ),
        (
            group("count = 8\ndevice = \"phone-low\"")
                .replace("name = \"rest\"", "name = \"edge\""),
            "fleet.groups[1].name",
            "edge",
        ),
        (
            group("count = 8\ndevice = \"phone-low\"\ntrace = \"no-such-trace.jsonl\""),
            "fleet.groups[1].trace",
            &missing_trace,
        ),
    ];
    for (fleet, key, value) in &cases {
        let e = error_of(dir, fleet);
        assert_eq!(
            (e.key.as_str(), e.value.as_str()),
            (*key, *value),
            "{fleet}\n{e}"
        );
    }
}

#[test]
fn unknown_keys_in_a_device_table_are_named() {
    let scratch_dir = scratch("unknown");
    let dir = scratch_dir.path();
    let fleet = "[fleet]\nclients = 4\n[[fleet.groups]]\nname = \"a\"\ncount = 4\n\
                 device = { preset = \"edge-gpu\", sped = 1e9 }";
    let e = match load_in(dir, &config_text(fleet)) {
        Err(ExperimentError::Config(e)) => e,
        other => panic!("{other:?}"),
    };
    assert!(e.key.starts_with("fleet.groups[0].device"), "{e}");
    assert!(e.reason.contains("sped"), "{e}");
}

/// A trace writer the test can read back after the run.
#[derive(Clone, Default)]
struct SharedBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The online intervals of the low phones' trace, device by device [s].
fn low_phone_intervals(k: usize) -> Vec<(f64, f64)> {
    let k = k as f64;
    vec![
        (0.0, 20.0 + 7.0 * k),
        (45.0 + 5.0 * k, 95.0),
        (130.0 - 9.0 * k, 180.0 + 3.0 * k),
        (230.0, 1e6),
    ]
}

#[test]
fn no_client_works_while_its_trace_says_it_is_away() {
    use flotilla_experiment::{Method, RunOptions};
    use flotilla_sim::{DropReason, NodeId, SimTime, TraceEvent, read_jsonl};
    use std::collections::BTreeMap;

    let scratch_dir = scratch("away");

    let dir = scratch_dir.path();
    let trace: String = (0..3)
        .map(|k| {
            let on: Vec<String> = low_phone_intervals(k)
                .iter()
                .map(|(a, b)| format!("[{a}, {b}]"))
                .collect();
            format!("{{\"id\": {k}, \"on\": [{}]}}\n", on.join(", "))
        })
        .collect();
    std::fs::write(dir.join("low.jsonl"), trace).unwrap();
    // Slow low phones (a job takes about 10 s) so that going away interrupts work.
    let fleet = THREE_GROUPS.replace(
        "device = { speed = 2e9, memory_mb = 0.5, dropout = 0.0, availability = { kind = \"periodic\", period_s = 120.0, on_s = 60.0 } }",
        "device = { speed = 2e5, memory_mb = 0.5, dropout = 0.0 }\ntrace = \"low.jsonl\"",
    );
    let text = config_text(&fleet).replace("rounds = 2", "rounds = 12");
    let prepared = Prepared::new(load_in(dir, &text).unwrap()).unwrap();
    let low = prepared.groups()[2].clients.clone();
    assert_eq!(low, 7..10);
    let buffer = SharedBuffer::default();
    let outcome = prepared
        .run(
            Method::OndeviceKd,
            1,
            RunOptions {
                threads: 2,
                trace: Some(Box::new(buffer.clone())),
                ..RunOptions::default()
            },
        )
        .unwrap();
    let bytes = buffer.0.lock().unwrap().clone();
    let records = read_jsonl(&bytes[..]).unwrap();
    // Client c is node c + 1; the low phones take the trace's devices in order.
    let away = |node: NodeId, from: SimTime, until: SimTime| {
        let k = node.index() - 1 - low.start;
        !low_phone_intervals(k)
            .iter()
            .any(|&(a, b)| from.as_secs_f64() >= a && until.as_secs_f64() <= b)
    };
    let is_low = |node: NodeId| low.contains(&(node.index().wrapping_sub(1)));
    let mut started = BTreeMap::new();
    let (mut worked, mut interrupted, mut refused) = (0, 0, 0);
    for r in &records {
        match &r.event {
            TraceEvent::JobStart { job, .. } if is_low(job.node) => {
                started.insert(*job, r.time);
            }
            TraceEvent::JobDone { job } | TraceEvent::JobLost { job, .. } if is_low(job.node) => {
                let start = started.remove(job).expect("a job ends after it starts");
                assert!(
                    !away(job.node, start, r.time),
                    "{job:?} worked from {start} to {} while away",
                    r.time
                );
                worked += 1;
                if matches!(
                    r.event,
                    TraceEvent::JobLost {
                        reason: DropReason::Offline,
                        ..
                    }
                ) {
                    interrupted += 1;
                }
            }
            TraceEvent::Deliver { dst, .. } if is_low(*dst) => {
                assert!(
                    !away(*dst, r.time, r.time),
                    "{dst:?} received at {}",
                    r.time
                );
            }
            TraceEvent::Drop {
                dst,
                reason: DropReason::Offline,
                ..
            } if is_low(*dst) => refused += 1,
            _ => {}
        }
    }
    // The check saw real work, and the trace had an effect: work cut short or messages
    // refused while away.
    assert!(worked >= 3, "{worked} low-phone jobs");
    assert!(interrupted + refused > 0, "the trace never mattered");
    let groups = &outcome.groups;
    let names: Vec<&str> = groups.iter().map(|g| g.group.as_str()).collect();
    assert_eq!(names, ["edge", "mid", "low"]);
    assert_eq!(groups[0].strong, 2);
    assert!(
        groups[2].participation < groups[0].participation,
        "{groups:?}"
    );
}

#[test]
fn network_rules_are_checked_and_cut_nodes_off() {
    use flotilla_experiment::{Method, RunOptions, Verdict};
    use flotilla_fl::ModelRole;
    let scratch_dir = scratch("network");
    let dir = scratch_dir.path();
    let with = |rules: &str| config_text(&format!("{THREE_GROUPS}\n{rules}"));
    for (rules, key, value) in [
        (
            "[[network.outages]]\nnodes = [1]\nfrom_s = -1.0\nuntil_s = 5.0",
            "network.outages[0].from_s",
            "-1",
        ),
        (
            "[[network.outages]]\nnodes = [11]\nfrom_s = 0.0\nuntil_s = 5.0",
            "network.outages[0].nodes",
            "11",
        ),
        (
            "[[network.outages]]\nnode_range = [5, 12]\nfrom_s = 0.0\nuntil_s = 5.0",
            "network.outages[0].node_range",
            "11",
        ),
        (
            "[[network.partitions]]\ngroups = [[0, 1], [2, 40]]\nfrom_s = 0.0\nuntil_s = 5.0",
            "network.partitions[0].groups",
            "40",
        ),
    ] {
        match load_in(dir, &with(rules)) {
            Err(ExperimentError::Config(e)) => {
                assert_eq!((e.key.as_str(), e.value.as_str()), (key, value), "{e}")
            }
            other => panic!("{rules}: {other:?}"),
        }
    }
    // The edge boxes (nodes 1 and 2), the only strong clients, are cut off for the whole
    // run: the target is never updated, and their group contributes nothing.
    let rules = "[[network.outages]]\nnode_range = [1, 3]\nfrom_s = 0.0\nuntil_s = 1e9";
    let prepared = Prepared::new(load_in(dir, &with(rules)).unwrap()).unwrap();
    let outcome = prepared
        .run(Method::OndeviceKd, 1, RunOptions::default())
        .unwrap();
    assert_eq!(outcome.verdict(ModelRole::Target), Verdict::NoUpdate);
    assert_eq!(outcome.groups[0].replied, 0, "{:?}", outcome.groups);
    assert!(outcome.groups[1].replied > 0, "{:?}", outcome.groups);
}
