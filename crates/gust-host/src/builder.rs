//! Builds an app's Rust function crates into WebAssembly components.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use gust_manifest::{App, Source};

/// The target every function is built for.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// Reports build progress (the CLI draws a progress bar).
pub trait BuildProgress: Sync {
    /// `total` crates will be built.
    fn start(&self, total: usize);
    /// Building the crate of `functions` begins.
    fn building(&self, package: &str);
    /// One crate is done.
    fn built(&self, package: &str);
    /// All done.
    fn finish(&self);
}

/// Progress that is not shown.
pub struct QuietProgress;

impl BuildProgress for QuietProgress {
    fn start(&self, _: usize) {}
    fn building(&self, _: &str) {}
    fn built(&self, _: &str) {}
    fn finish(&self) {}
}

/// The cargo target folder for an app's functions: `$CARGO_TARGET_DIR` when
/// set (sharing compiled dependencies between apps), else `.gust/target`.
pub fn target_dir(app: &App) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| app.state_dir().join("target"))
}

/// Builds every crate-sourced function and returns, per function, the path
/// of its component. Prebuilt `.wasm` sources are passed through.
pub fn build_app(app: &App, progress: &dyn BuildProgress) -> Result<BTreeMap<String, PathBuf>> {
    let mut crates: BTreeMap<PathBuf, String> = BTreeMap::new();
    for f in &app.functions {
        if let Source::Crate { dir, package } = &f.source {
            crates.insert(dir.clone(), package.clone());
        }
    }
    if !crates.is_empty() {
        ensure_wasm_target()?;
    }
    progress.start(crates.len());
    let target = target_dir(app);
    let out_dir = app.state_dir().join("build");
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let mut built: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
    for (dir, package) in &crates {
        progress.building(package);
        let wasm = build_crate(dir, package, &target)?;
        let copy = out_dir.join(format!("{package}.wasm"));
        std::fs::copy(&wasm, &copy)
            .with_context(|| format!("cannot copy {} to {}", wasm.display(), copy.display()))?;
        built.insert(dir.clone(), copy);
        progress.built(package);
    }
    progress.finish();
    Ok(app
        .functions
        .iter()
        .map(|f| {
            let path = match &f.source {
                Source::Wasm(path) => path.clone(),
                Source::Crate { dir, .. } => built[dir].clone(),
            };
            (f.name.clone(), path)
        })
        .collect())
}

fn build_crate(dir: &Path, package: &str, target: &Path) -> Result<PathBuf> {
    let output = Command::new(cargo())
        .args([
            "build",
            "--release",
            "--target",
            WASM_TARGET,
            "--manifest-path",
        ])
        .arg(dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target)
        .output()
        .context("cannot run cargo; is Rust installed (https://rustup.rs)?")?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "building `{package}` ({}) failed:\n{}",
            dir.display(),
            tail.join("\n")
        );
    }
    let wasm = target
        .join(WASM_TARGET)
        .join("release")
        .join(format!("{}.wasm", package.replace('-', "_")));
    if !wasm.is_file() {
        bail!(
            "cargo built `{package}` but produced no {}; is it a library with `crate-type = [\"cdylib\"]`?",
            wasm.display()
        );
    }
    Ok(wasm)
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
