//! The guest SDKs and WIT files shipped inside the binary.
//!
//! A `gust` binary carries the `sdk/` and `wit/` folders of the source tree
//! it was built from (see `build.rs`). The first build that needs them
//! writes them, once, to a versioned cache folder,
//! `<cache>/sdk/<gust version>-<content hash>/`, with the same layout as the
//! repository (`sdk/rust/gust-sdk`, `sdk/rust/gust-sdk-macros`, `wit/`), so
//! apps build offline from any folder with the SDK of the `gust` that builds
//! them. `<cache>` is `$GUST_CACHE_DIR`, else `$XDG_CACHE_HOME/gust`, else
//! `~/.cache/gust`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_sdk.rs"));
}

/// Set to a `gust-sdk` crate folder to build against it instead of the
/// embedded SDK (for working on the SDK itself).
pub const SDK_PATH_ENV: &str = "GUST_SDK_PATH";

/// The name of the SDK's Rust crate, as apps depend on it.
pub const RUST_CRATE: &str = "gust-sdk";

/// The version requirement apps write for the Rust SDK: `"0.1"` for SDK
/// 0.1.x (`gust-sdk = "0.1"`).
pub fn rust_requirement() -> String {
    let mut parts = embedded::RUST_SDK_VERSION.split('.');
    let major = parts.next().unwrap_or("0");
    let minor = parts.next().unwrap_or("0");
    format!("{major}.{minor}")
}

/// The file written last, marking a complete copy.
const COMPLETE: &str = ".complete";

/// The version folder's name: the binary's version plus a hash of the
/// embedded files (so a changed SDK never reuses an old copy).
pub fn version() -> String {
    format!(
        "{}-{}",
        env!("CARGO_PKG_VERSION"),
        &embedded::CONTENT_HASH[..12]
    )
}

/// The folder the embedded files are written to.
pub fn cache_dir() -> PathBuf {
    gust_runtime::ComponentCache::default_dir()
        .join("sdk")
        .join(version())
}

/// How many files are embedded.
pub fn file_count() -> usize {
    embedded::FILES.len()
}

/// The Rust SDK crate folder to build apps against: `$GUST_SDK_PATH` when
/// set, else the embedded copy (written to [`cache_dir`] on first use).
pub fn rust_sdk() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(SDK_PATH_ENV) {
        let dir = PathBuf::from(dir);
        if !dir.join("Cargo.toml").is_file() {
            anyhow::bail!(
                "{SDK_PATH_ENV}={} holds no Cargo.toml; point it at a gust-sdk crate folder or unset it",
                dir.display()
            );
        }
        return Ok(dir);
    }
    Ok(unpacked()?.join("sdk/rust").join(RUST_CRATE))
}

/// The cache folder with every embedded file written out (once per process,
/// and once per version on disk).
pub fn unpacked() -> Result<PathBuf> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| unpack_to(&cache_dir()).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

/// Writes the embedded files under `dir` unless a complete copy is there.
/// Concurrent writers are safe: each writes a private folder and renames it
/// into place; the loser discards its copy.
pub fn unpack_to(dir: &Path) -> Result<PathBuf> {
    if dir.join(COMPLETE).is_file() {
        return Ok(dir.to_path_buf());
    }
    let parent = dir.parent().context("the SDK cache folder has no parent")?;
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create the SDK cache folder {}", parent.display()))?;
    let staging = parent.join(format!(
        ".{}.{}.tmp",
        dir.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&staging);
    for (rel, bytes) in embedded::FILES {
        let path = staging.join(rel);
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).with_context(|| format!("cannot create {}", p.display()))?;
        }
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    }
    std::fs::write(staging.join(COMPLETE), version())
        .with_context(|| format!("cannot write into {}", staging.display()))?;
    if dir.exists() && !dir.join(COMPLETE).is_file() {
        // A copy left incomplete by a process that died mid-way.
        let _ = std::fs::remove_dir_all(dir);
    }
    match std::fs::rename(&staging, dir) {
        Ok(()) => {}
        Err(_) if dir.join(COMPLETE).is_file() => {
            let _ = std::fs::remove_dir_all(&staging);
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e).with_context(|| format!("cannot create {}", dir.display()));
        }
    }
    Ok(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeds_the_rust_sdk_and_the_wit_contract() {
        let names: Vec<&str> = embedded::FILES.iter().map(|(n, _)| *n).collect();
        for expected in [
            "sdk/rust/gust-sdk/Cargo.toml",
            "sdk/rust/gust-sdk/src/lib.rs",
            "sdk/rust/gust-sdk-macros/Cargo.toml",
            "wit/gust.wit",
        ] {
            assert!(names.contains(&expected), "{expected} not embedded");
        }
        assert!(!names.iter().any(|n| n.contains("/target/")));
    }

    #[test]
    fn the_requirement_matches_the_sdk_version() {
        assert!(embedded::RUST_SDK_VERSION.starts_with(&format!("{}.", rust_requirement())));
    }

    #[test]
    fn unpacks_once_with_the_repository_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("sdk").join(version());
        unpack_to(&dir).unwrap();
        let lib = dir.join("sdk/rust/gust-sdk/src/lib.rs");
        let original = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk/rust/gust-sdk/src/lib.rs"),
        )
        .unwrap();
        assert_eq!(std::fs::read(&lib).unwrap(), original);
        assert!(dir.join("wit/gust.wit").is_file());
        // A second call keeps the complete copy as it is.
        std::fs::write(&lib, "changed").unwrap();
        unpack_to(&dir).unwrap();
        assert_eq!(std::fs::read(&lib).unwrap(), b"changed");
        // Nothing staged is left behind.
        let leftovers: Vec<_> = std::fs::read_dir(dir.parent().unwrap())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }
}
