//! Embeds the guest SDKs (`sdk/`) and the guest contract (`wit/`) of this
//! source tree into the library, so a `gust` binary copied anywhere can
//! write them out and build apps that live outside the repository (see
//! `src/sdk.rs`). Build outputs and package folders (`target`,
//! `node_modules`, dot folders, ...) are left out.

use std::fmt::Write as _;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

/// Top-level folders of the repository that are embedded.
const ROOTS: &[&str] = &["sdk", "wit"];

/// Folder names never embedded.
const SKIP: &[&str] = &["target", "node_modules", "__pycache__", "dist", ".venv"];

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let repo = manifest_dir.join("../..");
    println!("cargo:rerun-if-changed=build.rs");
    let mut files = Vec::new();
    for root in ROOTS {
        let dir = repo.join(root);
        println!("cargo:rerun-if-changed={}", dir.display());
        collect(&repo, &dir, &mut files);
    }
    files.sort();

    let mut hasher = DefaultHasher::new();
    let mut table = String::from("&[\n");
    for (rel, abs) in &files {
        rel.hash(&mut hasher);
        std::fs::read(abs)
            .expect("read embedded file")
            .hash(&mut hasher);
        writeln!(
            table,
            "    ({rel:?}, include_bytes!({:?})),",
            abs.display().to_string()
        )
        .unwrap();
    }
    table.push(']');
    let sdk_version = package_version(&repo.join("sdk/rust/gust-sdk/Cargo.toml"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    let code = format!(
        "/// Every embedded file: (path relative to the repository root, bytes).\n\
         pub(crate) static FILES: &[(&str, &[u8])] = {table};\n\
         /// A hash of the embedded files' paths and bytes.\n\
         pub(crate) const CONTENT_HASH: &str = \"{:016x}\";\n\
         /// The Rust SDK crate's version (`[package] version`).\n\
         pub(crate) const RUST_SDK_VERSION: &str = {sdk_version:?};\n",
        hasher.finish()
    );
    std::fs::write(out.join("embedded_sdk.rs"), code).expect("write embedded_sdk.rs");
}

/// The `version` of the `[package]` in the manifest at `path`.
fn package_version(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read the SDK manifest");
    let mut in_package = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package
            && let Some(value) = line.strip_prefix("version")
            && let Some(value) = value.trim_start().strip_prefix('=')
        {
            return value.trim().trim_matches('"').to_string();
        }
    }
    panic!("{} has no [package] version", path.display());
}

/// Adds every file under `dir` as (path relative to `repo` with `/`, absolute path).
fn collect(repo: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || SKIP.contains(&name.as_str()) {
            continue;
        }
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            collect(repo, &path, files);
        } else if kind.is_file() {
            let abs = path.canonicalize().expect("canonical path");
            let rel = path
                .strip_prefix(repo)
                .expect("under the repository")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            files.push((rel, abs));
        }
    }
}
