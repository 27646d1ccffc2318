//! The layering the crate graph cannot enforce on its own. `lomi-sim` has no dependency
//! on `lomi-sync`, so the simulator cannot see the library; but the library shares its
//! package (and so the optional `lomi-sim` dependency) with the binary, so "the library
//! never sees the simulator" is kept here and by CI's `--no-default-features` build.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read a source directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Only the binary (`src/main.rs`, `src/cli/`) may use the simulator or the `sim`
/// feature: a library file that did would build by default and break without it.
#[test]
fn the_library_never_names_the_simulator() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 20, "found {} files", files.len());
    let offenders: Vec<String> = files
        .iter()
        .filter(|f| !f.starts_with(src.join("cli")) && *f != &src.join("main.rs"))
        .filter(|f| {
            let text = std::fs::read_to_string(f).expect("read a source file");
            text.contains("lomi_sim") || text.contains("feature = \"sim\"")
        })
        .map(|f| f.strip_prefix(&src).unwrap_or(f).display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "library files name the simulator: {offenders:?}"
    );
}

/// The other direction, as the manifest states it: the simulator's crate lists no
/// dependency on the library.
#[test]
fn the_simulator_crate_does_not_depend_on_the_library() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("crates/lomi-sim/Cargo.toml"))
        .expect("crates/lomi-sim/Cargo.toml");
    let names_library = |line: &str| {
        let line = line.trim_start();
        line.starts_with("lomi-sync") || line.starts_with("lomi_sync")
    };
    assert!(!manifest.lines().any(names_library), "{manifest}");
    let mut files = Vec::new();
    rust_files(&root.join("crates/lomi-sim/src"), &mut files);
    assert!(files.len() > 5, "found {} files", files.len());
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read a source file");
        assert!(
            !text.contains("lomi_sync::"),
            "{} names the library",
            f.display()
        );
    }
}
