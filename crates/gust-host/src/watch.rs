//! Watches an app's sources and reloads the host when they change.

use std::path::{Component, Path};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::host::Host;

/// Quiet time after a change before reloading (editors write in bursts).
const SETTLE: Duration = Duration::from_millis(300);

/// Starts watching `host`'s app folder; the watcher lives as long as the
/// returned handle.
pub fn watch(
    host: Arc<Host>,
    on_reload: impl Fn(Result<()>) + Send + Sync + 'static,
) -> Result<notify::RecommendedWatcher> {
    let dir = host.options().app_dir.clone();
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let root = dir.clone();
    let current = host.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !matches!(event.kind, notify::EventKind::Access(_))
            && event.paths.iter().any(|p| {
                // Static files are read per request: editing one needs no reload.
                let app = current.current();
                relevant(&root, p) && !app.statics.mounts().any(|m| in_folder(&m.dir, p))
            })
        {
            let _ = tx.send(());
        }
    })
    .context("cannot watch the app folder")?;
    watcher
        .watch(&dir, RecursiveMode::Recursive)
        .with_context(|| format!("cannot watch {}", dir.display()))?;
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Let the burst of writes settle, then drop what queued meanwhile.
            tokio::time::sleep(SETTLE).await;
            while rx.try_recv().is_ok() {}
            on_reload(host.reload().await);
        }
    });
    Ok(watcher)
}

/// Changes under `.gust/`, `target/`, package folders (`node_modules/`,
/// `__pycache__/`) or hidden folders are ours, a tool's, or noise.
fn relevant(root: &Path, path: &Path) -> bool {
    let rel = path.strip_prefix(root).unwrap_or(path);
    !rel.components().any(|c| match c {
        Component::Normal(name) => {
            let name = name.to_string_lossy();
            matches!(&*name, "target" | "node_modules" | "__pycache__")
                || name.starts_with('.')
                || name.ends_with('~')
        }
        _ => false,
    })
}

/// Whether `path` is inside `folder` (a canonical path), also when the
/// watcher reports it through a non-canonical app path.
fn in_folder(folder: &Path, path: &Path) -> bool {
    path.starts_with(folder)
        || path
            .parent()
            .and_then(|p| p.canonicalize().ok())
            .is_some_and(|p| p.starts_with(folder))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignores_state_build_and_hidden_paths() {
        let root = Path::new("/app");
        assert!(relevant(root, Path::new("/app/gust.toml")));
        assert!(relevant(root, Path::new("/app/functions/f/src/lib.rs")));
        assert!(!relevant(root, Path::new("/app/.gust/logs/functions.log")));
        assert!(!relevant(root, Path::new("/app/functions/f/target/x")));
        assert!(!relevant(
            root,
            Path::new("/app/functions/f/node_modules/x/i.js")
        ));
        assert!(!relevant(
            root,
            Path::new("/app/functions/f/__pycache__/app.pyc")
        ));
        assert!(!relevant(root, Path::new("/app/src/.lib.rs.swp")));
    }

    #[test]
    fn static_folders_are_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let public = dir.path().join("public");
        std::fs::create_dir_all(&public).unwrap();
        let public = public.canonicalize().unwrap();
        assert!(in_folder(&public, &public.join("index.html")));
        assert!(!in_folder(&public, &dir.path().join("gust.toml")));
    }
}
