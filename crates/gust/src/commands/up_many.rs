//! `gust up <folder>` where the folder holds several apps (subfolders with a
//! `gust.toml`, e.g. `examples/`): every app is built and served by its own
//! [`Host`] in this one process, each on a free port of 127.0.0.1 and with
//! its own `<app>/.gust/` (so `gust ls --app <folder>/<app>` and every other
//! CLI command work per app), behind one front listener on `--listen` that
//! routes `/<app>/...` to the app with the prefix stripped.
//!
//! The front uses the API gateway crate to proxy (bodies stream both ways,
//! query strings and `/_gust/...` pass through) and adds
//! `x-forwarded-prefix: /<app>`. `GET /` lists the apps. A request whose
//! path names no app but whose `Referer` is a page of an app goes to that
//! app, so single-page apps that call `/api/...` work under their prefix.
//! An app that fails to build or start is reported and the others run.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use gust_gateway::{Body, Gateway, GatewayConfig, NoFunctions};
use gust_host::builder::build_app;
use gust_host::{Host, HostOptions, server, state_file, watch};
use gust_manifest::{App, MANIFEST_FILE};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch as signal;

use crate::cli::UpArgs;
use crate::progress::BuildBar;

/// How long shutdown waits for requests open on the front listener.
const DRAIN: Duration = Duration::from_secs(30);

/// An app found in a multi-app folder.
#[derive(Debug, Clone)]
pub struct AppFolder {
    /// The subfolder's name, which is also the app's route prefix.
    pub name: String,
    /// The subfolder as the user would write it (`<folder>/<name>`).
    pub dir: PathBuf,
}

/// When `dir` has no `gust.toml` but subfolders that each have one, returns
/// those subfolders (sorted by name); otherwise `None` (a single app, or an
/// error that `gust up` reports as usual).
pub fn app_folders(dir: &Path) -> Result<Option<Vec<AppFolder>>> {
    if dir.join(MANIFEST_FILE).exists() || !dir.is_dir() {
        return Ok(None);
    }
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let mut apps = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.starts_with('.') || name == "target" || !path.join(MANIFEST_FILE).is_file() {
            continue;
        }
        if !is_prefix_safe(&name) {
            eprintln!(
                "gust: skipping {}: a folder name used as a route prefix may only hold letters, digits, `-`, `_` and `.`",
                path.display()
            );
            continue;
        }
        apps.push(AppFolder {
            name,
            dir: dir.join(entry.file_name()),
        });
    }
    apps.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((!apps.is_empty()).then_some(apps))
}

/// Whether `name` can be used as-is as a URL path segment.
fn is_prefix_safe(name: &str) -> bool {
    !name.is_empty()
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// An app that was built and waits to be started.
struct Built {
    folder: AppFolder,
    app: App,
    components: BTreeMap<String, PathBuf>,
}

/// An app that is being served.
struct Running {
    folder: AppFolder,
    host: Arc<Host>,
    /// Taken when serving starts.
    listener: Option<TcpListener>,
    /// Keeps the app's file watcher (hot reload) alive.
    _watcher: Option<Box<dyn std::any::Any>>,
}

/// Builds and serves every app in `apps` behind one front listener until
/// Ctrl-C or SIGTERM.
pub fn up_many(args: UpArgs, apps: Vec<AppFolder>) -> Result<ExitCode> {
    // Bind first: a busy port should fail before minutes of building.
    let front = std::net::TcpListener::bind(args.listen).with_context(|| {
        format!(
            "cannot listen on {}; is another gust running? try --listen 127.0.0.1:0",
            args.listen
        )
    })?;
    front
        .set_nonblocking(true)
        .context("cannot configure the front listener")?;
    share_target_dir(&args.dir);

    let total = apps.len();
    let mut failed: Vec<(AppFolder, String)> = Vec::new();
    let mut built = Vec::new();
    for (i, folder) in apps.into_iter().enumerate() {
        eprintln!(
            "gust: [{}/{total}] building `{}` ({})",
            i + 1,
            folder.name,
            folder.dir.display()
        );
        match build_one(&folder) {
            Ok((app, components)) => built.push(Built {
                folder,
                app,
                components,
            }),
            Err(e) => {
                eprintln!("gust: app `{}` failed to build: {e:#}", folder.name);
                failed.push((folder, format!("{e:#}")));
            }
        }
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("gust")
        .build()
        .context("cannot start the async runtime")?;
    let backends = args.backend_config()?;
    let options = HostOptions {
        app_dir: PathBuf::new(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        watch: !args.no_watch,
        reuse_instances: args.reuse_instances,
        pooling: !args.no_pooling,
        echo_logs: !args.quiet,
        backends,
        mqtt_listen: args.mqtt_listen,
        cluster: None,
    };
    runtime.block_on(serve_all(front, options, built, failed))
}

/// Loads and builds one app.
fn build_one(folder: &AppFolder) -> Result<(App, BTreeMap<String, PathBuf>)> {
    let app = gust_manifest::load_app(&folder.dir)?;
    let components = build_app(&app, &BuildBar::new())?;
    Ok((app, components))
}

/// Lets the apps' function crates share one cargo target folder
/// (`<folder>/.gust/target`), so common dependencies compile once instead
/// of once per app. An explicit `CARGO_TARGET_DIR` wins.
fn share_target_dir(dir: &Path) {
    if std::env::var_os("CARGO_TARGET_DIR").is_some() {
        return;
    }
    let shared = std::path::absolute(dir)
        .unwrap_or_else(|_| dir.to_path_buf())
        .join(".gust")
        .join("target");
    // SAFETY: called from the main thread before the async runtime, the
    // build progress bars or any other thread of this process exist.
    unsafe { std::env::set_var("CARGO_TARGET_DIR", shared) };
}

/// Starts every built app, the front listener, and serves until a signal.
async fn serve_all(
    front: std::net::TcpListener,
    options: HostOptions,
    built: Vec<Built>,
    mut failed: Vec<(AppFolder, String)>,
) -> Result<ExitCode> {
    let (stop_tx, stop_rx) = signal::channel(false);
    let mut running: Vec<Running> = Vec::new();
    for b in built {
        let folder = b.folder.clone();
        match start_app(b, &options).await {
            Ok(r) => running.push(r),
            Err(e) => {
                let hint = mqtt_hint(&running, &options, &e);
                eprintln!("gust: app `{}` failed to start: {e:#}{hint}", folder.name);
                failed.push((folder, format!("{e:#}{hint}")));
            }
        }
    }
    failed.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    if running.is_empty() {
        bail!(
            "none of the {} apps could be started (errors above)",
            failed.len()
        );
    }

    let front = TcpListener::from_std(front).context("cannot use the front listener")?;
    let front_url = format!("http://{}", front.local_addr()?);
    let gateway = gateway(&running).context("cannot set up the front router")?;
    let state = Arc::new(Front {
        gateway,
        url: front_url.clone(),
        apps: running
            .iter()
            .map(|r| (r.folder.name.clone(), r.host.url()))
            .collect(),
        failed: failed
            .iter()
            .map(|(f, e)| (f.name.clone(), e.clone()))
            .collect(),
    });
    announce(&front_url, &running, &failed);

    let mut tasks = Vec::new();
    for r in &mut running {
        let Some(listener) = r.listener.take() else {
            continue;
        };
        tasks.push(tokio::spawn(server::serve(
            listener,
            r.host.clone(),
            stopped(stop_rx.clone()),
        )));
    }
    tasks.push(tokio::spawn(serve_front(
        front,
        state,
        stopped(stop_rx.clone()),
    )));
    tokio::spawn(async move {
        server::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    for t in tasks {
        let _ = t.await;
    }
    for r in &running {
        r.host.stop_triggers().await;
        state_file::remove(&r.host.current().app.state_dir());
    }
    eprintln!("gust: stopped");
    Ok(ExitCode::SUCCESS)
}

/// Resolves once `stop` turns true.
async fn stopped(mut stop: signal::Receiver<bool>) {
    let _ = stop.wait_for(|v| *v).await;
}

/// Starts one app's host on a free port: triggers, `.gust/host.json`, and
/// the file watcher for hot reload.
async fn start_app(b: Built, options: &HostOptions) -> Result<Running> {
    let Built {
        folder,
        app,
        components,
    } = b;
    let listener = TcpListener::bind(options.listen)
        .await
        .context("cannot listen on a free port of 127.0.0.1")?;
    let addr = listener.local_addr()?;
    let state_dir = app.state_dir();
    let options = HostOptions {
        app_dir: app.dir.clone(),
        ..options.clone()
    };
    let host = Host::start(options, addr, app, &components).await?;
    let started = async {
        host.start_triggers().await?;
        state_file::write(&state_dir, &host.url())?;
        let watcher: Option<Box<dyn std::any::Any>> = if host.options().watch {
            let name = folder.name.clone();
            let w = watch::watch(host.clone(), move |result| match result {
                Ok(()) => eprintln!("gust: `{name}` reloaded"),
                Err(e) => eprintln!(
                    "gust: `{name}` reload failed (still serving the previous version): {e:#}"
                ),
            })?;
            Some(Box::new(w))
        } else {
            None
        };
        anyhow::Ok(watcher)
    }
    .await;
    match started {
        Ok(watcher) => Ok(Running {
            folder,
            host,
            listener: Some(listener),
            _watcher: watcher,
        }),
        Err(e) => {
            host.stop_triggers().await;
            state_file::remove(&state_dir);
            Err(e)
        }
    }
}

/// When an app could not start because another app of this process already
/// holds the embedded MQTT broker's address, says so and how to fix it.
fn mqtt_hint(running: &[Running], options: &HostOptions, error: &anyhow::Error) -> String {
    if options.mqtt_listen.port() == 0 || !format!("{error:#}").contains("MQTT") {
        return String::new();
    }
    match running.iter().find(|r| r.host.mqtt_addr().is_some()) {
        Some(other) => format!(
            "\n  app `{}` already runs the embedded MQTT broker on {}: only one app per `gust up` can use a fixed --mqtt-listen address; pass `--mqtt-listen 127.0.0.1:0` to give each app its own broker on a free port, or run this app on its own",
            other.folder.name, options.mqtt_listen
        ),
        None => String::new(),
    }
}

/// The front router: one prefix route per running app to its host.
fn gateway(running: &[Running]) -> Result<Gateway> {
    let routes: Vec<serde_json::Value> = running
        .iter()
        .map(|r| {
            let name = &r.folder.name;
            serde_json::json!({
                "name": name,
                "prefix": format!("/{name}"),
                "target": { "upstream": r.host.url(), "rewrite": "/{rest}" },
                "request_headers": { "set": { "x-forwarded-prefix": format!("/{name}") } },
                // A development front: no limits of its own beyond the apps'.
                "timeout": "24h",
                "max_body": "64GiB",
                "body_timeout": "10m",
                // Never fail fast: an app answering 5xx is the app's business.
                "breaker": { "failure_ratio": 1.0, "min_calls": u32::MAX },
            })
        })
        .collect();
    let config: GatewayConfig = serde_json::from_value(serde_json::json!({ "route": routes }))
        .context("invalid front routes")?;
    Ok(Gateway::new(config, Arc::new(NoFunctions))?)
}

/// Prints the `ready` line (the front URL, then every app's URL), one line
/// per app with its direct URL and data folder and its functions under the
/// prefix, and the apps that failed.
fn announce(front: &str, running: &[Running], failed: &[(AppFolder, String)]) {
    let urls: Vec<String> = running
        .iter()
        .map(|r| format!("{front}/{}/", r.folder.name))
        .collect();
    let failures = if failed.is_empty() {
        String::new()
    } else {
        let names: Vec<&str> = failed.iter().map(|(f, _)| f.name.as_str()).collect();
        format!(" ({} failed: {})", failed.len(), names.join(", "))
    };
    println!(
        "gust: {} apps ready on {front}{failures} apps: {}",
        running.len(),
        urls.join(" ")
    );
    for (r, url) in running.iter().zip(&urls) {
        let app = r.host.current();
        let direct = r.host.url();
        println!(
            "  {:<16} {url}  (app `{}`, direct {direct}, admin API {direct}/_gust/, data {}, CLI: gust ls --app {})",
            r.folder.name,
            app.app.name,
            app.app.state_dir().display(),
            r.folder.dir.display()
        );
        let prefix = format!("{front}/{}", r.folder.name);
        let (_, details) = super::up::describe(&r.host, &prefix);
        for line in details {
            println!("  {line}");
        }
    }
    for (f, error) in failed {
        let first = error.lines().next().unwrap_or_default();
        println!("  {:<16} FAILED: {first}", f.name);
    }
}

/// The front listener's state.
struct Front {
    gateway: Gateway,
    url: String,
    /// Running apps: (prefix name, direct URL).
    apps: Vec<(String, String)>,
    /// Apps that failed: (prefix name, error).
    failed: Vec<(String, String)>,
}

/// Serves the front until `shutdown`, then lets open requests finish (up
/// to 30 s).
async fn serve_front(
    listener: TcpListener,
    front: Arc<Front>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, client) = match accepted {
                    Ok(pair) => pair,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let front = front.clone();
                let service = service_fn(move |req| {
                    let front = front.clone();
                    async move { Ok::<_, Infallible>(route(&front, req, client).await) }
                });
                let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN) => {}
    }
}

/// Routes one request on the front.
async fn route(front: &Front, mut req: Request<Incoming>, client: SocketAddr) -> Response<Body> {
    let path = req.uri().path().to_string();
    if path == "/" {
        return index(front, wants_html(&req));
    }
    let first = first_segment(&path);
    if front.apps.iter().any(|(name, _)| name == first) {
        if path.len() == first.len() + 1 && wants_html(&req) {
            // `/app` -> `/app/`, so relative links in the app's pages resolve
            // under its prefix.
            let query = req
                .uri()
                .query()
                .map(|q| format!("?{q}"))
                .unwrap_or_default();
            return redirect(&format!("{path}/{query}"));
        }
        return front.gateway.handle(req, client).await;
    }
    if let Some((name, error)) = front.failed.iter().find(|(name, _)| name == first) {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("app `{name}` is not running: it failed to start.\n\n{error}\n"),
        );
    }
    if let Some(app) = referring_app(front, &req) {
        let pq = req
            .uri()
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/");
        if let Ok(uri) = format!("/{app}{pq}").parse::<Uri>() {
            *req.uri_mut() = uri;
            return front.gateway.handle(req, client).await;
        }
    }
    let apps: Vec<String> = front
        .apps
        .iter()
        .map(|(name, _)| format!("  {}/{name}/", front.url))
        .collect();
    text(
        StatusCode::NOT_FOUND,
        format!(
            "no app at {path}; every app is under its own prefix:\n{}\n",
            apps.join("\n")
        ),
    )
}

/// The first segment of a path: `alpha` for `/alpha/x`.
fn first_segment(path: &str) -> &str {
    path.trim_start_matches('/').split('/').next().unwrap_or("")
}

/// The running app whose page sent the request (from `Referer`), if any.
fn referring_app<'a>(front: &'a Front, req: &Request<Incoming>) -> Option<&'a str> {
    let referer: Uri = req
        .headers()
        .get(header::REFERER)?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    let first = first_segment(referer.path());
    front
        .apps
        .iter()
        .map(|(name, _)| name.as_str())
        .find(|name| *name == first)
}

/// Whether the client asked for HTML (a browser navigating).
fn wants_html(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// `GET /`: the apps and where they are, as HTML or text.
fn index(front: &Front, html: bool) -> Response<Body> {
    if !html {
        let mut out = format!("Gust: {} apps on {}\n", front.apps.len(), front.url);
        for (name, direct) in &front.apps {
            out.push_str(&format!(
                "  {name:<16} {}/{name}/  (direct {direct})\n",
                front.url
            ));
        }
        for (name, error) in &front.failed {
            let first = error.lines().next().unwrap_or_default();
            out.push_str(&format!("  {name:<16} FAILED: {first}\n"));
        }
        return text(StatusCode::OK, out);
    }
    let mut items = String::new();
    for (name, direct) in &front.apps {
        items.push_str(&format!(
            "<li><a href=\"/{name}/\">{name}</a> <small>direct <a href=\"{direct}/\">{direct}</a>, admin API <a href=\"/{name}/_gust/\">/{name}/_gust/</a></small></li>\n"
        ));
    }
    for (name, error) in &front.failed {
        items.push_str(&format!(
            "<li>{name} <strong>failed to start</strong><pre>{}</pre></li>\n",
            escape(error)
        ));
    }
    let page = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Gust apps</title></head>\n<body><h1>Gust: {} apps</h1>\n<ul>\n{items}</ul></body></html>\n",
        front.apps.len()
    );
    let mut resp = Response::new(gust_gateway::full(page));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A plain-text response.
fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(gust_gateway::full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// A permanent redirect to `location` (same method).
fn redirect(location: &str) -> Response<Body> {
    let mut resp = text(StatusCode::PERMANENT_REDIRECT, format!("see {location}\n"));
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_app_folders_only_without_own_manifest() {
        let root = tempfile::tempdir().unwrap();
        for name in ["beta", "alpha", ".hidden", "target"] {
            std::fs::create_dir(root.path().join(name)).unwrap();
            std::fs::write(root.path().join(name).join(MANIFEST_FILE), "").unwrap();
        }
        std::fs::create_dir(root.path().join("docs")).unwrap();
        let apps = app_folders(root.path()).unwrap().unwrap();
        let names: Vec<&str> = apps.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["alpha", "beta"]);
        assert_eq!(apps[0].dir, root.path().join("alpha"));
        assert!(app_folders(&root.path().join("alpha")).unwrap().is_none());
        assert!(app_folders(&root.path().join("docs")).unwrap().is_none());
        assert!(app_folders(&root.path().join("missing")).unwrap().is_none());
    }

    #[test]
    fn prefix_names() {
        assert!(is_prefix_safe("event-sourcing"));
        assert!(is_prefix_safe("web_api.v2"));
        assert!(!is_prefix_safe("a b"));
        assert!(!is_prefix_safe("é"));
        assert!(!is_prefix_safe(".."));
        assert_eq!(first_segment("/alpha/x/y"), "alpha");
        assert_eq!(first_segment("/alpha"), "alpha");
        assert_eq!(first_segment("/"), "");
    }
}
