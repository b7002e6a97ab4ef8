//! `gust up` and `gust serve`: run a host in the foreground. A folder of
//! apps (no `gust.toml` of its own) is handed to [`super::up_many`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use gust_host::builder::{WASM_TARGET, build_app, ensure_wasm_target};
use gust_host::{Host, HostOptions};
use gust_manifest::{NodeConfig, Trigger};

use crate::cli::{TraceArgs, UpArgs};
use crate::progress::{BuildBar, Phases};

/// Builds the app, serves it and hot-reloads on change until Ctrl-C.
pub fn up(args: UpArgs) -> Result<ExitCode> {
    if let Some(apps) = super::up_many::app_folders(&args.dir)? {
        return super::up_many::up_many(args, apps);
    }
    let app_dir = std::path::absolute(&args.dir).unwrap_or(args.dir.clone());
    let options = args.host_options(app_dir, args.listen, args.serve_options()?)?;
    start(options, args.metrics_listen)
}

/// Runs the node described by a `node.toml`.
pub fn serve(config: &Path, trace_args: &TraceArgs) -> Result<ExitCode> {
    let node = NodeConfig::load(config)?;
    let traces = trace_args
        .config(Some((&node.otlp_endpoint, node.trace_sample)))
        .with_context(|| format!("{}: traces", config.display()))?;
    let mut backends = gust_host::BackendConfig {
        nats: node.backends.nats.clone().or(node.nats_url.clone()),
        postgres: node.backends.postgres.clone(),
        ..Default::default()
    };
    for (resource, url) in &node.backends.resources {
        backends
            .add_override(&format!("{resource}={url}"))
            .with_context(|| format!("{}: [backends] {resource}", config.display()))?;
    }
    let tls = node
        .tls
        .as_ref()
        .map(|t| (t.cert.as_path(), t.key.as_path()));
    let serve = super::serve_options(node.header_timeout, node.idle_timeout, tls)
        .with_context(|| format!("{}: tls", config.display()))?;
    if let Some(cluster) = node.cluster.clone() {
        if node.metrics_listen.is_some() {
            eprintln!(
                "gust: metrics_listen is ignored on a cluster node; scrape /<app>/_gust/metrics with the admin key"
            );
        }
        return super::serve_cluster::serve(config, node, cluster, serve, traces);
    }
    let app = node.app.clone().context("the node config names no app")?;
    start(
        HostOptions {
            app_dir: std::path::absolute(&app).unwrap_or(app),
            listen: node.listen,
            watch: node.watch,
            reuse_instances: node.reuse_instances,
            pooling: node.pooling,
            echo_logs: true,
            backends,
            mqtt_listen: node.mqtt_listen,
            cluster: None,
            serve,
            traces,
            replay: gust_host::replay::ReplayLimits {
                max_bytes: node.replay_max_bytes,
                max_age: node.replay_max_age,
            },
        },
        node.metrics_listen,
    )
}

fn start(options: HostOptions, metrics_listen: Option<SocketAddr>) -> Result<ExitCode> {
    let phases = Phases::new();
    let app = gust_host::load_app(&options.app_dir)?;
    let components = build_with_progress(&phases, &app)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("gust")
        .build()
        .context("cannot start the async runtime")?;
    let starting = phases.begin(format!(
        "starting: compiling {} components (native code is cached), triggers",
        components.len()
    ));
    let result = runtime.block_on(gust_host::run(
        options,
        metrics_listen,
        app,
        components,
        |host, metrics| {
            starting.done("");
            announce(host, metrics);
        },
        |result| match result {
            Ok(()) => eprintln!("gust: reloaded"),
            Err(e) => eprintln!("gust: reload failed (still serving the previous version): {e:#}"),
        },
    ));
    if let Err(e) = result {
        phases.line(&format!("FAILED: {e:#}"));
        return Err(e);
    }
    eprintln!("gust: stopped");
    Ok(ExitCode::SUCCESS)
}

/// The toolchain and build phases of one app, with progress lines.
pub(super) fn build_with_progress(
    phases: &Phases,
    app: &gust_manifest::App,
) -> Result<BTreeMap<String, PathBuf>> {
    let sources = super::up_many::SourceCounts::of([app]);
    if sources.crates > 0 {
        phases.run(&format!("toolchain: {WASM_TARGET}"), ensure_wasm_target)?;
    }
    let bar = BuildBar::new();
    let phase = phases.begin(format!("building app `{}` ({sources})", app.name));
    match build_app(app, &bar) {
        Ok(components) => {
            phase.done(&bar.summary());
            Ok(components)
        }
        Err(e) => {
            phase.failed(&format!("{e:#}"));
            Err(e)
        }
    }
}

/// Prints one line with `ready` and every route's URL, then a line per
/// route, and the metrics listener's URL if there is one.
fn announce(host: &Host, metrics: Option<SocketAddr>) {
    let url = host.url();
    let (routes, details) = describe(host, &url);
    println!(
        "gust: app `{}` ready on {url} (admin API {url}/_gust/, console {url}/_gust/console/, keys: gust keys) routes: {}",
        host.current().app.name,
        routes.join(" ")
    );
    for line in details {
        println!("{line}");
    }
    if let Some(addr) = metrics {
        println!(
            "  {:<12} http://{addr}/metrics (Prometheus, no key)",
            "metrics"
        );
    }
}

/// What `host` serves, with HTTP routes under `url` (the host's own URL, or
/// its prefix on a multi-app front): every route's URL, and one indented
/// line per function (plus the MQTT broker, if it runs).
pub(super) fn describe(host: &Host, url: &str) -> (Vec<String>, Vec<String>) {
    let app = host.current();
    let mut routes = Vec::new();
    let mut details = Vec::new();
    for f in &app.app.functions {
        match &f.trigger {
            Trigger::Http(h) => {
                let methods = if h.methods.is_empty() {
                    "ANY".to_string()
                } else {
                    h.methods
                        .iter()
                        .map(|m| m.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                };
                routes.push(format!("{url}{}", h.route));
                details.push(format!(
                    "  {methods:<12} {url}{}  -> {} (auth: {})",
                    h.route,
                    f.name,
                    h.auth.as_str()
                ));
            }
            _ => {
                let source = gust_host::registry::describe(f)
                    .map(|d| d.source)
                    .unwrap_or_else(|e| e.to_string());
                details.push(format!("  {:<12} {} <- {source}", f.trigger.kind(), f.name));
            }
        }
    }
    for m in app.statics.mounts() {
        let route = if m.route == "/" {
            "/".to_string()
        } else {
            format!("{}/", m.route)
        };
        routes.push(format!("{url}{route}"));
        let fallback = m
            .fallback
            .as_ref()
            .map(|f| format!(" (fallback {f})"))
            .unwrap_or_default();
        details.push(format!(
            "  {:<12} {url}{route}  -> files in {}{fallback}",
            "static",
            m.dir.display()
        ));
    }
    for s in &app.app.sse {
        let subject = s
            .subject
            .as_ref()
            .map(|s| format!(", subject `{s}`"))
            .unwrap_or_default();
        details.push(format!(
            "  {:<12} {url}{}  <- topic `{}` (event stream{subject}, auth: {})",
            "GET (sse)",
            s.route,
            s.topic,
            s.auth.as_str()
        ));
    }
    if let Some(addr) = host.mqtt_addr() {
        details.push(format!("  mqtt broker  mqtt://{addr} (MQTT 3.1.1 and 5)"));
    }
    let engines: Vec<String> = host
        .services()
        .engines()
        .map(|(resource, engine)| format!("{resource}: {engine}"))
        .collect();
    details.push(format!("  {:<12} {}", "backends", engines.join(", ")));
    (routes, details)
}
