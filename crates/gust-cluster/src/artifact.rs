//! A deployable artifact: one tar archive holding the app folder (manifest,
//! static files, sources; no build output or local state) under `app/` and
//! each function's compiled component under `components/<function>.wasm`.
//! Nodes unpack it and run the components as they are, never building.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// Folder names never packed: build output, local state, VCS, packages.
const SKIPPED: &[&str] = &[".gust", "target", ".git", "node_modules", "__pycache__"];

/// The largest artifact a node accepts (and the CLI sends).
pub const MAX_ARTIFACT: usize = 256 << 20;

/// Packs `app_dir` and the built `components` (function -> `.wasm` path).
pub fn pack(app_dir: &Path, components: &BTreeMap<String, PathBuf>) -> Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    tar.mode(tar::HeaderMode::Deterministic);
    add_dir(&mut tar, app_dir, Path::new("app"))?;
    for (function, wasm) in components {
        let name = Path::new("components").join(format!("{function}.wasm"));
        tar.append_path_with_name(wasm, &name)
            .with_context(|| format!("cannot pack {}", wasm.display()))?;
    }
    let bytes = tar.into_inner().context("cannot finish the artifact")?;
    if bytes.len() > MAX_ARTIFACT {
        bail!(
            "the artifact is {} MiB, over the {} MiB limit",
            bytes.len() >> 20,
            MAX_ARTIFACT >> 20
        );
    }
    Ok(bytes)
}

/// Adds the files under `dir` as `under/...`, in name order (so the same
/// folder packs to the same bytes), skipping [`SKIPPED`] folders.
fn add_dir(tar: &mut tar::Builder<Vec<u8>>, dir: &Path, under: &Path) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("cannot read {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if SKIPPED.iter().any(|s| name == *s) {
                continue;
            }
            add_dir(tar, &path, &under.join(&name))?;
        } else if kind.is_file() {
            tar.append_path_with_name(&path, under.join(&name))
                .with_context(|| format!("cannot pack {}", path.display()))?;
        }
    }
    Ok(())
}

/// SHA-256 of `bytes`, hex.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// An unpacked artifact.
#[derive(Debug, Clone)]
pub struct Unpacked {
    /// The app folder (holding `gust.toml`).
    pub app_dir: PathBuf,
    /// Function -> its component.
    pub components: BTreeMap<String, PathBuf>,
}

/// Unpacks `bytes` into `dest` (created; entries cannot escape it).
pub fn unpack(bytes: &[u8], dest: &Path) -> Result<Unpacked> {
    std::fs::create_dir_all(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let mut archive = tar::Archive::new(bytes);
    archive.set_preserve_permissions(false);
    for entry in archive
        .entries()
        .context("the artifact is not a tar archive")?
    {
        let mut entry = entry.context("the artifact is damaged")?;
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir()) {
            continue; // no links or devices from an upload
        }
        // `unpack_in` refuses paths that leave `dest`.
        if !entry
            .unpack_in(dest)
            .context("cannot unpack the artifact")?
        {
            bail!("the artifact holds a path outside its folder");
        }
    }
    let app_dir = dest.join("app");
    if !app_dir.join(gust_manifest::MANIFEST_FILE).is_file() {
        bail!("the artifact holds no app/gust.toml");
    }
    let mut components = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(dest.join("components")) {
        for entry in entries.flatten() {
            let path = entry.path();
            if let (Some(stem), Some("wasm")) = (
                path.file_stem().and_then(|s| s.to_str()),
                path.extension().and_then(|s| s.to_str()),
            ) {
                components.insert(stem.to_string(), path.clone());
            }
        }
    }
    Ok(Unpacked {
        app_dir,
        components,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_the_app_without_build_output_and_unpacks_it() {
        let src = tempfile::tempdir().unwrap();
        let app = src.path().join("shop");
        std::fs::create_dir_all(app.join("functions/f/src")).unwrap();
        std::fs::create_dir_all(app.join("functions/f/target/debug")).unwrap();
        std::fs::create_dir_all(app.join(".gust")).unwrap();
        std::fs::create_dir_all(app.join("public")).unwrap();
        std::fs::write(app.join("gust.toml"), "[app]\nname = \"shop\"\n").unwrap();
        std::fs::write(app.join("functions/f/src/lib.rs"), "// f").unwrap();
        std::fs::write(app.join("functions/f/target/debug/big"), "x").unwrap();
        std::fs::write(app.join(".gust/keys.json"), "{}").unwrap();
        std::fs::write(app.join("public/index.html"), "<p>hi</p>").unwrap();
        let wasm = src.path().join("f.wasm");
        std::fs::write(&wasm, b"\0asm").unwrap();
        let components = BTreeMap::from([("f".to_string(), wasm)]);

        let bytes = pack(&app, &components).unwrap();
        assert_eq!(digest(&bytes), digest(&pack(&app, &components).unwrap()));
        let dest = tempfile::tempdir().unwrap();
        let out = unpack(&bytes, dest.path()).unwrap();
        assert!(out.app_dir.join("public/index.html").is_file());
        assert!(out.app_dir.join("functions/f/src/lib.rs").is_file());
        assert!(!out.app_dir.join("functions/f/target").exists());
        assert!(!out.app_dir.join(".gust").exists());
        assert_eq!(std::fs::read(&out.components["f"]).unwrap(), b"\0asm");
    }

    #[test]
    fn refuses_what_is_not_an_app() {
        let dest = tempfile::tempdir().unwrap();
        assert!(unpack(b"not a tar", dest.path()).is_err());
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(1);
        header.set_cksum();
        tar.append_data(&mut header, "other/file", &b"x"[..])
            .unwrap();
        let bytes = tar.into_inner().unwrap();
        let e = unpack(&bytes, dest.path()).unwrap_err();
        assert!(e.to_string().contains("app/gust.toml"), "{e}");
    }
}
