//! Builds apps' functions into WebAssembly components.
//!
//! [`build_apps`] collects every function source of one or more apps, hands
//! each kind to its builder ([`rust`]: cargo crates; [`js`]: JavaScript and
//! TypeScript folders; [`python`]: Python folders) and copies each component
//! to `<app>/.gust/build/`. Prebuilt `.wasm` sources pass through. One
//! failing function fails its own app only: the others are still built.

pub mod js;
pub mod python;
pub mod rust;
pub mod toolchain;

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
    let mut scripts: Vec<Source> = Vec::new();
    for app in apps {
        for f in &app.functions {
            if matches!(f.source, Source::Js { .. } | Source::Python { .. })
                && !scripts.contains(&f.source)
            {
                scripts.push(f.source.clone());
            }
        }
    }
    progress.start(crates.len() + scripts.len());
    let mut built = Built {
        rust: rust::build(&crates, target, progress),
        scripts: build_scripts(&scripts, progress),
    };
    built.scripts.sort_by(|a, b| a.0.cmp(&b.0));
    progress.finish();
    apps.iter().map(|app| collect_app(app, &built)).collect()
}

/// Everything the builders produced.
struct Built {
    rust: rust::Built,
    /// Per JavaScript/Python folder: its component or the error.
    scripts: Vec<(PathBuf, std::result::Result<PathBuf, String>)>,
}

impl Built {
    fn script(&self, dir: &Path) -> std::result::Result<&Path, String> {
        match self.scripts.iter().find(|(d, _)| d == dir) {
            Some((_, Ok(wasm))) => Ok(wasm),
            Some((_, Err(e))) => Err(e.clone()),
            None => Err(format!("{} was not built", dir.display())),
        }
    }
}

/// Builds JavaScript and Python folders, as many at once as there are
/// cores (each build is mostly one process on one core).
fn build_scripts(
    sources: &[Source],
    progress: &dyn BuildProgress,
) -> Vec<(PathBuf, std::result::Result<PathBuf, String>)> {
    let parallel = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..parallel.min(sources.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(source) = sources.get(i) else { break };
                    let (dir, result) = build_script(source, progress);
                    results.lock().expect("results lock").push((dir, result));
                }
            });
        }
    });
    results.into_inner().expect("results lock")
}

/// Builds one JavaScript or Python folder.
fn build_script(
    source: &Source,
    progress: &dyn BuildProgress,
) -> (PathBuf, std::result::Result<PathBuf, String>) {
    let (dir, language) = match source {
        Source::Js { dir } => (dir, "JavaScript/TypeScript"),
        Source::Python { dir } => (dir, "Python"),
        _ => unreachable!("only script sources are built here"),
    };
    let name = source_name(dir);
    progress.building(&name);
    let result = match source {
        Source::Js { dir } => js::build(dir, progress),
        _ => python::build(dir, progress),
    };
    let result = match result {
        Ok(wasm) => {
            progress.built(&name);
            Ok(wasm)
        }
        Err(e) => Err(format!(
            "building {language} function `{name}` ({}) failed:\n{e:#}",
            dir.display()
        )),
    };
    (dir.clone(), result)
}

/// A source folder's name, for progress and output file names.
fn source_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "function".into())
}

/// One app's components from what the builders produced, copied to
/// `<app>/.gust/build/`.
fn collect_app(app: &App, built: &Built) -> Result<BTreeMap<String, PathBuf>> {
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
                        .rust
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
            Source::Js { dir } | Source::Python { dir } => {
                if let Some(copy) = copied.get(dir.as_path()) {
                    copy.clone()
                } else {
                    let wasm = built
                        .script(dir)
                        .map_err(|e| anyhow!("function `{}`: {e}", f.name))?;
                    std::fs::create_dir_all(&out_dir)
                        .with_context(|| format!("cannot create {}", out_dir.display()))?;
                    let copy = out_dir.join(format!("{}.wasm", source_name(dir)));
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
