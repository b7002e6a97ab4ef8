//! The Gust host: loads an app, serves its HTTP routes and the admin API,
//! keeps logs and keys, and hot-reloads on change.

pub mod admin;
pub mod app;
pub mod auth_throttle;
pub mod body;
pub mod builder;
pub mod console;
pub mod dispatch;
pub mod front;
pub mod gateway;
pub mod host;
pub mod invocations;
pub mod keys;
pub mod listener;
pub mod logs;
pub mod metrics;
pub mod otel;
pub mod queues;
pub mod replay;
pub mod sdk;
pub mod secrets;
pub mod server;
pub mod sse;
pub mod state_file;
pub mod static_files;
pub mod stats;
pub mod streams;
pub mod tls;
pub mod topics;
pub mod watch;
pub mod workflows;

pub use gust_backends::BackendConfig;
pub use gust_triggers::{load_app, registry};
pub use host::{Host, HostOptions};
pub use listener::{ServeOptions, serve_with};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use gust_manifest::App;

/// Binds the listener (and, with `metrics_listen`, the key-less metrics
/// listener), starts the host for `app`, announces it (`on_ready`, given
/// the metrics listener's address), serves until SIGINT/SIGTERM, then
/// drains open requests.
pub async fn run(
    options: HostOptions,
    metrics_listen: Option<std::net::SocketAddr>,
    app: App,
    components: BTreeMap<String, PathBuf>,
    on_ready: impl FnOnce(&Host, Option<std::net::SocketAddr>),
    on_reload: impl Fn(Result<()>) + Send + Sync + 'static,
) -> Result<()> {
    let listener = listener::bind(options.listen).with_context(|| {
        format!(
            "cannot listen on {}; is another gust running? try --listen 127.0.0.1:0",
            options.listen
        )
    })?;
    let metrics_listener = match metrics_listen {
        Some(addr) => Some(metrics::listener::bind(addr)?),
        None => None,
    };
    let addr = listener.local_addr()?;
    let state_dir = app.state_dir();
    let host = Host::start(options, addr, app, &components).await?;
    host.start_triggers().await?;
    state_file::write(&state_dir, &host.url())?;
    let metrics_addr = match &metrics_listener {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    on_ready(&host, metrics_addr);
    let _watcher = if host.options().watch {
        Some(watch::watch(host.clone(), on_reload)?)
    } else {
        None
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let metrics_task = metrics_listener.map(|l| {
        let mut stopped = stopped.clone();
        tokio::spawn(metrics::listener::serve(
            l,
            vec![host.clone()],
            async move {
                let _ = stopped.wait_for(|v| *v).await;
            },
        ))
    });
    server::serve(listener, Arc::clone(&host), server::shutdown_signal()).await;
    let _ = stop.send(true);
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    host.stop_triggers().await;
    state_file::remove(&state_dir);
    Ok(())
}
