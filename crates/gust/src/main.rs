//! `gust`: build, run and manage WebAssembly functions.
//!
//! The binary is thin: argument parsing and output live here; everything
//! else is in the library crates (`gust-host`, `gust-manifest`, ...).

mod cli;
mod client;
mod commands;
mod progress;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GUST_LOG")
                // rumqttd reports routine disconnects (e.g. its own
                // subscribers at shutdown) as errors: only its panics matter.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,rumqttd=off")),
        )
        .with_writer(std::io::stderr)
        .init();
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
