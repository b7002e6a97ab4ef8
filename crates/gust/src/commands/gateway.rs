//! `gust gateway status`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::cli::{GatewayCommand, Target};
use crate::client::Client;

/// Runs a gateway subcommand against the running host.
pub fn run(target: &Target, command: GatewayCommand) -> Result<ExitCode> {
    let client = Client::from_target(target)?;
    match command {
        GatewayCommand::Status { json } => {
            let status = client
                .get("/_gust/gateway")?
                .json()
                .context("cannot read the gateway status")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", render(&status));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The status as two tables: upstreams (breakers) and routes (counters).
fn render(status: &Value) -> String {
    if status["configured"] == Value::Bool(false) {
        return "this app has no [gateway] in gust.toml\n".to_string();
    }
    let mut out = String::new();
    let upstreams = list(&status["upstreams"]);
    if upstreams.is_empty() {
        out.push_str("upstreams: none (every route targets a function)\n");
    } else {
        let mut rows = vec![row([
            "UPSTREAM", "BREAKER", "CALLS", "FAILURES", "OPENED", "REJECTED", "",
        ])];
        for u in upstreams {
            let b = &u["breaker"];
            let state = b["state"].as_str().unwrap_or("?");
            let note = match b["open_remaining_ms"].as_u64() {
                Some(ms) if state == "open" && ms > 0 => {
                    format!("half-opens in {:.1}s", ms as f64 / 1000.0)
                }
                _ => String::new(),
            };
            rows.push(vec![
                text(&u["url"]),
                state.replace('_', "-"),
                num(&u["calls"]),
                num(&u["failures"]),
                num(&b["opened_total"]),
                num(&b["rejected_total"]),
                note,
            ]);
        }
        out.push_str(&table(&rows, &[0, 1, 6]));
    }
    out.push('\n');
    let mut rows = vec![row([
        "ROUTE", "REQUESTS", "2XX", "4XX", "5XX", "AUTH", "LIMITED", "BREAKER", "TIMEOUTS",
        "CANARY",
    ])];
    for r in list(&status["routes"]) {
        let responses = &r["responses"];
        rows.push(vec![
            text(&r["name"]),
            num(&r["requests"]),
            num(&responses["success"]),
            num(&responses["client_error"]),
            num(&responses["server_error"]),
            num(&r["auth_failures"]),
            num(&r["rate_limited"]),
            num(&r["breaker_rejected"]),
            num(&r["timeouts"]),
            num(&r["canary"]),
        ]);
    }
    out.push_str(&table(&rows, &[0]));
    let g = &status["gateway"];
    out.push_str(&format!(
        "\n{} requests: {} matched no route, {} wrong method, {} refused as malformed\n",
        num(&g["requests"]),
        num(&g["not_found"]),
        num(&g["method_not_allowed"]),
        num(&g["bad_requests"]),
    ));
    out
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or("?").to_string()
}

fn num(v: &Value) -> String {
    v.as_u64()
        .map_or_else(|| "-".to_string(), |n| n.to_string())
}

fn row<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// Columns two spaces apart; those in `left` left-aligned, the rest
/// (numbers) right-aligned.
fn table(rows: &[Vec<String>], left: &[usize]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let w = widths[i];
            if left.contains(&i) {
                line.push_str(&format!("{cell:<w$}"));
            } else {
                line.push_str(&format!("{cell:>w$}"));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_breakers_and_routes() {
        let status = serde_json::json!({
            "configured": true,
            "gateway": { "requests": 12, "not_found": 1, "method_not_allowed": 0, "bad_requests": 0 },
            "routes": [{ "name": "v1", "requests": 11, "auth_failures": 2, "rate_limited": 3,
                         "breaker_rejected": 4, "timeouts": 0, "canary": 0,
                         "responses": { "success": 2, "client_error": 5, "server_error": 4 } }],
            "upstreams": [{ "url": "http://127.0.0.1:9", "calls": 7, "failures": 7,
                            "breaker": { "state": "open", "opened_total": 1, "rejected_total": 4,
                                         "open_remaining_ms": 2500 } }]
        });
        let text = render(&status);
        assert!(text.contains("UPSTREAM"), "{text}");
        let upstream = text.lines().find(|l| l.contains("127.0.0.1:9")).unwrap();
        assert!(
            upstream.contains("open") && upstream.contains("half-opens in 2.5s"),
            "{text}"
        );
        assert!(text.lines().any(|l| l.starts_with("v1 ")), "{text}");
        let none = render(&serde_json::json!({ "configured": false }));
        assert!(none.contains("no [gateway]"));
    }
}
