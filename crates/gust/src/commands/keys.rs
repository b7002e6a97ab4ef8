//! `gust keys`: the app's keys for scripts.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, bail};
use gust_host::keys::load_or_create;

/// Prints the keys of the app in `dir` (creating them on first use, exactly
/// as the host would).
pub fn run(
    dir: &Path,
    host: bool,
    admin: bool,
    function: Option<&str>,
    json: bool,
) -> Result<ExitCode> {
    let app = gust_host::load_app(dir)?;
    let keys = load_or_create(&app)?;
    if host {
        println!("{}", keys.host);
    } else if admin {
        println!("{}", keys.admin);
    } else if let Some(name) = function {
        match keys.functions.get(name) {
            Some(k) => println!("{k}"),
            None => bail!(
                "no function named `{name}` in {}",
                app.manifest_path.display()
            ),
        }
    } else if json {
        println!("{}", serde_json::to_string_pretty(&keys)?);
    } else {
        println!("host {}", keys.host);
        for f in &app.functions {
            if let Some(k) = keys.functions.get(&f.name) {
                println!("function {} {k}", f.name);
            }
        }
        println!("admin {}", keys.admin);
    }
    Ok(ExitCode::SUCCESS)
}
