//! The layout rules of the README's "Layout" section, checked on the source
//! tree: module size, module docs, which module may import which, and each
//! default written once.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn src() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            (rel, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// The code of a file without its `#[cfg(test)]` modules (they sit at the
/// end of each file in this crate).
fn code(text: &str) -> &str {
    text.find("\n#[cfg(test)]").map_or(text, |i| &text[..i])
}

#[test]
fn no_module_is_longer_than_600_lines_without_its_tests() {
    let long: Vec<_> = src()
        .into_iter()
        .map(|(p, t)| (p, code(&t).lines().count()))
        .filter(|(_, n)| *n > 600)
        .collect();
    assert!(long.is_empty(), "split these modules: {long:?}");
}

#[test]
fn every_module_says_what_it_is() {
    let undocumented: Vec<_> = src()
        .into_iter()
        .filter(|(_, t)| !t.trim_start().starts_with("//!"))
        .map(|(p, _)| p)
        .collect();
    assert!(undocumented.is_empty(), "no //! doc: {undocumented:?}");
}

#[test]
fn leaves_import_nothing_from_the_engine_and_net_and_publish_meet_only_through_rings() {
    let mut bad = Vec::new();
    for (p, t) in src() {
        let c = code(&t);
        let leaf = p == "src/spool.rs"
            || p.starts_with("src/config/")
            || p == "src/cli.rs"
            || p == "src/logging.rs"
            || p == "src/clock.rs"
            || p == "src/secret.rs"
            || p.starts_with("src/auth/");
        if leaf && c.contains("crate::engine") {
            bad.push(format!("{p} imports crate::engine"));
        }
        if p.starts_with("src/engine/net") && (c.contains("publish::") || c.contains("publish}")) {
            bad.push(format!("{p} imports the publisher"));
        }
        if p.starts_with("src/engine/publish") && (c.contains("net::") || c.contains("super::net"))
        {
            bad.push(format!("{p} imports the network thread"));
        }
        if (p == "src/clock.rs" || p == "src/secret.rs") && c.contains("crate::") {
            bad.push(format!("{p} is a leaf but imports the crate"));
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn each_default_is_written_once() {
    for needle in [
        "\"market.ticks\"",
        "\"panda-feed-spool\"",
        "\"mock_api_key\"",
        "\"mock_access_token\"",
        "\"wss://ws.kite.trade/\"",
    ] {
        let hits: Vec<_> = src()
            .into_iter()
            .filter(|(_, t)| t.contains(needle))
            .map(|(p, t)| (p, t.matches(needle).count()))
            .collect();
        assert_eq!(
            hits,
            vec![("src/config/defaults.rs".to_owned(), 1)],
            "{needle} must be written once, in src/config/defaults.rs"
        );
    }
}
