//! Event functions: components exporting `gust:function/event-handler`.

use std::sync::Arc;

use anyhow::Result;
use wasmtime::component::Component;

use crate::engine::Runtime;
use crate::error::InvokeError;
use crate::log::LogLevel;
use crate::state::{FunctionEnv, HostState};

pub(crate) mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "gust:function/event-host",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

use generated::EventHostPre;
use generated::exports::gust::function::event_handler;

pub use gust_events::{Event, Outcome};

/// One event function, pre-instantiated; a fresh instance per event.
pub struct EventFunction {
    pre: EventHostPre<HostState>,
    env: Arc<FunctionEnv>,
}

impl EventFunction {
    /// Pre-instantiates `component`; fails when it does not export
    /// `gust:function/event-handler` or imports what Gust lacks.
    pub fn new(runtime: &Runtime, component: &Component, env: FunctionEnv) -> Result<Self> {
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
        let mut store = HostState::store(self.pre.engine(), self.env.clone());
        HostState::start_invocation(&mut store);
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
        let result = async {
            let instance = self.pre.instantiate_async(&mut store).await?;
            instance
                .gust_function_event_handler()
                .call_handle(&mut store, &wit_event)
                .await
        }
        .await;
        store.data_mut().flush_output();
        match result {
            Ok(Ok(())) => Ok(Outcome::Done),
            Ok(Err(e)) if e.retryable => Ok(Outcome::Retry(e.message)),
            Ok(Err(e)) => Ok(Outcome::Fail(e.message)),
            Err(e) => {
                let refused = store.data().limiter.refused;
                let err = crate::http::classify(e, refused, &self.env);
                self.env.log.log(
                    &self.env.name,
                    LogLevel::Error,
                    &format!("invocation failed: {err}"),
                );
                Err(err)
            }
        }
    }
}
