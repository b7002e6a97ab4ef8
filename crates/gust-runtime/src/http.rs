//! HTTP functions: a pre-instantiated `wasi:http/incoming-handler` component.

use std::sync::{Arc, Mutex};

use anyhow::Result;
use bytes::Bytes;
use hyper::body::Body;
use tokio::sync::oneshot;
use wasmtime::component::Component;
use wasmtime::{Store, Trap};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::engine::Runtime;
use crate::error::InvokeError;
use crate::log::LogLevel;
use crate::observe::{HttpFacts, SpanTimer};
use crate::state::{FunctionEnv, HostState};

/// The response of an HTTP function; the body may still be streaming.
pub type HttpResponse = hyper::Response<HyperOutgoingBody>;

/// A request extension marking a request that arrived over TLS: the guest
/// then sees scheme `https` (as it does for a request whose URI says so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Https;

/// Invocations after which a reused instance is replaced, bounding what a
/// guest can leak into its own memory.
const REUSE_LIMIT: u32 = 10_000;

/// One HTTP function, ready to serve.
///
/// By default every request gets a fresh instance: no state leaks between
/// requests. With instance reuse (opt-in), an instance that returned normally
/// serves later requests too; a trap or timeout discards it.
pub struct HttpFunction {
    pre: ProxyPre<HostState>,
    env: Arc<FunctionEnv>,
    warm: Option<Arc<Mutex<Vec<Warm>>>>,
}

/// An instance kept for reuse.
struct Warm {
    store: Store<HostState>,
    proxy: Proxy,
    uses: u32,
}

impl HttpFunction {
    /// Pre-instantiates `component` against the runtime's linker. Fails when
    /// the component imports something Gust does not provide, or does not
    /// export `wasi:http/incoming-handler`.
    pub fn new(
        runtime: &Runtime,
        component: &Component,
        env: FunctionEnv,
        reuse_instances: bool,
    ) -> Result<Self> {
        let instance_pre = runtime
            .linker()
            .instantiate_pre(component)
            .map_err(anyhow::Error::from)?;
        let pre = ProxyPre::new(instance_pre).map_err(|e| {
            anyhow::anyhow!("{e}; an HTTP function must export wasi:http/incoming-handler@0.2.x")
        })?;
        Ok(Self {
            pre,
            env: Arc::new(env),
            warm: reuse_instances.then(|| Arc::new(Mutex::new(Vec::new()))),
        })
    }

    /// The function's name.
    pub fn name(&self) -> &str {
        &self.env.name
    }

    /// The function's environment (limits, bindings).
    pub fn env(&self) -> &FunctionEnv {
        &self.env
    }

    fn new_store(&self) -> Store<HostState> {
        HostState::store(self.pre.engine(), self.env.clone())
    }

    /// Runs the function on `request`. Returns once the guest has set the
    /// response head; the body streams on. Failures are logged to the
    /// function's log sink with their cause and returned classified.
    pub async fn handle<B>(&self, request: hyper::Request<B>) -> Result<HttpResponse, InvokeError>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let ids = crate::InvocationIds::new(
            request
                .headers()
                .get("traceparent")
                .and_then(|v| v.to_str().ok()),
        );
        self.handle_as(request, ids).await
    }

    /// As [`Self::handle`], as the invocation `ids` (which the caller made,
    /// e.g. to record the invocation under its id).
    pub async fn handle_as<B>(
        &self,
        request: hyper::Request<B>,
        ids: crate::InvocationIds,
    ) -> Result<HttpResponse, InvokeError>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let warm = self.warm.as_ref().and_then(|w| w.lock().ok()?.pop());
        let (mut store, proxy) = match warm {
            Some(w) => (w.store, Some((w.proxy, w.uses))),
            None => (self.new_store(), None),
        };
        HostState::start_invocation(&mut store, ids.clone());
        let span = SpanTimer::start(self.env.tracer.as_ref(), &ids).map(|timer| {
            let method = request.method().clone();
            let route = request
                .headers()
                .get("x-gust-route")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            (timer, method, route)
        });
        let cold = proxy.is_none();

        let secure = request.extensions().get::<Https>().is_some()
            || request.uri().scheme() == Some(&::http::uri::Scheme::HTTPS);
        let scheme = if secure { Scheme::Https } else { Scheme::Http };
        let (sender, receiver) = oneshot::channel();
        let data = store.data_mut();
        let setup = data
            .http()
            .new_incoming_request(scheme, request)
            .and_then(|req| Ok((req, data.http().new_response_outparam(sender)?)));
        let (req, out) = setup.map_err(|e| InvokeError::Instantiate(e.to_string()))?;

        let pre = self.pre.clone();
        let pool = self.warm.clone();
        let env = self.env.clone();
        let task = tokio::spawn(async move {
            let (proxy, uses) = match proxy {
                Some(p) => p,
                None => {
                    let began = std::time::Instant::now();
                    let proxy = pre
                        .instantiate_async(&mut store)
                        .await
                        .map_err(|e| InvokeError::Instantiate(format!("{e:#}")))?;
                    if let Some(observer) = &env.observer {
                        observer.instantiated(began.elapsed());
                    }
                    (proxy, 0)
                }
            };
            let result = proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await;
            store.data_mut().flush_output();
            match result {
                Ok(()) => {
                    if let Some(pool) = pool
                        && uses + 1 < REUSE_LIMIT
                        && let Ok(mut idle) = pool.lock()
                        && idle.len() < env.limits.concurrency as usize
                    {
                        idle.push(Warm {
                            store,
                            proxy,
                            uses: uses + 1,
                        });
                    }
                    Ok(())
                }
                Err(e) => Err(classify(e, store.data().limiter.refused, &env)),
            }
        });

        match receiver.await {
            Ok(Ok(mut response)) => {
                let env = self.env.clone();
                tag(&mut response, &ids);
                let status = response.status().as_u16();
                // The guest may still be writing the body: report a late
                // failure; the span ends when the guest is done.
                tokio::spawn(async move {
                    let late = match task.await {
                        Ok(Err(e)) => {
                            report(&env, &e, &ids);
                            if let Some(observer) = &env.observer {
                                observer.failed_late(&e);
                            }
                            Some(e.to_string())
                        }
                        Ok(Ok(())) => None,
                        Err(join) => Some(join.to_string()),
                    };
                    if let Some((timer, method, route)) = span {
                        let error =
                            late.or_else(|| (status >= 500).then(|| format!("answered {status}")));
                        let http = HttpFacts {
                            method,
                            route,
                            status,
                        };
                        timer.finish(&ids, cold, None, Some(http), error);
                    }
                });
                Ok(response)
            }
            Ok(Err(code)) => {
                let e = InvokeError::Trap(format!("guest answered with error code {code:?}"));
                report(&self.env, &e, &ids);
                finish_failed(span, &ids, cold, &e);
                Err(e)
            }
            Err(_) => {
                let e = match task.await {
                    Ok(Ok(())) => InvokeError::NoResponse,
                    Ok(Err(e)) => e,
                    Err(join) => InvokeError::Trap(join.to_string()),
                };
                report(&self.env, &e, &ids);
                finish_failed(span, &ids, cold, &e);
                Err(e)
            }
        }
    }
}

/// Ends the span of an invocation that failed before answering (the host
/// answers with the error's status).
fn finish_failed(
    span: Option<(SpanTimer, ::http::Method, Option<String>)>,
    ids: &crate::InvocationIds,
    cold: bool,
    e: &InvokeError,
) {
    if let Some((timer, method, route)) = span {
        let http = HttpFacts {
            method,
            route,
            status: e.status().as_u16(),
        };
        timer.finish(ids, cold, None, Some(http), Some(e.to_string()));
    }
}

fn report(env: &FunctionEnv, e: &InvokeError, ids: &crate::InvocationIds) {
    env.log.log_invocation(
        &env.name,
        LogLevel::Error,
        &format!("invocation failed: {e}"),
        ids,
    );
}

/// Names the invocation and its trace in response headers, so a caller can
/// find its log lines (`gust logs --invocation <id>`).
fn tag(response: &mut HttpResponse, ids: &crate::InvocationIds) {
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-gust-invocation-id", &ids.id),
        ("x-gust-trace-id", &ids.trace.trace_id),
    ] {
        if let Ok(value) = ::http::HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
}

/// Turns a wasmtime error into the cause a person needs to see.
pub(crate) fn classify(e: wasmtime::Error, memory_refused: bool, env: &FunctionEnv) -> InvokeError {
    if memory_refused {
        return InvokeError::OutOfMemory(env.limits.memory);
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => InvokeError::Timeout(env.limits.timeout),
        Some(Trap::StackOverflow) => InvokeError::StackOverflow,
        // Guests compiled from Rust/C keep their call stack in linear memory
        // below the data: running off it is an out-of-bounds access deep in a
        // recursion.
        Some(Trap::MemoryOutOfBounds) if backtrace_depth(&e) >= SHADOW_STACK_DEPTH => {
            InvokeError::StackOverflow
        }
        Some(trap) => InvokeError::Trap(format!("{trap}: {}", root_message(&e))),
        None => InvokeError::Trap(root_message(&e)),
    }
}

/// Frames of recursion past which an out-of-bounds access is taken to be
/// the guest's own (shadow) stack running out.
const SHADOW_STACK_DEPTH: usize = 256;

fn backtrace_depth(e: &wasmtime::Error) -> usize {
    e.downcast_ref::<wasmtime::WasmBacktrace>()
        .map_or(0, |bt| bt.frames().len())
}

fn root_message(e: &wasmtime::Error) -> String {
    let text = format!("{e:?}");
    // Keep the message and the first lines of the guest backtrace.
    text.lines().take(12).collect::<Vec<_>>().join("\n")
}
