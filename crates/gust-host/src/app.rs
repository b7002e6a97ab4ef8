//! An app loaded and ready to serve: routes, keys, functions and their
//! concurrency permits. A reload builds a new one and swaps it in.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};
use gust_backends::KeyValueProvider;
use gust_manifest::{App, BindingKind, Trigger};
use gust_runtime::{FunctionEnv, HttpFunction, LogLevel, LogSink, Runtime};
use gust_triggers::http::{HttpRouter, Keys};
use serde::Serialize;
use tokio::sync::Semaphore;

/// Counters of one function, kept across reloads.
#[derive(Debug, Default, Serialize)]
pub struct FunctionStats {
    /// Invocations started.
    pub invocations: AtomicU64,
    /// Invocations that failed (trap, timeout, ...).
    pub failures: AtomicU64,
    /// Requests turned away by the concurrency limit.
    pub rejected: AtomicU64,
}

impl FunctionStats {
    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A function ready to run.
pub struct LoadedFunction {
    /// The pre-instantiated component.
    pub http: Arc<HttpFunction>,
    /// One permit per allowed concurrent invocation.
    pub permits: Arc<Semaphore>,
    /// Its counters.
    pub stats: Arc<FunctionStats>,
    /// The component file it runs.
    pub component: PathBuf,
}

/// A validated, compiled app.
pub struct LoadedApp {
    /// The manifest.
    pub app: App,
    /// HTTP routes.
    pub router: HttpRouter,
    /// The app's keys.
    pub keys: Keys,
    /// HTTP functions by name.
    pub functions: HashMap<String, LoadedFunction>,
}

/// What `load` needs from the host.
pub struct LoadContext<'a> {
    /// The engine and linker.
    pub runtime: &'a Runtime,
    /// Key-value stores of the app.
    pub kv: &'a dyn KeyValueProvider,
    /// Log destination.
    pub logs: Arc<dyn LogSink>,
    /// Counters by function name (kept across reloads).
    pub stats: &'a mut HashMap<String, Arc<FunctionStats>>,
    /// Reuse instances between requests (opt-in).
    pub reuse_instances: bool,
}

impl LoadedApp {
    /// Compiles (through the cache) and pre-instantiates every function.
    pub fn load(
        app: App,
        components: &BTreeMap<String, PathBuf>,
        keys: Keys,
        cx: LoadContext<'_>,
    ) -> Result<Self> {
        let router = HttpRouter::new(&app)?;
        let variables = resolve_variables(&app)?;
        let mut functions = HashMap::new();
        for f in &app.functions {
            if let Trigger::Event { kind, .. } = &f.trigger {
                cx.logs.log(
                    &f.name,
                    LogLevel::Warn,
                    &format!("{} triggers are not served by this version of gust; the function is loaded but inactive", kind.as_str()),
                );
                continue;
            }
            let path = components
                .get(&f.name)
                .with_context(|| format!("no component was built for function `{}`", f.name))?;
            let (component, _cached) = cx
                .runtime
                .load_component(path)
                .with_context(|| format!("function `{}`", f.name))?;
            let mut env = FunctionEnv::new(f.name.clone(), f.limits, cx.logs.clone())
                .with_variables(variables.clone());
            for (binding, b) in &f.bindings {
                match b.kind {
                    BindingKind::Kv => {
                        let store = cx.kv.open(&b.resource).with_context(|| {
                            format!("function `{}`: kv store `{}`", f.name, b.resource)
                        })?;
                        env = env.with_kv(binding.clone(), store);
                    }
                    other => cx.logs.log(
                        &f.name,
                        LogLevel::Warn,
                        &format!(
                            "binding `{binding}` ({} `{}`) is not served by this version of gust",
                            other.as_str(),
                            b.resource
                        ),
                    ),
                }
            }
            let http = HttpFunction::new(cx.runtime, &component, env, cx.reuse_instances)
                .with_context(|| format!("function `{}` ({})", f.name, path.display()))?;
            let stats = cx.stats.entry(f.name.clone()).or_default().clone();
            functions.insert(
                f.name.clone(),
                LoadedFunction {
                    http: Arc::new(http),
                    permits: Arc::new(Semaphore::new(f.limits.concurrency as usize)),
                    stats,
                    component: path.clone(),
                },
            );
        }
        Ok(Self {
            app,
            router,
            keys,
            functions,
        })
    }
}

/// Variable values: `GUST_VAR_<NAME>` from the environment, else the default.
pub fn resolve_variables(app: &App) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (name, var) in &app.variables {
        let env_name = format!("GUST_VAR_{}", name.to_ascii_uppercase());
        match std::env::var(&env_name)
            .ok()
            .or_else(|| var.default.clone())
        {
            Some(value) => out.push((name.clone(), value)),
            None if var.required => bail!(
                "variable `{name}` is required but has no value: set the environment variable {env_name} or give it a default in {}",
                app.manifest_path.display()
            ),
            None => {}
        }
    }
    Ok(out)
}
