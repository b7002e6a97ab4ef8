//! The app's API gateway: the `[gateway]` table of its `gust.toml`, served
//! by [`gust_gateway::Gateway`] in front of the app's HTTP functions.
//!
//! The host builds one gateway per loaded app version (so a reload rebuilds
//! it, and a broken `[gateway]` keeps the previous version serving). Requests
//! that match a gateway route go through it; all others fall through to the
//! function router, and `/_gust/*` never reaches the gateway.
//!
//! Any string in the table may name an app variable as `{{ name }}` (an
//! upstream's address, a consumer's key), filled in from `[variables]` and
//! `GUST_VAR_<NAME>` before the gateway sees the table.

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
use gust_triggers::http::{authorize, presented_key};

use crate::keys::LiveKeys;

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
    keys: &LiveKeys,
    functions: &HashMap<String, LoadedFunction>,
) -> Result<Option<Gateway>> {
    let Some(table) = &app.gateway else {
        return Ok(None);
    };
    let manifest = app.manifest_path.display();
    let variables = crate::app::resolve_variables(app)?;
    let table = fill_variables(table, &variables).map_err(|e| anyhow!("{manifest}: {e}"))?;
    let mut config = GatewayConfig::deserialize(toml::Value::Table(table)).map_err(|e| {
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
    match status_value(&host.current()) {
        Ok(value) => body::json(StatusCode::OK, &value),
        Err(e) => body::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "gateway-status",
            format!("cannot serialise the gateway status: {e}"),
        ),
    }
}

/// The gateway status of `app` as JSON (upstream URLs may hold a secret
/// variable's value: it is hidden), with `configured`.
pub fn status_value(app: &LoadedApp) -> Result<serde_json::Value, serde_json::Error> {
    let Some(gateway) = &app.gateway else {
        return Ok(json!({ "configured": false, "routes": [], "upstreams": [] }));
    };
    let text = serde_json::to_string(&gateway.status())?;
    let mut value: serde_json::Value = serde_json::from_str(&app.secrets.redact(&text))?;
    if let Some(map) = value.as_object_mut() {
        map.insert("configured".into(), json!(true));
    }
    Ok(value)
}

/// Replaces every `{{ name }}` in the string values of the `[gateway]`
/// table with the value of app variable `name`. The error names the key
/// (e.g. `gateway.route[2].target.upstream`) and the fix.
fn fill_variables(
    table: &toml::Table,
    variables: &[(String, String)],
) -> Result<toml::Table, String> {
    fn walk(value: &mut toml::Value, key: &str, vars: &[(String, String)]) -> Result<(), String> {
        match value {
            toml::Value::String(text) if text.contains("{{") => {
                *text = fill(text, key, vars)?;
            }
            toml::Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(item, &format!("{key}[{i}]"), vars)?;
                }
            }
            toml::Value::Table(table) => {
                for (name, item) in table.iter_mut() {
                    walk(item, &format!("{key}.{name}"), vars)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
    let mut value = toml::Value::Table(table.clone());
    walk(&mut value, "gateway", variables)?;
    match value {
        toml::Value::Table(table) => Ok(table),
        _ => unreachable!("a table stays a table"),
    }
}

/// Fills the `{{ name }}` placeholders of one string (found at `key`).
fn fill(text: &str, key: &str, vars: &[(String, String)]) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(format!(
                "[gateway]: `{key}` has `{{{{` without a closing `}}}}`; write {{{{ variable_name }}}}"
            ));
        };
        let name = after[..end].trim();
        match vars.iter().find(|(n, _)| n == name) {
            Some((_, value)) => out.push_str(value),
            None => {
                return Err(format!(
                    "[gateway]: `{key}` uses variable `{name}`, which has no value; declare it under [variables] (e.g. {name} = {{ default = \"...\" }}) or set GUST_VAR_{}",
                    name.to_ascii_uppercase()
                ));
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
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
struct AppKeys(LiveKeys);

impl KeyCheck for AppKeys {
    fn check(&self, _route: &str, function: Option<&str>, request: &Parts) -> Result<(), String> {
        let presented = presented_key(&request.headers, request.uri.query());
        authorize(
            AuthLevel::Function,
            function.unwrap_or(""),
            presented.as_deref(),
            &self.0.current(),
        )
        .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vec<(String, String)> {
        vec![
            ("shipping_url".into(), "http://127.0.0.1:7081".into()),
            ("partner_key".into(), "k_partner_0123456789".into()),
        ]
    }

    #[test]
    fn variables_fill_every_string_of_the_table() {
        let table: toml::Table = toml::from_str(
            r#"
            [[consumer]]
            name = "partner"
            key = "{{ partner_key }}"
            [[route]]
            name = "quotes"
            path = "/quotes/{id}"
            target = { upstream = "{{shipping_url}}/v1", rewrite = "/q/{id}" }
            "#,
        )
        .unwrap();
        let filled = fill_variables(&table, &vars()).unwrap();
        let config = GatewayConfig::deserialize(toml::Value::Table(filled)).unwrap();
        assert_eq!(
            config.consumers[0].key.as_deref(),
            Some("k_partner_0123456789")
        );
        let target = &config.routes[0].target;
        assert_eq!(target.upstream.as_deref(), Some("http://127.0.0.1:7081/v1"));
        // Single braces (path parameters) are left alone.
        assert_eq!(target.rewrite.as_deref(), Some("/q/{id}"));
        assert_eq!(config.routes[0].path.as_deref(), Some("/quotes/{id}"));
    }

    #[test]
    fn unknown_or_unclosed_placeholders_name_the_key_and_the_fix() {
        let table: toml::Table =
            toml::from_str("[[route]]\nname = \"r\"\ntarget = { upstream = \"{{ nope }}\" }\n")
                .unwrap();
        let e = fill_variables(&table, &vars()).unwrap_err();
        assert!(e.contains("`gateway.route[0].target.upstream`"), "{e}");
        assert!(e.contains("`nope`") && e.contains("GUST_VAR_NOPE"), "{e}");
        assert!(e.contains("[variables]"), "{e}");

        let e = fill("http://{{ shipping_url", "gateway.x", &vars()).unwrap_err();
        assert!(e.contains("`gateway.x`") && e.contains("closing"), "{e}");
        assert_eq!(
            fill("a{{shipping_url}}b{{ partner_key }}", "k", &vars()).unwrap(),
            "ahttp://127.0.0.1:7081bk_partner_0123456789"
        );
    }
}
