//! Toolchains installed on first use into the cache folder, and what the
//! JavaScript and Python builders share: running a tool with its output
//! kept for the error, content hashes of source folders, a build cache.
//!
//! A toolchain lives in `<cache>/toolchains/<name>/` and is complete when
//! its `.complete` file exists. Installing holds an exclusive lock on
//! `<cache>/toolchains/<name>.lock`, so processes that need the same
//! toolchain at once (parallel tests, several `gust up`) install it once and
//! the others wait, then use it.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use super::BuildProgress;

/// Lines of a tool's output kept for an error report.
const ERROR_TAIL: usize = 60;

/// The file marking a complete install.
const COMPLETE: &str = ".complete";

/// Folder names never part of a function's sources.
const SKIP: &[&str] = &["node_modules", "__pycache__", "target", "dist", "venv"];

/// `<cache>/<sub>` (the cache is `$GUST_CACHE_DIR`, else `~/.cache/gust`).
pub fn cache_dir(sub: &str) -> PathBuf {
    gust_runtime::ComponentCache::default_dir().join(sub)
}

/// Installs toolchain `name` with `install(dir)` unless a complete copy is
/// there, and returns its folder. `what` names it in progress notes.
pub fn ensure(
    name: &str,
    what: &str,
    progress: &dyn BuildProgress,
    install: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let root = cache_dir("toolchains");
    let dir = root.join(name);
    if dir.join(COMPLETE).is_file() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let lock_path = root.join(format!("{name}.lock"));
    let lock = File::create(&lock_path)
        .with_context(|| format!("cannot create {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        progress.note(&format!("waiting for another gust installing {what}"));
        lock.lock()
            .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    }
    if dir.join(COMPLETE).is_file() {
        return Ok(dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    progress.note(&format!(
        "installing {what} into {} (once per machine)",
        dir.display()
    ));
    if let Err(e) = install(&dir) {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e.context(format!("installing {what} failed")));
    }
    std::fs::write(dir.join(COMPLETE), name)
        .with_context(|| format!("cannot write into {}", dir.display()))?;
    progress.note(&format!("installed {what}"));
    Ok(dir)
}

/// Fails with `hint` unless `program --version` runs.
pub fn require(program: &str, hint: &str) -> Result<()> {
    let ok = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        bail!("`{program}` was not found on PATH: {hint}")
    }
}

/// Runs `cmd` to completion; on failure the error is `doing` followed by
/// the last lines of its output.
pub fn run(cmd: &mut Command, doing: &str) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("{doing}: cannot start {:?}", cmd.get_program()))?;
    if out.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !stdout.trim().is_empty() {
        text = format!("{stdout}\n{text}");
    }
    bail!("{doing} failed:\n{}", tail(&text))
}

/// The last lines of `text`.
pub fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let start = lines.len().saturating_sub(ERROR_TAIL);
    lines[start..].join("\n")
}

/// A hash of every source file under `dir` (paths and bytes; package and
/// build folders and hidden entries left out) and of `extra`.
pub fn source_hash(dir: &Path, extra: &[&[u8]]) -> Result<String> {
    let mut files = Vec::new();
    collect(dir, dir, &mut files)?;
    files.sort();
    let mut hasher = Sha256::new();
    for part in extra {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let mut buf = Vec::new();
    for (rel, path) in files {
        buf.clear();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut buf))
            .with_context(|| format!("cannot read {}", path.display()))?;
        hasher.update((rel.len() as u64).to_le_bytes());
        hasher.update(rel.as_bytes());
        hasher.update((buf.len() as u64).to_le_bytes());
        hasher.update(&buf);
    }
    Ok(hex::encode(&hasher.finalize()[..16]))
}

/// The source files under `dir` (as [`source_hash`] sees them), relative
/// to it, in order.
pub fn source_files(dir: &Path) -> Result<Vec<String>> {
    let mut files = Vec::new();
    collect(dir, dir, &mut files)?;
    let mut names: Vec<String> = files.into_iter().map(|(rel, _)| rel).collect();
    names.sort();
    Ok(names)
}

/// A short hash of `bytes`.
pub fn source_hash_of(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..8])
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || SKIP.contains(&name.as_str()) {
            continue;
        }
        let path = entry.path();
        let Ok(kind) = std::fs::metadata(&path).map(|m| m.file_type()) else {
            continue;
        };
        if kind.is_dir() {
            collect(root, &path, files)?;
        } else if kind.is_file() {
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            files.push((rel, path));
        }
    }
    Ok(())
}

/// Builds into `<cache>/builds/<key>.wasm` with `build(work, out)` unless
/// that file exists (a build of the same sources, SDK and toolchain).
/// `work` is a private scratch folder removed afterwards; `out` is where
/// the component must be written.
pub fn cached_build(key: &str, build: impl FnOnce(&Path, &Path) -> Result<()>) -> Result<PathBuf> {
    let builds = cache_dir("builds");
    let done = builds.join(format!("{key}.wasm"));
    if done.is_file() {
        return Ok(done);
    }
    let work = builds.join(format!("work-{key}-{}-{}", std::process::id(), unique()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let out = work.join("component.wasm");
    let result = build(&work, &out).and_then(|()| {
        std::fs::rename(&out, &done)
            .with_context(|| format!("cannot move the component to {}", done.display()))
    });
    let _ = std::fs::remove_dir_all(&work);
    result.map(|()| done)
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Copies the WIT folder `from` to `to`, adding the world of script
/// functions (both exports, so one component serves whatever trigger the
/// manifest gives it) to `gust.wit`, and with `rewrite` applied to every
/// file's text.
pub fn copy_wit(from: &Path, to: &Path, rewrite: &dyn Fn(&str) -> String) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_wit(&path, &target, rewrite)?;
        } else if path.extension().is_some_and(|e| e == "wit") {
            let mut text = rewrite(
                &std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
            );
            if entry.file_name() == "gust.wit" {
                text.push_str(SCRIPT_WORLD);
            }
            std::fs::write(&target, text)
                .with_context(|| format!("cannot write {}", target.display()))?;
        }
    }
    Ok(())
}

/// The world JavaScript and Python functions are built for.
pub const SCRIPT_WORLD_NAME: &str = "script-function";

const SCRIPT_WORLD: &str = "
/// A JavaScript or Python function built by `gust build`: it serves HTTP
/// requests and events alike (its trigger in gust.toml decides which).
world script-function {
    include http-function;
    export event-handler;
}
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_hash_follows_sources_and_skips_packages() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(dir.join("src/index.ts"), "export {}").unwrap();
        let first = source_hash(dir, &[b"sdk-1"]).unwrap();
        std::fs::create_dir_all(dir.join("node_modules/x")).unwrap();
        std::fs::write(dir.join("node_modules/x/i.js"), "1").unwrap();
        std::fs::create_dir_all(dir.join("__pycache__")).unwrap();
        std::fs::write(dir.join("__pycache__/a.pyc"), "1").unwrap();
        assert_eq!(source_hash(dir, &[b"sdk-1"]).unwrap(), first);
        assert_ne!(source_hash(dir, &[b"sdk-2"]).unwrap(), first);
        std::fs::write(dir.join("src/index.ts"), "export {};").unwrap();
        assert_ne!(source_hash(dir, &[b"sdk-1"]).unwrap(), first);
    }

    #[test]
    fn a_failed_command_reports_its_output() {
        let e = run(
            Command::new("sh").args(["-c", "echo broken >&2; exit 3"]),
            "testing",
        )
        .unwrap_err();
        assert!(format!("{e}").contains("testing failed:\nbroken"), "{e}");
        assert!(require("gust-no-such-program", "install it").is_err());
    }
}
