//! The cluster's admin API (admin key in `x-gust-key`):
//!
//! | route | does |
//! |---|---|
//! | `POST /_gust/cluster/apps/{app}` (body: artifact) | deploy a new version: `{app, version, unchanged}` |
//! | `POST /_gust/cluster/apps/{app}/rollback` | return to the previous version: `{app, version}` |
//! | `GET /_gust/cluster/apps` | every app: current version, and the version each node serves |
//! | `GET /_gust/cluster/status` | every live node: id, address, last heartbeat, apps, what it owns |

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use gust_host::body::{self, Body};
use gust_triggers::http::{constant_time_eq, presented_key};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::artifact::{self, MAX_ARTIFACT};
use crate::node::{NODE_TIMEOUT, Node};
use crate::store::StoreError;

/// Answers a request under `/_gust/cluster` from `client`; an address that
/// keeps presenting wrong keys is slowed down.
pub async fn handle(node: Arc<Node>, req: Request<Incoming>, client: SocketAddr) -> Response<Body> {
    let throttle = node.auth_throttle();
    if let Err(wait) = throttle.check(client.ip(), Instant::now()) {
        return gust_host::auth_throttle::too_many_failures(wait);
    }
    let key = presented_key(req.headers(), req.uri().query());
    let right = key
        .as_deref()
        .is_some_and(|k| constant_time_eq(k, node.admin_key()));
    if right {
        throttle.succeeded(client.ip());
    } else {
        throttle.failed(client.ip(), Instant::now());
    }
    match key {
        None => {
            return body::error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the cluster API needs the admin key in header `x-gust-key`",
            );
        }
        Some(k) if !constant_time_eq(&k, node.admin_key()) => {
            return body::error(
                StatusCode::FORBIDDEN,
                "unauthorized",
                "the key is not the cluster's admin key",
            );
        }
        Some(_) => {}
    }
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path
        .trim_start_matches("/_gust/cluster")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let method = req.method().clone();
    let result = match (method, segments.as_slice()) {
        (Method::GET, ["status"]) => status(&node).await,
        (Method::GET, ["apps"]) => apps(&node).await,
        (Method::POST, ["apps", app]) => deploy(&node, app, req).await,
        (Method::POST, ["apps", app, "rollback"]) => rollback(&node, app).await,
        _ => Err(body::error(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no cluster API at {path}: try GET /_gust/cluster/status"),
        )),
    };
    result.unwrap_or_else(|r| r)
}

type Answer = Result<Response<Body>, Response<Body>>;

fn unavailable(e: impl std::fmt::Display) -> Response<Body> {
    body::error(StatusCode::SERVICE_UNAVAILABLE, "cluster-store", e)
}

async fn status(node: &Node) -> Answer {
    let nodes = node
        .store()
        .live_nodes(NODE_TIMEOUT)
        .await
        .map_err(unavailable)?;
    let nodes: Vec<serde_json::Value> = nodes
        .into_iter()
        .map(|n| {
            serde_json::json!({
                "id": n.id,
                "address": n.address,
                "seconds_since_heartbeat": n.seconds_since_heartbeat,
                "apps": n.info["apps"],
                "owns": n.info["owns"],
                "this_node": n.id == node.id(),
            })
        })
        .collect();
    Ok(body::json(
        StatusCode::OK,
        &serde_json::json!({
            "cluster": node.cluster(),
            "heartbeat_timeout_seconds": NODE_TIMEOUT.as_secs(),
            "nodes": nodes,
        }),
    ))
}

async fn apps(node: &Node) -> Answer {
    let store = node.store();
    let current = store.current().await.map_err(unavailable)?;
    let nodes = store.live_nodes(NODE_TIMEOUT).await.map_err(unavailable)?;
    let apps: Vec<serde_json::Value> = current
        .values()
        .map(|r| {
            let on_nodes: serde_json::Map<String, serde_json::Value> = nodes
                .iter()
                .map(|n| (n.id.clone(), n.info["apps"][&r.app].clone()))
                .collect();
            serde_json::json!({
                "app": r.app,
                "version": r.version,
                "digest": r.digest,
                "nodes": on_nodes,
            })
        })
        .collect();
    Ok(body::json(
        StatusCode::OK,
        &serde_json::json!({ "cluster": node.cluster(), "apps": apps }),
    ))
}

/// Checks the uploaded artifact (it unpacks, its manifest loads, names this
/// app and has a component per function), gives the app its keys, and
/// stores it as the next version.
async fn deploy(node: &Arc<Node>, app_name: &str, req: Request<Incoming>) -> Answer {
    let bytes = match Limited::new(req.into_body(), MAX_ARTIFACT).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Err(body::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "bad-artifact",
                format!(
                    "cannot read the artifact (at most {} MiB): {e}",
                    MAX_ARTIFACT >> 20
                ),
            ));
        }
    };
    let bad =
        |e: anyhow::Error| body::error(StatusCode::BAD_REQUEST, "bad-artifact", format!("{e:#}"));
    let checked = {
        let bytes = bytes.clone();
        let expected = app_name.to_string();
        tokio::task::spawn_blocking(move || -> anyhow::Result<gust_manifest::App> {
            let dir = tempfile::tempdir()?;
            let unpacked = artifact::unpack(&bytes, dir.path())?;
            let app = gust_triggers::load_app(&unpacked.app_dir)?;
            if app.name != expected {
                anyhow::bail!("the artifact holds app `{}`, not `{expected}`", app.name);
            }
            for f in &app.functions {
                if !unpacked.components.contains_key(&f.name) {
                    anyhow::bail!("the artifact has no component for function `{}`", f.name);
                }
            }
            Ok(app)
        })
        .await
    };
    let app = match checked {
        Ok(Ok(app)) => app,
        Ok(Err(e)) => return Err(bad(e)),
        Err(e) => return Err(bad(anyhow::anyhow!("{e}"))),
    };
    node.ensure_keys(&app)
        .await
        .map_err(|e| unavailable(format!("{e:#}")))?;
    let deployed = node
        .store()
        .deploy(app_name, &bytes, &artifact::digest(&bytes))
        .await
        .map_err(unavailable)?;
    node.wake();
    Ok(body::json(
        StatusCode::OK,
        &serde_json::to_value(&deployed).unwrap_or_default(),
    ))
}

async fn rollback(node: &Arc<Node>, app: &str) -> Answer {
    match node.store().rollback(app).await {
        Ok(release) => {
            node.wake();
            Ok(body::json(
                StatusCode::OK,
                &serde_json::json!({ "app": release.app, "version": release.version }),
            ))
        }
        Err(e @ (StoreError::NoEarlierVersion(_) | StoreError::UnknownApp(_))) => {
            Err(body::error(StatusCode::CONFLICT, "no-rollback", e))
        }
        Err(e) => Err(unavailable(e)),
    }
}
