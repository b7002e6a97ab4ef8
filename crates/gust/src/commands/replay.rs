//! `gust replay`: run an event function again on input it already had, and
//! show the new outcome beside the recorded one.

use std::process::ExitCode;

use anyhow::Result;
use serde_json::{Value, json};

use crate::cli::Target;
use crate::client::Client;

use super::admin::encode;

/// What to replay.
pub enum Replay {
    /// One recorded invocation, by id.
    Invocation(String),
    /// A range of a stream.
    Stream {
        /// The stream.
        stream: String,
        /// One partition, or all.
        partition: Option<u32>,
        /// First offset.
        from: u64,
        /// Last offset (inclusive), or up to the newest.
        to: Option<u64>,
    },
}

/// `gust replay <function> (--invocation ID | --stream S --from N [--to M])`.
/// Exits with failure when a replayed invocation failed.
pub fn run(target: &Target, function: &str, what: Replay, as_json: bool) -> Result<ExitCode> {
    let client = Client::from_target(target)?;
    let body = match &what {
        Replay::Invocation(id) => json!({ "invocation": id }),
        Replay::Stream {
            stream,
            partition,
            from,
            to,
        } => json!({ "stream": stream, "partition": partition, "from": from, "to": to }),
    };
    let reply = client.post_with(
        &format!("/_gust/replay/{}", encode(function)),
        serde_json::to_vec(&body)?,
        &[("content-type", "application/json")],
    )?;
    let answer = reply.json()?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else if matches!(what, Replay::Invocation(_)) {
        print_invocation(&answer);
    } else {
        print_stream(&answer);
    }
    let succeeded = match what {
        Replay::Invocation(_) => answer["replay"]["invocation"]["outcome"] == "ok",
        Replay::Stream { .. } => answer["failed"].as_u64() == Some(0),
    };
    Ok(if succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_invocation(answer: &Value) {
    let (recorded, replay) = (&answer["recorded"], &answer["replay"]);
    println!(
        "replayed invocation {} of `{}` against its current version",
        text(&answer["replayed"]),
        text(&answer["function"])
    );
    println!();
    println!("{:<12} {:<36} REPLAY", "", "RECORDED");
    let row = |label: &str, field: &dyn Fn(&Value) -> String| {
        let (a, b) = (field(&recorded["invocation"]), field(&replay["invocation"]));
        println!("{label:<12} {a:<36} {b}");
    };
    row("invocation", &|i| text(&i["id"]));
    row("started", &|i| text(&i["started"]));
    row("outcome", &|i| text(&i["outcome"]));
    row("duration", &|i| {
        i["duration_ms"]
            .as_f64()
            .map_or("-".into(), |ms| format!("{ms:.1} ms"))
    });
    row("attempt", &|i| text(&i["attempt"]));
    row("error", &|i| text(&i["error"]));
    for (title, side) in [("recorded", recorded), ("replay", replay)] {
        println!();
        println!("{title} logs:");
        let lines = side["logs"].as_array().cloned().unwrap_or_default();
        if lines.is_empty() {
            println!("  (none)");
        }
        for line in lines {
            let time = text(&line["time"]);
            println!(
                "  {} {:<5} {}",
                time.get(11..23).unwrap_or(&time),
                text(&line["level"]),
                text(&line["message"])
            );
        }
    }
}

fn print_stream(answer: &Value) {
    println!(
        "replayed {} records of stream `{}` to `{}`: {} ok, {} failed (no consumer's checkpoint moved)",
        text(&answer["replayed"]),
        text(&answer["stream"]),
        text(&answer["function"]),
        text(&answer["ok"]),
        text(&answer["failed"]),
    );
    for r in answer["records"].as_array().into_iter().flatten() {
        let id = text(&r["invocation"]);
        println!(
            "  partition {} offset {:<8} {:<7} {:>9}  inv {}{}",
            text(&r["partition"]),
            text(&r["offset"]),
            text(&r["outcome"]),
            r["duration_ms"]
                .as_f64()
                .map_or("-".into(), |ms| format!("{ms:.1} ms")),
            id.get(..8).unwrap_or(&id),
            match r["error"].as_str() {
                Some(e) => format!("  {e}"),
                None => String::new(),
            }
        );
    }
}

/// A JSON value as plain text (`-` for null).
fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
