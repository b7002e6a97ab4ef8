//! Event functions: components exporting `gust:function/event-handler`.

use std::sync::{Arc, Mutex};

use anyhow::Result;
use wasmtime::Store;
use wasmtime::component::Component;

use crate::engine::Runtime;
use crate::error::InvokeError;
use crate::log::LogLevel;
use crate::observe::SpanTimer;
use crate::state::{FunctionEnv, HostState};

pub(crate) mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "gust:function/event-host",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

use generated::exports::gust::function::event_handler;
use generated::{EventHost, EventHostPre};

pub use gust_events::{Event, Outcome};

/// Events after which a reused instance is replaced.
const REUSE_LIMIT: u32 = 10_000;

/// One event function, pre-instantiated. A fresh instance per event by
/// default; with instance reuse (opt-in, as for HTTP functions) an
/// instance whose handler returned serves later events too, and one that
/// trapped or timed out is discarded.
pub struct EventFunction {
    pre: EventHostPre<HostState>,
    env: Arc<FunctionEnv>,
    warm: Option<Mutex<Vec<Warm>>>,
}

/// An instance kept for reuse.
struct Warm {
    store: Store<HostState>,
    instance: EventHost,
    uses: u32,
}

impl EventFunction {
    /// Pre-instantiates `component`; fails when it does not export
    /// `gust:function/event-handler` or imports what Gust lacks.
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
        let pre = EventHostPre::new(instance_pre).map_err(|e| {
            anyhow::anyhow!("{e}; an event function must export gust:function/event-handler@0.1.0")
        })?;
        Ok(Self {
            pre,
            env: Arc::new(env),
            warm: reuse_instances.then(|| Mutex::new(Vec::new())),
        })
    }

    /// The function's name.
    pub fn name(&self) -> &str {
        &self.env.name
    }

    /// The function's environment.
    pub fn env(&self) -> &FunctionEnv {
        &self.env
    }

    /// Runs the function on `event`. A trap, timeout or memory exhaustion is
    /// an `Err` (and logged); an error the function returned is
    /// `Ok(Retry)` or `Ok(Fail)` as it asked.
    pub async fn handle(&self, event: Event) -> Result<Outcome, InvokeError> {
        let ids = crate::InvocationIds::new(event.extension("traceparent"));
        self.handle_as(event, ids).await
    }

    /// As [`Self::handle`], as the invocation `ids` (which the caller made,
    /// e.g. to record the invocation under its id).
    pub async fn handle_as(
        &self,
        event: Event,
        ids: crate::InvocationIds,
    ) -> Result<Outcome, InvokeError> {
        let Some(timer) = SpanTimer::start(self.env.tracer.as_ref(), &ids) else {
            return self.run(event, ids).await.0;
        };
        let attempt = event.attempt;
        let (result, cold) = self.run(event, ids.clone()).await;
        let error = match &result {
            Ok(Outcome::Done) => None,
            Ok(Outcome::Retry(message) | Outcome::Fail(message)) => Some(message.clone()),
            Err(e) => Some(e.to_string()),
        };
        timer.finish(&ids, cold, Some(attempt), None, error);
        result
    }

    /// Runs one invocation `ids` of the function on `event`; also says
    /// whether a new instance was created for it.
    async fn run(
        &self,
        event: Event,
        ids: crate::InvocationIds,
    ) -> (Result<Outcome, InvokeError>, bool) {
        let warm = self.warm.as_ref().and_then(|w| w.lock().ok()?.pop());
        let (mut store, reused) = match warm {
            Some(w) => (w.store, Some((w.instance, w.uses))),
            None => (HostState::store(self.pre.engine(), self.env.clone()), None),
        };
        let cold = reused.is_none();
        HostState::start_invocation(&mut store, ids);
        store.data_mut().run = event
            .extension(gust_events::workflow::RUN_EXTENSION)
            .map(str::to_string);
        let wit_event = event_handler::Event {
            id: event.id,
            source: event.source,
            type_: event.ty,
            subject: event.subject,
            time: event.time,
            datacontenttype: event.datacontenttype,
            data: event.data,
            extensions: event.extensions,
            attempt: event.attempt,
        };
        let (instance, uses) = match reused {
            Some(r) => r,
            None => {
                let began = std::time::Instant::now();
                match self.pre.instantiate_async(&mut store).await {
                    Ok(instance) => {
                        if let Some(observer) = &self.env.observer {
                            observer.instantiated(began.elapsed());
                        }
                        (instance, 0)
                    }
                    Err(e) => return (Err(self.failed(e, &store)), cold),
                }
            }
        };
        let result = instance
            .gust_function_event_handler()
            .call_handle(&mut store, &wit_event)
            .await;
        store.data_mut().flush_output();
        let outcome = match result {
            Ok(Ok(())) => Outcome::Done,
            Ok(Err(e)) if e.retryable => Outcome::Retry(e.message),
            Ok(Err(e)) => Outcome::Fail(e.message),
            Err(e) => return (Err(self.failed(e, &store)), cold),
        };
        self.keep_warm(store, instance, uses + 1);
        (Ok(outcome), cold)
    }

    /// Keeps an instance whose handler returned for the next event (with
    /// reuse on, up to the function's concurrency and [`REUSE_LIMIT`] uses).
    fn keep_warm(&self, store: Store<HostState>, instance: EventHost, uses: u32) {
        if uses < REUSE_LIMIT
            && let Some(Ok(mut idle)) = self.warm.as_ref().map(|w| w.lock())
            && idle.len() < self.env.limits.concurrency as usize
        {
            idle.push(Warm {
                store,
                instance,
                uses,
            });
        }
    }

    /// Classifies and logs a trap, timeout or instantiation failure.
    fn failed(&self, e: wasmtime::Error, store: &Store<HostState>) -> InvokeError {
        let err = crate::http::classify(e, store.data().limiter.refused, &self.env);
        self.env.log.log_invocation(
            &self.env.name,
            LogLevel::Error,
            &format!("invocation failed: {err}"),
            &store.data().invocation,
        );
        err
    }
}
