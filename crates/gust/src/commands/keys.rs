//! `gust keys`: the app's keys for scripts.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use gust_host::keys::{KeyScope, Keys, load_or_create};
use gust_host::{keys, state_file};

use crate::client::{Client, TlsFailure};

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
        print_keys(&app, &keys);
    }
    Ok(ExitCode::SUCCESS)
}

/// `gust keys rotate`: new keys, saved; a running host of the app is asked
/// to rotate (it saves them and uses them at once; an `https://` host's
/// certificate is checked against the system's roots and `ca_cert`), else
/// the file is rewritten for the next start.
pub fn rotate(
    dir: &Path,
    admin: bool,
    host: bool,
    function: Option<String>,
    ca_cert: Option<&Path>,
) -> Result<ExitCode> {
    let app = gust_host::load_app(dir)?;
    let current = load_or_create(&app)?;
    let scope = match (admin, host, function) {
        (true, _, _) => KeyScope::Admin,
        (_, true, _) => KeyScope::Host,
        (_, _, Some(name)) => KeyScope::Function(name),
        _ => KeyScope::All,
    };
    let state = app.state_dir();
    let running = state_file::read(&state);
    let next = match running {
        Some(record) => {
            let client = Client::new(&record.url, &current.admin, ca_cert)?;
            let path = format!("/_gust/keys/rotate?only={}", scope.as_query());
            match client.post(&path, Vec::new()) {
                Ok(reply) => serde_json::from_value::<Keys>(reply.json()?)
                    .context("the host answered keys in an unknown form")?,
                // The host runs but its certificate is not trusted: rotating
                // offline would leave it on the old keys.
                Err(e) if e.is::<TlsFailure>() => return Err(e),
                // The record is stale (the host is gone): rotate offline.
                Err(_) => keys::rotate(&state, &current, &scope)?,
            }
        }
        None => keys::rotate(&state, &current, &scope)?,
    };
    print_keys(&app, &next);
    Ok(ExitCode::SUCCESS)
}

fn print_keys(app: &gust_manifest::App, keys: &Keys) {
    println!("host {}", keys.host);
    for f in &app.functions {
        if let Some(k) = keys.functions.get(&f.name) {
            println!("function {} {k}", f.name);
        }
    }
    println!("admin {}", keys.admin);
}
