//! Target `device_trace`: a device trace file (JSON Lines) as a fleet group's `trace` reads
//! it.
//!
//! The input is the file's text, read by `flotilla_sim::DeviceTrace::from_str`. Properties:
//! no panic; an error names the file (and renders); a trace that loads has unique ids and
//! devices that validate, and writing it back reads back equal.

use flotilla_sim::DeviceTrace;

/// The name errors must carry.
const NAME: &str = "fuzz.jsonl";

/// Parses `data` as a trace and checks what loads.
pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let trace = match DeviceTrace::from_str(&text, NAME) {
        Ok(trace) => trace,
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.contains(NAME),
                "an error without the file: {message}"
            );
            return;
        }
    };
    let mut ids: Vec<u32> = trace.devices.iter().map(|d| d.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), trace.devices.len(), "a repeated id loaded");
    for device in &trace.devices {
        if let Err(e) = device.validate() {
            panic!("a loaded device fails validation: {e}");
        }
    }
    let again = DeviceTrace::from_str(&trace.to_jsonl(), NAME)
        .unwrap_or_else(|e| panic!("a written trace does not read back: {e}"));
    assert_eq!(again, trace, "a written trace reads back different");
}

/// The documented example, the three-group example's low-phone trace, and a small
/// generated one.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut seeds = Vec::new();
    for (name, path) in [
        (
            "example",
            "crates/flotilla-sim/src/device/example_trace.jsonl",
        ),
        ("low_phones", "examples/fleets/low_phones.jsonl"),
    ] {
        let path = root.join(path);
        let bytes =
            std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        seeds.push((name.to_string(), bytes));
    }
    let synthetic = flotilla_sim::SyntheticTrace {
        devices: 5,
        horizon_s: 3.0 * 86_400.0,
        ..Default::default()
    };
    let trace = synthetic
        .generate()
        .expect("the default settings are valid");
    seeds.push(("synthetic".to_string(), trace.to_jsonl().into_bytes()));
    seeds
}
