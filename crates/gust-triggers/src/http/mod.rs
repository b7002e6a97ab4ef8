//! The HTTP trigger: route matching and key-based authorisation.

mod auth;
mod router;

pub use auth::{AuthFailure, Keys, authorize, constant_time_eq, presented_key};
pub use gust_events::percent_decode;
pub use router::{HttpRouter, RouteEntry, RouteMatch, RouterError};

/// The `http` trigger kind: requests on a route, served by the host's
/// router (nothing to start).
pub struct HttpKind;

impl crate::registry::TriggerKind for HttpKind {
    fn name(&self) -> &'static str {
        "http"
    }

    fn serves(&self, trigger: &gust_manifest::Trigger) -> bool {
        matches!(trigger, gust_manifest::Trigger::Http(_))
    }

    fn describe(&self, function: &gust_manifest::Function) -> crate::registry::Description {
        let Some(h) = function.http() else {
            return crate::registry::Description {
                kind: "http",
                source: String::new(),
                details: serde_json::json!({ "kind": "http" }),
            };
        };
        let methods: Vec<&str> = h.methods.iter().map(|m| m.as_str()).collect();
        crate::registry::Description {
            kind: "http",
            source: format!("route `{}`", h.route),
            details: serde_json::json!({
                "kind": "http",
                "route": h.route,
                "methods": methods,
                "auth": h.auth.as_str(),
            }),
        }
    }

    fn start<'a>(
        &'a self,
        _cx: crate::registry::StartContext<'a>,
    ) -> crate::registry::StartFuture<'a> {
        Box::pin(async { Ok(crate::registry::Started::default()) })
    }
}
