//! Compiled components cached on disk, keyed by content hash, so an unchanged
//! component is compiled once across restarts and redeploys.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A folder of precompiled components (`<sha256>-<engine>.cwasm`).
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: PathBuf,
}

/// How a component was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded precompiled native code from disk.
    Hit,
    /// Compiled now and stored for next time.
    Compiled,
}

impl ComponentCache {
    /// A cache in `dir` (created when first written).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The default location: `$GUST_CACHE_DIR`, else `$XDG_CACHE_HOME/gust`,
    /// else `~/.cache/gust`, else the system temp folder.
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("GUST_CACHE_DIR") {
            return PathBuf::from(dir);
        }
        if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
            return PathBuf::from(dir).join("gust");
        }
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(".cache").join("gust");
        }
        std::env::temp_dir().join("gust-cache")
    }

    /// The folder holding the compiled files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads the component at `path` into `engine`, compiling it only if no
    /// compiled copy for these exact bytes and this engine configuration
    /// exists.
    ///
    /// A compile runs on the engine `compiler` makes when it makes one with
    /// the same compilation settings (else on `engine`), dropped right
    /// after: Cranelift keeps each thread's compile buffers in its engine
    /// for the engine's life, ~150 MiB after compiling the examples.
    pub fn load(
        &self,
        engine: &Engine,
        compiler: &dyn Fn() -> Option<Engine>,
        path: &Path,
    ) -> Result<(Component, CacheOutcome)> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read component {}", path.display()))?;
        self.load_bytes(engine, compiler, &bytes)
            .with_context(|| format!("cannot load component {}", path.display()))
    }

    /// As [`load`](Self::load), for component bytes in memory.
    pub fn load_bytes(
        &self,
        engine: &Engine,
        compiler: &dyn Fn() -> Option<Engine>,
        bytes: &[u8],
    ) -> Result<(Component, CacheOutcome)> {
        let key = engine_key(engine);
        let file = self.dir.join(format!(
            "{}-{key}.cwasm",
            hex::encode(Sha256::digest(bytes))
        ));
        if file.is_file() {
            // SAFETY: the file was written by `precompile_component` of an
            // engine with the same compatibility hash (it is in the name), into
            // a folder only Gust writes, and is renamed into place atomically.
            match unsafe { Component::deserialize_file(engine, &file) } {
                Ok(component) => return Ok((component, CacheOutcome::Hit)),
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "discarding unusable cached component");
                    let _ = std::fs::remove_file(&file);
                }
            }
        }
        let compiler = compiler().filter(|c| engine_key(c) == key);
        let compiled = compiler
            .as_ref()
            .unwrap_or(engine)
            .precompile_component(bytes)
            .map_err(anyhow::Error::from)
            .context("not a valid WebAssembly component")?;
        drop(compiler);
        let component = match write_atomically(&file, &compiled) {
            // The file, mapped as on a cache hit: its code is backed by the
            // file (shared, reclaimable) instead of a private heap copy.
            // SAFETY: written just now with code compiled for this
            // engine's settings (the compiler's key is this engine's).
            Ok(()) => unsafe { Component::deserialize_file(engine, &file) },
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "cannot write the component cache");
                // SAFETY: `compiled` was produced just now for this
                // engine's settings.
                unsafe { Component::deserialize(engine, &compiled) }
            }
        }
        .map_err(anyhow::Error::from)?;
        drop(compiled);
        crate::memory::release_freed_memory();
        Ok((component, CacheOutcome::Compiled))
    }
}

/// The part of a cache file's name that tells which engine settings its
/// native code was compiled for.
pub(crate) fn engine_key(engine: &Engine) -> String {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

fn write_atomically(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = file.parent().expect("cache file has a parent");
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        file.file_name().and_then(|n| n.to_str()).unwrap_or("c"),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, file)
}
