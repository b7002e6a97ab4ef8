//! `gust stream append|show`.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::{StreamCommand, Target};
use crate::client::Client;
use crate::commands::queue::{list, one_line};

/// Runs a stream subcommand against the running host.
pub fn run(target: &Target, command: StreamCommand) -> Result<ExitCode> {
    let client = Client::from_target(target)?;
    match command {
        StreamCommand::Append {
            stream,
            key,
            data,
            content_type,
        } => {
            let body = match data.strip_prefix('@') {
                Some(file) => std::fs::read(file).with_context(|| format!("cannot read {file}"))?,
                None => data.into_bytes(),
            };
            let key = query_encode(&key);
            let reply = client.post_with(
                &format!("/_gust/streams/{stream}/records?key={key}"),
                body,
                &[("content-type", &content_type)],
            )?;
            let at = reply.json()?;
            println!("partition {} offset {}", at["partition"], at["offset"]);
        }
        StreamCommand::Show {
            stream,
            partition: None,
            ..
        } => {
            let info = client.get(&format!("/_gust/streams/{stream}"))?.json()?;
            println!("stream `{stream}`:");
            for p in list(&info["partitions"]) {
                println!(
                    "  partition {}  offsets {}..{}",
                    p["partition"], p["earliest"], p["next"]
                );
            }
        }
        StreamCommand::Show {
            stream,
            partition: Some(partition),
            from,
            max,
        } => {
            let records = client
                .get(&format!(
                    "/_gust/streams/{stream}/records?partition={partition}&from={from}&max={max}"
                ))?
                .json()?;
            for r in list(&records) {
                println!(
                    "{}:{}  key {}  {}  {}",
                    r["partition"],
                    r["offset"],
                    r["key"].as_str().unwrap_or(""),
                    r["appended_at"].as_str().unwrap_or(""),
                    one_line(r["body"].as_str().unwrap_or(""))
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Percent-encodes `value` for a query string.
fn query_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_are_encoded() {
        assert_eq!(super::query_encode("device 7/a&b"), "device%207%2Fa%26b");
    }
}
