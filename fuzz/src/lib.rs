//! Fuzz harnesses for Flotilla's input boundaries.
//!
//! Each module is one target: `check(data)` states the target's properties and panics when
//! one fails; `seeds()` gives real inputs to start from (written to `corpus/<target>/` by
//! `examples/seeds.rs`). Every target runs through [`run`], which adds a common oracle:
//! handling an input may hold at most [`allowance`] bytes of heap at once.
//!
//! Adding a target: a module with `check` and `seeds`, a line in [`TARGETS`], a three-line
//! `fuzz_targets/<name>.rs`, and its `[[bin]]` entry in `Cargo.toml`.

pub mod cifar;
pub mod config;
pub mod device_trace;
pub mod idx;
pub mod image;
pub mod leaf;
pub mod loaders;
pub mod safetensors;
pub mod wire;

/// One fuzz target.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Its name: the binary, the file in `fuzz_targets/` and the corpus folder.
    pub name: &'static str,
    /// Named seed inputs.
    pub seeds: fn() -> Vec<(String, Vec<u8>)>,
}

/// Every target, for the seed writer.
pub const TARGETS: &[Target] = &[
    Target {
        name: "wire",
        seeds: wire::seeds,
    },
    Target {
        name: "config",
        seeds: config::seeds,
    },
    Target {
        name: "safetensors",
        seeds: safetensors::seeds,
    },
    Target {
        name: "idx",
        seeds: idx::seeds,
    },
    Target {
        name: "cifar",
        seeds: cifar::seeds,
    },
    Target {
        name: "leaf",
        seeds: leaf::seeds,
    },
    Target {
        name: "image",
        seeds: image::seeds,
    },
    Target {
        name: "device_trace",
        seeds: device_trace::seeds,
    },
];

/// The most heap an input of `len` bytes may hold at once while it is handled \[bytes\]:
/// 16 MiB plus 64 bytes per input byte.
///
/// Generous for every honest path (a decoded message, a parsed config, a loaded checkpoint
/// of the targets' small networks), and far below what a length field taken on trust
/// allocates: such a bug (a 10-byte wire message allocating a 200 MiB string) fails here,
/// which libFuzzer's own `-malloc_limit_mb` cannot catch without a sanitizer runtime.
pub fn allowance(len: usize) -> u64 {
    (16 << 20) + 64 * len as u64
}

/// Where targets that must go through a file write it: `/dev/shm` where it exists, since
/// rewriting a file under `/tmp` can cost milliseconds (it did here: 2.5 ms against 50 µs),
/// which would make those targets a hundred times slower.
pub fn scratch_dir() -> std::path::PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Runs `check` on `data`, then fails if it held more than [`allowance`] bytes at once.
pub fn run(data: &[u8], check: fn(&[u8])) {
    let info = allocation_counter::measure(|| check(data));
    assert!(
        info.bytes_max <= allowance(data.len()),
        "a {}-byte input held {} bytes of heap at once (allowance {})",
        data.len(),
        info.bytes_max,
        allowance(data.len())
    );
}
