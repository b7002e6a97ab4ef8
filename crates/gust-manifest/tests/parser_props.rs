//! Property tests: `gust.toml`, `node.toml`, sizes, durations, route
//! templates and key paths take any input without panicking and fail with
//! an error that names a place. Cases per property: 256, or
//! `PROPTEST_CASES` for a longer run (see bench/README.md).

use std::path::Path;

use gust_manifest::{key_steps, locate, parse_app, parse_duration, parse_size, validate_route};
use proptest::prelude::*;

const VALID: &str = r#"[app]
name = "a"
[variables]
token = { default = "x", secret = true }
[[function]]
name = "f"
source = "f.wasm"
trigger = { http = { route = "/a/{id}", methods = ["GET"] } }
retry = { strategy = "exponential", max_attempts = 5, min = "1s", max = "1m" }
limits = { memory = "64MiB", timeout = "30s", concurrency = 64, max_body = "1MiB" }
[[function]]
name = "g"
source = "f.wasm"
trigger = { queue = { queue = "jobs" } }
[gateway]
[[gateway.route]]
name = "r"
path = "/r"
target = { function = "f" }
"#;

/// `VALID` with one span replaced by arbitrary text.
fn mutated() -> impl Strategy<Value = String> {
    (0..VALID.len(), 0..16usize, "[ -~\n]{0,24}").prop_map(|(at, len, with)| {
        let start = (0..=at)
            .rev()
            .find(|i| VALID.is_char_boundary(*i))
            .unwrap_or(0);
        let end = (start + len).min(VALID.len());
        let end = (end..=VALID.len())
            .find(|i| VALID.is_char_boundary(*i))
            .unwrap_or(VALID.len());
        format!("{}{}{}", &VALID[..start], with, &VALID[end..])
    })
}

fn app_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f.wasm"), b"\0asm").unwrap();
    dir
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn manifests_never_panic_and_errors_are_located(text in mutated()) {
        let dir = app_dir();
        if let Err(e) = parse_app(dir.path(), &dir.path().join("gust.toml"), &text) {
            prop_assert!(!e.message.is_empty());
            prop_assert!(e.line <= text.lines().count() + 1, "{e}");
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
        let _ = parse_app(Path::new("/nonexistent"), Path::new("/nonexistent/gust.toml"), &text);
        let _ = parse_size(&text);
        let _ = parse_duration(&text);
        let _ = validate_route(&text);
        let _ = locate(&text, &key_steps(&text));
    }

    #[test]
    fn node_configs_never_panic(text in "\\PC{0,200}") {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, format!("app = \"x\"\n{text}")).unwrap();
        let _ = gust_manifest::NodeConfig::load(&path);
    }

    #[test]
    fn sizes_are_exact_or_refused(n in 0u64..1u64 << 40, unit in prop::sample::select(vec!["", "B", "KiB", "MiB", "KB"])) {
        let text = format!("{n}{unit}");
        let factor = match unit { "KiB" => 1024, "MiB" => 1 << 20, "KB" => 1000, _ => 1 };
        match n.checked_mul(factor) {
            Some(bytes) if bytes < 1 << 53 => prop_assert_eq!(parse_size(&text).unwrap(), bytes),
            _ => {}
        }
    }
}
