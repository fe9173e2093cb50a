//! Target `safetensors`: a checkpoint file loaded into a network.
//!
//! The first input byte picks one of [`NETWORKS`] (an MLP, and a ResNet-20 slice with
//! convolution layouts and batch-norm state); the rest is the file, read with
//! `flotilla_nn::parse_safetensors` (the body of `load_safetensors`). Properties: loading
//! never panics; loaded weights fit the network, and saving and reloading them gives the
//! same bits.

use flotilla_nn::{ModelSpec, Network, Shape, Weights, parse_safetensors, save_safetensors};
use rand::SeedableRng;
use std::path::{Path, PathBuf};

/// The networks checkpoints are loaded into: spec, input shape, classes.
pub const NETWORKS: [(&str, Shape, usize); 2] = [
    ("mlp:12-8-5", Shape::flat(12), 5),
    ("resnet20:0.125", Shape::image(8, 8, 3), 4),
];

thread_local! {
    static BUILT: Vec<Network> = NETWORKS
        .iter()
        .map(|(spec, input, classes)| {
            spec.parse::<ModelSpec>()
                .and_then(|s| s.build(*input, *classes))
                .expect("the fuzzed networks build")
        })
        .collect();
}

/// This process's temporary checkpoint file.
fn temp_file() -> PathBuf {
    crate::scratch_dir().join(format!(
        "flotilla-fuzz-checkpoint-{}.safetensors",
        std::process::id()
    ))
}

fn bits(w: &Weights) -> (Vec<u32>, Vec<u32>) {
    (
        w.params.iter().map(|v| v.to_bits()).collect(),
        w.state.iter().map(|v| v.to_bits()).collect(),
    )
}

/// Loads `data[1..]` into network `data[0] % NETWORKS.len()` and checks what loads.
pub fn check(data: &[u8]) {
    let Some((&pick, file)) = data.split_first() else {
        return;
    };
    BUILT.with(|nets| {
        let net = &nets[usize::from(pick) % nets.len()];
        let origin = Path::new("fuzz-input.safetensors");
        let Ok(weights) = parse_safetensors(file, origin, net) else {
            return;
        };
        if let Err(e) = net.check_weights(&weights) {
            panic!("loaded weights do not fit the network: {e}");
        }
        let path = temp_file();
        save_safetensors(&path, net, &weights).expect("loaded weights save");
        let saved = std::fs::read(&path).expect("the saved checkpoint reads back");
        let again = parse_safetensors(&saved, &path, net).expect("a saved checkpoint loads");
        assert_eq!(
            bits(&again),
            bits(&weights),
            "save then load changed the weights"
        );
    });
}

/// A checkpoint of initialised weights for each network, written by `save_safetensors`.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let path = temp_file();
    BUILT.with(|nets| {
        nets.iter()
            .zip(NETWORKS)
            .enumerate()
            .map(|(i, (net, (spec, _, _)))| {
                let weights = net.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(i as u64));
                save_safetensors(&path, net, &weights).expect("the seed checkpoint saves");
                let mut input = vec![i as u8];
                input.extend(std::fs::read(&path).expect("the seed checkpoint reads back"));
                (spec.replace([':', '.'], "_"), input)
            })
            .collect()
    })
}
