//! `gust deploy`, `gust apps ls` and `gust cluster status`: a cluster's
//! admin API (`/_gust/cluster/...` on any node).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use gust_host::builder::build_app;

use crate::cli::ClusterTarget;
use crate::client::Client;
use crate::progress::BuildBar;

fn client(target: &ClusterTarget) -> Result<Client> {
    Client::new(&target.url, &target.key, target.ca_cert.as_deref())
}

/// Builds the app in `dir`, packs it with its components and uploads it as
/// the app's next version.
pub fn deploy(dir: &Path, target: &ClusterTarget) -> Result<ExitCode> {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let app = gust_host::load_app(&dir)?;
    let components = build_app(&app, &BuildBar::new())?;
    let artifact = gust_cluster::artifact::pack(&dir, &components)
        .with_context(|| format!("cannot pack {}", dir.display()))?;
    eprintln!(
        "gust: uploading `{}` ({} KiB, {} components) to {}",
        app.name,
        artifact.len().div_ceil(1024),
        components.len(),
        target.url
    );
    let reply = client(target)?
        .post_with(
            &format!("/_gust/cluster/apps/{}", app.name),
            artifact,
            &[("content-type", "application/x-tar")],
        )?
        .json()?;
    let unchanged = if reply["unchanged"].as_bool() == Some(true) {
        " (unchanged: the same as the current version)"
    } else {
        ""
    };
    println!("deployed {} v{}{unchanged}", app.name, reply["version"]);
    Ok(ExitCode::SUCCESS)
}

/// Returns `app` to its previous version.
pub fn rollback(target: &ClusterTarget, app: &str) -> Result<ExitCode> {
    let reply = client(target)?
        .post(&format!("/_gust/cluster/apps/{app}/rollback"), Vec::new())?
        .json()?;
    println!("rolled back {app} to v{}", reply["version"]);
    Ok(ExitCode::SUCCESS)
}

/// Lists the apps, their current version and the version on each node.
pub fn apps(target: &ClusterTarget, json: bool) -> Result<ExitCode> {
    let reply = client(target)?.get("/_gust/cluster/apps")?.json()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<24} {:<8} NODES (version served)", "APP", "VERSION");
    for app in reply["apps"].as_array().into_iter().flatten() {
        let nodes: Vec<String> = app["nodes"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(node, v)| match v.as_u64() {
                Some(v) => format!("{node}=v{v}"),
                None => format!("{node}=-"),
            })
            .collect();
        println!(
            "{:<24} v{:<7} {}",
            app["app"].as_str().unwrap_or("?"),
            app["version"],
            nodes.join(" ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Lists the live nodes.
pub fn status(target: &ClusterTarget, json: bool) -> Result<ExitCode> {
    let reply = client(target)?.get("/_gust/cluster/status")?.json()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
        return Ok(ExitCode::SUCCESS);
    }
    let nodes = reply["nodes"].as_array().cloned().unwrap_or_default();
    println!(
        "cluster `{}`: {} live node(s) (heartbeat timeout {} s)",
        reply["cluster"].as_str().unwrap_or("?"),
        nodes.len(),
        reply["heartbeat_timeout_seconds"]
    );
    for n in nodes {
        let apps: Vec<String> = n["apps"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(a, v)| format!("{a}=v{v}"))
            .collect();
        let owns: Vec<&str> = n["owns"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o.as_str())
            .collect();
        println!(
            "{} {}  {}  heartbeat {:.1}s ago  apps: {}  owns: {}",
            if n["this_node"].as_bool() == Some(true) {
                "*"
            } else {
                " "
            },
            n["id"].as_str().unwrap_or("?"),
            n["address"].as_str().unwrap_or("?"),
            n["seconds_since_heartbeat"].as_f64().unwrap_or(0.0),
            if apps.is_empty() {
                "-".into()
            } else {
                apps.join(" ")
            },
            if owns.is_empty() {
                "-".into()
            } else {
                owns.join(" ")
            },
        );
    }
    Ok(ExitCode::SUCCESS)
}
