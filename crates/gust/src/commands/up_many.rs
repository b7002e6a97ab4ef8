//! `gust up <folder>` where the folder holds several apps (subfolders with a
//! `gust.toml`, e.g. `examples/`): every app is built and served by its own
//! [`Host`] in this one process, each on a free port of 127.0.0.1 and with
//! its own `<app>/.gust/` (so `gust ls --app <folder>/<app>` and every other
//! CLI command work per app), behind one front listener on `--listen` that
//! routes `/<app>/...` to the app with the prefix stripped.
//!
//! The front listener is [`gust_host::front`] (proxying through the API
//! gateway crate; `GET /` indexes the apps and their pages). All apps'
//! function crates are built together (one `cargo build` per cargo
//! workspace). An app that fails to build or start is reported and the
//! others run. With `--metrics-listen`, one metrics listener serves every
//! app's series, each labelled with its own `app`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use gust_host::builder::{WASM_TARGET, build_apps, ensure_wasm_target, target_dir};
use gust_host::front::{self, Front, FrontApp};
use gust_host::{Host, HostOptions, server, state_file, watch};
use gust_manifest::{App, MANIFEST_FILE, Source};
use tokio::net::TcpListener;
use tokio::sync::watch as signal;

use crate::cli::UpArgs;
use crate::progress::{BuildBar, Phases};

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

/// One of `apps` equal shares of `total` (all of it for one app).
fn share_of(total: u64, apps: usize) -> u64 {
    total / apps.max(1) as u64
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
    let front = gust_host::listener::bind_std(args.listen).with_context(|| {
        format!(
            "cannot listen on {}; is another gust running? try --listen 127.0.0.1:0",
            args.listen
        )
    })?;
    front
        .set_nonblocking(true)
        .context("cannot configure the front listener")?;
    let metrics = match args.metrics_listen {
        Some(addr) => Some(gust_host::metrics::listener::bind_std(addr)?),
        None => None,
    };
    share_target_dir(&args.dir);
    // Read the certificate before minutes of building, too.
    let front_options = args.serve_options()?;

    let phases = Phases::new();
    let (built, failed) = build_all(&phases, apps)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("gust")
        .build()
        .context("cannot start the async runtime")?;
    // The apps' own listeners on 127.0.0.1 speak plain HTTP; TLS is the
    // front's.
    let mut options = args.host_options(
        PathBuf::new(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
        gust_host::ServeOptions {
            tls: None,
            ..front_options.clone()
        },
    )?;
    // `--replay-max-bytes` bounds the process: its apps share it evenly.
    options.replay.max_bytes = share_of(args.replay_max_bytes, built.len());
    let listeners = Listeners { front, metrics };
    runtime.block_on(serve_all(
        &phases,
        listeners,
        front_options,
        options,
        built,
        failed,
    ))
}

/// The listeners bound before building: the front, and the metrics
/// listener of `--metrics-listen`.
struct Listeners {
    front: std::net::TcpListener,
    metrics: Option<std::net::TcpListener>,
}

/// Apps that failed to load or build, each with its error.
type Failed = Vec<(AppFolder, String)>;

/// Loads every app's manifest and builds all their functions together (the
/// toolchain and build phases). Apps that fail are returned with the error.
fn build_all(phases: &Phases, apps: Vec<AppFolder>) -> Result<(Vec<Built>, Failed)> {
    let mut failed: Vec<(AppFolder, String)> = Vec::new();
    let mut loaded: Vec<(AppFolder, App)> = Vec::new();
    for folder in apps {
        match gust_host::load_app(&folder.dir) {
            Ok(app) => loaded.push((folder, app)),
            Err(e) => {
                eprintln!("gust: app `{}` failed to load: {e:#}", folder.name);
                failed.push((folder, format!("{e:#}")));
            }
        }
    }
    let crate_dirs: BTreeSet<&Path> = loaded
        .iter()
        .flat_map(|(_, app)| &app.functions)
        .filter_map(|f| match &f.source {
            Source::Crate { dir, .. } => Some(dir.as_path()),
            _ => None,
        })
        .collect();
    if loaded.is_empty() {
        return Ok((Vec::new(), failed));
    }
    if !crate_dirs.is_empty() {
        phases.run(&format!("toolchain: {WASM_TARGET}"), ensure_wasm_target)?;
    }
    let workspaces: BTreeSet<PathBuf> = crate_dirs
        .iter()
        .map(|d| gust_host::builder::rust::workspace_root(d))
        .collect();
    let bar = BuildBar::new();
    let sources = SourceCounts::of(loaded.iter().map(|(_, app)| app));
    let phase = phases.begin(format!(
        "building {} apps: {} function crates in {} cargo {}{}",
        loaded.len(),
        crate_dirs.len(),
        workspaces.len(),
        if workspaces.len() == 1 { "run" } else { "runs" },
        sources.scripts_suffix()
    ));
    let apps: Vec<&App> = loaded.iter().map(|(_, app)| app).collect();
    let results = build_apps(&apps, &target_dir(apps[0]), &bar);
    let mut built = Vec::new();
    for ((folder, app), result) in loaded.into_iter().zip(results) {
        match result {
            Ok(components) => built.push(Built {
                folder,
                app,
                components,
            }),
            Err(e) => failed.push((folder, format!("{e:#}"))),
        }
    }
    if failed.is_empty() {
        phase.done(&bar.summary());
    } else {
        phase.done(&format!("{}, {} apps failed", bar.summary(), failed.len()));
        for (folder, error) in &failed {
            eprintln!("gust: app `{}` failed to build: {error}", folder.name);
        }
    }
    Ok((built, failed))
}

/// How many function sources of each language some apps have (each
/// folder counted once).
pub(super) struct SourceCounts {
    /// Rust crates.
    pub crates: usize,
    /// JavaScript/TypeScript folders.
    pub js: usize,
    /// Python folders.
    pub python: usize,
}

impl SourceCounts {
    /// Counts the sources of `apps`.
    pub fn of<'a>(apps: impl IntoIterator<Item = &'a App>) -> Self {
        let mut seen = BTreeSet::new();
        let mut counts = SourceCounts {
            crates: 0,
            js: 0,
            python: 0,
        };
        for f in apps.into_iter().flat_map(|a| &a.functions) {
            let Some(dir) = f.source.dir() else { continue };
            if !seen.insert(dir.to_path_buf()) {
                continue;
            }
            match f.source {
                Source::Crate { .. } => counts.crates += 1,
                Source::Js { .. } => counts.js += 1,
                Source::Python { .. } => counts.python += 1,
                Source::Wasm(_) => {}
            }
        }
        counts
    }

    /// `, 1 JavaScript and 2 Python functions` (empty without any).
    fn scripts_suffix(&self) -> String {
        let mut parts = Vec::new();
        if self.js > 0 {
            parts.push(format!("{} JavaScript/TypeScript", self.js));
        }
        if self.python > 0 {
            parts.push(format!("{} Python", self.python));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(", {} functions", parts.join(" and "))
        }
    }
}

impl std::fmt::Display for SourceCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} function crates{}",
            self.crates,
            self.scripts_suffix()
        )
    }
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
    phases: &Phases,
    listeners: Listeners,
    front_options: gust_host::ServeOptions,
    options: HostOptions,
    built: Vec<Built>,
    mut failed: Vec<(AppFolder, String)>,
) -> Result<ExitCode> {
    let (stop_tx, stop_rx) = signal::channel(false);
    let mut running: Vec<Running> = Vec::new();
    for b in built {
        let folder = b.folder.clone();
        let phase = phases.begin(format!(
            "starting `{}`: compiling {} components (native code is cached), triggers",
            folder.name,
            b.components.len()
        ));
        match start_app(b, &options).await {
            Ok(r) => {
                phase.done("");
                running.push(r);
            }
            Err(e) => {
                let hint = mqtt_hint(&running, &options, &e);
                phase.failed(&format!("{e:#}"));
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

    let front = TcpListener::from_std(listeners.front).context("cannot use the front listener")?;
    let metrics = match listeners.metrics {
        Some(l) => Some(TcpListener::from_std(l).context("cannot use the metrics listener")?),
        None => None,
    };
    let metrics_url = match &metrics {
        Some(l) => Some(format!("http://{}/metrics", l.local_addr()?)),
        None => None,
    };
    let front_url = format!("{}://{}", front_options.scheme(), front.local_addr()?);
    let apps = running
        .iter()
        .map(|r| FrontApp::new(&r.folder.name, &r.host))
        .collect();
    let failures = failed
        .iter()
        .map(|(f, e)| (f.name.clone(), e.clone()))
        .collect();
    let state = Arc::new(Front::new(front_url.clone(), apps, failures)?);
    announce(&front_url, &running, &failed);
    if let Some(url) = &metrics_url {
        println!("  {:<16} {url} (Prometheus, every app, no key)", "metrics");
    }

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
    if let Some(listener) = metrics {
        let hosts = running.iter().map(|r| r.host.clone()).collect();
        tasks.push(tokio::spawn(gust_host::metrics::listener::serve(
            listener,
            hosts,
            stopped(stop_rx.clone()),
        )));
    }
    tasks.push(tokio::spawn(front::serve(
        front,
        state,
        front_options,
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
    let listener = gust_host::listener::bind(options.listen)
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
            "  {:<16} {url}  (app `{}`, direct {direct}, admin API {direct}/_gust/, console {url}_gust/console/, data {}, CLI: gust ls --app {})",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apps_of_a_folder_share_the_replay_memory() {
        assert_eq!(share_of(32 << 20, 1), 32 << 20);
        assert_eq!(share_of(32 << 20, 4), 8 << 20);
        assert_eq!(share_of(100, 3), 33);
        assert_eq!(share_of(100, 0), 100);
        assert_eq!(share_of(0, 13), 0, "0 keeps nothing for any app");
    }

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
    }
}
