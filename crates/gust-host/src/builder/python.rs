//! Python functions: a folder with a `pyproject.toml`.
//!
//! The function's module (`app.py`, or `[tool.gust] module = "name"` in
//! pyproject.toml; looked up in the folder and its `src/`) marks its handler
//! with `@gust.http` or `@gust.event`. A build generates an entry module
//! that imports it and the SDK's component exports, installs the
//! dependencies listed in `[project] dependencies` (pure Python only) and
//! makes a component with componentize-py (CPython built for WASI), which is
//! installed with pip on first use into a virtual environment under
//! `<cache>/toolchains/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::BuildProgress;
use super::toolchain::{self, SCRIPT_WORLD_NAME};
use crate::sdk;

/// The PyPI package of the toolchain, pinned.
const COMPONENTIZE_PY: (&str, &str) = ("componentize-py", "0.25.1");

/// The generated entry module's name.
const ENTRY: &str = "gust_entry";

/// The toolchain folder's name (changes with the pinned version).
fn toolchain_name() -> String {
    format!("py-{}-{}", COMPONENTIZE_PY.0, COMPONENTIZE_PY.1)
}

/// Installs (once) and returns the Python toolchain folder (a venv).
pub fn ensure_toolchain(progress: &dyn BuildProgress) -> Result<PathBuf> {
    toolchain::require(
        "python3",
        "Python functions need Python 3.10 or newer with the venv module (https://www.python.org/downloads/, or e.g. `apt install python3 python3-venv`)",
    )?;
    let what = format!(
        "the Python toolchain ({}=={})",
        COMPONENTIZE_PY.0, COMPONENTIZE_PY.1
    );
    toolchain::ensure(&toolchain_name(), &what, progress, |dir| {
        toolchain::run(
            Command::new("python3")
                .args(["-m", "venv"])
                .arg(dir.join("venv")),
            "python3 -m venv (on Debian/Ubuntu: apt install python3-venv)",
        )?;
        toolchain::run(
            Command::new(pip(dir)).args([
                "install",
                "--disable-pip-version-check",
                "--quiet",
                &format!("{}=={}", COMPONENTIZE_PY.0, COMPONENTIZE_PY.1),
            ]),
            "pip install componentize-py",
        )
    })
}

fn bin(tools: &Path, name: &str) -> PathBuf {
    tools.join("venv/bin").join(name)
}

fn pip(tools: &Path) -> PathBuf {
    bin(tools, "pip")
}

/// Builds the function folder `dir` into a component (from the build cache
/// when its sources, the SDK and the toolchain are unchanged).
pub fn build(dir: &Path, progress: &dyn BuildProgress) -> Result<PathBuf> {
    let project = read_project(dir)?;
    let module = module_name(&project);
    let search = module_dir(dir, &module)?;
    let dependencies = dependencies(&project);
    let tools = ensure_toolchain(progress)?;
    let key = toolchain::source_hash(
        dir,
        &[
            toolchain_name().as_bytes(),
            sdk::version().as_bytes(),
            module.as_bytes(),
        ],
    )?;
    let unpacked = sdk::unpacked()?;
    check_syntax(dir, &tools)?;
    toolchain::cached_build(&format!("py-{key}"), |work, out| {
        let wit = work.join("wit");
        toolchain::copy_wit(&unpacked.join("wit"), &wit, &|t| t.to_string())?;
        std::fs::write(work.join(format!("{ENTRY}.py")), entry_source(&module))?;
        let mut cmd = Command::new(bin(&tools, "componentize-py"));
        cmd.arg("-d")
            .arg(&wit)
            .args(["-w", SCRIPT_WORLD_NAME, "componentize"])
            .arg("-p")
            .arg(work)
            .arg("-p")
            .arg(&search)
            .arg("-p")
            .arg(unpacked.join("sdk/python"));
        if !dependencies.is_empty() {
            let deps = work.join("deps");
            progress.note(&format!("pip install {}", dependencies.join(" ")));
            toolchain::run(
                Command::new(pip(&tools))
                    .args(["install", "--disable-pip-version-check", "--quiet"])
                    .args(["--no-compile", "--target"])
                    .arg(&deps)
                    .args(&dependencies),
                "installing the function's dependencies",
            )?;
            cmd.arg("-p").arg(&deps);
        }
        let result = cmd
            .arg(ENTRY)
            .arg("-o")
            .arg(out)
            .current_dir(dir)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .context("cannot run componentize-py")?;
        if !result.status.success() {
            let text = String::from_utf8_lossy(&result.stderr);
            bail!("{}", toolchain::tail(&explain(&text, dir)));
        }
        Ok(())
    })
}

/// `pyproject.toml` of `dir`, parsed.
fn read_project(dir: &Path) -> Result<toml::Table> {
    let path = dir.join("pyproject.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    text.parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))
}

/// `[tool.gust] module`, else `app`.
fn module_name(project: &toml::Table) -> String {
    project
        .get("tool")
        .and_then(|t| t.get("gust"))
        .and_then(|g| g.get("module"))
        .and_then(|m| m.as_str())
        .unwrap_or("app")
        .to_string()
}

/// `[project] dependencies`.
fn dependencies(project: &toml::Table) -> Vec<String> {
    project
        .get("project")
        .and_then(|p| p.get("dependencies"))
        .and_then(|d| d.as_array())
        .into_iter()
        .flatten()
        .filter_map(|d| d.as_str().map(str::to_string))
        .collect()
}

/// The folder holding module `module` (`<module>.py` or a package): the
/// function folder or its `src/`.
fn module_dir(dir: &Path, module: &str) -> Result<PathBuf> {
    let top = module.split('.').next().unwrap_or(module);
    for base in [dir.to_path_buf(), dir.join("src")] {
        if base.join(format!("{top}.py")).is_file() || base.join(top).join("__init__.py").is_file()
        {
            return Ok(base);
        }
    }
    bail!(
        "{} has no module `{module}`: create {top}.py (or name another one with `[tool.gust] module = \"...\"` in pyproject.toml)",
        dir.display()
    )
}

/// The generated entry module: the function's module first (its decorators
/// register the handlers), then the SDK's exports.
fn entry_source(module: &str) -> String {
    format!(
        "import {module}  # noqa: F401  (registers @gust.http / @gust.event)\n\
         from gust._runtime import IncomingHandler, EventHandler  # noqa: F401\n"
    )
}

/// Compiles every `.py` file of the function folder (a second, where
/// componentize-py would take ten to find the same error) and fails with
/// `file:line:column: SyntaxError: ...` and the line for the first errors.
fn check_syntax(dir: &Path, tools: &Path) -> Result<()> {
    let files = toolchain::source_files(dir)?;
    let python: Vec<&String> = files.iter().filter(|f| f.ends_with(".py")).collect();
    if python.is_empty() {
        return Ok(());
    }
    let result = Command::new(bin(tools, "python"))
        .args(["-c", SYNTAX_CHECK])
        .args(&python)
        .current_dir(dir)
        .output()
        .context("cannot run python")?;
    if !result.status.success() {
        bail!("{}", String::from_utf8_lossy(&result.stderr).trim_end());
    }
    Ok(())
}

/// Reports the syntax errors of the files named as arguments.
const SYNTAX_CHECK: &str = r#"
import sys
bad = False
for path in sys.argv[1:]:
    try:
        with open(path, "rb") as f:
            compile(f.read(), path, "exec")
    except SyntaxError as e:
        bad = True
        print(f"{e.filename}:{e.lineno}:{e.offset or 0}: SyntaxError: {e.msg}", file=sys.stderr)
        if e.text:
            print("    " + e.text.rstrip(), file=sys.stderr)
            print("    " + " " * max((e.offset or 1) - 1, 0) + "^", file=sys.stderr)
sys.exit(1 if bad else 0)
"#;

/// componentize-py's output without its Rust backtrace, with the paths it
/// gives the function folder shown relative to it.
fn explain(text: &str, dir: &Path) -> String {
    let text = text.split("\nStack backtrace:").next().unwrap_or(text);
    text.replace(&format!("{}/", dir.display()), "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_module_and_dependencies() {
        let project: toml::Table =
            "[project]\nname = \"x\"\ndependencies = [\"attrs==23.1\"]\n[tool.gust]\nmodule = \"main\"\n"
                .parse()
                .unwrap();
        assert_eq!(module_name(&project), "main");
        assert_eq!(dependencies(&project), vec!["attrs==23.1".to_string()]);
        assert_eq!(module_name(&toml::Table::new()), "app");
    }

    #[test]
    fn finds_the_module_in_the_folder_or_src() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let e = module_dir(dir, "app").unwrap_err();
        assert!(format!("{e}").contains("create app.py"), "{e}");
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(dir.join("src/app.py"), "").unwrap();
        assert_eq!(module_dir(dir, "app").unwrap(), dir.join("src"));
        std::fs::write(dir.join("app.py"), "").unwrap();
        assert_eq!(module_dir(dir, "app").unwrap(), dir);
    }
}
