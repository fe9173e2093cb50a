//! Target `config`: an experiment configuration as the CLI loads it.
//!
//! The input is TOML text, then `--set` overrides, separated by NUL bytes (neither a TOML
//! file nor a command-line argument can contain one): `text\0key=value\0key=value`. The
//! text goes through a temporary file and `ExperimentConfig::load`, exactly as
//! `flotilla run FILE --set …` reads it. Properties: loading never panics; a loaded config
//! validates again, and its seed list is as long as it says.

use flotilla_experiment::{ConfigSource, ExperimentConfig};
use std::path::PathBuf;

/// Seed counts above this are not expanded by the check: a long seed list is a legitimate
/// (long) job, not a bug, and would only cost memory.
const MAX_SEEDS_EXPANDED: usize = 1 << 16;

/// This process's temporary config file.
fn temp_file() -> PathBuf {
    crate::scratch_dir().join(format!("flotilla-fuzz-config-{}.toml", std::process::id()))
}

/// Loads `data` as a config file plus overrides and checks what loads.
pub fn check(data: &[u8]) {
    let mut parts = data.split(|&b| b == 0);
    let text = parts.next().unwrap_or_default();
    let overrides: Vec<String> = parts
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let path = temp_file();
    std::fs::write(&path, text).expect("the temporary config file is writable");
    let config = match ExperimentConfig::load(&ConfigSource::File(path), &overrides) {
        Ok(config) => config,
        Err(e) => {
            // The message is what the user sees: it must render.
            let _ = e.to_string();
            return;
        }
    };
    if let Err(e) = config.validate() {
        panic!("a loaded config fails validation: {e}");
    }
    if config.seeds <= MAX_SEEDS_EXPANDED {
        assert_eq!(config.seed_list().len(), config.seeds);
    }
}

/// The shipped configs in `configs/`, alone and with a few overrides.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("a readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let overrides = "\0rounds=2\0data.alpha=0.5\0fleet.clients=4\0kd.lambda=0.25";
    let mut seeds = Vec::new();
    for file in files {
        let text =
            std::fs::read(&file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let stem = file
            .file_stem()
            .expect("a .toml file has a stem")
            .to_string_lossy();
        let mut with_sets = text.clone();
        with_sets.extend_from_slice(overrides.as_bytes());
        seeds.push((stem.to_string(), text));
        seeds.push((format!("{stem}-set"), with_sets));
    }
    seeds
}
