//! `gust workflows ls|show|start|raise|terminate`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::cli::{Target, WorkflowsCommand};
use crate::client::Client;

/// Runs a workflows subcommand against the running host.
pub fn run(target: &Target, command: WorkflowsCommand) -> Result<ExitCode> {
    let client = Client::from_target(target)?;
    match command {
        WorkflowsCommand::Ls { workflow } => {
            let path = match &workflow {
                Some(w) => format!("/_gust/workflows/{w}"),
                None => "/_gust/workflows".to_string(),
            };
            let list = client.get(&path)?.json()?;
            let items = list.as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                println!("no workflow instances");
            }
            for i in items {
                println!(
                    "{:<20} {:<36} {:<10} {:>5} steps  {}",
                    i["workflow"].as_str().unwrap_or("?"),
                    i["id"].as_str().unwrap_or("?"),
                    i["status"].as_str().unwrap_or("?"),
                    i["history_len"],
                    i["updated"].as_str().unwrap_or("")
                );
            }
        }
        WorkflowsCommand::Show {
            workflow,
            id,
            history,
        } => {
            let query = if history { "?history=true" } else { "" };
            let i = client
                .get(&format!("/_gust/workflows/{workflow}/{id}{query}"))?
                .json()?;
            println!("{}", serde_json::to_string_pretty(&i)?);
        }
        WorkflowsCommand::Start { workflow, data, id } => {
            let body = json_arg(&data)?;
            let path = match &id {
                Some(id) => format!("/_gust/workflows/{workflow}?id={}", encode(id)),
                None => format!("/_gust/workflows/{workflow}"),
            };
            let reply = client
                .post_with(&path, body, &[("content-type", "application/json")])?
                .json()?;
            println!(
                "started `{workflow}` instance {}\nstatus: {}",
                reply["id"].as_str().unwrap_or("?"),
                reply["status_url"].as_str().unwrap_or("?")
            );
        }
        WorkflowsCommand::Raise {
            workflow,
            id,
            event,
            data,
        } => {
            let body = json_arg(&data)?;
            let i = client
                .post_with(
                    &format!("/_gust/workflows/{workflow}/{id}/events/{event}"),
                    body,
                    &[("content-type", "application/json")],
                )?
                .json()?;
            println!(
                "raised `{event}` on `{workflow}` instance {id} ({})",
                i["status"].as_str().unwrap_or("?")
            );
        }
        WorkflowsCommand::Terminate {
            workflow,
            id,
            reason,
        } => {
            let body = serde_json::to_vec(&serde_json::json!({ "reason": reason }))?;
            let i = client
                .post_with(
                    &format!("/_gust/workflows/{workflow}/{id}/terminate"),
                    body,
                    &[("content-type", "application/json")],
                )?
                .json()?;
            println!(
                "`{workflow}` instance {id} is {}",
                i["status"].as_str().unwrap_or("?")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A JSON argument (`@file` reads a file), checked before it is sent.
fn json_arg(data: &str) -> Result<Vec<u8>> {
    let text = match data.strip_prefix('@') {
        Some(file) => {
            std::fs::read_to_string(file).with_context(|| format!("cannot read {file}"))?
        }
        None => data.to_string(),
    };
    let value: Value = serde_json::from_str(&text)
        .with_context(|| format!("--data is not JSON: {}", text.trim()))?;
    Ok(serde_json::to_vec(&value)?)
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
