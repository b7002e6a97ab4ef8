//! JavaScript and TypeScript functions: a folder with a `package.json`.
//!
//! The function's module (`main` in package.json, else `src/index.ts`,
//! `src/index.js`, `index.ts` or `index.js`) exports a Fetch API handler
//! (`export default { fetch(request) }`) and/or an event handler
//! (`handle(event)`). A build generates an entry module that hands both to
//! `@gust/sdk`'s glue, bundles it with the function's code, its npm
//! dependencies and the SDK into one ES module (rolldown; TypeScript is
//! stripped, not type-checked), and makes a component of that with
//! componentize-js (StarlingMonkey). Both tools are installed with npm on
//! first use into `<cache>/toolchains/`.
//!
//! The StarlingMonkey engine componentize-js embeds implements
//! `wasi:http@0.2.10`, so the WIT world handed to it names the WASI
//! interfaces at that version (same shapes as the 0.2.x Gust ships).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::BuildProgress;
use super::toolchain::{self, SCRIPT_WORLD_NAME};
use crate::sdk;

/// The npm packages of the toolchain, pinned.
const PACKAGES: &[(&str, &str)] = &[
    ("@bytecodealliance/componentize-js", "0.23.0"),
    ("rolldown", "1.3.4"),
];

/// The WASI 0.2 patch version StarlingMonkey exports.
const WASI_VERSION: u32 = 10;

/// The bundling + componentizing script run with node.
const BUILD_SCRIPT: &str = include_str!("assets/js-build.mjs");

/// Module files tried, in order, when package.json names no `main`.
const ENTRIES: &[&str] = &["src/index.ts", "src/index.js", "index.ts", "index.js"];

/// The toolchain folder's name (changes with any pinned version).
fn toolchain_name() -> String {
    let versions: Vec<String> = PACKAGES
        .iter()
        .map(|(p, v)| format!("{}-{v}", p.rsplit('/').next().unwrap_or(p)))
        .collect();
    format!("js-{}", versions.join("-"))
}

/// Installs (once) and returns the JS toolchain folder.
pub fn ensure_toolchain(progress: &dyn BuildProgress) -> Result<PathBuf> {
    toolchain::require(
        "node",
        "JavaScript/TypeScript functions need Node.js 18 or newer with npm (https://nodejs.org, or e.g. `apt install nodejs npm`)",
    )?;
    toolchain::require(
        "npm",
        "JavaScript/TypeScript functions need npm, which comes with Node.js (https://nodejs.org, or e.g. `apt install npm`)",
    )?;
    let what = format!(
        "the JavaScript toolchain ({})",
        PACKAGES
            .iter()
            .map(|(p, v)| format!("{p}@{v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    toolchain::ensure(&toolchain_name(), &what, progress, |dir| {
        let deps: serde_json::Map<String, serde_json::Value> = PACKAGES
            .iter()
            .map(|(p, v)| (p.to_string(), serde_json::Value::String(v.to_string())))
            .collect();
        let manifest = serde_json::json!({
            "name": "gust-js-toolchain",
            "private": true,
            "type": "module",
            "dependencies": deps,
        });
        std::fs::write(
            dir.join("package.json"),
            serde_json::to_string_pretty(&manifest)?,
        )?;
        toolchain::run(
            Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(dir),
            "npm install",
        )
    })
}

/// Builds the function folder `dir` into a component (from the build cache
/// when its sources, the SDK and the toolchain are unchanged).
pub fn build(dir: &Path, progress: &dyn BuildProgress) -> Result<PathBuf> {
    let manifest = read_package(dir)?;
    let module = entry_module(dir, &manifest)?;
    let tools = ensure_toolchain(progress)?;
    install_dependencies(dir, &manifest, progress)?;
    let key = toolchain::source_hash(
        dir,
        &[
            toolchain_name().as_bytes(),
            sdk::version().as_bytes(),
            BUILD_SCRIPT.as_bytes(),
            // Relative: the same sources build once wherever they live.
            module
                .strip_prefix(dir)
                .unwrap_or(&module)
                .to_string_lossy()
                .as_bytes(),
        ],
    )?;
    let unpacked = sdk::unpacked()?;
    toolchain::cached_build(&format!("js-{key}"), |work, out| {
        let wit = work.join("wit");
        toolchain::copy_wit(&unpacked.join("wit"), &wit, &|t| {
            wasi_version(t, WASI_VERSION)
        })?;
        let entry = work.join("entry.js");
        std::fs::write(&entry, entry_source(&module))?;
        let script = script(&tools)?;
        let sdk_src = unpacked.join("sdk/js/src");
        let result = Command::new("node")
            .arg(&script)
            .arg(&entry)
            .arg(&sdk_src)
            .arg(&wit)
            .arg(SCRIPT_WORLD_NAME)
            .arg(work.join("bundle.js"))
            .arg(out)
            .current_dir(dir)
            .output()
            .context("cannot run node")?;
        if !result.status.success() {
            let text = String::from_utf8_lossy(&result.stderr);
            bail!("{}", toolchain::tail(&relative(&text, dir)));
        }
        Ok(())
    })
}

/// `package.json` of `dir`, parsed.
fn read_package(dir: &Path) -> Result<serde_json::Value> {
    let path = dir.join("package.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

/// The function's module: package.json `main`, else the first of
/// [`ENTRIES`] that exists.
fn entry_module(dir: &Path, manifest: &serde_json::Value) -> Result<PathBuf> {
    if let Some(main) = manifest.get("main").and_then(|m| m.as_str()) {
        let path = dir.join(main);
        if !path.is_file() {
            bail!(
                "{}: `main` names {main}, which does not exist",
                dir.join("package.json").display()
            );
        }
        return Ok(path);
    }
    ENTRIES
        .iter()
        .map(|e| dir.join(e))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "{} has no module to build: create src/index.ts (or src/index.js), or name it as `main` in package.json",
                dir.display()
            )
        })
}

/// Runs `npm install` in the function folder when package.json lists
/// dependencies and `node_modules` is missing.
fn install_dependencies(
    dir: &Path,
    manifest: &serde_json::Value,
    progress: &dyn BuildProgress,
) -> Result<()> {
    let has_deps = manifest
        .get("dependencies")
        .and_then(|d| d.as_object())
        .is_some_and(|d| !d.is_empty());
    if !has_deps || dir.join("node_modules").is_dir() {
        return Ok(());
    }
    progress.note(&format!("npm install in {}", dir.display()));
    toolchain::run(
        Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(dir),
        &format!("npm install in {}", dir.display()),
    )
}

/// The generated entry module: the function's handlers behind the SDK's glue.
fn entry_source(module: &Path) -> String {
    let path = serde_json::Value::String(module.display().to_string());
    format!(
        "import * as user from {path};\n\
         import {{ serveFetch, eventHandler as handlerFor }} from \"@gust/sdk/runtime\";\n\
         serveFetch(user);\n\
         export const eventHandler = handlerFor(user);\n"
    )
}

/// The build script inside the toolchain folder (where node resolves its
/// packages), written there on first use.
fn script(tools: &Path) -> Result<PathBuf> {
    let hash = toolchain::source_hash_of(BUILD_SCRIPT.as_bytes());
    let path = tools.join(format!("build-{hash}.mjs"));
    if !path.is_file() {
        let tmp = tools.join(format!(".build-{hash}.{}.tmp", std::process::id()));
        std::fs::write(&tmp, BUILD_SCRIPT)?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(path)
}

/// Paths under the function folder shown relative to it.
fn relative(text: &str, dir: &Path) -> String {
    let prefix = format!("{}/", dir.display());
    text.replace(&prefix, "")
}

/// `text` with every version `0.2.N` above `0.2.<patch>` (package and
/// interface versions, `@since` gates) lowered to it; pre-releases such as
/// `0.2.0-draft` stay as they are.
fn wasi_version(text: &str, patch: u32) -> String {
    const MARK: &str = "0.2.";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(MARK) {
        let after = &rest[at + MARK.len()..];
        let digits = after.chars().take_while(|c| c.is_ascii_digit()).count();
        out.push_str(&rest[..at + MARK.len()]);
        let number: Option<u32> = after[..digits].parse().ok();
        match number {
            Some(n) if n > patch && !after[digits..].starts_with('-') => {
                out.push_str(&patch.to_string())
            }
            _ => out.push_str(&after[..digits]),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_wasi_versions_but_not_drafts() {
        assert_eq!(
            wasi_version(
                "package wasi:http@0.2.12;\n@since(version = 0.2.12)\n@since(version = 0.2.0)\nuse wasi:io/streams@0.2.12.{x};\nimport wasi:keyvalue/store@0.2.0-draft;\n",
                10
            ),
            "package wasi:http@0.2.10;\n@since(version = 0.2.10)\n@since(version = 0.2.0)\nuse wasi:io/streams@0.2.10.{x};\nimport wasi:keyvalue/store@0.2.0-draft;\n"
        );
    }

    #[test]
    fn finds_the_module_to_build() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        assert!(entry_module(dir, &serde_json::json!({})).is_err());
        std::fs::write(dir.join("index.js"), "").unwrap();
        assert_eq!(
            entry_module(dir, &serde_json::json!({})).unwrap(),
            dir.join("index.js")
        );
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(dir.join("src/index.ts"), "").unwrap();
        assert_eq!(
            entry_module(dir, &serde_json::json!({})).unwrap(),
            dir.join("src/index.ts")
        );
        let e = entry_module(dir, &serde_json::json!({"main": "app.js"})).unwrap_err();
        assert!(format!("{e}").contains("app.js"), "{e}");
    }
}
