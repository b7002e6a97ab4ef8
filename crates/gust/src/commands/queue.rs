//! `gust queue send|peek|dlq list|dlq redrive`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::cli::{DlqCommand, QueueCommand, Target};
use crate::client::Client;

/// Runs a queue subcommand against the running host.
pub fn run(target: &Target, command: QueueCommand) -> Result<ExitCode> {
    let client = Client::from_target(target)?;
    match command {
        QueueCommand::Send {
            queue,
            data,
            content_type,
        } => {
            let body = match data.strip_prefix('@') {
                Some(file) => std::fs::read(file).with_context(|| format!("cannot read {file}"))?,
                None => data.into_bytes(),
            };
            let reply = client.post_with(
                &format!("/_gust/queues/{queue}/messages"),
                body,
                &[("content-type", &content_type)],
            )?;
            let sent = reply.json()?;
            println!("{}", sent["id"].as_str().unwrap_or_default());
        }
        QueueCommand::Peek { queue, max } => {
            let messages = client
                .get(&format!("/_gust/queues/{queue}/messages?max={max}"))?
                .json()?;
            let info = client.get(&format!("/_gust/queues/{queue}"))?.json()?;
            println!(
                "queue `{queue}`: {} waiting, {} dead letters",
                info["depth"], info["deadletters"]
            );
            for m in list(&messages) {
                println!(
                    "{}  attempt {}  {}  {}",
                    m["id"].as_str().unwrap_or("?"),
                    m["attempt"],
                    m["enqueued_at"].as_str().unwrap_or(""),
                    one_line(m["body"].as_str().unwrap_or(""))
                );
            }
        }
        QueueCommand::Dlq {
            command: DlqCommand::List { queue, max },
        } => {
            let dead = client
                .get(&format!("/_gust/queues/{queue}/deadletter?max={max}"))?
                .json()?;
            println!("{queue}-deadletter: {} messages", list(&dead).len());
            for d in list(&dead) {
                println!(
                    "{}  attempts {}  reason: {}  body: {}",
                    d["id"].as_str().unwrap_or("?"),
                    d["attempts"],
                    one_line(d["reason"].as_str().unwrap_or("")),
                    one_line(d["body"].as_str().unwrap_or(""))
                );
            }
        }
        QueueCommand::Dlq {
            command: DlqCommand::Redrive { queue },
        } => {
            let reply = client
                .post(
                    &format!("/_gust/queues/{queue}/deadletter/redrive"),
                    Vec::new(),
                )?
                .json()?;
            println!("redrove {} messages to `{queue}`", reply["redriven"]);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn list(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

/// Keeps one record per output line.
pub(crate) fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}
