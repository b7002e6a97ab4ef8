//! `gust events publish`.

use std::process::ExitCode;

use anyhow::Result;
use serde_json::{Value, json};

use crate::cli::{EventsCommand, Target};
use crate::client::Client;

/// Publishes a structured CloudEvent through the topic ingress.
pub fn run(target: &Target, command: EventsCommand) -> Result<ExitCode> {
    let EventsCommand::Publish {
        topic,
        event_type,
        data,
        source,
        subject,
        id,
    } = command;
    let client = Client::from_target(target)?;
    let mut event = json!({
        "specversion": "1.0",
        "id": id.unwrap_or_else(random_id),
        "source": source,
        "type": event_type,
    });
    match serde_json::from_str::<Value>(&data) {
        Ok(value) => {
            event["datacontenttype"] = json!("application/json");
            event["data"] = value;
        }
        Err(_) => {
            event["datacontenttype"] = json!("text/plain");
            event["data"] = json!(data);
        }
    }
    if let Some(subject) = subject {
        event["subject"] = json!(subject);
    }
    let reply = client.post_with(
        &format!("/_gust/topics/{topic}"),
        serde_json::to_vec(&event)?,
        &[("content-type", "application/cloudevents+json")],
    )?;
    let report = reply.json()?;
    println!(
        "{}: {} accepted, {} duplicate, {} deliveries to {} subscriptions",
        event["id"].as_str().unwrap_or("?"),
        report["accepted"],
        report["duplicates"],
        report["deliveries"],
        report["subscriptions"]
    );
    Ok(ExitCode::SUCCESS)
}

fn random_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}-{:x}", nanos, std::process::id())
}
