//! The shared wasmtime engine and its single epoch ticker.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::cache::{CacheOutcome, ComponentCache};
use crate::state::HostState;

/// How often the engine-wide ticker advances the epoch: a running guest
/// yields to the async runtime this often, and timeouts are checked then.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Settings for a [`Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Use the pooling instance allocator (fast instantiation). When the
    /// machine refuses the address-space reservation, the runtime falls back
    /// to on-demand allocation.
    pub pooling: bool,
    /// Instances that can be alive at once across all functions (pool size).
    pub max_instances: u32,
    /// Largest linear memory any function may be granted, bytes.
    pub max_memory: u64,
    /// Where compiled components are cached.
    pub cache: ComponentCache,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            pooling: true,
            max_instances: 1000,
            max_memory: 4 << 30,
            cache: ComponentCache::new(ComponentCache::default_dir()),
        }
    }
}

/// The engine, the linker with every Gust binding, and the component cache.
/// Cheap to share (`Arc`); one per host process.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache: ComponentCache,
    ticker_stop: Arc<AtomicBool>,
    pooling: bool,
}

impl Runtime {
    /// Builds the engine (pooling allocator when possible) and starts the
    /// one epoch ticker thread.
    pub fn new(options: RuntimeOptions) -> Result<Self> {
        let (engine, pooling) = if options.pooling {
            match Engine::new(&config(Some(&options))) {
                Ok(engine) => (engine, true),
                Err(e) => {
                    tracing::warn!(error = %e, "pooling allocator unavailable; using on-demand allocation");
                    (
                        Engine::new(&config(None)).map_err(anyhow::Error::from)?,
                        false,
                    )
                }
            }
        } else {
            (
                Engine::new(&config(None)).map_err(anyhow::Error::from)?,
                false,
            )
        };
        let linker = crate::bindings::linker(&engine)?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(engine.clone(), ticker_stop.clone())?;
        Ok(Self {
            engine,
            linker,
            cache: options.cache,
            ticker_stop,
            pooling,
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Whether the pooling allocator is in use.
    pub fn pooling(&self) -> bool {
        self.pooling
    }

    /// The linker holding every binding a function may import.
    pub(crate) fn linker(&self) -> &Linker<HostState> {
        &self.linker
    }

    /// Loads a component file through the compile cache.
    pub fn load_component(&self, path: &Path) -> Result<(Component, bool)> {
        // Compiles on a short-lived engine without the instance pool (its
        // code is the same: the cache checks the compilation settings).
        let compiler = || Engine::new(&config(None)).ok();
        let (component, outcome) = self.cache.load(&self.engine, &compiler, path)?;
        Ok((component, outcome == CacheOutcome::Hit))
    }

    /// The compile cache.
    pub fn cache(&self) -> &ComponentCache {
        &self.cache
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// Bytes of each freed linear memory kept resident and reset in place
/// (covers a Rust guest's 1 MiB shadow stack, its data and a first heap).
const KEEP_RESIDENT: usize = 4 << 20;

fn config(pooling: Option<&RuntimeOptions>) -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.max_wasm_stack(1 << 20);
    // Deep enough to tell a runaway recursion from an ordinary bad access.
    config.wasm_backtrace_max_frames(std::num::NonZeroUsize::new(300));
    config.async_stack_size(2 << 20);
    if let Some(options) = pooling {
        let n = options.max_instances.max(1);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(n)
            .total_core_instances(n * 4)
            .total_memories(n * 2)
            .total_tables(n * 4)
            .total_stacks(n)
            .max_core_instances_per_component(32)
            .max_memories_per_component(4)
            .max_tables_per_component(16)
            .max_memory_size(usize::try_from(options.max_memory).unwrap_or(usize::MAX))
            // Reset a freed instance's memory by rewriting only the pages
            // it dirtied (found with Linux's PAGEMAP_SCAN, kernel 6.7+),
            // keeping them mapped: no madvise, so no TLB shootdown across
            // the runtime's threads and no page faults on the next use.
            // Measured (bench/queue.sh, fresh instance per message): the
            // shootdowns were the largest cost before. Older kernels fall
            // back to resetting the first KEEP_RESIDENT bytes with memset.
            .pagemap_scan(Enabled::Auto)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(64 << 10)
            // Fewer, larger madvise batches for what is still decommitted.
            .decommit_batch_size(32);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

fn spawn_epoch_ticker(engine: Engine, stop: Arc<AtomicBool>) -> Result<()> {
    std::thread::Builder::new()
        .name("gust-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        })
        .context("cannot start the epoch ticker")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_compiled_without_the_instance_pool_fits_an_engine_with_it() {
        let options = RuntimeOptions {
            max_instances: 2,
            max_memory: 1 << 20,
            ..RuntimeOptions::default()
        };
        let pooled = Engine::new(&config(Some(&options))).unwrap();
        let plain = Engine::new(&config(None)).unwrap();
        assert_eq!(
            crate::cache::engine_key(&pooled),
            crate::cache::engine_key(&plain)
        );
    }
}
