//! Device trace files: per-device overrides of hardware, access link and online intervals,
//! as JSON Lines.

use super::{DeviceError, DeviceProfile, PRESET_NAMES, availability::check_intervals, invalid};
use crate::network::{NameOr, name_or_table};
use crate::{Availability, LinkConfig, LinkSpec};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;

/// A profile given by preset name (`"phone-low"`) or in full (a table or object).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ProfileConfig {
    /// A [`DeviceProfile::preset`] name.
    Preset(String),
    /// A full profile.
    Spec(DeviceProfile),
}

impl ProfileConfig {
    /// The validated profile; errors name `field` (`profile`).
    pub fn resolve(&self, field: &str) -> Result<DeviceProfile, DeviceError> {
        let profile = match self {
            ProfileConfig::Preset(name) => DeviceProfile::preset(name).map_err(|_| {
                let reason = format!("unknown device preset; known: {}", PRESET_NAMES.join(", "));
                invalid(field, format!("\"{name}\""), reason)
            })?,
            ProfileConfig::Spec(profile) => profile.clone(),
        };
        profile.validate_at(field)?;
        Ok(profile)
    }
}

impl<'de> Deserialize<'de> for ProfileConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(
            match name_or_table(d, "a device preset name or a device profile")? {
                NameOr::Name(name) => ProfileConfig::Preset(name),
                NameOr::Table(profile) => ProfileConfig::Spec(profile),
            },
        )
    }
}

/// The most memory a trace may give a device: 1e15 bytes (`memory_mb` ≤ 1e9).
const MAX_MEMORY_BYTES: u64 = 1_000_000_000_000_000;

/// One device of a [`DeviceTrace`]: what it changes on top of a base profile and link.
/// Every part is optional but the id; [`TraceDevice::validate`] checks them all (the
/// loader does).
#[derive(Debug, Clone, PartialEq)]
pub struct TraceDevice {
    /// The device's id, unique in its file (which client or node it maps to is the
    /// caller's choice; a fleet group maps by file order).
    pub id: u32,
    /// A profile replacing the base profile (`profile`).
    pub profile: Option<DeviceProfile>,
    /// Training throughput \[FLOP/s\] replacing the profile's (`flops_per_sec`).
    pub flops_per_sec: Option<f64>,
    /// Training memory \[bytes\] replacing the profile's (`memory_mb` · 1e6, rounded).
    pub memory_bytes: Option<u64>,
    /// Dropout probability replacing the profile's (`dropout`).
    pub dropout: Option<f64>,
    /// The device's access link (`link`), for [`NetworkModel::set_node_link`].
    ///
    /// [`NetworkModel::set_node_link`]: crate::NetworkModel::set_node_link
    pub link: Option<LinkSpec>,
    /// Online intervals `[start_s, end_s)` (`on`): the profile's availability becomes
    /// [`Availability::Trace`] of them.
    pub on: Option<Vec<(f64, f64)>>,
}

impl TraceDevice {
    /// A device with this id that changes nothing.
    pub fn new(id: u32) -> Self {
        Self {
            id,
            profile: None,
            flops_per_sec: None,
            memory_bytes: None,
            dropout: None,
            link: None,
            on: None,
        }
    }

    /// The device's profile on top of `base`: `base`, replaced by [`TraceDevice::profile`]
    /// if given, then the speed, memory, dropout and online intervals that are given. A
    /// valid device over a valid base gives a valid profile.
    pub fn profile_over(&self, base: &DeviceProfile) -> DeviceProfile {
        let mut p = self.profile.as_ref().unwrap_or(base).clone();
        if let Some(flops) = self.flops_per_sec {
            p.flops_per_sec = flops;
        }
        if let Some(bytes) = self.memory_bytes {
            p.memory_bytes = bytes;
        }
        if let Some(dropout) = self.dropout {
            p.dropout = dropout;
        }
        if let Some(on) = &self.on {
            p.availability = Availability::Trace { on: on.clone() };
        }
        p
    }

    /// Checks every part; errors name the field as written in the file (`on[2]`,
    /// `profile.dropout`, `memory_mb`) and the value.
    pub fn validate(&self) -> Result<(), DeviceError> {
        if let Some(profile) = &self.profile {
            profile.validate_at("profile")?;
        }
        if let Some(flops) = self.flops_per_sec
            && !(flops.is_finite() && flops > 0.0)
        {
            return Err(invalid("flops_per_sec", flops, "must be finite and > 0"));
        }
        if let Some(bytes) = self.memory_bytes
            && !(1..=MAX_MEMORY_BYTES).contains(&bytes)
        {
            let reason = "must be in [1e-6, 1e9] MB (at least one byte)";
            return Err(invalid("memory_mb", bytes as f64 / 1e6, reason));
        }
        if let Some(dropout) = self.dropout
            && !(0.0..=1.0).contains(&dropout)
        {
            let reason = "must be a probability in [0, 1]";
            return Err(invalid("dropout", dropout, reason));
        }
        if let Some(link) = &self.link {
            link.validate_at("link")?;
        }
        if let Some(on) = &self.on {
            if self
                .profile
                .as_ref()
                .is_some_and(|p| p.availability != Availability::Always)
            {
                let value = format!("{} intervals", on.len());
                let reason = "the profile gives its own availability; give one or the other";
                return Err(invalid("on", value, reason));
            }
            check_intervals("on", on)?;
        }
        Ok(())
    }

    /// How many online intervals the device holds (`on` and its profile's trace).
    fn interval_count(&self) -> usize {
        let in_profile = match self.profile.as_ref().map(|p| &p.availability) {
            Some(Availability::Trace { on }) => on.len(),
            _ => 0,
        };
        in_profile + self.on.as_ref().map_or(0, Vec::len)
    }

    fn from_raw(raw: RawDevice) -> Result<Self, DeviceError> {
        let memory_bytes = raw
            .memory_mb
            .map(|mb| {
                if mb.is_finite() && (1e-6..=1e9).contains(&mb) {
                    Ok((mb * 1e6).round() as u64)
                } else {
                    let reason = "must be a finite number of MB in [1e-6, 1e9]";
                    Err(invalid("memory_mb", mb, reason))
                }
            })
            .transpose()?;
        let device = Self {
            id: raw.id,
            profile: raw.profile.map(|p| p.resolve("profile")).transpose()?,
            flops_per_sec: raw.flops_per_sec,
            memory_bytes,
            dropout: raw.dropout,
            link: raw.link.map(|l| l.resolve("link")).transpose()?,
            on: raw.on,
        };
        device.validate()?;
        Ok(device)
    }
}

/// A device trace file, in the spirit of FedScale's device traces (a per-client capacity
/// table plus per-client active intervals), as JSON Lines: one device per line, in order;
/// blank lines are ignored.
///
/// ```json
#[doc = include_str!("example_trace.jsonl")]
/// ```
///
/// Each line is an object with:
/// - `id` (required, unique in the file): the device's id. Which client takes which device
///   is the caller's choice (a fleet group gives its i-th client the file's i-th device).
/// - `profile` (optional): a [preset name](DeviceProfile::preset) or a full
///   [`DeviceProfile`] object (times in seconds; `availability` defaults to always). It
///   replaces the base profile the caller gives ([`TraceDevice::profile_over`]).
/// - `flops_per_sec` (optional, finite, > 0): the training throughput \[FLOP/s\].
/// - `memory_mb` (optional, in [1e-6, 1e9]): the training memory in MB (10⁶ bytes; bytes
///   are rounded).
/// - `dropout` (optional, in [0, 1]): the probability a job is abandoned.
/// - `link` (optional): a [link preset name](LinkSpec::preset) or a full [`LinkSpec`]
///   object (latencies in ms, bandwidths in bytes/s, absent bandwidth = unlimited).
/// - `on` (optional): the online intervals `[start_s, end_s)`, sorted and disjoint
///   (touching is allowed); the device is offline outside them. It becomes the profile's
///   availability, so a `profile` given on the same line must not have one of its own.
///
/// Speed, memory, dropout and `on` apply after `profile`, whichever profile it is. Unknown
/// keys, wrong types, out-of-range values, unsorted or overlapping intervals and repeated
/// ids are errors naming the file and the line, never silently fixed:
/// ``fleet.jsonl:17: device setting `on[2]` = [50, 40]: start 50 ≥ end 40``,
/// `fleet.jsonl:9: id 3 repeats line 4`. So are an empty file, more than
/// [`DeviceTrace::MAX_DEVICES`] devices or [`DeviceTrace::MAX_INTERVALS`] intervals, and a
/// file over [`DeviceTrace::MAX_BYTES`] (which is never read whole: lines are parsed as
/// they are read).
///
/// [`DeviceTrace::write_jsonl`] writes the same format back; [`SyntheticTrace`] generates
/// diurnal fleets.
///
/// [`SyntheticTrace`]: crate::SyntheticTrace
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceTrace {
    /// The devices, in file order.
    pub devices: Vec<TraceDevice>,
}

/// A line as written: the loader's input.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    id: u32,
    #[serde(default)]
    profile: Option<ProfileConfig>,
    #[serde(default)]
    flops_per_sec: Option<f64>,
    #[serde(default)]
    memory_mb: Option<f64>,
    #[serde(default)]
    dropout: Option<f64>,
    #[serde(default)]
    link: Option<LinkConfig>,
    #[serde(default)]
    on: Option<Vec<(f64, f64)>>,
}

/// A line as written: the writer's output (absent parts are left out).
#[derive(Serialize)]
struct DeviceLine<'a> {
    id: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    profile: Option<&'a DeviceProfile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flops_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    memory_mb: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dropout: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<LinkLine<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    on: Option<&'a [(f64, f64)]>,
}

/// A [`LinkSpec`] as written: an unlimited bandwidth is left out (JSON has no infinity), and
/// so is `shared` when it has its default, `true`.
#[derive(Serialize)]
struct LinkLine<'a> {
    latency: &'a crate::Latency,
    jitter_ms: f64,
    #[serde(skip_serializing_if = "is_unlimited")]
    up_bytes_per_sec: f64,
    #[serde(skip_serializing_if = "is_unlimited")]
    down_bytes_per_sec: f64,
    loss: f64,
    #[serde(skip_serializing_if = "is_shared")]
    shared: bool,
}

fn is_unlimited(bandwidth: &f64) -> bool {
    *bandwidth == f64::INFINITY
}

fn is_shared(shared: &bool) -> bool {
    *shared
}

impl<'a> From<&'a TraceDevice> for DeviceLine<'a> {
    fn from(d: &'a TraceDevice) -> Self {
        Self {
            id: d.id,
            profile: d.profile.as_ref(),
            flops_per_sec: d.flops_per_sec,
            memory_mb: d.memory_bytes.map(|b| b as f64 / 1e6),
            dropout: d.dropout,
            link: d.link.as_ref().map(|l| LinkLine {
                latency: &l.latency,
                jitter_ms: l.jitter_ms,
                up_bytes_per_sec: l.up_bytes_per_sec,
                down_bytes_per_sec: l.down_bytes_per_sec,
                loss: l.loss,
                shared: l.shared,
            }),
            on: d.on.as_deref(),
        }
    }
}

/// What [`DeviceTrace::read`] accepts (tests use small ones).
#[derive(Debug, Clone, Copy)]
struct Bounds {
    bytes: u64,
    devices: usize,
    intervals: usize,
}

impl Bounds {
    /// The documented bounds of a trace file.
    const FILE: Bounds = Bounds {
        bytes: DeviceTrace::MAX_BYTES,
        devices: DeviceTrace::MAX_DEVICES,
        intervals: DeviceTrace::MAX_INTERVALS,
    };
}

/// The message of a serde_json error on one line, with its column instead of its
/// (always first) line.
fn json_reason(e: &serde_json::Error) -> String {
    let message = e.to_string();
    // `e` saw a single line.
    let position = format!(" at line {} column {}", e.line(), e.column());
    let message = message.strip_suffix(&position).unwrap_or(&message);
    let hint = if e.is_eof() {
        "; a device is one whole JSON object on one line"
    } else {
        ""
    };
    format!("{message} (column {}){hint}", e.column())
}

impl DeviceTrace {
    /// The largest trace file read: 1 GiB.
    pub const MAX_BYTES: u64 = 1 << 30;
    /// The most devices in one trace.
    pub const MAX_DEVICES: usize = 1_000_000;
    /// The most online intervals in one trace, all devices together (16 bytes each in
    /// memory).
    pub const MAX_INTERVALS: usize = 32_000_000;

    /// Reads and validates a trace file; errors name the file, and the line when one is
    /// at fault.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, DeviceError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let fail = |reason: String| DeviceError::File {
            file: file.clone(),
            line: None,
            reason,
        };
        let f = File::open(path).map_err(|e| fail(format!("cannot open: {e}")))?;
        // Fails fast on a large regular file; `read` bounds whatever else it is (a pipe, a
        // device, a file that grows).
        if let Ok(meta) = f.metadata()
            && meta.len() > Self::MAX_BYTES
        {
            return Err(fail(Self::too_large(Self::MAX_BYTES)));
        }
        Self::read(BufReader::new(f), &file, Bounds::FILE)
    }

    /// Parses and validates trace text; `name` (a file name) is used in errors.
    pub fn from_str(text: &str, name: &str) -> Result<Self, DeviceError> {
        Self::read(text.as_bytes(), name, Bounds::FILE)
    }

    fn too_large(max_bytes: u64) -> String {
        format!("larger than {max_bytes} bytes, the most a trace file may hold")
    }

    /// Parses `reader` line by line, reading at most `bounds.bytes` + 1 bytes.
    fn read(mut reader: impl BufRead, name: &str, bounds: Bounds) -> Result<Self, DeviceError> {
        let max_bytes = bounds.bytes;
        let at = |line: Option<usize>, reason: String| DeviceError::File {
            file: name.into(),
            line,
            reason,
        };
        let mut line_of: BTreeMap<u32, usize> = BTreeMap::new();
        let (mut devices, mut intervals, mut total) = (Vec::new(), 0, 0u64);
        let mut buf = Vec::new();
        for line in 1.. {
            buf.clear();
            let n = (&mut reader)
                .take(max_bytes + 1 - total)
                .read_until(b'\n', &mut buf)
                .map_err(|e| at(Some(line), format!("cannot read: {e}")))?;
            total += n as u64;
            if total > max_bytes {
                return Err(at(None, Self::too_large(max_bytes)));
            }
            if n == 0 {
                break;
            }
            if buf.trim_ascii().is_empty() {
                continue;
            }
            if devices.len() == bounds.devices {
                let reason = format!("more than {} devices", bounds.devices);
                return Err(at(Some(line), reason));
            }
            // Without its line end, an error stays on the line (serde_json counts lines).
            let raw: RawDevice = serde_json::from_slice(buf.trim_ascii_end())
                .map_err(|e| at(Some(line), json_reason(&e)))?;
            if let Some(first) = line_of.insert(raw.id, line) {
                return Err(at(
                    Some(line),
                    format!("id {} repeats line {first}", raw.id),
                ));
            }
            let device = TraceDevice::from_raw(raw).map_err(|e| at(Some(line), e.to_string()))?;
            intervals += device.interval_count();
            if intervals > bounds.intervals {
                let reason = format!("more than {} online intervals", bounds.intervals);
                return Err(at(Some(line), reason));
            }
            devices.push(device);
        }
        if devices.is_empty() {
            let reason = "no devices (the file is empty or only blank lines)".to_string();
            return Err(at(None, reason));
        }
        Ok(Self { devices })
    }

    /// Writes the trace in its file format, one line per device; a valid trace reads back
    /// equal ([`DeviceTrace::from_str`]).
    pub fn write_jsonl(&self, mut out: impl Write) -> io::Result<()> {
        for device in &self.devices {
            serde_json::to_writer(&mut out, &DeviceLine::from(device))?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }

    /// [`DeviceTrace::write_jsonl`] into a string.
    pub fn to_jsonl(&self) -> String {
        let mut out = Vec::new();
        self.write_jsonl(&mut out)
            .expect("serializing to memory cannot fail: every key is a string");
        String::from_utf8(out).expect("serde_json writes UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Latency, SimTime, secs};
    use proptest::prelude::*;

    const EXAMPLE: &str = include_str!("example_trace.jsonl");

    fn err(text: &str) -> String {
        DeviceTrace::from_str(text, "fleet.jsonl")
            .unwrap_err()
            .to_string()
    }

    fn base() -> DeviceProfile {
        DeviceProfile::preset("laptop").unwrap()
    }

    #[test]
    fn the_documented_example_loads() {
        let trace = DeviceTrace::from_str(EXAMPLE, "example_trace.jsonl").unwrap();
        let ids: Vec<u32> = trace.devices.iter().map(|d| d.id).collect();
        assert_eq!(ids, [0, 1, 2, 3, 7]);
        let phone = &trace.devices[0];
        assert_eq!(phone.link, Some(LinkSpec::preset("cellular-4g").unwrap()));
        let phone_profile = phone.profile_over(&base());
        assert_eq!(
            phone_profile,
            DeviceProfile {
                availability: Availability::Trace {
                    on: vec![(0.0, 3600.0), (7200.0, 9000.5)]
                },
                ..DeviceProfile::preset("phone-low").unwrap()
            }
        );
        let mut state = crate::AvailabilityState::default();
        let mut rng = crate::Seed(0).stream(crate::NodeId(0), crate::Purpose::AVAILABILITY);
        let off = state.next_off_after(
            &phone_profile.availability,
            SimTime::ZERO + secs(7300),
            &mut rng,
        );
        assert_eq!(off, SimTime(9_000_500_000));
        assert_eq!(
            trace.devices[1].profile_over(&base()),
            DeviceProfile::preset("edge-gpu").unwrap()
        );
        // Overrides on top of the base profile.
        let over = trace.devices[2].profile_over(&base());
        assert_eq!(
            over,
            DeviceProfile {
                flops_per_sec: 5e9,
                memory_bytes: 4_000_000_000,
                dropout: 0.05,
                availability: Availability::Trace {
                    on: vec![(1800.0, 5400.0)]
                },
                ..base()
            }
        );
        assert_eq!(trace.devices[2].link, None);
        let custom = &trace.devices[3];
        assert!(matches!(
            custom.profile_over(&base()).availability,
            Availability::Markov { .. }
        ));
        assert_eq!(custom.link.as_ref().map(|l| l.loss), Some(0.02));
        assert_eq!(
            custom.link.as_ref().map(|l| l.jitter_ms),
            Some(0.0),
            "absent jitter is none"
        );
        // A device that changes nothing is its base.
        assert_eq!(trace.devices[4], TraceDevice::new(7));
        assert_eq!(trace.devices[4].profile_over(&base()), base());
    }

    #[test]
    fn files_load_and_errors_name_the_path_and_line() {
        let dir = std::env::temp_dir().join(format!("flotilla-trace-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fleet.jsonl");
        std::fs::write(&path, EXAMPLE).unwrap();
        let loaded = DeviceTrace::from_path(&path);
        std::fs::write(&path, EXAMPLE.replace("[7200, 9000.5]", "[3000, 9000]")).unwrap();
        let bad = DeviceTrace::from_path(&path).unwrap_err().to_string();
        std::fs::remove_file(&path).unwrap();
        let missing = DeviceTrace::from_path(&path).unwrap_err();
        let folder = DeviceTrace::from_path(&dir).unwrap_err();
        std::fs::remove_dir(&dir).unwrap();
        assert_eq!(
            loaded.unwrap(),
            DeviceTrace::from_str(EXAMPLE, "x").unwrap()
        );
        let file = path.display().to_string();
        assert!(bad.starts_with(&format!("{file}:1: ")), "{bad}");
        assert!(bad.contains("`on[1]`"), "{bad}");
        let DeviceError::File { file: f, line, .. } = &missing else {
            panic!("{missing:?}")
        };
        assert_eq!((f, *line), (&file, None));
        assert!(missing.to_string().contains("cannot open"), "{missing}");
        assert!(
            folder.to_string().starts_with(&dir.display().to_string()),
            "{folder}"
        );
    }

    /// The example with line `k` (1-based) replaced.
    fn with_line(k: usize, text: &str) -> String {
        let mut lines: Vec<&str> = EXAMPLE.lines().collect();
        lines[k - 1] = text;
        lines.join("\n")
    }

    /// Each kind of mistake names the file, the line and what is wrong.
    #[test]
    fn errors_name_the_file_the_line_and_the_field() {
        let cases = [
            // Syntax, keys and types.
            (
                with_line(3, "{\"id\": 2,, }"),
                3,
                "key must be a string (column 10)",
            ),
            (
                with_line(3, "{\"id\": 2 \"on\": []}"),
                3,
                "expected `,` or `}`",
            ),
            (
                with_line(6, "{\"id\": 9, \"flop_per_sec\": 1e9}"),
                6,
                "unknown field `flop_per_sec`",
            ),
            (
                with_line(2, "{\"id\": \"two\"}"),
                2,
                "invalid type: string \"two\"",
            ),
            (
                with_line(2, "{\"profile\": \"laptop\"}"),
                2,
                "missing field `id`",
            ),
            (
                with_line(2, "{\"id\": -1}"),
                2,
                "invalid value: integer `-1`",
            ),
            (
                with_line(2, "{\"id\": 1, \"on\": [[1, 2, 3]]}"),
                2,
                "column",
            ),
            (
                with_line(2, "{\"id\": 1, \"profile\": 7}"),
                2,
                "a device preset name or a device profile",
            ),
            (
                EXAMPLE.replace("\"ms\": 30", "\"msec\": 30"),
                5,
                "unknown field `msec`",
            ),
            (
                with_line(1, "{\"id\": 0} {\"id\": 1}"),
                1,
                "trailing characters",
            ),
            (
                with_line(1, "{\"id\": 0,"),
                1,
                "a device is one whole JSON object on one line",
            ),
            // Values.
            (with_line(6, "{\"id\": 3}"), 6, "id 3 repeats line 5"),
            (
                EXAMPLE.replace("[7200, 9000.5]", "[3000, 9000]"),
                1,
                "`on[1]` = [3000, 9000]: starts at 3000, before the previous interval ends at 3600",
            ),
            (
                EXAMPLE.replace("[7200, 9000.5]", "[50, 40]"),
                1,
                "device setting `on[1]` = [50, 40]: start 50 ≥ end 40",
            ),
            (
                EXAMPLE.replace("[1800, 5400]", "[-5, 5400]"),
                3,
                "`on[0]` = [-5, 5400]",
            ),
            (
                EXAMPLE.replace(
                    "\"flops_per_sec\": 5e9, \"memory_mb\"",
                    "\"flops_per_sec\": -5e9, \"memory_mb\"",
                ),
                3,
                "`flops_per_sec` = -5000000000: must be finite and > 0",
            ),
            (
                with_line(6, "{\"id\": 7, \"flops_per_sec\": 0}"),
                6,
                "`flops_per_sec` = 0",
            ),
            (
                EXAMPLE.replace("\"dropout\": 0.05", "\"dropout\": 1.5"),
                3,
                "`dropout` = 1.5: must be a probability",
            ),
            (
                EXAMPLE.replace("\"memory_mb\": 4000", "\"memory_mb\": 0"),
                3,
                "`memory_mb` = 0",
            ),
            (
                EXAMPLE.replace("\"memory_mb\": 4000", "\"memory_mb\": 1e10"),
                3,
                "`memory_mb` = 10000000000",
            ),
            (
                EXAMPLE.replace("\"phone-low\"", "\"abacus\""),
                1,
                "`profile` = \"abacus\": unknown device preset",
            ),
            (
                EXAMPLE.replace("\"wifi\"", "\"carrier-pigeon\""),
                2,
                "`link` = \"carrier-pigeon\"",
            ),
            (
                EXAMPLE.replace("\"loss\": 0.02", "\"loss\": 2"),
                5,
                "`link.loss` = 2",
            ),
            (
                EXAMPLE.replace("\"mean_on_s\": 1800", "\"mean_on_s\": 0"),
                5,
                "`profile.availability.mean_on_s` = 0",
            ),
            (
                EXAMPLE.replace(
                    "\"start_on\": 0.75}}",
                    "\"start_on\": 0.75}}, \"on\": [[1, 2]]",
                ),
                5,
                "the profile gives its own availability",
            ),
        ];
        for (text, line, expected) in cases {
            let e = err(&text);
            let prefix = format!("fleet.jsonl:{line}: ");
            assert!(
                e.starts_with(&prefix) && e.contains(expected),
                "want {prefix}…{expected}…, got {e}"
            );
        }
    }

    #[test]
    fn an_empty_file_and_blank_lines() {
        for text in ["", "\n\n", "  \n\t\r\n"] {
            let e = DeviceTrace::from_str(text, "fleet.jsonl").unwrap_err();
            assert!(matches!(e, DeviceError::File { line: None, .. }), "{e:?}");
            assert!(e.to_string().starts_with("fleet.jsonl: no devices"), "{e}");
        }
        // Blank lines and Windows line ends are fine, and count as lines.
        let text = "\r\n{\"id\": 4}\r\n\r\n{\"id\": 4}\r\n";
        assert_eq!(err(text), "fleet.jsonl:4: id 4 repeats line 2");
        let trace = DeviceTrace::from_str("\n{\"id\": 4}\r\n\n", "f").unwrap();
        assert_eq!(trace.devices, [TraceDevice::new(4)]);
    }

    #[test]
    fn bounds_are_enforced_while_reading() {
        // Invalid UTF-8 inside a string is a JSON error on its line.
        let bytes = |bytes| Bounds {
            bytes,
            ..Bounds::FILE
        };
        let text = b"{\"id\": 1}\n{\"id\": 2, \"link\": \"\xff\"}\n";
        let e = DeviceTrace::read(&text[..], "f", Bounds::FILE).unwrap_err();
        assert!(e.to_string().starts_with("f:2: "), "{e}");
        // Reading stops one byte past the bound, even within a line.
        let text = "{\"id\": 1}\n{\"id\": 2}\n";
        assert_eq!(
            DeviceTrace::read(text.as_bytes(), "f", bytes(20))
                .unwrap()
                .devices
                .len(),
            2
        );
        let e = DeviceTrace::read(text.as_bytes(), "f", bytes(19)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "f: larger than 19 bytes, the most a trace file may hold"
        );
        for byte in [b' ', b'\n', b'{'] {
            let endless = io::BufReader::new(io::repeat(byte));
            let e = DeviceTrace::read(endless, "f", bytes(1 << 16)).unwrap_err();
            assert!(
                e.to_string().starts_with("f: larger than 65536 bytes"),
                "{e}"
            );
        }
        // Devices and intervals, counted as lines are read.
        let devices = Bounds {
            devices: 2,
            ..Bounds::FILE
        };
        let e = DeviceTrace::read(
            "{\"id\": 1}\n\n{\"id\": 2}\n{\"id\": 3}".as_bytes(),
            "f",
            devices,
        );
        assert_eq!(e.unwrap_err().to_string(), "f:4: more than 2 devices");
        let intervals = Bounds {
            intervals: 3,
            ..Bounds::FILE
        };
        let text = "{\"id\": 1, \"on\": [[0, 1], [2, 3]]}\n\
                    {\"id\": 2, \"profile\": {\"flops_per_sec\": 1, \"memory_bytes\": 1, \
                    \"availability\": {\"kind\": \"trace\", \"on\": [[0, 1], [2, 3]]}}}";
        let e = DeviceTrace::read(text.as_bytes(), "f", intervals);
        assert_eq!(
            e.unwrap_err().to_string(),
            "f:2: more than 3 online intervals"
        );
        let ok = Bounds {
            intervals: 4,
            ..Bounds::FILE
        };
        assert!(DeviceTrace::read(text.as_bytes(), "f", ok).is_ok());
    }

    fn device() -> impl Strategy<Value = TraceDevice> {
        let profile = prop_oneof![
            Just(None),
            prop::sample::select(PRESET_NAMES.to_vec())
                .prop_map(|n| Some(DeviceProfile::preset(n).unwrap())),
            (
                1e-3f64..1e15,
                0.0f64..2.0,
                any::<u64>(),
                0.0f64..=1.0,
                1e-3f64..1e5
            )
                .prop_map(
                    |(flops_per_sec, compute_jitter, memory_bytes, dropout, mean_on_s)| {
                        Some(DeviceProfile {
                            flops_per_sec,
                            compute_jitter,
                            memory_bytes,
                            availability: Availability::Markov {
                                mean_on_s,
                                mean_off_s: 1.0 / mean_on_s,
                                start_on: dropout,
                            },
                            dropout,
                        })
                    }
                ),
        ];
        let link = prop_oneof![
            Just(None),
            prop::sample::select(LinkSpec::PRESET_NAMES.to_vec())
                .prop_map(|n| Some(LinkSpec::preset(n).unwrap())),
            (
                0.0f64..100.0,
                0.0f64..1.0,
                prop::option::of(1e-3f64..1e12),
                any::<bool>()
            )
                .prop_map(|(ms, loss, up, shared)| Some(LinkSpec {
                    latency: Latency::LogNormal {
                        median_ms: ms,
                        sigma: loss,
                    },
                    jitter_ms: ms / 3.0,
                    up_bytes_per_sec: up.unwrap_or(f64::INFINITY),
                    down_bytes_per_sec: up.map_or(f64::INFINITY, |u| u * 3.0),
                    loss,
                    shared,
                })),
        ];
        let on = prop::option::of(prop::collection::vec((0.0f64..1e4, 1e-6f64..1e4), 0..8))
            .prop_map(|gaps| {
                gaps.map(|gaps| {
                    let mut x = 0.0;
                    gaps.into_iter()
                        .map(|(gap, len)| {
                            let a = x + gap;
                            x = a + len;
                            (a, x)
                        })
                        .collect::<Vec<_>>()
                })
            });
        (
            any::<u32>(),
            profile,
            prop::option::of(1e-3f64..1e18),
            prop::option::of(1u64..=MAX_MEMORY_BYTES),
            prop::option::of(0.0f64..=1.0),
            link,
            on,
        )
            .prop_map(|(id, profile, flops, memory, dropout, link, on)| {
                // `on` and a profile's own availability are exclusive.
                let own = profile
                    .as_ref()
                    .is_some_and(|p| p.availability != Availability::Always);
                TraceDevice {
                    id,
                    profile,
                    flops_per_sec: flops,
                    memory_bytes: memory,
                    dropout,
                    link,
                    on: if own { None } else { on },
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn written_traces_read_back_equal(devices in prop::collection::vec(device(), 1..20)) {
            let mut seen = std::collections::BTreeSet::new();
            let devices: Vec<_> = devices.into_iter().filter(|d| seen.insert(d.id)).collect();
            let trace = DeviceTrace { devices };
            for d in &trace.devices {
                prop_assert!(d.validate().is_ok(), "{:?}", d);
            }
            let text = trace.to_jsonl();
            prop_assert_eq!(text.lines().count(), trace.devices.len());
            prop_assert_eq!(DeviceTrace::from_str(&text, "t").unwrap(), trace);
        }
    }

    #[test]
    fn the_example_round_trips_and_unlimited_bandwidth_is_left_out() {
        let trace = DeviceTrace::from_str(EXAMPLE, "example").unwrap();
        let text = trace.to_jsonl();
        assert_eq!(DeviceTrace::from_str(&text, "t").unwrap(), trace);
        let mut unlimited = TraceDevice::new(1);
        unlimited.link = Some(LinkSpec {
            latency: Latency::Fixed { ms: 1.0 },
            ..LinkSpec::latency(crate::millis(1))
        });
        let one = DeviceTrace {
            devices: vec![unlimited],
        };
        let text = one.to_jsonl();
        assert!(
            !text.contains("bytes_per_sec") && !text.contains("null") && !text.contains("shared"),
            "{text}"
        );
        assert_eq!(DeviceTrace::from_str(&text, "t").unwrap(), one);
    }
}
