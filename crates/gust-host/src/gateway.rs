//! The app's API gateway: the `[gateway]` table of its `gust.toml`, served
//! by [`gust_gateway::Gateway`] in front of the app's HTTP functions.
//!
//! The host builds one gateway per loaded app version (so a reload rebuilds
//! it, and a broken `[gateway]` keeps the previous version serving). Requests
//! that match a gateway route go through it; all others fall through to the
//! function router, and `/_gust/*` never reaches the gateway.

use http_body_util::combinators::UnsyncBoxBody;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Result, anyhow};
use http::request::Parts;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;

use gust_gateway::{
    BoxFuture, ConfigError, FunctionTarget, Gateway, GatewayConfig, KeyCheck, TargetConfig,
};
use gust_manifest::{App, AuthLevel};
use gust_triggers::http::{Keys, authorize, presented_key};

use crate::app::{LoadedApp, LoadedFunction};
use crate::body::{self, Body};
use crate::dispatch;
use crate::host::Host;

/// Builds the gateway of `app` over its loaded HTTP `functions` and `keys`,
/// or `None` when the manifest has no `[gateway]`.
///
/// Fails, naming the manifest, when the table has the wrong shape, a value
/// the gateway refuses (the message names the route, key and fix), or a
/// route whose target is not an HTTP function of the app. Must run inside a
/// Tokio runtime (JWKS files are loaded now).
pub fn build(
    app: &App,
    keys: &Keys,
    functions: &HashMap<String, LoadedFunction>,
) -> Result<Option<Gateway>> {
    let Some(table) = &app.gateway else {
        return Ok(None);
    };
    let manifest = app.manifest_path.display();
    let mut config =
        GatewayConfig::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
            // Parsing the file again locates the problem to a line and column.
            match std::fs::read_to_string(&app.manifest_path)
                .ok()
                .map(|text| GatewayConfig::from_manifest(&text))
            {
                Some(Err(ConfigError::Toml(located))) => {
                    anyhow!("{manifest}: [gateway]: {located}")
                }
                _ => anyhow!("{manifest}: [gateway]: {}", e.message().trim()),
            }
        })?;
    resolve_paths(&mut config, &app.dir);
    check_functions(&config, app, functions).map_err(|e| anyhow!("{manifest}: {e}"))?;

    let targets: HashMap<String, (LoadedFunction, String)> = functions
        .iter()
        .filter_map(|(name, f)| {
            let route = app.function(name)?.http()?.route.clone();
            Some((name.clone(), (f.clone(), route)))
        })
        .collect();
    let gateway = Gateway::new(config, Arc::new(AppFunctions(Arc::new(targets))))
        .map_err(|e| anyhow!("{manifest}: {e}"))?
        .with_key_check(Arc::new(AppKeys(keys.clone())));
    Ok(Some(gateway))
}

/// Sends `req` through the app's gateway when one of its routes matches;
/// otherwise hands the request back for the function router.
pub async fn handle(
    app: &LoadedApp,
    req: Request<Incoming>,
    client: SocketAddr,
) -> Result<Response<Body>, Request<Incoming>> {
    let Some(gateway) = app.gateway.as_ref().filter(|g| !g.is_empty()) else {
        return Err(req);
    };
    let (parts, incoming) = req.into_parts();
    if !gateway.matches(&parts) {
        return Err(Request::from_parts(parts, incoming));
    }
    Ok(gateway
        .handle(Request::from_parts(parts, incoming), client)
        .await)
}

/// `GET /_gust/gateway`: routes' counters and upstreams' breakers as JSON,
/// with `configured: false` for an app without `[gateway]`.
pub fn status(host: &Host) -> Response<Body> {
    let app = host.current();
    let Some(gateway) = &app.gateway else {
        return body::json(
            StatusCode::OK,
            &json!({ "configured": false, "routes": [], "upstreams": [] }),
        );
    };
    match serde_json::to_value(gateway.status()) {
        Ok(mut value) => {
            if let Some(map) = value.as_object_mut() {
                map.insert("configured".into(), json!(true));
            }
            body::json(StatusCode::OK, &value)
        }
        Err(e) => body::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "gateway-status",
            format!("cannot serialise the gateway status: {e}"),
        ),
    }
}

/// Relative `jwks_file`s are relative to the app folder, not to wherever
/// `gust` was started.
fn resolve_paths(config: &mut GatewayConfig, dir: &Path) {
    for route in &mut config.routes {
        if let Some(jwt) = route.auth.as_mut().and_then(|a| a.jwt.as_mut())
            && let Some(file) = jwt.jwks_file.as_mut()
            && Path::new(file.as_str()).is_relative()
        {
            *file = dir.join(&*file).to_string_lossy().into_owned();
        }
    }
}

/// Every function a route targets (primary or canary) must be an HTTP
/// function of the app.
fn check_functions(
    config: &GatewayConfig,
    app: &App,
    functions: &HashMap<String, LoadedFunction>,
) -> Result<(), String> {
    for route in &config.routes {
        let targets = std::iter::once(("target.function", &route.target)).chain(
            route
                .canary
                .as_ref()
                .map(|c| ("canary.target.function", &c.target)),
        );
        for (key, TargetConfig { function, .. }) in targets {
            let Some(name) = function else { continue };
            if functions.contains_key(name) {
                continue;
            }
            let problem = match app.function(name) {
                Some(_) => "is not an HTTP function",
                None => "is not a function of this app",
            };
            let http: Vec<&str> = app
                .functions
                .iter()
                .filter(|f| f.http().is_some())
                .map(|f| f.name.as_str())
                .collect();
            return Err(format!(
                "gateway route `{}`: `{key}` `{name}` {problem}; name one of the app's HTTP functions ({})",
                route.name,
                if http.is_empty() {
                    "it has none".to_string()
                } else {
                    http.join(", ")
                }
            ));
        }
    }
    Ok(())
}

/// The app's HTTP functions as gateway targets: each call takes one of the
/// function's concurrency permits and honours its body limit, as a direct
/// request to the function would. The function's own auth level does not
/// apply: the gateway route's `auth` decides.
struct AppFunctions(Arc<HashMap<String, (LoadedFunction, String)>>);

impl FunctionTarget for AppFunctions {
    fn call(&self, function: &str, req: Request<gust_gateway::Body>) -> BoxFuture<Response<Body>> {
        let functions = self.0.clone();
        let function = function.to_string();
        // A concrete body type: the boxed error trips a higher-ranked
        // lifetime check when the generic body crosses the async block.
        let req: Request<UnsyncBoxBody<bytes::Bytes, std::io::Error>> = req.map(|b| {
            http_body_util::BodyExt::boxed_unsync(http_body_util::BodyExt::map_err(b, to_io_error))
        });
        Box::pin(async move {
            let Some((f, route)) = functions.get(&function) else {
                return body::error(
                    StatusCode::BAD_GATEWAY,
                    "inactive",
                    format!("function `{function}` is not active"),
                );
            };
            dispatch::invoke_function(f, &function, route, &[], req).await
        })
    }
}

/// Wraps a gateway body error for the function dispatcher.
fn to_io_error(e: gust_gateway::BoxError) -> std::io::Error {
    std::io::Error::other(e)
}

/// `auth = { function_keys = true }`: the request must present (header
/// `x-gust-key` or query `code`) the function's key, the host key or the
/// admin key, as for a function with `auth = "function"`. Routes to an
/// upstream accept the host and admin keys.
struct AppKeys(Keys);

impl KeyCheck for AppKeys {
    fn check(&self, _route: &str, function: Option<&str>, request: &Parts) -> Result<(), String> {
        let presented = presented_key(&request.headers, request.uri.query());
        authorize(
            AuthLevel::Function,
            function.unwrap_or(""),
            presented.as_deref(),
            &self.0,
        )
        .map_err(|e| e.to_string())
    }
}
