//! Metrics in the Prometheus text format (version 0.0.4), named after the
//! OpenTelemetry FaaS conventions: `GET /_gust/metrics` on a host (admin
//! key) and `GET /metrics` on the optional `--metrics-listen` listener (no
//! key; one listener for every app of a multi-app `gust up`).
//!
//! * [`text`] — the exposition format encoder;
//! * [`histogram`] — lock-free duration histograms;
//! * [`function`] — the per-function series the invocation paths bump;
//! * [`backlog`] — queue depths and stream lags read at scrape time;
//! * [`lag`] — how far each stream-triggered function is behind;
//! * [`process`] — resident memory and friends from `/proc`;
//! * [`retained`] — bounded in-memory holders, data files and the heap;
//! * [`listener`] — the key-less metrics listener.

pub mod backlog;
pub mod function;
pub mod histogram;
pub mod lag;
pub mod listener;
pub mod process;
pub mod retained;
pub mod text;

use std::sync::Arc;

use http::{Response, header};

pub use function::{FunctionMetrics, FunctionRegistry, FunctionSnapshot, InFlight};

use crate::body::{self, Body};
use crate::host::Host;

/// The exposition text for `hosts` (every app's series labelled with its
/// own `app`), then the process's metrics.
pub async fn render(hosts: &[Arc<Host>]) -> String {
    let mut families = text::Families::default();
    for host in hosts {
        function::collect(&host.current(), &mut families);
    }
    for host in hosts {
        backlog::collect(host, &mut families).await;
    }
    for host in hosts {
        traces(host, &mut families);
    }
    for host in hosts {
        retained::collect(host, &mut families);
    }
    process::collect(&mut families);
    retained::collect_heap(&mut families);
    families.encode()
}

/// What became of the spans of `host`'s app, when traces are exported.
fn traces(host: &Host, families: &mut text::Families) {
    let Some(stats) = host.trace_stats() else {
        return;
    };
    let app = host.current();
    let family = families.family(
        "gust_trace_spans_total",
        "Invocation spans by outcome: exported (accepted by the collector), dropped (the export queue was full), failed (lost with a failed export request).",
        text::Kind::Counter,
    );
    for (outcome, count) in [
        ("exported", stats.exported),
        ("dropped", stats.dropped),
        ("failed", stats.failed),
    ] {
        family.sample(&[("app", &app.app.name), ("outcome", outcome)], count);
    }
}

/// A scrape response for `hosts`.
pub async fn response(hosts: &[Arc<Host>]) -> Response<Body> {
    let mut r = Response::new(body::full(render(hosts).await));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(text::CONTENT_TYPE),
    );
    r
}
