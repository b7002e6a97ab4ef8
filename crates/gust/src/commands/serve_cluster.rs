//! `gust serve --config node.toml` with `[cluster]`: join the cluster and
//! serve every app deployed to it until Ctrl-C or SIGTERM.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use gust_cluster::{Node, NodeOptions, front};
use gust_host::server;
use gust_manifest::{ClusterConfig, NodeConfig};

/// Runs a cluster node.
pub fn serve(
    config_path: &Path,
    config: NodeConfig,
    cluster: ClusterConfig,
    serve: gust_host::ServeOptions,
    traces: Option<gust_host::otel::TraceConfig>,
) -> Result<ExitCode> {
    let mut backends = gust_host::BackendConfig {
        nats: Some(config.backends.nats.clone().unwrap_or(cluster.nats.clone())),
        postgres: Some(
            config
                .backends
                .postgres
                .clone()
                .unwrap_or(cluster.postgres.clone()),
        ),
        ..Default::default()
    };
    for (resource, url) in &config.backends.resources {
        backends
            .add_override(&format!("{resource}={url}"))
            .with_context(|| format!("{}: [backends] {resource}", config_path.display()))?;
    }
    let data_dir = config.data_dir.clone().unwrap_or_else(|| {
        config_path
            .parent()
            .unwrap_or(Path::new("."))
            .join(".gust-node")
    });
    let options = NodeOptions {
        cluster,
        data_dir,
        backends,
        reuse_instances: config.reuse_instances,
        pooling: config.pooling,
        echo_logs: true,
        serve: serve.clone(),
        traces,
        replay: gust_host::replay::ReplayLimits {
            max_bytes: config.replay_max_bytes,
            max_age: config.replay_max_age,
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("gust")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(options, config.listen, serve))?;
    eprintln!("gust: node stopped");
    Ok(ExitCode::SUCCESS)
}

async fn run(
    options: NodeOptions,
    listen: std::net::SocketAddr,
    serve: gust_host::ServeOptions,
) -> Result<()> {
    let listener = gust_host::listener::bind(listen)
        .with_context(|| format!("cannot listen on {listen}; is another gust running there?"))?;
    let addr = listener.local_addr()?;
    let node = Node::join(options, addr).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let syncing = tokio::spawn(node.clone().run(stop_rx));
    let serving = tokio::spawn(front::serve(
        listener,
        node.clone(),
        serve,
        server::shutdown_signal(),
    ));
    let started = Instant::now();
    while !node.is_ready() && !serving.is_finished() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if node.is_ready() {
        let apps: Vec<String> = node
            .apps()
            .iter()
            .map(|(name, s)| format!("{name} v{}", s.version))
            .collect();
        println!(
            "gust: node {} of cluster `{}` ready on {} in {} ms (apps: {}; cluster API {}/_gust/cluster/status)",
            node.id(),
            node.cluster(),
            node.url(),
            started.elapsed().as_millis(),
            if apps.is_empty() {
                "none yet".into()
            } else {
                apps.join(", ")
            },
            node.url()
        );
    }
    let _ = serving.await;
    let _ = stop_tx.send(true);
    let _ = syncing.await;
    Ok(())
}
