//! Event functions: components exporting `gust:function/event-handler`.

use std::sync::Arc;

use anyhow::Result;
use wasmtime::Store;
use wasmtime::component::Component;

use crate::engine::{Runtime, ticks_for};
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

/// A CloudEvents 1.0 event as handed to a function.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// CloudEvents `id`.
    pub id: String,
    /// CloudEvents `source`.
    pub source: String,
    /// CloudEvents `type`.
    pub ty: String,
    /// CloudEvents `subject`.
    pub subject: Option<String>,
    /// CloudEvents `time` (RFC 3339).
    pub time: Option<String>,
    /// Media type of `data`.
    pub datacontenttype: Option<String>,
    /// The payload.
    pub data: Vec<u8>,
    /// Extension attributes (includes `traceparent`).
    pub extensions: Vec<(String, String)>,
    /// 1 on the first delivery.
    pub attempt: u32,
}

/// What the function said about an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventOutcome {
    /// Handled: settle (acknowledge) it.
    Done,
    /// Not handled; `retryable` says whether trying again may help.
    Failed {
        /// The function's message.
        message: String,
        /// Retry (true) or dead-letter now (false).
        retryable: bool,
    },
}

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
    /// an `Err` (and logged); a returned error is `Ok(Failed)`.
    pub async fn handle(&self, event: Event) -> Result<EventOutcome, InvokeError> {
        let mut store = Store::new(self.pre.engine(), HostState::new(self.env.clone()));
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(ticks_for(self.env.limits.timeout));
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
            Ok(Ok(())) => Ok(EventOutcome::Done),
            Ok(Err(e)) => Ok(EventOutcome::Failed {
                message: e.message,
                retryable: e.retryable,
            }),
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
