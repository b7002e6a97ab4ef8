//! The front listener of a multi-app `gust up`: one address for several
//! apps, each under its own prefix (`/<app>/...`, proxied to the app's host
//! with the prefix stripped and `x-forwarded-prefix` set), and `GET /`, an
//! index of the apps and their pages (HTML for a browser, text for `curl`).
//! A request whose path names no app but whose `Referer` is a page of an
//! app goes to that app, so single-page apps that call `/api/...` work under
//! their prefix.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use gust_gateway::{Body, Gateway, GatewayConfig, NoFunctions};
use gust_manifest::Trigger;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::Host;
use crate::listener::{ServeOptions, serve_with};

/// An app served behind the front.
#[derive(Debug, Clone)]
pub struct FrontApp {
    /// Its prefix (`/<name>/...`).
    pub name: String,
    /// Its host's own URL.
    pub upstream: String,
    /// Paths under the prefix a browser can open (GET routes without
    /// parameters, static file mounts).
    pub pages: Vec<String>,
    /// Its other HTTP entry points, e.g. `POST /api/contacts`.
    pub routes: Vec<String>,
}

impl FrontApp {
    /// The entry for `host`, served under `/<name>/`.
    pub fn new(name: &str, host: &Host) -> Self {
        let app = host.current();
        let mut pages = Vec::new();
        let mut routes = Vec::new();
        for m in app.statics.mounts() {
            pages.push(if m.route == "/" {
                "/".to_string()
            } else {
                format!("{}/", m.route)
            });
        }
        for f in &app.app.functions {
            let Trigger::Http(h) = &f.trigger else {
                continue;
            };
            let gets = h.methods.is_empty() || h.methods.contains(&Method::GET);
            if gets && !h.route.contains(['{', '*']) {
                pages.push(h.route.clone());
            } else {
                let methods = if h.methods.is_empty() {
                    "ANY".to_string()
                } else {
                    let names: Vec<&str> = h.methods.iter().map(|m| m.as_str()).collect();
                    names.join(",")
                };
                routes.push(format!("{methods} {}", h.route));
            }
        }
        pages.sort();
        pages.dedup();
        Self {
            name: name.to_string(),
            upstream: host.url(),
            pages,
            routes,
        }
    }
}

/// The front listener's state.
pub struct Front {
    gateway: Gateway,
    url: String,
    apps: Vec<FrontApp>,
    /// Apps that failed: (prefix name, error).
    failed: Vec<(String, String)>,
}

impl Front {
    /// A front on `url` routing to `apps`; `failed` apps answer 503 with
    /// their error.
    pub fn new(url: String, apps: Vec<FrontApp>, failed: Vec<(String, String)>) -> Result<Self> {
        Ok(Self {
            gateway: router(&apps).context("cannot set up the front router")?,
            url,
            apps,
            failed,
        })
    }
}

/// The front router: one prefix route per app to its host.
fn router(apps: &[FrontApp]) -> Result<Gateway> {
    let routes: Vec<serde_json::Value> = apps
        .iter()
        .map(|app| {
            let name = &app.name;
            serde_json::json!({
                "name": name,
                "prefix": format!("/{name}"),
                "target": { "upstream": app.upstream, "rewrite": "/{rest}" },
                "request_headers": { "set": { "x-forwarded-prefix": format!("/{name}") } },
                // A development front: no limits of its own beyond the apps'.
                "timeout": "24h",
                "max_body": "64GiB",
                "body_timeout": "10m",
                // Never fail fast: an app answering 5xx is the app's business.
                "breaker": { "failure_ratio": 1.0, "min_calls": u32::MAX },
            })
        })
        .collect();
    let config: GatewayConfig = serde_json::from_value(serde_json::json!({ "route": routes }))
        .context("invalid front routes")?;
    Ok(Gateway::new(config, Arc::new(NoFunctions))?)
}

/// Serves the front until `shutdown`, then lets open requests finish (up
/// to `options.drain`).
pub async fn serve(
    listener: TcpListener,
    front: Arc<Front>,
    options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let handler = move |req, client| {
        let front = front.clone();
        async move { route(&front, req, client).await }
    };
    serve_with(listener, handler, options, shutdown).await;
}

/// Routes one request on the front.
async fn route(front: &Front, mut req: Request<Incoming>, client: SocketAddr) -> Response<Body> {
    let path = req.uri().path().to_string();
    if path == "/" {
        return index(front, wants_html(&req));
    }
    let first = first_segment(&path);
    if front.apps.iter().any(|app| app.name == first) {
        if path.len() == first.len() + 1 && wants_html(&req) {
            // `/app` -> `/app/`, so relative links in the app's pages resolve
            // under its prefix.
            let query = req
                .uri()
                .query()
                .map(|q| format!("?{q}"))
                .unwrap_or_default();
            return redirect(&format!("{path}/{query}"));
        }
        return front.gateway.handle(req, client).await;
    }
    if let Some((name, error)) = front.failed.iter().find(|(name, _)| name == first) {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("app `{name}` is not running: it failed to start.\n\n{error}\n"),
        );
    }
    if let Some(app) = referring_app(front, &req) {
        let pq = req
            .uri()
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/");
        if let Ok(uri) = format!("/{app}{pq}").parse::<Uri>() {
            *req.uri_mut() = uri;
            return front.gateway.handle(req, client).await;
        }
    }
    let apps: Vec<String> = front
        .apps
        .iter()
        .map(|app| format!("  {}/{}/", front.url, app.name))
        .collect();
    text(
        StatusCode::NOT_FOUND,
        format!(
            "no app at {path}; every app is under its own prefix:\n{}\n",
            apps.join("\n")
        ),
    )
}

/// The first segment of a path: `alpha` for `/alpha/x`.
fn first_segment(path: &str) -> &str {
    path.trim_start_matches('/').split('/').next().unwrap_or("")
}

/// The running app whose page sent the request (from `Referer`), if any.
fn referring_app<'a>(front: &'a Front, req: &Request<Incoming>) -> Option<&'a str> {
    let referer: Uri = req
        .headers()
        .get(header::REFERER)?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    let first = first_segment(referer.path());
    front
        .apps
        .iter()
        .map(|app| app.name.as_str())
        .find(|name| *name == first)
}

/// Whether the client asked for HTML (a browser navigating).
fn wants_html(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// `GET /`: the apps, their pages and entry points, as HTML or text.
fn index(front: &Front, html: bool) -> Response<Body> {
    if !html {
        let mut out = format!("Gust: {} apps on {}\n", front.apps.len(), front.url);
        for app in &front.apps {
            let name = &app.name;
            out.push_str(&format!(
                "  {name:<16} {}/{name}/  (direct {}, console {}/{name}/_gust/console/)\n",
                front.url, app.upstream, front.url
            ));
            for page in &app.pages {
                out.push_str(&format!("    GET {}/{name}{page}\n", front.url));
            }
            for route in &app.routes {
                out.push_str(&format!("    {route}\n"));
            }
        }
        for (name, error) in &front.failed {
            let first = error.lines().next().unwrap_or_default();
            out.push_str(&format!("  {name:<16} FAILED: {first}\n"));
        }
        return text(StatusCode::OK, out);
    }
    let mut items = String::new();
    for app in &front.apps {
        let name = escape(&app.name);
        let pages: Vec<String> = app
            .pages
            .iter()
            .map(|p| {
                let href = escape(&format!("/{}{p}", app.name));
                format!("<a href=\"{href}\">{}</a>", escape(p))
            })
            .collect();
        let routes: Vec<String> = app
            .routes
            .iter()
            .map(|r| format!("<code>{}</code>", escape(r)))
            .collect();
        items.push_str(&format!(
            "<li><h2><a href=\"/{name}/\">{name}</a></h2>\n<p>pages: {}</p>\n<p>API: {}</p>\n<p><small><a href=\"/{name}/_gust/console/\">console</a> · admin API <a href=\"/{name}/_gust/\">/{name}/_gust/</a>, direct {}</small></p></li>\n",
            if pages.is_empty() { "none".into() } else { pages.join(" · ") },
            if routes.is_empty() { "none".into() } else { routes.join(" · ") },
            escape(&app.upstream),
        ));
    }
    for (name, error) in &front.failed {
        items.push_str(&format!(
            "<li><h2>{}</h2><strong>failed</strong><pre>{}</pre></li>\n",
            escape(name),
            escape(error)
        ));
    }
    let page = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Gust apps</title>\n<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}li{{list-style:none;border-top:1px solid #ddd;padding:.5rem 0}}h2{{margin:.2rem 0}}p{{margin:.2rem 0}}</style></head>\n<body><h1>Gust: {} apps</h1>\n<ul>\n{items}</ul></body></html>\n",
        front.apps.len()
    );
    let mut resp = Response::new(gust_gateway::full(page));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A plain-text response.
fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(gust_gateway::full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// A permanent redirect to `location` (same method).
fn redirect(location: &str) -> Response<Body> {
    let mut resp = text(StatusCode::PERMANENT_REDIRECT, format!("see {location}\n"));
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_segments() {
        assert_eq!(first_segment("/alpha/x/y"), "alpha");
        assert_eq!(first_segment("/alpha"), "alpha");
        assert_eq!(first_segment("/"), "");
    }

    #[test]
    fn escapes_html() {
        assert_eq!(
            escape("<a href=\"x\">&"),
            "&lt;a href=&quot;x&quot;&gt;&amp;"
        );
    }
}
