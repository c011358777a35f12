//! Writes the seed corpora to `fuzz/seeds/<target>/`, replacing what is there.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../seeds");
    for target in fuzz_checks::TARGETS {
        let dir = root.join(target.name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
    }
    let seeds = fuzz_checks::seeds::all();
    for seed in &seeds {
        std::fs::write(root.join(seed.target).join(&seed.name), &seed.bytes)?;
    }
    println!("{} seeds in {}", seeds.len(), root.display());
    Ok(())
}
