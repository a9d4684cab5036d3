//! The seed files of one fuzz target (`fuzz/seeds/<target>`), for the regression tests that
//! replay them through the target's `check` in the normal test suite. Each file's name states
//! its documented result: `invalid-*` is refused, anything else is accepted (the stored-event
//! seeds, `<EventType>.v<N>`, also name the type they decode to).

use std::path::PathBuf;

/// The folder of `target`'s seeds.
pub fn seed_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(target)
}

/// Every seed of `target`, by file name, sorted; panics when there is none.
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = seed_dir(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the seeds in {}: {e}", dir.display()));
    let mut seeds: Vec<(String, Vec<u8>)> = entries
        .map(|entry| {
            let path = entry.expect("a seed folder entry").path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let data = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            (name, data)
        })
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// Whether a seed's name says it is to be refused.
pub fn expects_refusal(name: &str) -> bool {
    name.starts_with("invalid-")
}
