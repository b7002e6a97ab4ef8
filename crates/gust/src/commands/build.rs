//! `gust build`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use gust_host::builder::build_app;

use crate::progress::BuildBar;

/// Builds every Rust function of the app in `dir`.
pub fn run(dir: &Path) -> Result<ExitCode> {
    let app = gust_manifest::load_app(dir)?;
    let components = build_app(&app, &BuildBar::new())?;
    for (function, path) in components {
        println!("{function}\t{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
