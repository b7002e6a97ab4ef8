//! `gust new <template> <dir>`: a ready-to-run app from a template.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

/// A template file: where it goes, and its text.
type TemplateFile = (&'static str, &'static str);

macro_rules! template {
    ($name:literal, [$(($out:literal, $src:literal)),* $(,)?]) => {
        ($name, &[$(($out, include_str!(concat!("../../templates/", $name, "/", $src)))),*])
    };
}

const TEMPLATES: &[(&str, &[TemplateFile])] = &[
    template!(
        "http-rust",
        [
            ("gust.toml", "gust.toml"),
            (".gitignore", "gitignore.tmpl"),
            (
                "functions/hello/Cargo.toml",
                "functions/hello/Cargo.toml.tmpl"
            ),
            ("functions/hello/src/lib.rs", "functions/hello/src/lib.rs"),
        ]
    ),
    template!(
        "event-rust",
        [
            ("gust.toml", "gust.toml"),
            (".gitignore", "gitignore.tmpl"),
            (
                "functions/worker/Cargo.toml",
                "functions/worker/Cargo.toml.tmpl"
            ),
            ("functions/worker/src/lib.rs", "functions/worker/src/lib.rs"),
        ]
    ),
    template!(
        "http-js",
        [
            ("gust.toml", "gust.toml"),
            (".gitignore", "gitignore.tmpl"),
            (
                "functions/hello/package.json",
                "functions/hello/package.json.tmpl"
            ),
            (
                "functions/hello/src/index.js",
                "functions/hello/src/index.js"
            ),
        ]
    ),
    template!(
        "http-ts",
        [
            ("gust.toml", "gust.toml"),
            (".gitignore", "gitignore.tmpl"),
            (
                "functions/hello/package.json",
                "functions/hello/package.json.tmpl"
            ),
            (
                "functions/hello/tsconfig.json",
                "functions/hello/tsconfig.json.tmpl"
            ),
            (
                "functions/hello/src/index.ts",
                "functions/hello/src/index.ts"
            ),
        ]
    ),
    template!(
        "event-js",
        [
            ("gust.toml", "gust.toml"),
            (".gitignore", "gitignore.tmpl"),
            (
                "functions/worker/package.json",
                "functions/worker/package.json.tmpl"
            ),
            (
                "functions/worker/src/index.js",
                "functions/worker/src/index.js"
            ),
        ]
    ),
    template!(
        "http-py",
        [
            ("gust.toml", "gust.toml"),
            (".gitignore", "gitignore.tmpl"),
            (
                "functions/hello/pyproject.toml",
                "functions/hello/pyproject.toml.tmpl"
            ),
            ("functions/hello/app.py", "functions/hello/app.py"),
        ]
    ),
    template!(
        "event-py",
        [
            ("gust.toml", "gust.toml"),
            (".gitignore", "gitignore.tmpl"),
            (
                "functions/worker/pyproject.toml",
                "functions/worker/pyproject.toml.tmpl"
            ),
            ("functions/worker/app.py", "functions/worker/app.py"),
        ]
    ),
];

/// Writes the template into `dir`.
pub fn run(template: &str, dir: &Path) -> Result<ExitCode> {
    let Some((_, files)) = TEMPLATES.iter().find(|(name, _)| *name == template) else {
        let names: Vec<&str> = TEMPLATES.iter().map(|(n, _)| *n).collect();
        bail!(
            "unknown template `{template}`; choose one of: {}",
            names.join(", ")
        );
    };
    if dir.exists()
        && dir
            .read_dir()
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!(
            "{} already exists and is not empty; choose a new folder",
            dir.display()
        );
    }
    let app_name = app_name(dir);
    let sdk_version = gust_host::sdk::rust_requirement();
    let language = Language::of(template);
    let sdk_dir = match language {
        Language::Rust => gust_host::sdk::cache_dir(),
        // The TypeScript template's tsconfig points editors at the SDK's sources.
        _ => gust_host::sdk::unpacked()?,
    };
    let js_src = sdk_dir.join("sdk/js/src");
    for (out, text) in files.iter() {
        let path = dir.join(out);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let text = text
            .replace("{{app_name}}", &app_name)
            .replace("{{sdk_version}}", &sdk_version)
            .replace("{{js_sdk}}", &js_src.join("index.ts").display().to_string())
            .replace(
                "{{js_sdk_types}}",
                &js_src.join("wit.d.ts").display().to_string(),
            );
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!("created app `{app_name}` in {}", dir.display());
    match language {
        Language::Rust => println!(
            "functions depend on gust-sdk = \"{sdk_version}\"; `gust build` and `gust up` supply the SDK shipped in this binary (offline, from {})",
            sdk_dir.display()
        ),
        Language::Js => println!(
            "functions import `@gust/sdk`; `gust build` bundles the SDK shipped in this binary ({}) and installs the JavaScript toolchain (componentize-js, rolldown) with npm on first use",
            js_src.display()
        ),
        Language::Python => println!(
            "functions `import gust`; `gust build` adds the SDK shipped in this binary ({}) and installs the Python toolchain (componentize-py) with pip on first use",
            sdk_dir.join("sdk/python").display()
        ),
    }
    println!("next: gust up {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

/// The language of a template's functions.
enum Language {
    Rust,
    Js,
    Python,
}

impl Language {
    fn of(template: &str) -> Self {
        if template.ends_with("-js") || template.ends_with("-ts") {
            Language::Js
        } else if template.ends_with("-py") {
            Language::Python
        } else {
            Language::Rust
        }
    }
}

/// A valid app name from the folder name.
fn app_name(dir: &Path) -> String {
    let raw = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_else(|| "app".into());
    let cleaned: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let trimmed = cleaned.trim_matches('-');
    if trimmed.is_empty() {
        "app".into()
    } else {
        trimmed.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names_are_valid() {
        assert_eq!(app_name(Path::new("/tmp/My App")), "my-app");
        assert_eq!(app_name(Path::new("/tmp/__")), "app");
    }
}
