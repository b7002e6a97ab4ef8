//! `gust build`.

use std::path::Path;
use std::process::ExitCode;

use crate::progress::Phases;
use anyhow::Result;

/// Builds every function of the app in `dir` (Rust, JavaScript/TypeScript, Python).
pub fn run(dir: &Path) -> Result<ExitCode> {
    let app = gust_host::load_app(dir)?;
    let components = super::up::build_with_progress(&Phases::new(), &app)?;
    for (function, path) in components {
        println!("{function}\t{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
