//! `.gust/host.json`: where a running host for this app listens, so CLI
//! commands run inside the app folder find it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The contents of `.gust/host.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostFile {
    /// Base URL, e.g. `http://127.0.0.1:7070`.
    pub url: String,
    /// Process id of the host.
    pub pid: u32,
}

/// The file's path in `state_dir`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("host.json")
}

/// Records that this process serves at `url`.
pub fn write(state_dir: &Path, url: &str) -> Result<()> {
    std::fs::create_dir_all(state_dir)?;
    let file = HostFile {
        url: url.to_string(),
        pid: std::process::id(),
    };
    let p = path(state_dir);
    std::fs::write(&p, serde_json::to_vec_pretty(&file)?)
        .with_context(|| format!("cannot write {}", p.display()))
}

/// Reads the file, if a host wrote one.
pub fn read(state_dir: &Path) -> Option<HostFile> {
    serde_json::from_slice(&std::fs::read(path(state_dir)).ok()?).ok()
}

/// Removes the file on shutdown.
pub fn remove(state_dir: &Path) {
    let _ = std::fs::remove_file(path(state_dir));
}
