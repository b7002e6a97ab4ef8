//! Commands that talk to a running host: `invoke`, `logs`, `ls`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::Target;
use crate::client::Client;

/// `gust invoke`: prints the function's response body; exits 1 on 4xx/5xx.
pub fn invoke(
    target: &Target,
    function: &str,
    data: Option<String>,
    method: Option<String>,
    path: Option<String>,
) -> Result<ExitCode> {
    let client = Client::from_target(target)?;
    let body = match data {
        Some(d) => match d.strip_prefix('@') {
            Some(file) => std::fs::read(file).with_context(|| format!("cannot read {file}"))?,
            None => d.into_bytes(),
        },
        None => Vec::new(),
    };
    let mut query = Vec::new();
    if let Some(m) = method {
        query.push(format!("method={}", encode(&m)));
    }
    if let Some(p) = path {
        query.push(format!("path={}", encode(&p)));
    }
    let url = format!(
        "/_gust/functions/{}/invoke?{}",
        encode(function),
        query.join("&")
    );
    let reply = client.post(&url, body)?;
    std::io::stdout().write_all(&reply.body)?;
    if !reply.body.ends_with(b"\n") && !reply.body.is_empty() {
        println!();
    }
    if reply.status >= 400 {
        eprintln!("gust: {function} answered HTTP {}", reply.status);
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `gust logs [-f] [function]`.
/// What `gust logs` asks for.
#[derive(Debug, Default)]
pub struct LogQuery {
    /// Only this function's lines.
    pub function: Option<String>,
    /// Only lines at this level or above.
    pub level: Option<String>,
    /// Only this invocation's lines.
    pub invocation: Option<String>,
    /// JSON lines instead of text.
    pub json: bool,
    /// Keep streaming.
    pub follow: bool,
    /// Lines of history first.
    pub tail: usize,
}

/// `gust logs`: the host's recent lines that pass the filters, then (with
/// `-f`) new ones as they come.
pub fn logs(target: &Target, query: &LogQuery) -> Result<ExitCode> {
    let client = Client::from_target(target)?;
    let mut path = format!("/_gust/logs?tail={}", query.tail);
    for (name, value) in [
        ("function", &query.function),
        ("level", &query.level),
        ("invocation", &query.invocation),
    ] {
        if let Some(v) = value {
            path.push_str(&format!("&{name}={}", encode(v)));
        }
    }
    if query.json {
        path.push_str("&format=json");
    }
    if query.follow {
        path.push_str("&follow=true");
        let mut out = std::io::stdout();
        client.stream(&path, |chunk| {
            let _ = out.write_all(chunk);
            let _ = out.flush();
        })?;
    } else {
        let reply = client.get(&path)?;
        if reply.status >= 400 {
            reply.json()?;
        }
        print!("{}", reply.text());
    }
    Ok(ExitCode::SUCCESS)
}

/// `gust ls`: one line per function.
pub fn ls(target: &Target) -> Result<ExitCode> {
    let client = Client::from_target(target)?;
    let functions = client.get("/_gust/functions")?.json()?;
    println!(
        "{:<24} {:<8} {:<40} {:<10} {:>8} {:>8} {:>8}",
        "FUNCTION", "TRIGGER", "ROUTE", "AUTH", "CALLS", "FAILED", "LIMITED"
    );
    for f in functions.as_array().into_iter().flatten() {
        let t = &f["trigger"];
        let stat = |k: &str| {
            f["stats"][k]
                .as_u64()
                .map_or("-".to_string(), |n| n.to_string())
        };
        let route = match (t["methods"].as_array(), t["route"].as_str()) {
            (Some(m), Some(r)) if !m.is_empty() => format!(
                "{} {r}",
                m.iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            (_, Some(r)) => r.to_string(),
            _ => "(inactive)".to_string(),
        };
        println!(
            "{:<24} {:<8} {:<40} {:<10} {:>8} {:>8} {:>8}",
            f["name"].as_str().unwrap_or("?"),
            t["kind"].as_str().unwrap_or("?"),
            route,
            t["auth"].as_str().unwrap_or("-"),
            stat("invocations"),
            stat("failures"),
            stat("rejected"),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Percent-encodes a query value.
pub(crate) fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
