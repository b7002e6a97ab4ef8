//! Rust function crates: built for `wasm32-wasip2` with cargo.
//!
//! Crates are grouped by their cargo workspace, and each workspace is built
//! by one `cargo build -p a -p b ...` (with `--keep-going`), so dependencies
//! the crates share compile once and the crates compile in parallel; a crate
//! that is its own workspace (the `gust new` templates) is a group of one.
//!
//! Apps name the SDK by version (`gust-sdk = "0.1"`). Unless the workspace
//! patches `gust-sdk` itself with a path that exists (as this repository's
//! examples do), the build adds `--config patch.crates-io.gust-sdk.path=...`
//! pointing at the SDK shipped inside the binary ([`crate::sdk`]), so an app
//! builds wherever it lives and the binary was copied.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, Result};

use super::BuildProgress;
use crate::sdk;

/// The target every function is built for.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// Lines of cargo's own output kept for an error report.
const ERROR_TAIL: usize = 60;

/// A function crate to build.
#[derive(Debug, Clone)]
pub struct Crate {
    /// The crate folder (with its `Cargo.toml`).
    pub dir: PathBuf,
    /// Its package name.
    pub package: String,
}

/// What a build produced: a component per crate folder, or why not.
#[derive(Debug, Default)]
pub struct Built {
    components: BTreeMap<PathBuf, PathBuf>,
    failures: BTreeMap<PathBuf, String>,
}

impl Built {
    /// The component built from the crate in `dir`, or the build error.
    pub fn component(&self, dir: &Path) -> std::result::Result<&Path, String> {
        let key = canonical(dir);
        if let Some(wasm) = self.components.get(&key) {
            return Ok(wasm);
        }
        Err(self
            .failures
            .get(&key)
            .cloned()
            .unwrap_or_else(|| format!("{} was not built", dir.display())))
    }
}

/// Builds `crates` into components under `target` (a cargo target folder).
pub fn build(crates: &[Crate], target: &Path, progress: &dyn BuildProgress) -> Built {
    let mut built = Built::default();
    if crates.is_empty() {
        return built;
    }
    if let Err(e) = ensure_wasm_target() {
        for c in crates {
            built.failures.insert(canonical(&c.dir), format!("{e:#}"));
        }
        return built;
    }
    let mut groups: BTreeMap<PathBuf, Vec<&Crate>> = BTreeMap::new();
    for c in crates {
        groups.entry(workspace_root(&c.dir)).or_default().push(c);
    }
    for (root, members) in groups {
        if let Err(e) = build_workspace(&root, &members, target, progress, &mut built) {
            for c in members {
                built
                    .failures
                    .entry(canonical(&c.dir))
                    .or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    built
}

/// Runs one `cargo build` for `members` of the workspace at `root` and
/// records each member's component or error in `built`.
fn build_workspace(
    root: &Path,
    members: &[&Crate],
    target: &Path,
    progress: &dyn BuildProgress,
    built: &mut Built,
) -> Result<()> {
    let mut cmd = Command::new(cargo());
    cmd.args([
        "build",
        "--release",
        "--keep-going",
        "--target",
        WASM_TARGET,
    ])
    .args(["--message-format", "json"])
    .arg("--manifest-path")
    .arg(root.join("Cargo.toml"));
    for c in members {
        cmd.args(["-p", &c.package]);
        progress.building(&c.package);
    }
    if let Some(patch) = sdk_patch(root)? {
        cmd.args(["--config", &patch]);
    }
    let mut child = cmd
        .env("CARGO_TARGET_DIR", target)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run cargo; is Rust installed (https://rustup.rs)?")?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let wanted: BTreeMap<PathBuf, &str> = members
        .iter()
        .map(|c| (canonical(&c.dir), c.package.as_str()))
        .collect();
    let cargo_log = Mutex::new(Vec::<String>::new());
    let mut errors: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    let mut all_errors: Vec<String> = Vec::new();
    std::thread::scope(|s| {
        s.spawn(|| {
            for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                if line.contains("Blocking waiting for file lock") {
                    progress.note("waiting for another cargo build using the same target folder");
                }
                if !is_cargo_status(&line) {
                    cargo_log.lock().expect("log lock").push(line);
                }
            }
        });
        for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let crate_dir = msg["manifest_path"]
                .as_str()
                .and_then(|m| Path::new(m).parent())
                .map(canonical);
            match msg["reason"].as_str() {
                Some("compiler-artifact") => {
                    let name = msg["target"]["name"].as_str().unwrap_or("?");
                    progress.compiled(name, msg["fresh"].as_bool().unwrap_or(false));
                    let Some(dir) = crate_dir else { continue };
                    let Some(package) = wanted.get(&dir) else {
                        continue;
                    };
                    let wasm = msg["filenames"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|f| f.as_str())
                        .find(|f| f.ends_with(".wasm"));
                    match wasm.map(|w| keep(Path::new(w), &dir, package, target)) {
                        Some(Ok(kept)) => {
                            built.components.insert(dir, kept);
                            progress.built(package);
                        }
                        Some(Err(e)) => {
                            built.failures.insert(dir, format!("{e:#}"));
                        }
                        None => {
                            built.failures.insert(
                                dir,
                                format!(
                                    "cargo built `{package}` but produced no .wasm; is it a library with `crate-type = [\"cdylib\"]`?"
                                ),
                            );
                        }
                    }
                }
                Some("compiler-message") if msg["message"]["level"] == "error" => {
                    let rendered = msg["message"]["rendered"]
                        .as_str()
                        .unwrap_or_default()
                        .trim_end()
                        .to_string();
                    all_errors.push(rendered.clone());
                    if let Some(dir) = crate_dir {
                        errors.entry(dir).or_default().push(rendered);
                    }
                }
                _ => {}
            }
        }
    });
    let status = child.wait().context("cargo did not finish")?;
    let log = cargo_log.into_inner().expect("log lock");
    for (dir, package) in &wanted {
        if built.components.contains_key(dir) || built.failures.contains_key(dir) {
            continue;
        }
        let detail = match errors.get(dir) {
            Some(own) => own.join("\n"),
            None if !all_errors.is_empty() => all_errors.join("\n"),
            None => tail(&log),
        };
        let hint = sdk_hint(&detail);
        built.failures.insert(
            dir.clone(),
            format!(
                "building `{package}` ({}) failed:\n{detail}{hint}",
                dir.display()
            ),
        );
    }
    if !status.success() && wanted.keys().all(|d| built.components.contains_key(d)) {
        // Every function was built; what failed is not needed to run the apps.
        tracing::debug!(root = %root.display(), "cargo finished with errors:\n{}", tail(&log));
    }
    Ok(())
}

/// Copies a freshly built component out of cargo's output folder, where a
/// later build of another workspace could overwrite a file of the same name,
/// to `<target>/gust-components/<package>-<hash of the crate folder>.wasm`.
fn keep(wasm: &Path, dir: &Path, package: &str, target: &Path) -> Result<PathBuf> {
    let mut hasher = DefaultHasher::new();
    dir.hash(&mut hasher);
    let kept_dir = target.join("gust-components");
    std::fs::create_dir_all(&kept_dir)
        .with_context(|| format!("cannot create {}", kept_dir.display()))?;
    let kept = kept_dir.join(format!("{package}-{:016x}.wasm", hasher.finish()));
    std::fs::copy(wasm, &kept)
        .with_context(|| format!("cannot copy {} to {}", wasm.display(), kept.display()))?;
    Ok(kept)
}

/// The `--config` value that points `gust-sdk` at the SDK this binary
/// carries, or `None` when the workspace brings its own (a `[patch]` with a
/// path that exists) and `$GUST_SDK_PATH` is not set.
fn sdk_patch(root: &Path) -> Result<Option<String>> {
    if std::env::var_os(sdk::SDK_PATH_ENV).is_none() && patches_sdk(root) {
        return Ok(None);
    }
    let dir = sdk::rust_sdk()?;
    let path = toml::Value::String(dir.display().to_string());
    Ok(Some(format!(
        "patch.crates-io.{}.path={path}",
        sdk::RUST_CRATE
    )))
}

/// Whether the manifest at `root` patches `gust-sdk` with a path that exists.
fn patches_sdk(root: &Path) -> bool {
    let Some(manifest) = read_manifest(root) else {
        return false;
    };
    manifest
        .get("patch")
        .and_then(|p| p.get("crates-io"))
        .and_then(|p| p.get(sdk::RUST_CRATE))
        .and_then(|p| p.get("path"))
        .and_then(|p| p.as_str())
        .is_some_and(|p| root.join(p).join("Cargo.toml").is_file())
}

/// When cargo could not find `gust-sdk`, says how apps name it.
fn sdk_hint(detail: &str) -> &'static str {
    if detail.contains(sdk::RUST_CRATE)
        && (detail.contains("failed to select a version") || detail.contains("no matching package"))
    {
        "\n  hint: name the SDK as `gust-sdk = \"0.1\"` in [dependencies]; `gust` supplies it (set GUST_SDK_PATH to use another copy)"
    } else {
        ""
    }
}

/// The folder of the cargo workspace `dir` belongs to (found as cargo does:
/// `package.workspace`, else the nearest folder up with a `[workspace]` that
/// does not exclude it), else `dir` itself.
pub fn workspace_root(dir: &Path) -> PathBuf {
    let dir = canonical(dir);
    if let Some(own) = read_manifest(&dir) {
        if own.get("workspace").is_some() {
            return dir;
        }
        if let Some(path) = own
            .get("package")
            .and_then(|p| p.get("workspace"))
            .and_then(|w| w.as_str())
        {
            return canonical(&dir.join(path));
        }
    }
    for ancestor in dir.ancestors().skip(1) {
        let Some(manifest) = read_manifest(ancestor) else {
            continue;
        };
        let Some(workspace) = manifest.get("workspace") else {
            continue;
        };
        let excluded = workspace
            .get("exclude")
            .and_then(|e| e.as_array())
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_str())
            .any(|e| dir.starts_with(ancestor.join(e)));
        if !excluded {
            return ancestor.to_path_buf();
        }
    }
    dir
}

/// `dir/Cargo.toml` parsed, if it exists and parses.
fn read_manifest(dir: &Path) -> Option<toml::Table> {
    let text = std::fs::read_to_string(dir.join("Cargo.toml")).ok()?;
    text.parse().ok()
}

/// Whether a line of cargo's stderr is routine status (`Compiling x`, ...).
fn is_cargo_status(line: &str) -> bool {
    const VERBS: &[&str] = &[
        "Compiling",
        "Checking",
        "Finished",
        "Downloaded",
        "Downloading",
        "Updating",
        "Locking",
        "Adding",
        "Blocking",
        "Fresh",
        "Building",
    ];
    let first = line.split_whitespace().next().unwrap_or("");
    VERBS.contains(&first)
        || (line.starts_with("warning: Patch `") && line.contains("was not used"))
}

/// The last lines of cargo's output.
fn tail(log: &[String]) -> String {
    let start = log.len().saturating_sub(ERROR_TAIL);
    log[start..].join("\n")
}

fn canonical(dir: &Path) -> PathBuf {
    dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf())
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Installs the `wasm32-wasip2` target with rustup when it is missing.
pub fn ensure_wasm_target() -> Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let installed = Command::new("rustup")
            .args(["target", "list", "--installed"])
            .output();
        match installed {
            Ok(out)
                if String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .any(|l| l.trim() == WASM_TARGET) =>
            {
                Ok(())
            }
            Ok(_) => {
                eprintln!(
                    "gust: installing the {WASM_TARGET} target (rustup target add {WASM_TARGET})"
                );
                let status = Command::new("rustup")
                    .args(["target", "add", WASM_TARGET])
                    .status()
                    .map_err(|e| format!("cannot run rustup: {e}"))?;
                if status.success() {
                    Ok(())
                } else {
                    Err(format!(
                        "`rustup target add {WASM_TARGET}` failed; run it by hand and retry"
                    ))
                }
            }
            // No rustup: trust the toolchain and let cargo report a missing target.
            Err(_) => Ok(()),
        }
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn finds_the_workspace_a_crate_belongs_to() {
        let tmp = tempfile::tempdir().unwrap();
        let root = canonical(tmp.path());
        write(
            &root.join("Cargo.toml"),
            "[workspace]\nmembers = [\"apps/*/functions/*\"]\nexclude = [\"apps/solo\"]\n",
        );
        let member = root.join("apps/a/functions/f");
        write(&member.join("Cargo.toml"), "[package]\nname = \"f\"\n");
        let own = root.join("apps/b/functions/g");
        write(
            &own.join("Cargo.toml"),
            "[package]\nname = \"g\"\n[workspace]\n",
        );
        let excluded = root.join("apps/solo/functions/h");
        write(&excluded.join("Cargo.toml"), "[package]\nname = \"h\"\n");
        let pointed = root.join("elsewhere/p");
        write(
            &pointed.join("Cargo.toml"),
            "[package]\nname = \"p\"\nworkspace = \"../../apps/b/functions/g\"\n",
        );
        assert_eq!(workspace_root(&member), root);
        assert_eq!(workspace_root(&own), own);
        assert_eq!(workspace_root(&excluded), excluded);
        assert_eq!(workspace_root(&pointed), own);
    }

    #[test]
    fn a_workspace_patch_that_exists_keeps_its_own_sdk() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(
            &root.join("Cargo.toml"),
            "[workspace]\n[patch.crates-io]\ngust-sdk = { path = \"sdk\" }\n",
        );
        assert!(!patches_sdk(root), "the patched path does not exist yet");
        write(
            &root.join("sdk/Cargo.toml"),
            "[package]\nname = \"gust-sdk\"\n",
        );
        assert!(patches_sdk(root));
    }

    #[test]
    fn cargo_status_lines_are_not_errors() {
        assert!(is_cargo_status("   Compiling serde v1.0.0"));
        assert!(is_cargo_status(
            "warning: Patch `gust-sdk v0.1.0 (/x)` was not used in the crate graph."
        ));
        assert!(!is_cargo_status("error: failed to parse manifest"));
        assert!(sdk_hint("error: no matching package named `gust-sdk` found").contains("0.1"));
        assert_eq!(sdk_hint("error[E0425]: cannot find value"), "");
    }
}
