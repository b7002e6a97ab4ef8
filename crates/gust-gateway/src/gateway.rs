//! The gateway: matches a request to a route and runs it through auth,
//! limits, the canary split and the target.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use tracing::Instrument;

use crate::auth::{ConsumerKeys, KeyCheck};
use crate::body::{self, Body, BodyFailure, BoxError, FailureSlot, GuardedBody};
use crate::canary::Sticky;
use crate::config::{ConfigError, GatewayConfig};
use crate::headers::{header_bytes, strip_hop_by_hop, wants_upgrade};
use crate::matcher::{Params, request_host};
use crate::proxy::{self, Affinity, Attempt, HttpClient, Upstream};
use crate::ratelimit::{BucketParams, Decision, KeyedLimiter};
use crate::route::{Builder, Route, Target, TargetKind};
use crate::status::{GatewayStatus, GlobalCounters, bump};
use crate::units::{parse_duration, parse_rate, parse_size};

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// How the gateway reaches the app's functions. The host implements it over
/// its Wasm runtime; the response's status is passed to the client as is.
pub trait FunctionTarget: Send + Sync + 'static {
    /// Invokes `function` with the (already rewritten) request.
    fn call(&self, function: &str, req: Request<Body>) -> BoxFuture<Response<Body>>;
}

impl<F> FunctionTarget for F
where
    F: Fn(&str, Request<Body>) -> BoxFuture<Response<Body>> + Send + Sync + 'static,
{
    fn call(&self, function: &str, req: Request<Body>) -> BoxFuture<Response<Body>> {
        self(function, req)
    }
}

/// A [`FunctionTarget`] for gateways that only proxy: every call gets 502.
pub struct NoFunctions;

impl FunctionTarget for NoFunctions {
    fn call(&self, function: &str, _req: Request<Body>) -> BoxFuture<Response<Body>> {
        let reason = format!("function `{function}` is not available");
        Box::pin(async move { body::error(StatusCode::BAD_GATEWAY, "no_function", &reason, "") })
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const CONSUMER: HeaderName = HeaderName::from_static("x-gust-consumer");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const RL_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RL_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RL_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

struct Inner {
    routes: Vec<Route>,
    upstreams: Vec<Arc<Upstream>>,
    consumers: ConsumerKeys,
    /// Each consumer's own limit (its plan), by consumer name.
    plans: std::collections::HashMap<String, KeyedLimiter>,
    functions: Arc<dyn FunctionTarget>,
    key_check: OnceLock<Arc<dyn KeyCheck>>,
    http1: HttpClient,
    http2: HttpClient,
    max_header_bytes: usize,
    header_timeout: Duration,
    trust_forwarded_for: bool,
    counters: GlobalCounters,
    id_seed: u64,
    id_counter: AtomicU64,
}

/// The API gateway. Cheap to clone; all clones share routes, limits,
/// breakers and counters.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("routes", &self.inner.routes.len())
            .field("upstreams", &self.inner.upstreams.len())
            .finish()
    }
}

fn gw_dur(key: &str, v: &Option<String>, default: Duration) -> Result<Duration, ConfigError> {
    v.as_deref().map_or(Ok(default), |t| {
        parse_duration(t)
            .map_err(|e| ConfigError::gateway(key, e, "write a duration such as \"10s\""))
    })
}

fn seed() -> u64 {
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let local = 0u8;
    crate::canary::stable_hash(&(t ^ (&local as *const u8 as u64)).to_le_bytes())
}

impl Gateway {
    /// Validates the configuration and builds the gateway. Loads JWKS files
    /// now; must be called inside a Tokio runtime.
    pub fn new(
        config: GatewayConfig,
        functions: Arc<dyn FunctionTarget>,
    ) -> Result<Self, ConfigError> {
        let max_header_bytes = match &config.max_header_bytes {
            None => 16 << 10,
            Some(t) => parse_size(t).map_err(|e| {
                ConfigError::gateway("max_header_bytes", e, "write a size such as \"16KiB\"")
            })? as usize,
        };
        if max_header_bytes < 1024 {
            return Err(ConfigError::gateway(
                "max_header_bytes",
                "is below 1KiB",
                "use at least \"8KiB\"",
            ));
        }
        let body_timeout = gw_dur(
            "body_timeout",
            &config.body_timeout,
            Duration::from_secs(30),
        )?;
        let header_timeout = gw_dur(
            "header_timeout",
            &config.header_timeout,
            Duration::from_secs(10),
        )?;
        let jwks_refresh = gw_dur(
            "jwks_refresh",
            &config.jwks_refresh,
            Duration::from_secs(300),
        )?;

        let mut consumers = ConsumerKeys::default();
        let mut plans = std::collections::HashMap::new();
        let mut names = std::collections::HashSet::new();
        for c in &config.consumers {
            let bad = |key: &str, problem: &str, fix: &str| ConfigError::Consumer {
                consumer: c.name.clone(),
                key: key.into(),
                problem: problem.into(),
                fix: fix.into(),
            };
            if c.name.trim().is_empty() {
                return Err(bad("name", "is empty", "give every consumer a name"));
            }
            if !names.insert(c.name.clone()) {
                return Err(bad(
                    "name",
                    "is used twice",
                    "give every consumer a unique name",
                ));
            }
            let keys: Vec<&String> = c.key.iter().chain(&c.keys).collect();
            if keys.is_empty() {
                return Err(bad(
                    "key",
                    "is missing",
                    "add key = \"<a long random key>\"",
                ));
            }
            if let Some(text) = &c.rate_limit {
                let rate = parse_rate(text).map_err(|e| bad("rate_limit", &e, "e.g. \"600/m\""))?;
                plans.insert(
                    c.name.clone(),
                    KeyedLimiter::new(BucketParams {
                        rate: rate.per_second(),
                        burst: f64::from(rate.count),
                    }),
                );
            }
            let name: Arc<str> = Arc::from(c.name.as_str());
            for k in keys {
                if k.len() < 16 {
                    return Err(bad(
                        "key",
                        "is shorter than 16 characters",
                        "use a long random key",
                    ));
                }
                if let Some(other) = consumers.insert(k.clone(), name.clone()) {
                    return Err(bad(
                        "key",
                        &format!("is also a key of consumer `{other}`"),
                        "give each consumer its own keys",
                    ));
                }
            }
        }

        let tls = proxy::tls_config(config.ca_file.as_deref()).map_err(|problem| {
            ConfigError::gateway(
                "ca_file",
                problem,
                "give a PEM file of CA certificates (-----BEGIN CERTIFICATE-----)",
            )
        })?;
        let http1 = proxy::client(false, &tls);
        let http2 = proxy::client(true, &tls);
        let id_seed = seed();
        let mut builder = Builder::new(http1.clone(), jwks_refresh, body_timeout, id_seed);
        for r in &config.routes {
            builder.collect_breakers(r)?;
        }
        let mut routes = Vec::with_capacity(config.routes.len());
        let mut route_names = std::collections::HashSet::new();
        for r in &config.routes {
            if r.name.trim().is_empty() {
                return Err(ConfigError::gateway(
                    "route.name",
                    "is empty",
                    "give every route a unique name",
                ));
            }
            if !route_names.insert(r.name.clone()) {
                return Err(ConfigError::route(
                    &r.name,
                    "name",
                    "is used by two routes",
                    "give every route a unique name",
                ));
            }
            routes.push(builder.route(r, &names)?);
        }
        Ok(Gateway {
            inner: Arc::new(Inner {
                routes,
                upstreams: builder.upstreams,
                consumers,
                plans,
                functions,
                key_check: OnceLock::new(),
                http1,
                http2,
                max_header_bytes,
                header_timeout,
                trust_forwarded_for: config.trust_forwarded_for,
                counters: GlobalCounters::default(),
                id_seed,
                id_counter: AtomicU64::new(0),
            }),
        })
    }

    /// Installs the host's function-key check (once; later calls are ignored).
    pub fn with_key_check(self, check: Arc<dyn KeyCheck>) -> Self {
        let _ = self.inner.key_check.set(check);
        self
    }

    /// Largest request head accepted, in bytes.
    pub fn max_header_bytes(&self) -> usize {
        self.inner.max_header_bytes
    }

    /// How long a client may take to send its request head.
    pub fn header_timeout(&self) -> Duration {
        self.inner.header_timeout
    }

    /// Counters and the state of every upstream's circuit breaker.
    pub fn status(&self) -> GatewayStatus {
        GatewayStatus {
            gateway: self.inner.counters.snapshot(),
            routes: self
                .inner
                .routes
                .iter()
                .map(|r| r.counters.snapshot(&r.name))
                .collect(),
            upstreams: self.inner.upstreams.iter().map(|u| u.status()).collect(),
        }
    }

    /// Whether any route matches the request's host, headers and path,
    /// whatever its method. A host that serves other things next to the
    /// gateway sends matching requests to [`Gateway::handle`] (which answers
    /// 405 when only the method differs) and the rest elsewhere, instead of
    /// the gateway's 404.
    pub fn matches(&self, parts: &Parts) -> bool {
        let mut host = LazyHost::default();
        self.inner.routes.iter().any(|r| {
            r.cond
                .matches_host_and_headers(host.for_route(r, parts), &parts.headers)
                && r.path.matches(parts.uri.path()).is_some()
        })
    }

    /// Whether the gateway has no routes (an app without `[gateway]`).
    pub fn is_empty(&self) -> bool {
        self.inner.routes.is_empty()
    }

    /// A tower/hyper service for one client connection. Its requests to a
    /// plain `http://` HTTP/1 upstream go over an upstream connection of
    /// its own while that one is idle (see `proxy::Affinity`), else through
    /// the pool as with [`Gateway::handle`].
    pub fn service(&self, client: SocketAddr) -> GatewayService {
        GatewayService {
            gateway: self.clone(),
            peer: Arc::new(Peer {
                affinity: Some(Arc::default()),
                ..Peer::new(client)
            }),
        }
    }

    /// A fresh request id: 32 lowercase hex digits. The first half is a
    /// bijective mix of the seeded counter, so ids never repeat within a
    /// process (for 2^64 requests); the second half scrambles it further.
    fn new_request_id(&self) -> HeaderValue {
        let n = self.inner.id_counter.fetch_add(1, Ordering::Relaxed);
        let seed = self.inner.id_seed;
        let a = crate::canary::mix(seed ^ n);
        let b = crate::canary::mix(a ^ seed.rotate_left(32));
        let word = (u128::from(a) << 64) | u128::from(b);
        let mut text = [0u8; 32];
        for (i, digit) in text.iter_mut().enumerate() {
            *digit = b"0123456789abcdef"[((word >> (124 - 4 * i)) & 0xf) as usize];
        }
        HeaderValue::from_bytes(&text).expect("hex digits are a valid header value")
    }

    /// Handles one request from `client`. Never fails: every refusal is a
    /// response with a JSON reason. The response carries `x-request-id`.
    pub async fn handle<B>(&self, req: Request<B>, client: SocketAddr) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        self.handle_from(req, &Peer::new(client)).await
    }

    /// [`Gateway::handle`] for a client whose address is already formatted
    /// (once per connection by [`GatewayService`]).
    async fn handle_from<B>(&self, req: Request<B>, client: &Peer) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (mut parts, body) = req.into_parts();
        bump(&self.inner.counters.requests);
        // The client's id when it is sane (visible ASCII, at most 128
        // bytes), else a fresh one; both are valid `&str`s.
        let id_value = parts
            .headers
            .get(&REQUEST_ID)
            .filter(|v| {
                !v.is_empty() && v.len() <= 128 && v.as_bytes().iter().all(u8::is_ascii_graphic)
            })
            .cloned()
            .unwrap_or_else(|| self.new_request_id());
        parts.headers.insert(REQUEST_ID, id_value.clone());
        let id = id_value.to_str().unwrap_or("invalid");
        let span = tracing::info_span!("gateway", request_id = %id);
        let mut resp = self
            .route_request(parts, body::boxed(body), client, id)
            .instrument(span)
            .await;
        resp.headers_mut().insert(REQUEST_ID, id_value);
        resp
    }

    async fn route_request(
        &self,
        parts: Parts,
        body: Body,
        client: &Peer,
        id: &str,
    ) -> Response<Body> {
        let inner = &*self.inner;
        if header_bytes(&parts.headers) > inner.max_header_bytes {
            bump(&inner.counters.headers_too_large);
            tracing::info!(decision = "headers_too_large", "request refused");
            return body::error(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                "request headers are too large",
                id,
            );
        }
        if let Err(why) = crate::rewrite::check_path(parts.uri.path()) {
            bump(&inner.counters.bad_requests);
            tracing::info!(
                decision = "bad_path",
                path = parts.uri.path(),
                reason = why.reason(),
                "request refused"
            );
            return body::error(StatusCode::BAD_REQUEST, "bad_path", why.reason(), id);
        }
        let preflight = crate::cors::is_preflight(&parts.method, &parts.headers);
        let method = if preflight {
            crate::cors::requested_method(&parts.headers).unwrap_or(Method::OPTIONS)
        } else {
            parts.method.clone()
        };
        // The host is only parsed when a route has a host condition.
        let mut host = LazyHost::default();
        let mut allow: Vec<Method> = Vec::new();
        let mut found = None;
        for r in &inner.routes {
            if !r
                .cond
                .matches_host_and_headers(host.for_route(r, &parts), &parts.headers)
            {
                continue;
            }
            let Some(params) = r.path.matches(parts.uri.path()) else {
                continue;
            };
            if !r.cond.allows(&method) {
                allow.extend(r.cond.methods.iter().cloned());
                continue;
            }
            found = Some((r, params));
            break;
        }
        let Some((route, params)) = found else {
            if allow.is_empty() {
                bump(&inner.counters.not_found);
                tracing::debug!(
                    decision = "no_route",
                    path = parts.uri.path(),
                    "no route matched"
                );
                return body::error(
                    StatusCode::NOT_FOUND,
                    "no_route",
                    "no route matches this request",
                    id,
                );
            }
            bump(&inner.counters.method_not_allowed);
            tracing::debug!(decision = "method_not_allowed", method = %method, "no route allows this method");
            let mut r = body::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "the route does not allow this method",
                id,
            );
            allow.dedup();
            let list: Vec<&str> = allow.iter().map(Method::as_str).collect();
            if let Ok(v) = HeaderValue::from_str(&list.join(", ")) {
                r.headers_mut().insert(header::ALLOW, v);
            }
            return r;
        };
        let c = &route.counters;
        bump(&c.requests);
        tracing::debug!(decision = "route", route = %route.name, "route chosen");

        if preflight && let Some(cors) = &route.cors {
            bump(&c.cors_preflights);
            let resp = cors.preflight(&parts.headers, id);
            c.count_status(resp.status().as_u16());
            return resp;
        }
        let origin = parts.headers.get(header::ORIGIN).cloned();
        let mut resp = self.run_route(route, params, parts, body, client, id).await;
        route.response_headers.apply(resp.headers_mut());
        if let Some(cors) = &route.cors {
            cors.apply(origin.as_ref(), resp.headers_mut());
        }
        c.count_status(resp.status().as_u16());
        resp
    }

    fn client_ip(&self, parts: &Parts, client: SocketAddr) -> IpAddr {
        if self.inner.trust_forwarded_for
            && let Some(ip) = parts
                .headers
                .get(&X_FORWARDED_FOR)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.trim().parse().ok())
        {
            return ip;
        }
        client.ip()
    }

    async fn run_route(
        &self,
        route: &Route,
        params: Params,
        mut parts: Parts,
        body: Body,
        client: &Peer,
        id: &str,
    ) -> Response<Body> {
        let inner = &*self.inner;
        let c = &route.counters;
        let ip = self.client_ip(&parts, client.addr);

        // Auth.
        let mut consumer = None;
        if let Some(auth) = &route.auth {
            match auth
                .check(
                    &route.name,
                    route.primary.function(),
                    &parts,
                    &inner.consumers,
                    inner.key_check.get(),
                )
                .await
            {
                Ok(who) => {
                    consumer = who;
                    if auth.function_keys {
                        // The host's key grants more than this route: never
                        // pass it on to an upstream.
                        parts.headers.remove("x-gust-key");
                    }
                }
                Err(f) => {
                    bump(&c.auth_failures);
                    tracing::info!(decision = "auth_failed", route = %route.name, status = f.status.as_u16(), reason = %f.reason, "request refused");
                    let mut r = body::error(f.status, f.code, &f.reason, id);
                    if f.status == StatusCode::UNAUTHORIZED && auth.jwt.is_some() {
                        r.headers_mut()
                            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                    }
                    return r;
                }
            }
        }

        // Rate limits (the route's, then the consumer's plan): the tightest
        // bucket decides the headers.
        let mut tightest: Option<Decision> = None;
        // Only the per-IP limit keys on the address as text.
        let ip_text = if route.limit_ip.is_some() {
            ip.to_string()
        } else {
            String::new()
        };
        let plan = consumer
            .as_deref()
            .and_then(|c| inner.plans.get(c).map(|l| (l, c)));
        let checks = [
            route.limit_ip.as_ref().map(|l| (l, ip_text.as_str())),
            route.limit_consumer.as_ref().zip(consumer.as_deref()),
            plan,
        ];
        for (limiter, key) in checks.into_iter().flatten() {
            let d = limiter.check(key);
            let tighter = match &tightest {
                None => true,
                Some(t) => {
                    (!d.allowed && t.allowed)
                        || (d.allowed == t.allowed && d.remaining < t.remaining)
                }
            };
            if tighter {
                tightest = Some(d);
            }
        }
        if let Some(d) = tightest.filter(|d| !d.allowed) {
            bump(&c.rate_limited);
            tracing::info!(decision = "rate_limited", route = %route.name, client = %ip, consumer = consumer.as_deref(), "request refused");
            let mut r = body::error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests",
                id,
            );
            let retry = d.retry_after.as_secs_f64().ceil().max(1.0) as u64;
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry));
            rate_headers(r.headers_mut(), &d);
            return r;
        }

        // Body limits.
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > route.max_body) {
            bump(&c.body_rejected);
            tracing::info!(decision = "body_too_large", route = %route.name, "request refused");
            return body::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "request body is larger than allowed",
                id,
            );
        }
        let body_empty = body.is_end_stream_hint() || declared == Some(0);
        // An empty body cannot fail: no guard (and no slot to allocate).
        let (body, slot) = if body_empty {
            (body, None)
        } else {
            let slot = FailureSlot::default();
            let guarded = GuardedBody::new(body, route.max_body, route.body_timeout, slot.clone());
            (body::boxed(guarded), Some(slot))
        };

        // Target.
        let target = match &route.canary {
            Some((canary, split)) => {
                let key: Option<Vec<u8>> = match &split.sticky {
                    None => None,
                    Some(Sticky::Header(h)) => parts.headers.get(h).map(|v| v.as_bytes().to_vec()),
                    Some(Sticky::Query(q)) => {
                        query_param(parts.uri.query(), q).map(String::into_bytes)
                    }
                    Some(Sticky::Consumer) => consumer.as_deref().map(|c| c.as_bytes().to_vec()),
                    Some(Sticky::Ip) => Some(ip.to_string().into_bytes()),
                };
                if split.choose_canary(key.as_deref()) {
                    bump(&c.canary);
                    canary
                } else {
                    bump(&c.primary);
                    &route.primary
                }
            }
            None => {
                bump(&c.primary);
                &route.primary
            }
        };
        tracing::debug!(decision = "target", route = %route.name, target = %target.describe(), "target chosen");

        let rewritten = match &target.rewrite {
            Some(t) => {
                let p = crate::rewrite::fill(t, &params);
                if let Err(why) = crate::rewrite::check_path(&p) {
                    bump(&inner.counters.bad_requests);
                    tracing::info!(decision = "bad_path", route = %route.name, reason = why.reason(), "rewritten path refused");
                    return body::error(StatusCode::BAD_REQUEST, "bad_path", why.reason(), id);
                }
                Some(p)
            }
            // The client's path, read where it is needed (no copy).
            None => None,
        };

        // Request headers seen by the target.
        let h = &mut parts.headers;
        h.remove(&CONSUMER);
        if let Some(who) = consumer
            .as_deref()
            .and_then(|c| HeaderValue::from_str(c).ok())
        {
            h.insert(CONSUMER, who);
        }
        let xff = match h.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(prev) if inner.trust_forwarded_for => {
                HeaderValue::from_str(&format!("{prev}, {}", client.addr.ip())).ok()
            }
            _ => Some(client.ip_value.clone()),
        };
        if let Some(v) = xff {
            h.insert(X_FORWARDED_FOR, v);
        }
        if !(inner.trust_forwarded_for && h.contains_key(&X_FORWARDED_PROTO)) {
            h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
        }
        let forwarded_host = match parts.uri.authority() {
            Some(a) => HeaderValue::from_str(a.as_str()).ok(),
            None => h.get(header::HOST).filter(|v| v.to_str().is_ok()).cloned(),
        };
        if let Some(v) = forwarded_host {
            h.insert(X_FORWARDED_HOST, v);
        }
        route.request_headers.apply(&mut parts.headers);

        let resp = match &target.kind {
            TargetKind::Function(f) => {
                self.call_function(route, f, parts, body, rewritten, id)
                    .await
            }
            TargetKind::Upstream(u) => {
                let slot = slot.as_ref();
                let affinity = client.affinity.as_ref();
                self.call_upstream(
                    route, target, u, affinity, parts, body, body_empty, rewritten, slot, id,
                )
                .await
            }
        };
        let mut resp = match slot.as_ref().and_then(|s| s.get()) {
            Some(BodyFailure::TooLarge) => {
                bump(&c.body_rejected);
                tracing::info!(decision = "body_too_large", route = %route.name, "request refused");
                body::error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "request body is larger than allowed",
                    id,
                )
            }
            Some(BodyFailure::Stalled) => {
                bump(&c.body_rejected);
                tracing::info!(decision = "body_timeout", route = %route.name, "request refused");
                let mut r = body::error(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    "request body was not received in time",
                    id,
                );
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                r
            }
            None => resp,
        };
        if let Some(d) = tightest {
            rate_headers(resp.headers_mut(), &d);
        }
        resp
    }

    async fn call_function(
        &self,
        route: &Route,
        function: &str,
        mut parts: Parts,
        body: Body,
        rewritten: Option<String>,
        id: &str,
    ) -> Response<Body> {
        let path = rewritten.as_deref().unwrap_or(parts.uri.path());
        let pq = match parts.uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.to_string(),
        };
        if let Ok(uri) = pq.parse() {
            parts.uri = uri;
        }
        let req = Request::from_parts(parts, body);
        match tokio::time::timeout(route.timeout, self.inner.functions.call(function, req)).await {
            Ok(resp) => resp,
            Err(_) => {
                bump(&route.counters.timeouts);
                tracing::warn!(decision = "timeout", route = %route.name, function, "function timed out");
                body::error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "timeout",
                    "the function did not answer in time",
                    id,
                )
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn call_upstream(
        &self,
        route: &Route,
        target: &Target,
        upstream: &Arc<Upstream>,
        affinity: Option<&Arc<Affinity>>,
        mut parts: Parts,
        body: Body,
        body_empty: bool,
        rewritten: Option<String>,
        slot: Option<&FailureSlot>,
        id: &str,
    ) -> Response<Body> {
        let c = &route.counters;
        let upgrade = !upstream.http2 && wants_upgrade(&parts.headers);
        strip_hop_by_hop(&mut parts.headers, upgrade);
        parts.headers.remove(header::HOST);
        let uri = match upstream.uri_for(&parts.uri, rewritten.as_deref()) {
            Ok(u) => u,
            Err(_) => {
                return body::error(
                    StatusCode::BAD_REQUEST,
                    "bad_path",
                    "path cannot be forwarded",
                    id,
                );
            }
        };
        let downstream_upgrade = if upgrade {
            parts.extensions.remove::<OnUpgrade>()
        } else {
            None
        };
        let client = if upstream.http2 {
            &self.inner.http2
        } else {
            &self.inner.http1
        };
        let retry = route
            .retry
            .filter(|_| body_empty && !upgrade && is_idempotent(&parts.method));
        let tries = retry.map_or(1, |r| r.attempts + 1);
        let mut once = Some(body);
        let mut last = None;
        for n in 0..tries {
            if n > 0 {
                bump(&c.retries);
                let backoff =
                    retry.map_or(Duration::ZERO, |r| r.backoff * 2u32.saturating_pow(n - 1));
                tracing::info!(decision = "retry", route = %route.name, attempt = n + 1, "retrying upstream");
                tokio::time::sleep(backoff).await;
            }
            let mut req = Request::new(once.take().unwrap_or_else(body::empty));
            *req.method_mut() = parts.method.clone();
            *req.uri_mut() = uri.clone();
            *req.headers_mut() = if n + 1 == tries {
                std::mem::take(&mut parts.headers)
            } else {
                parts.headers.clone()
            };
            // Upgrades take the pool, whose connections can be upgraded.
            let affinity = affinity.filter(|_| !upgrade);
            let outcome = proxy::attempt(client, upstream, affinity, req, route.timeout, || {
                slot.is_some_and(|s| s.get().is_some())
            })
            .await;
            let retryable = n + 1 < tries;
            match outcome {
                Attempt::Response(r) if retryable && matches!(r.status().as_u16(), 502..=504) => {
                    last = Some(body::error(
                        StatusCode::BAD_GATEWAY,
                        "upstream_error",
                        "upstream failed",
                        id,
                    ));
                }
                Attempt::Response(r) => {
                    return self.upstream_response(r, downstream_upgrade, id);
                }
                Attempt::BreakerOpen(wait) => {
                    bump(&c.breaker_rejected);
                    tracing::info!(decision = "breaker_open", route = %route.name, upstream = %target.describe(), "failing fast");
                    let mut r = body::error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "breaker_open",
                        "upstream is unavailable (circuit open)",
                        id,
                    );
                    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
                    r.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                    return r;
                }
                Attempt::Timeout => {
                    bump(&c.timeouts);
                    tracing::warn!(decision = "timeout", route = %route.name, upstream = %target.describe(), "upstream timed out");
                    last = Some(body::error(
                        StatusCode::GATEWAY_TIMEOUT,
                        "timeout",
                        "the upstream did not answer in time",
                        id,
                    ));
                }
                Attempt::Failed(e) => {
                    if slot.is_some_and(|s| s.get().is_some()) {
                        return body::error(
                            StatusCode::BAD_REQUEST,
                            "body",
                            "request body failed",
                            id,
                        );
                    }
                    bump(&c.upstream_errors);
                    tracing::warn!(decision = "upstream_error", route = %route.name, upstream = %target.describe(), error = %e, connect = e.is_connect(), "upstream failed");
                    last = Some(body::error(
                        StatusCode::BAD_GATEWAY,
                        "upstream_error",
                        "the upstream could not be reached",
                        id,
                    ));
                }
            }
        }
        last.unwrap_or_else(|| {
            body::error(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                "upstream failed",
                id,
            )
        })
    }

    fn upstream_response(
        &self,
        resp: Response<hyper::body::Incoming>,
        downstream_upgrade: Option<OnUpgrade>,
        id: &str,
    ) -> Response<Body> {
        let (mut parts, body) = resp.into_parts();
        let switching = parts.status == StatusCode::SWITCHING_PROTOCOLS;
        if switching
            && let Some(down) = downstream_upgrade
            && let Some(up) = parts.extensions.remove::<OnUpgrade>()
        {
            proxy::tunnel(down, up, id.to_string());
        }
        strip_hop_by_hop(&mut parts.headers, switching);
        Response::from_parts(parts, body::boxed(body))
    }
}

trait EndStreamHint {
    fn is_end_stream_hint(&self) -> bool;
}

impl EndStreamHint for Body {
    fn is_end_stream_hint(&self) -> bool {
        http_body::Body::is_end_stream(self) || http_body::Body::size_hint(self).exact() == Some(0)
    }
}

/// An IP address as a header value, formatted without a heap string (and,
/// for IPv4, without the formatting machinery).
fn ip_header(ip: IpAddr) -> HeaderValue {
    let mut buf = [0u8; 64]; // the longest IPv6 text is 45 bytes
    let len = match ip {
        IpAddr::V4(v4) => {
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[len] = b'.';
                    len += 1;
                }
                if octet >= 100 {
                    buf[len] = b'0' + octet / 100;
                    len += 1;
                }
                if octet >= 10 {
                    buf[len] = b'0' + octet / 10 % 10;
                    len += 1;
                }
                buf[len] = b'0' + octet % 10;
                len += 1;
            }
            len
        }
        IpAddr::V6(_) => {
            use std::io::Write;
            let mut w = &mut buf[..];
            let _ = write!(w, "{ip}");
            64 - w.len()
        }
    };
    HeaderValue::from_bytes(&buf[..len]).expect("an IP address is a valid header value")
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

fn rate_headers(h: &mut HeaderMap, d: &Decision) {
    h.insert(RL_LIMIT, HeaderValue::from(d.limit));
    h.insert(RL_REMAINING, HeaderValue::from(d.remaining));
    h.insert(
        RL_RESET,
        HeaderValue::from(d.reset.as_secs_f64().ceil() as u64),
    );
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// The client end of a connection: its address, its IP as a header value
/// (`X-Forwarded-For`), formatted once, and, for a connection served by
/// [`GatewayService`], its own upstream connection.
struct Peer {
    addr: SocketAddr,
    ip_value: HeaderValue,
    affinity: Option<Arc<Affinity>>,
}

impl Peer {
    fn new(addr: SocketAddr) -> Self {
        Peer {
            addr,
            ip_value: ip_header(addr.ip()),
            affinity: None,
        }
    }
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer").field("addr", &self.addr).finish()
    }
}

/// The request's host (see [`request_host`]), parsed the first time a route
/// with a host condition asks for it.
#[derive(Default)]
struct LazyHost<'a>(Option<Option<&'a str>>);

impl<'a> LazyHost<'a> {
    fn for_route(&mut self, route: &Route, parts: &'a Parts) -> Option<&'a str> {
        route.cond.host.as_ref()?; // not looked at without a host condition
        *self
            .0
            .get_or_insert_with(|| request_host(&parts.uri, &parts.headers))
    }
}

/// The gateway as a tower (and hyper) service for one client connection.
#[derive(Clone, Debug)]
pub struct GatewayService {
    gateway: Gateway,
    peer: Arc<Peer>,
}

impl<B> tower_service::Service<Request<B>> for GatewayService
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        hyper::service::Service::call(self, req)
    }
}

impl<B> hyper::service::Service<Request<B>> for GatewayService
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<Body>, Infallible>>;

    fn call(&self, req: Request<B>) -> Self::Future {
        let gateway = self.gateway.clone();
        let peer = self.peer.clone();
        Box::pin(async move { Ok(gateway.handle_from(req, &peer).await) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(toml: &str) -> String {
        let config = GatewayConfig::from_manifest(toml).expect("parses");
        Gateway::new(config, Arc::new(NoFunctions))
            .expect_err("should be refused")
            .to_string()
    }

    fn route(body: &str) -> String {
        format!("[[gateway.route]]\nname = \"r1\"\n{body}\n")
    }

    #[test]
    fn config_errors_name_route_key_and_fix() {
        let cases = [
            (
                route("path = \"/a\"\ntarget = {}"),
                "`target` must name exactly one",
            ),
            (
                route("path = \"/a/{*x}/b\"\ntarget = { function = \"f\" }"),
                "`path`",
            ),
            (
                route("path = \"/a\"\nprefix = \"/b\"\ntarget = { function = \"f\" }"),
                "keep one",
            ),
            (
                route(
                    "path = \"/a/{id}\"\ntarget = { upstream = \"http://h:1\", rewrite = \"/x/{rest}\" }",
                ),
                "`target.rewrite` uses `{rest}`",
            ),
            (
                route("target = { upstream = \"ftp://h\" }"),
                "http:// or https://",
            ),
            (
                route("target = { function = \"f\" }\nrate_limit = { per_ip = \"lots\" }"),
                "`rate_limit.per_ip`",
            ),
            (
                route("target = { function = \"f\" }\ntimeout = \"soon\""),
                "`timeout`",
            ),
            (
                route("target = { function = \"f\" }\nmax_body = \"3 parsecs\""),
                "`max_body`",
            ),
            (
                route(
                    "target = { function = \"f\" }\ncanary = { target = { function = \"g\" }, weight = 120.0 }",
                ),
                "`canary.weight`",
            ),
            (
                route(
                    "target = { function = \"f\" }\ncanary = { target = { function = \"g\" }, weight = 5, sticky = \"cookie:a\" }",
                ),
                "`canary.sticky`",
            ),
            (
                route("target = { function = \"f\" }\nauth = { keys = true }"),
                "no [[gateway.consumer]]",
            ),
            (
                route("target = { function = \"f\" }\nauth = { jwt = { issuer = \"x\" } }"),
                "set hs256_secret, jwks_file or jwks_url",
            ),
            (
                route(
                    "target = { function = \"f\" }\nauth = { jwt = { jwks_file = \"/no/such/jwks.json\" } }",
                ),
                "`auth.jwt.jwks_file` cannot read",
            ),
            (
                route(
                    "target = { function = \"f\" }\nauth = { jwt = { jwks_url = \"ftp://idp/jwks\" } }",
                ),
                "not an http:// or https:// URL",
            ),
            (
                route(
                    "target = { function = \"f\" }\ncors = { origins = [\"*\"], credentials = true }",
                ),
                "`cors.credentials`",
            ),
            (
                route("target = { function = \"f\" }\nbreaker = { failure_ratio = 0.5 }"),
                "breakers guard upstreams only",
            ),
            (
                route("target = { upstream = \"http://h:1\" }\nbreaker = { failure_ratio = 2.0 }"),
                "`breaker.failure_ratio`",
            ),
            (
                route(
                    "target = { function = \"f\" }\nrequest_headers = { set = { \"bad name\" = \"x\" } }",
                ),
                "`request_headers.set.bad name`",
            ),
            (
                route("target = { function = \"f\" }\nmethods = [\"GE T\"]"),
                "`methods`",
            ),
        ];
        for (toml, want) in cases {
            let e = err(&toml);
            assert!(e.contains("route `r1`"), "{e}");
            assert!(e.contains(want), "want `{want}` in: {e}");
            assert!(e.contains("; "), "has a fix: {e}");
        }

        let two = format!(
            "{}{}",
            route("target = { function = \"f\" }"),
            route("target = { function = \"g\" }")
        );
        assert!(err(&two).contains("used by two routes"));

        let conflict = "[[gateway.route]]\nname = \"a\"\ntarget = { upstream = \"http://h:1\" }\nbreaker = { min_calls = 5 }\n\
                        [[gateway.route]]\nname = \"b\"\ntarget = { upstream = \"http://h:1/\" }\nbreaker = { min_calls = 6 }\n";
        let e = err(conflict);
        assert!(e.contains("route `b`") && e.contains("route `a`"), "{e}");

        let consumer = "[[gateway.consumer]]\nname = \"m\"\nkey = \"short\"\n";
        assert!(err(consumer).contains("gateway consumer `m`: `key` is shorter"));
        let plan = "[[gateway.consumer]]\nname = \"m\"\nkey = \"m-key-0123456789abcdef\"\nrate_limit = \"lots\"\n";
        let e = err(plan);
        assert!(
            e.contains("gateway consumer `m`: `rate_limit`") && e.contains("600/m"),
            "{e}"
        );

        let e = GatewayConfig::from_manifest("[gateway]\n[[gateway.route]]\nname = \"x\"\ntarget = { function = \"f\" }\ncolour = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("colour") && e.contains("line"), "{e}");
    }

    #[test]
    fn ip_header_writes_the_address() {
        for ip in [
            "127.0.0.1",
            "0.0.0.0",
            "10.200.9.255",
            "100.99.0.1",
            "::1",
            "::ffff:192.168.0.1",
            "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
        ] {
            let parsed: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_header(parsed), parsed.to_string().as_str());
        }
    }

    #[test]
    fn a_manifest_without_gateway_is_empty() {
        let c = GatewayConfig::from_manifest("[app]\nname = \"x\"\n").unwrap();
        assert!(c.routes.is_empty());
        assert!(Gateway::new(c, Arc::new(NoFunctions)).is_ok());
    }
}
