//! Replays the fuzzers' findings in a plain `cargo test`: every file of
//! every target's committed corpus (`fuzz/corpus/TARGET`) and every input
//! that once crashed it (`fuzz/regressions/TARGET`) goes through the very
//! function the fuzzer ran, so a change that breaks a parser on an input
//! the fuzzer once reached fails here, without the fuzzer. fuzz/README.md
//! says how to run the fuzzers themselves.

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

#[path = "../fuzz/targets/mod.rs"]
mod targets;

/// How long one input may take, as the fuzzer runs them (`-timeout=10`): a
/// hang is a finding (a busy loop on hostile bytes), and must fail here
/// rather than hang the test run.
const DEADLINE: Duration = Duration::from_secs(10);

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `dir`, sorted; none if it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.map(|entry| entry.expect("a readable folder").path()).collect();
    files.sort();
    files
}

/// Every target's corpus and crash inputs through the target; a failing
/// file is named. Empty corpora fail too: each target's must be committed.
#[test]
fn every_corpus_and_regression_file_replays() {
    for (name, target) in targets::TARGETS {
        assert!(fuzz_dir().join("fuzz_targets").join(format!("{name}.rs")).is_file(), "no fuzzer binary for {name}");
        let mut inputs = files(&fuzz_dir().join("corpus").join(name));
        assert!(!inputs.is_empty(), "fuzz/corpus/{name} is empty: commit the minimized corpus");
        inputs.extend(files(&fuzz_dir().join("regressions").join(name)));
        for path in &inputs {
            let data = fs::read(path).expect("a readable file");
            let (done, finished) = mpsc::channel();
            thread::spawn(move || done.send(panic::catch_unwind(|| target(&data)).is_ok()));
            match finished.recv_timeout(DEADLINE) {
                Ok(true) => {}
                Ok(false) => panic!("fuzz target {name} fails on {}", path.display()),
                Err(_) => panic!("fuzz target {name} takes over {DEADLINE:?} on {}", path.display()),
            }
        }
    }
}

/// A folder left behind by a renamed target would go unreplayed.
#[test]
fn every_corpus_folder_belongs_to_a_target() {
    for folder in ["corpus", "regressions"] {
        for path in files(&fuzz_dir().join(folder)) {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            assert!(targets::TARGETS.iter().any(|(n, _)| *n == name), "fuzz/{folder}/{name} is no target's");
        }
    }
}
