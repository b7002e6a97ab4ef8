//! Builds apps' functions into WebAssembly components.
//!
//! [`build_apps`] collects every function source of one or more apps, hands
//! each kind to its builder ([`rust`]: cargo crates) and copies each
//! component to `<app>/.gust/build/`. Prebuilt `.wasm` sources pass through.
//! One failing function fails its own app only: the others are still built.

pub mod rust;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use gust_manifest::{App, Source};

pub use rust::{WASM_TARGET, ensure_wasm_target};

/// Reports build progress (the CLI draws a progress bar). Every method but
/// `start` and `finish` has an empty default.
pub trait BuildProgress: Sync {
    /// `total` function sources (crates, scripts ...) will be built.
    fn start(&self, total: usize);
    /// Building the function source `name` begins.
    fn building(&self, _name: &str) {}
    /// One compilation unit (a dependency or a function crate) is done;
    /// `fresh` when it was already up to date.
    fn compiled(&self, _unit: &str, _fresh: bool) {}
    /// A note worth showing while waiting (e.g. a lock held by another build).
    fn note(&self, _text: &str) {}
    /// The component of function source `name` is ready.
    fn built(&self, _name: &str) {}
    /// All done.
    fn finish(&self);
}

/// Progress that is not shown.
pub struct QuietProgress;

impl BuildProgress for QuietProgress {
    fn start(&self, _: usize) {}
    fn finish(&self) {}
}

/// The cargo target folder for an app's functions: `$CARGO_TARGET_DIR` when
/// set (sharing compiled dependencies between apps), else `.gust/target`.
pub fn target_dir(app: &App) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| app.state_dir().join("target"))
}

/// Builds every function of `app` and returns, per function, the path of
/// its component.
pub fn build_app(app: &App, progress: &dyn BuildProgress) -> Result<BTreeMap<String, PathBuf>> {
    build_apps(&[app], &target_dir(app), progress)
        .pop()
        .expect("one result per app")
}

/// Builds the functions of several apps together (shared dependencies
/// compile once, crates of one cargo workspace in one `cargo build`), with
/// cargo's output under `target`. Returns one result per app, in order.
pub fn build_apps(
    apps: &[&App],
    target: &Path,
    progress: &dyn BuildProgress,
) -> Vec<Result<BTreeMap<String, PathBuf>>> {
    let mut crates: Vec<rust::Crate> = Vec::new();
    for app in apps {
        for f in &app.functions {
            if let Source::Crate { dir, package } = &f.source
                && !crates.iter().any(|c| &c.dir == dir)
            {
                crates.push(rust::Crate {
                    dir: dir.clone(),
                    package: package.clone(),
                });
            }
        }
    }
    progress.start(crates.len());
    let built = rust::build(&crates, target, progress);
    progress.finish();
    apps.iter().map(|app| collect_app(app, &built)).collect()
}

/// One app's components from what the builders produced, copied to
/// `<app>/.gust/build/`.
fn collect_app(app: &App, built: &rust::Built) -> Result<BTreeMap<String, PathBuf>> {
    let out_dir = app.state_dir().join("build");
    let mut components = BTreeMap::new();
    let mut copied: BTreeMap<&Path, PathBuf> = BTreeMap::new();
    for f in &app.functions {
        let path = match &f.source {
            Source::Wasm(path) => path.clone(),
            Source::Crate { dir, package } => {
                if let Some(copy) = copied.get(dir.as_path()) {
                    copy.clone()
                } else {
                    let wasm = built
                        .component(dir)
                        .map_err(|e| anyhow!("function `{}`: {e}", f.name))?;
                    std::fs::create_dir_all(&out_dir)
                        .with_context(|| format!("cannot create {}", out_dir.display()))?;
                    let copy = out_dir.join(format!("{package}.wasm"));
                    std::fs::copy(wasm, &copy).with_context(|| {
                        format!("cannot copy {} to {}", wasm.display(), copy.display())
                    })?;
                    copied.insert(dir.as_path(), copy.clone());
                    copy
                }
            }
        };
        components.insert(f.name.clone(), path);
    }
    Ok(components)
}
