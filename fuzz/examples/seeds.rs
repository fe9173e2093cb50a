//! Writes the seed corpora: `cargo run --example seeds -- DIR [TARGET…]` puts each target's
//! seeds in `DIR/<target>/<seed name>` (all targets if none is named).

use std::path::PathBuf;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("usage: seeds DIR [TARGET...]"));
    let wanted: Vec<String> = args.collect();
    for target in flotilla_fuzz::TARGETS {
        if !wanted.is_empty() && !wanted.iter().any(|w| w == target.name) {
            continue;
        }
        let out = dir.join(target.name);
        std::fs::create_dir_all(&out).expect("the corpus directory can be created");
        let seeds = (target.seeds)();
        for (name, bytes) in &seeds {
            std::fs::write(out.join(name), bytes).expect("a seed file can be written");
        }
        println!(
            "{}: {} seeds in {}",
            target.name,
            seeds.len(),
            out.display()
        );
    }
}
