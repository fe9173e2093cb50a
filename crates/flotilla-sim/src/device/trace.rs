//! Device trace files: per-client hardware, access link and online intervals.

use super::{DeviceError, DeviceProfile, PRESET_NAMES, availability::check_intervals, invalid};
use crate::network::{NameOr, name_or_table};
use crate::{Availability, LinkConfig, LinkSpec};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
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
    /// The validated profile; errors name `field` (`devices[3].profile`).
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

/// One device of a [`DeviceTrace`], validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceDevice {
    /// Client index (which node it maps to is the caller's choice).
    pub id: u32,
    /// Its hardware, with the trace's online intervals as its availability if it gave any.
    pub profile: DeviceProfile,
    /// Its access link, if the trace gave one (for [`NetworkModel::set_node_link`]).
    ///
    /// [`NetworkModel::set_node_link`]: crate::NetworkModel::set_node_link
    pub link: Option<LinkSpec>,
}

/// A device trace file, in the spirit of FedScale's device traces (a per-client capacity
/// table plus per-client active intervals), as JSON:
///
/// ```json
#[doc = include_str!("example_trace.json")]
/// ```
///
/// - `id` (required, unique): the client index.
/// - `profile` (required): a [preset name](DeviceProfile::preset) or a full
///   [`DeviceProfile`] object (times in seconds; `availability` defaults to always).
/// - `link` (optional): a [link preset name](LinkSpec::preset) or a full [`LinkSpec`]
///   object (latencies in ms, bandwidths in bytes/s, absent bandwidth = unlimited).
/// - `on` (optional): the device's online intervals `[start_s, end_s)`, sorted and
///   disjoint (touching is allowed); the device is offline outside them. It becomes the
///   profile's availability, so the profile must not give one of its own.
///
/// Unknown keys, unsorted or overlapping intervals and repeated ids are errors that name
/// the file and the field, never silently fixed; for example
/// ``fleet.json: device setting `devices[3].on[2]` = [50, 40]: start 50 ≥ end 40``.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceTrace {
    /// The devices, in file order.
    pub devices: Vec<TraceDevice>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrace {
    devices: Vec<RawDevice>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    id: u32,
    profile: ProfileConfig,
    #[serde(default)]
    link: Option<LinkConfig>,
    #[serde(default)]
    on: Option<Vec<(f64, f64)>>,
}

impl DeviceTrace {
    /// Reads and validates a trace file; errors name the file.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, DeviceError> {
        let file = path.as_ref().display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| DeviceError::File {
            file: file.clone(),
            reason: e.to_string(),
        })?;
        Self::from_str(&text, &file)
    }

    /// Parses and validates trace text; `name` (a file name) is used in errors.
    pub fn from_str(text: &str, name: &str) -> Result<Self, DeviceError> {
        let in_file = |reason: String| DeviceError::File {
            file: name.into(),
            reason,
        };
        let raw: RawTrace = serde_json::from_str(text).map_err(|e| in_file(e.to_string()))?;
        let mut first_of: BTreeMap<u32, usize> = BTreeMap::new();
        let mut devices = Vec::with_capacity(raw.devices.len());
        for (i, d) in raw.devices.into_iter().enumerate() {
            let device = Self::device(i, d, &mut first_of).map_err(|e| in_file(e.to_string()))?;
            devices.push(device);
        }
        Ok(Self { devices })
    }

    /// Validates device `i`; `first_of` maps the ids seen so far to their index.
    fn device(
        i: usize,
        d: RawDevice,
        first_of: &mut BTreeMap<u32, usize>,
    ) -> Result<TraceDevice, DeviceError> {
        let field = format!("devices[{i}]");
        if let Some(j) = first_of.insert(d.id, i) {
            return Err(invalid(
                format!("{field}.id"),
                d.id,
                format!("repeats devices[{j}]"),
            ));
        }
        let mut profile = d.profile.resolve(&format!("{field}.profile"))?;
        if let Some(on) = d.on {
            if profile.availability != Availability::Always {
                let value = format!("{} intervals", on.len());
                let reason = "the profile gives its own availability; give one or the other";
                return Err(invalid(format!("{field}.on"), value, reason));
            }
            check_intervals(&format!("{field}.on"), &on)?;
            profile.availability = Availability::Trace { on };
        }
        let link = d
            .link
            .map(|l| l.resolve(&format!("{field}.link")))
            .transpose()?;
        Ok(TraceDevice {
            id: d.id,
            profile,
            link,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SimTime, secs};

    const EXAMPLE: &str = include_str!("example_trace.json");

    fn err(text: &str) -> String {
        DeviceTrace::from_str(text, "fleet.json")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_documented_example_loads() {
        let trace = DeviceTrace::from_str(EXAMPLE, "example_trace.json").unwrap();
        let ids: Vec<u32> = trace.devices.iter().map(|d| d.id).collect();
        assert_eq!(ids, [0, 1, 2]);
        let phone = &trace.devices[0];
        assert_eq!(phone.link, Some(LinkSpec::preset("cellular-4g").unwrap()));
        assert_eq!(
            phone.profile.availability,
            Availability::Trace {
                on: vec![(0.0, 3600.0), (7200.0, 9000.5)]
            }
        );
        let mut state = crate::AvailabilityState::default();
        let mut rng = crate::Seed(0).stream(crate::NodeId(0), crate::Purpose::AVAILABILITY);
        let off = state.next_off_after(
            &phone.profile.availability,
            SimTime::ZERO + secs(7300),
            &mut rng,
        );
        assert_eq!(off, SimTime(9_000_500_000));
        assert_eq!(
            trace.devices[1].profile,
            DeviceProfile::preset("edge-gpu").unwrap()
        );
        let custom = &trace.devices[2];
        assert_eq!(custom.profile.flops_per_sec, 5e9);
        assert!(matches!(
            custom.profile.availability,
            Availability::Markov { .. }
        ));
        assert_eq!(custom.link.as_ref().map(|l| l.loss), Some(0.02));
    }

    #[test]
    fn files_load_and_errors_name_the_path() {
        let path = std::env::temp_dir().join(format!("flotilla-trace-{}.json", std::process::id()));
        std::fs::write(&path, EXAMPLE).unwrap();
        let loaded = DeviceTrace::from_path(&path);
        std::fs::write(&path, EXAMPLE.replace("[7200, 9000.5]", "[3000, 9000]")).unwrap();
        let bad = DeviceTrace::from_path(&path).unwrap_err().to_string();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(loaded.unwrap().devices.len(), 3);
        let file = path.display().to_string();
        assert!(
            bad.starts_with(&file) && bad.contains("devices[0].on[1]"),
            "{bad}"
        );
        let missing = DeviceTrace::from_path(&path).unwrap_err().to_string();
        assert!(missing.starts_with(&file), "{missing}");
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let cases = [
            (
                EXAMPLE.replace("[7200, 9000.5]", "[3000, 9000]"),
                "devices[0].on[1]",
            ),
            (
                EXAMPLE.replace("[7200, 9000.5]", "[50, 40]"),
                "start 50 ≥ end 40",
            ),
            (
                EXAMPLE.replace("\"phone-low\"", "\"abacus\""),
                "devices[0].profile",
            ),
            (
                EXAMPLE.replace("\"wifi\"", "\"carrier-pigeon\""),
                "devices[1].link",
            ),
            (
                EXAMPLE.replace("\"dropout\": 0.05", "\"dropout\": 1.5"),
                "devices[2].profile.dropout",
            ),
            (
                EXAMPLE.replace("\"loss\": 0.02", "\"loss\": 2"),
                "devices[2].link.loss",
            ),
            (EXAMPLE.replace("{\"id\": 1", "{\"id\": 0"), "devices[1].id"),
            (
                EXAMPLE.replace("\"mean_on_s\": 1800", "\"mean_on_s\": 0"),
                "devices[2].profile.availability.mean_on_s",
            ),
            (
                EXAMPLE.replace(
                    "\"start_on\": 0.75}},",
                    "\"start_on\": 0.75}}, \"on\": [[1, 2]],",
                ),
                "the profile gives its own availability",
            ),
        ];
        for (text, expected) in cases {
            let e = err(&text);
            assert!(
                e.starts_with("fleet.json: ") && e.contains(expected),
                "{expected}: {e}"
            );
        }
    }

    #[test]
    fn parse_errors_keep_the_inner_key_and_position() {
        let e = err("{\"devices\": [");
        assert!(e.contains("fleet.json") && e.contains("line 1"), "{e}");
        let e = err(&EXAMPLE.replace("\"flops_per_sec\"", "\"flop_per_sec\""));
        assert!(e.contains("`flop_per_sec`") && e.contains("line 5"), "{e}");
        let e = err(&EXAMPLE.replace("\"ms\": 30", "\"msec\": 30"));
        assert!(e.contains("`msec`"), "{e}");
        let e = err(&EXAMPLE.replace("\"link\": \"wifi\"", "\"lnk\": \"wifi\""));
        assert!(e.contains("`lnk`") && e.contains("line 3"), "{e}");
        let e = err(&EXAMPLE.replace("\"profile\": \"edge-gpu\"", "\"profile\": 7"));
        assert!(
            e.contains("a device preset name or a device profile"),
            "{e}"
        );
    }
}
