//! The host side of every import a function may use, in one linker.

mod blob;
mod keyvalue;
mod logging;
mod queue;
mod sql;
mod stream;
mod table;
mod topic;
mod workflow;

use anyhow::Result;
use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};
use wasmtime_wasi_config::WasiConfig;

use crate::state::HostState;

pub(crate) mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "gust:function/bindings",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::keyvalue::Bucket,
        },
    });
}

/// A linker with WASI p2, wasi:http, wasi:config, wasi:keyvalue and
/// wasi:logging, all answering from [`HostState`].
pub(crate) fn linker(engine: &Engine) -> Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    wasmtime_wasi_config::add_to_linker(&mut linker, |s: &mut HostState| {
        WasiConfig::from(&s.env.variables)
    })?;
    generated::Bindings::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;
    crate::event::generated::gust::function::types::add_to_linker::<HostState, HasSelf<HostState>>(
        &mut linker,
        |s| s,
    )?;
    Ok(linker)
}
