//! One module per subcommand.

mod admin;
mod build;
mod cluster;
mod events;
mod gateway;
mod keys;
mod new;
mod queue;
mod replay;
mod serve_cluster;
mod stream;
mod up;
mod up_many;
mod workflows;

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{AppsCommand, Cli, ClusterCommand, Command};

/// Runs the chosen subcommand.
pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::New { template, dir } => new::run(&template, &dir),
        Command::Build { dir } => build::run(&dir),
        Command::Up(args) => up::up(args),
        Command::Serve { config, traces } => up::serve(&config, &traces),
        Command::Deploy {
            dir,
            rollback,
            target,
        } => match rollback {
            Some(app) => cluster::rollback(&target, &app),
            None => cluster::deploy(&dir, &target),
        },
        Command::Apps {
            command: AppsCommand::Ls { target, json },
        } => cluster::apps(&target, json),
        Command::Cluster {
            command: ClusterCommand::Status { target, json },
        } => cluster::status(&target, json),
        Command::Invoke {
            function,
            data,
            method,
            path,
            target,
        } => admin::invoke(&target, &function, data, method, path),
        Command::Replay {
            function,
            invocation,
            stream,
            from,
            to,
            partition,
            json,
            target,
        } => {
            let what = match (invocation, stream, from) {
                (Some(id), _, _) => replay::Replay::Invocation(id),
                (None, Some(stream), Some(from)) => replay::Replay::Stream {
                    stream,
                    partition,
                    from,
                    to,
                },
                _ => anyhow::bail!("give --invocation ID, or --stream NAME --from OFFSET"),
            };
            replay::run(&target, &function, what, json)
        }
        Command::Logs {
            function,
            follow,
            tail,
            level,
            invocation,
            json,
            target,
        } => admin::logs(
            &target,
            &admin::LogQuery {
                function,
                level,
                invocation,
                json,
                follow,
                tail,
            },
        ),
        Command::Ls { target } => admin::ls(&target),
        Command::Queue { command, target } => queue::run(&target, command),
        Command::Workflows { command, target } => workflows::run(&target, command),
        Command::Events { command, target } => events::run(&target, command),
        Command::Gateway { command, target } => gateway::run(&target, command),
        Command::Stream { command, target } => stream::run(&target.into(), command),
        Command::Keys {
            command:
                Some(crate::cli::KeysCommand::Rotate {
                    dir,
                    admin,
                    host,
                    function,
                    ca_cert,
                }),
            ..
        } => keys::rotate(&dir, admin, host, function, ca_cert.as_deref()),
        Command::Keys {
            command: None,
            dir,
            host,
            admin,
            function,
            json,
        } => keys::run(&dir, host, admin, function.as_deref(), json),
    }
}

/// Listener options: the two timeouts, and HTTPS when a certificate and
/// key are given (read now, so a bad file fails before anything starts).
pub fn serve_options(
    header_timeout: std::time::Duration,
    idle_timeout: std::time::Duration,
    tls: Option<(&std::path::Path, &std::path::Path)>,
) -> Result<gust_host::ServeOptions> {
    use anyhow::Context;
    anyhow::ensure!(
        !header_timeout.is_zero() && !idle_timeout.is_zero(),
        "the header and idle timeouts must be longer than zero"
    );
    let tls = match tls {
        Some((cert, key)) => Some(
            gust_host::tls::ReloadingCert::load(cert, key)
                .context("cannot serve HTTPS (check --tls-cert/--tls-key or `tls` in node.toml)")?,
        ),
        None => None,
    };
    Ok(gust_host::ServeOptions {
        header_timeout,
        idle_timeout,
        tls,
        ..Default::default()
    })
}
