//! nearcache: a Redis-protocol caching proxy.
//!
//! A request travels `server` (session per client; `server::dispatch`
//! decides its fate, reading `protocol`'s framing and `commands`' table) →
//! `router` (which upstream node) → `upstream` (shared pool or a dedicated
//! connection). `config` loads `proxy.toml`, `observe` owns the metrics and
//! `admin` serves them over HTTP; `timer` keeps every timer on a thread of
//! its own.
//!
//! Each module's settings type lives with the module (`upstream::UpstreamConfig`,
//! `cache::CacheConfig`, …) and `config` composes them, so the modules
//! import each other without a circle (checked by a test below).

pub mod admin;
pub mod cache;
pub mod client_tls;
pub mod commands;
pub mod config;
pub mod failover;
pub mod fill;
pub mod glob;
pub mod observe;
pub mod protocol;
pub mod router;
pub mod server;
pub mod sys;
pub mod tenancy;
pub mod timer;
pub mod upstream;

/// The top-level modules import each other without a circle: each can be
/// read, tested and replaced knowing only the ones below it. (Read from the
/// sources: every `crate::<module>` path a module's files name.)
#[cfg(test)]
mod layering {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    fn sources(path: &Path, out: &mut String) {
        if path.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(path).expect("read src").flatten().map(|e| e.path()).collect();
            entries.sort();
            entries.iter().for_each(|p| sources(p, out));
        } else if path.is_file() && path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&std::fs::read_to_string(path).expect("read source"));
        }
    }

    fn imports() -> BTreeMap<String, BTreeSet<String>> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
        let modules: Vec<String> =
            lib.lines().filter_map(|l| l.strip_prefix("pub mod ")?.strip_suffix(';')).map(str::to_string).collect();
        let mut graph = BTreeMap::new();
        for module in &modules {
            let mut text = String::new();
            sources(&src.join(module), &mut text);
            sources(&src.join(format!("{module}.rs")), &mut text);
            let used =
                modules.iter().filter(|m| *m != module && text.contains(&format!("crate::{m}"))).cloned().collect();
            graph.insert(module.clone(), used);
        }
        graph
    }

    /// Worker threads' runtimes have no time driver: a timer made there
    /// with `tokio::time` would panic. Every timer comes from `timer`.
    #[test]
    fn timers_are_made_by_the_timer_module_only() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut offenders = Vec::new();
        let mut files = String::new();
        for entry in std::fs::read_dir(&src).expect("read src").flatten() {
            let path = entry.path();
            // The timer module, and this test's own patterns.
            if path.file_name().is_some_and(|n| n == "timer.rs" || n == "lib.rs") {
                continue;
            }
            files.clear();
            sources(&path, &mut files);
            let made_here = files.contains("use tokio::time")
                || files
                    .match_indices("tokio::time::")
                    .any(|(at, m)| files[at + m.len()..].starts_with(|c: char| c.is_ascii_lowercase()));
            if made_here {
                offenders.push(path.display().to_string());
            }
        }
        assert!(offenders.is_empty(), "tokio::time timers made outside src/timer.rs: {offenders:?}");
    }

    #[test]
    fn top_level_modules_import_no_circle() {
        let graph = imports();
        assert!(graph.len() > 10, "{graph:?}");
        // Depth-first search from every module; a module met again on the
        // path is a circle.
        fn visit(m: &str, graph: &BTreeMap<String, BTreeSet<String>>, path: &mut Vec<String>) {
            if let Some(at) = path.iter().position(|p| p == m) {
                panic!("import circle: {} -> {m}", path[at..].join(" -> "));
            }
            path.push(m.to_string());
            for next in graph.get(m).into_iter().flatten() {
                visit(next, graph, path);
            }
            path.pop();
        }
        for module in graph.keys() {
            visit(module, &graph, &mut Vec::new());
        }
    }
}
