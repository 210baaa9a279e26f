//! The README stays true: its JSON example is a line barrage really
//! writes, its examples table lists every example, its layout every
//! module, and it stays short enough to read.

use std::path::Path;

use barrage::monitor::format::{Format, write_line};
use barrage::recording::read_line;

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).expect("README.md")
}

/// The text from the heading `## {title}` to the next `## `.
fn section(readme: &str, title: &str) -> String {
    let start = readme.find(&format!("\n## {title}")).unwrap_or_else(|| panic!("no section {title:?}"));
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |end| end + 3);
    rest[..end].to_string()
}

/// The `.rs` files under `dir`, as paths relative to the crate.
fn rust_files(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn the_json_example_is_a_line_barrage_writes() {
    let readme = readme();
    let block = readme.split("```json\n").nth(1).expect("a ```json block");
    let line = block.split('\n').next().expect("a line");
    let recorded = read_line(line).unwrap_or_else(|e| panic!("the README's JSON line: {e}"));
    assert_eq!(recorded.message.get("type"), Some(recorded.message.msg_type()), "\"type\" inside fields too");
    let mut written = Vec::new();
    write_line(&mut written, Format::Json, recorded.ts_ms, recorded.room, &recorded.message);
    assert_eq!(String::from_utf8(written).unwrap(), format!("{line}\n"), "what watch writes for that message");
}

#[test]
fn the_examples_table_lists_every_example() {
    let table = section(&readme(), "Examples");
    let mut files = Vec::new();
    rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples"), &mut files);
    for file in files {
        let name = file.file_stem().unwrap().to_str().unwrap();
        assert!(table.contains(&format!("--example {name}")), "the README's examples table lacks {name}");
    }
}

#[test]
fn the_layout_lists_every_module() {
    let layout = section(&readme(), "Layout");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    for file in files {
        let relative = file.strip_prefix(&src).unwrap();
        let name = file.file_stem().unwrap().to_str().unwrap();
        let listed = match relative.parent().and_then(|dir| dir.to_str()).filter(|dir| !dir.is_empty()) {
            // Top level: `src/settings.rs` (lib.rs and main.rs are the crate).
            None => ["lib", "main"].contains(&name) || layout.contains(&format!("`src/{name}.rs`")),
            Some(dir) => {
                let top = dir.split('/').next().unwrap();
                layout.contains(&format!("`src/{top}/`"))
                    && (["mod", "tests"].contains(&name) || layout.contains(&format!("`{name}`")))
            }
        };
        assert!(listed, "the README's layout does not list src/{}", relative.display());
    }
}

#[test]
fn the_readme_stays_short_enough_to_read() {
    let lines = readme().lines().count();
    assert!(lines < 450, "README.md has {lines} lines; narrative and history belong in BENCHMARKS.md and git");
}
