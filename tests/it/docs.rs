//! The documents that must follow the code: ARCHITECTURE.md's code map names every
//! source file, so a newcomer finds each one from the map.

use std::path::{Path, PathBuf};

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read a source directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn the_code_map_names_every_source_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let map = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let mut files = Vec::new();
    for dir in ["src", "tests", "benches", "crates/lomi-sim/src"] {
        files_under(&root.join(dir), &mut files);
    }
    assert!(files.len() > 50, "found {} files", files.len());
    // The map names files within their directory's section (`state.rs`), or by path.
    let missing: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let name = f.file_name()?.to_str()?;
            (!map.contains(&format!("`{name}`")) && !map.contains(&format!("/{name}`")))
                .then(|| f.strip_prefix(root).unwrap_or(f).display().to_string())
        })
        .collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md's code map does not name: {missing:?}"
    );
}
