//! Compiling `[[gateway.route]]` entries into routes ready to serve.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use jsonwebtoken::DecodingKey;

use crate::auth::jwks::JwksSource;
use crate::auth::{JwksCache, JwtValidator, RouteAuth};
use crate::breaker::BreakerSettings;
use crate::canary::{Split, Sticky};
use crate::config::{BreakerConfig, ConfigError, JwtConfig, RouteConfig, TargetConfig};
use crate::cors::Cors;
use crate::headers::HeaderRewrite;
use crate::matcher::{Conditions, HostPattern, PathPattern};
use crate::proxy::{HttpClient, Upstream};
use crate::ratelimit::{BucketParams, KeyedLimiter};
use crate::status::RouteCounters;
use crate::units::{parse_duration, parse_rate, parse_size};

/// Where a request goes.
pub(crate) enum TargetKind {
    Function(Arc<str>),
    Upstream(Arc<Upstream>),
}

/// A target and its optional path rewrite.
pub(crate) struct Target {
    pub kind: TargetKind,
    pub rewrite: Option<String>,
}

impl Target {
    pub fn describe(&self) -> String {
        match &self.kind {
            TargetKind::Function(f) => format!("function:{f}"),
            TargetKind::Upstream(u) => u.url.clone(),
        }
    }

    pub fn function(&self) -> Option<&str> {
        match &self.kind {
            TargetKind::Function(f) => Some(f),
            TargetKind::Upstream(_) => None,
        }
    }
}

/// Retry policy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retry {
    pub attempts: u32,
    pub backoff: Duration,
}

/// A compiled route.
pub(crate) struct Route {
    pub name: Arc<str>,
    pub path: PathPattern,
    pub cond: Conditions,
    pub primary: Target,
    pub canary: Option<(Target, Split)>,
    pub auth: Option<RouteAuth>,
    pub limit_ip: Option<KeyedLimiter>,
    pub limit_consumer: Option<KeyedLimiter>,
    pub cors: Option<Cors>,
    pub timeout: Duration,
    pub max_body: u64,
    pub body_timeout: Duration,
    pub request_headers: HeaderRewrite,
    pub response_headers: HeaderRewrite,
    pub retry: Option<Retry>,
    pub counters: RouteCounters,
}

/// Shared state while compiling routes.
pub(crate) struct Builder {
    pub http1: HttpClient,
    pub upstreams: Vec<Arc<Upstream>>,
    by_url: HashMap<(String, bool), Arc<Upstream>>,
    /// Breaker settings per upstream, from the route that set them.
    breakers: HashMap<(String, bool), (BreakerSettings, String)>,
    jwks: HashMap<String, Arc<JwksCache>>,
    pub jwks_refresh: Duration,
    pub body_timeout: Duration,
    seed: u64,
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_BODY: u64 = 10 << 20;

fn dur(
    route: &str,
    key: &str,
    v: &Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(default),
        Some(t) => parse_duration(t).map_err(|e| {
            ConfigError::route(
                route,
                key,
                e,
                "write a duration such as \"5s\" or \"250ms\"",
            )
        }),
    }
}

fn breaker_settings(route: &str, b: &BreakerConfig) -> Result<BreakerSettings, ConfigError> {
    let d = BreakerSettings::default();
    let ratio = b.failure_ratio.unwrap_or(d.failure_ratio);
    if !(ratio > 0.0 && ratio <= 1.0) {
        return Err(ConfigError::route(
            route,
            "breaker.failure_ratio",
            format!("is {ratio}"),
            "use a ratio above 0 and at most 1, e.g. 0.5",
        ));
    }
    let s = BreakerSettings {
        failure_ratio: ratio,
        min_calls: b.min_calls.unwrap_or(d.min_calls).max(1),
        window: dur(route, "breaker.window", &b.window, d.window)?,
        open_for: dur(route, "breaker.open_for", &b.open_for, d.open_for)?,
        half_open_calls: b.half_open_calls.unwrap_or(d.half_open_calls).max(1),
    };
    if s.window < Duration::from_millis(10) {
        return Err(ConfigError::route(
            route,
            "breaker.window",
            "is too short",
            "use at least \"10ms\"",
        ));
    }
    Ok(s)
}

impl Builder {
    pub fn new(
        http1: HttpClient,
        jwks_refresh: Duration,
        body_timeout: Duration,
        seed: u64,
    ) -> Self {
        Builder {
            http1,
            upstreams: Vec::new(),
            by_url: HashMap::new(),
            breakers: HashMap::new(),
            jwks: HashMap::new(),
            jwks_refresh,
            body_timeout,
            seed,
        }
    }

    fn target(
        &mut self,
        route: &str,
        key: &str,
        t: &TargetConfig,
        path: &PathPattern,
    ) -> Result<Target, ConfigError> {
        let kind = match (&t.function, &t.upstream) {
            (Some(f), None) if !f.trim().is_empty() => TargetKind::Function(Arc::from(f.as_str())),
            (None, Some(u)) => {
                let id = (u.trim_end_matches('/').to_string(), t.http2);
                match self.by_url.get(&id) {
                    Some(up) => TargetKind::Upstream(up.clone()),
                    None => {
                        let settings = self
                            .breakers
                            .get(&id)
                            .map_or_else(BreakerSettings::default, |(s, _)| *s);
                        let up = Arc::new(Upstream::parse(u, t.http2, settings).map_err(|e| {
                            ConfigError::route(
                                route,
                                format!("{key}.upstream"),
                                e,
                                "write it like \"http://127.0.0.1:9000\"",
                            )
                        })?);
                        self.upstreams.push(up.clone());
                        self.by_url.insert(id, up.clone());
                        TargetKind::Upstream(up)
                    }
                }
            }
            _ => {
                return Err(ConfigError::route(
                    route,
                    key,
                    "must name exactly one of `function` or `upstream`",
                    "write { function = \"name\" } or { upstream = \"http://host:port\" }",
                ));
            }
        };
        if let Some(rw) = &t.rewrite {
            if !rw.starts_with('/') && !rw.starts_with('{') {
                return Err(ConfigError::route(
                    route,
                    format!("{key}.rewrite"),
                    format!("`{rw}` must start with `/`"),
                    "write a path such as \"/orders/{rest}\"",
                ));
            }
            let known = path.param_names();
            for p in crate::rewrite::placeholders(rw) {
                if !known.contains(&p.as_str()) {
                    return Err(ConfigError::route(
                        route,
                        format!("{key}.rewrite"),
                        format!("uses `{{{p}}}` which the route's path does not capture"),
                        format!("use one of: {}", known.join(", ")),
                    ));
                }
            }
        }
        Ok(Target {
            kind,
            rewrite: t.rewrite.clone(),
        })
    }

    fn jwt(&mut self, route: &str, j: &JwtConfig) -> Result<JwtValidator, ConfigError> {
        let secret = j
            .hs256_secret
            .as_ref()
            .map(|s| DecodingKey::from_secret(s.as_bytes()));
        if j.hs256_secret.as_ref().is_some_and(|s| s.len() < 16) {
            return Err(ConfigError::route(
                route,
                "auth.jwt.hs256_secret",
                "is shorter than 16 bytes",
                "use a long random secret (32 bytes or more)",
            ));
        }
        let source = match (&j.jwks_file, &j.jwks_url) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::route(
                    route,
                    "auth.jwt",
                    "has both jwks_file and jwks_url",
                    "keep one of them",
                ));
            }
            (Some(f), None) => Some(JwksSource::File(f.into())),
            (None, Some(u)) => {
                let uri: http::Uri = u.parse().map_err(|_| {
                    ConfigError::route(
                        route,
                        "auth.jwt.jwks_url",
                        format!("`{u}` is not a URL"),
                        "write it like \"http://idp.internal/.well-known/jwks.json\"",
                    )
                })?;
                if uri.scheme() != Some(&http::uri::Scheme::HTTP)
                    && uri.scheme() != Some(&http::uri::Scheme::HTTPS)
                {
                    return Err(ConfigError::route(
                        route,
                        "auth.jwt.jwks_url",
                        format!("`{u}` is not an http:// or https:// URL"),
                        "write it like \"https://idp.example.com/.well-known/jwks.json\"",
                    ));
                }
                Some(JwksSource::Url(uri))
            }
            (None, None) => None,
        };
        if secret.is_none() && source.is_none() {
            return Err(ConfigError::route(
                route,
                "auth.jwt",
                "has no key",
                "set hs256_secret, jwks_file or jwks_url",
            ));
        }
        let jwks = match source {
            None => None,
            Some(src) => {
                let id = match &src {
                    JwksSource::File(p) => format!("file:{}", p.display()),
                    JwksSource::Url(u) => format!("url:{u}"),
                };
                if let Some(c) = self.jwks.get(&id) {
                    Some(c.clone())
                } else {
                    let cache =
                        Arc::new(JwksCache::new(src, self.jwks_refresh, self.http1.clone()));
                    cache.preload().map_err(|e| {
                        ConfigError::route(
                            route,
                            "auth.jwt.jwks_file",
                            e,
                            "point it at a readable JWKS JSON file ({\"keys\": [...]})",
                        )
                    })?;
                    self.jwks.insert(id, cache.clone());
                    Some(cache)
                }
            }
        };
        let claims = j
            .claims
            .iter()
            .map(|(k, v)| {
                serde_json::to_value(v)
                    .map(|v| (k.clone(), v))
                    .map_err(|e| {
                        ConfigError::route(
                            route,
                            format!("auth.jwt.claims.{k}"),
                            e.to_string(),
                            "use a string, number, boolean or array",
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(JwtValidator {
            secret,
            jwks,
            issuer: j.issuer.clone(),
            audience: j.audience.clone(),
            scopes: j.scopes.clone(),
            claims,
            leeway_secs: dur(route, "auth.jwt.leeway", &j.leeway, Duration::from_secs(30))?
                .as_secs(),
        })
    }

    /// First pass: collects each upstream's breaker settings from the route
    /// that sets `breaker`, refusing two different settings for one upstream.
    pub fn collect_breakers(&mut self, r: &RouteConfig) -> Result<(), ConfigError> {
        let Some(b) = &r.breaker else { return Ok(()) };
        let settings = breaker_settings(&r.name, b)?;
        let targets = std::iter::once(&r.target).chain(r.canary.as_ref().map(|c| &c.target));
        for t in targets {
            let Some(u) = &t.upstream else { continue };
            let id = (u.trim_end_matches('/').to_string(), t.http2);
            match self.breakers.get(&id) {
                Some((s, owner)) if *s != settings => {
                    return Err(ConfigError::route(
                        &r.name,
                        "breaker",
                        format!(
                            "differs from the breaker of route `{owner}` for the same upstream {u}"
                        ),
                        "an upstream has one breaker: give the same settings, or set them on one route only",
                    ));
                }
                Some(_) => {}
                None => {
                    self.breakers.insert(id, (settings, r.name.clone()));
                }
            }
        }
        Ok(())
    }

    /// Compiles one route.
    pub fn route(
        &mut self,
        r: &RouteConfig,
        consumers: &HashSet<String>,
    ) -> Result<Route, ConfigError> {
        let name = r.name.as_str();
        let path = match (&r.path, &r.prefix) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::route(
                    name,
                    "path",
                    "and `prefix` are both set",
                    "keep one: `path` for templates, `prefix` for a subtree",
                ));
            }
            (Some(p), None) => PathPattern::template(p).map_err(|e| {
                ConfigError::route(
                    name,
                    "path",
                    e,
                    "write a template such as \"/api/v1/orders/{id}\" or \"/files/{*rest}\"",
                )
            })?,
            (None, Some(p)) => PathPattern::prefix(p).map_err(|e| {
                ConfigError::route(name, "prefix", e, "write a prefix such as \"/api\"")
            })?,
            (None, None) => PathPattern::Any,
        };
        let methods = r
            .methods
            .iter()
            .map(|m| {
                Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
                    ConfigError::route(
                        name,
                        "methods",
                        format!("`{m}` is not an HTTP method"),
                        "use names such as \"GET\" or \"POST\"",
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let headers = r
            .headers
            .iter()
            .map(|(k, v)| {
                let n = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                    ConfigError::route(
                        name,
                        format!("headers.{k}"),
                        "is not a header name",
                        "use a name such as \"api-version\"",
                    )
                })?;
                let v = HeaderValue::from_str(v).map_err(|_| {
                    ConfigError::route(
                        name,
                        format!("headers.{k}"),
                        format!("`{v}` is not a header value"),
                        "use printable ASCII",
                    )
                })?;
                Ok((n, v))
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let cond = Conditions {
            methods,
            host: r.host.as_deref().map(HostPattern::parse),
            headers,
        };

        let primary = self.target(name, "target", &r.target, &path)?;
        let canary = match &r.canary {
            None => None,
            Some(c) => {
                if !(0.0..=100.0).contains(&c.weight) {
                    return Err(ConfigError::route(
                        name,
                        "canary.weight",
                        format!("is {}", c.weight),
                        "use a percentage from 0 to 100, e.g. 10",
                    ));
                }
                let sticky = c
                    .sticky
                    .as_deref()
                    .map(Sticky::parse)
                    .transpose()
                    .map_err(|e| {
                        ConfigError::route(
                            name,
                            "canary.sticky",
                            e,
                            "e.g. sticky = \"header:x-user\"",
                        )
                    })?;
                let t = self.target(name, "canary.target", &c.target, &path)?;
                self.seed = self.seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
                Some((t, Split::new(c.weight, sticky, self.seed)))
            }
        };

        let auth = match &r.auth {
            None => None,
            Some(a) => {
                if !a.function_keys && !a.keys && a.jwt.is_none() {
                    return Err(ConfigError::route(
                        name,
                        "auth",
                        "turns on no method",
                        "set function_keys = true, keys = true or jwt = { ... }, or remove `auth`",
                    ));
                }
                if !a.consumers.is_empty() && !a.keys {
                    return Err(ConfigError::route(
                        name,
                        "auth.consumers",
                        "needs keys = true",
                        "add keys = true to auth",
                    ));
                }
                if a.keys && consumers.is_empty() {
                    return Err(ConfigError::route(
                        name,
                        "auth.keys",
                        "is on but no [[gateway.consumer]] is defined",
                        "add [[gateway.consumer]] entries with name and key",
                    ));
                }
                if let Some(c) = a.consumers.iter().find(|c| !consumers.contains(*c)) {
                    return Err(ConfigError::route(
                        name,
                        "auth.consumers",
                        format!("names `{c}` which is not a consumer"),
                        "define it with [[gateway.consumer]] or fix the name",
                    ));
                }
                Some(RouteAuth {
                    function_keys: a.function_keys,
                    keys: a.keys,
                    consumers: a.consumers.clone(),
                    jwt: a.jwt.as_ref().map(|j| self.jwt(name, j)).transpose()?,
                })
            }
        };

        let (limit_ip, limit_consumer) = match &r.rate_limit {
            None => (None, None),
            Some(rl) => {
                if rl.per_ip.is_none() && rl.per_consumer.is_none() {
                    return Err(ConfigError::route(
                        name,
                        "rate_limit",
                        "sets no limit",
                        "set per_ip and/or per_consumer, e.g. per_ip = \"20/s\"",
                    ));
                }
                if rl.burst == Some(0) {
                    return Err(ConfigError::route(
                        name,
                        "rate_limit.burst",
                        "is 0",
                        "use at least 1",
                    ));
                }
                let mk =
                    |key: &str, v: &Option<String>| -> Result<Option<KeyedLimiter>, ConfigError> {
                        let Some(text) = v else { return Ok(None) };
                        let rate = parse_rate(text)
                            .map_err(|e| ConfigError::route(name, key, e, "e.g. \"100/s\""))?;
                        Ok(Some(KeyedLimiter::new(BucketParams {
                            rate: rate.per_second(),
                            burst: f64::from(rl.burst.unwrap_or(rate.count)),
                        })))
                    };
                (
                    mk("rate_limit.per_ip", &rl.per_ip)?,
                    mk("rate_limit.per_consumer", &rl.per_consumer)?,
                )
            }
        };

        let cors = match &r.cors {
            None => None,
            Some(c) => {
                let methods = if c.methods.is_empty() {
                    r.methods.clone()
                } else {
                    c.methods.clone()
                };
                let max_age = dur(name, "cors.max_age", &c.max_age, Duration::from_secs(600))?;
                Some(
                    Cors::new(
                        &c.origins,
                        &methods,
                        &c.headers,
                        &c.expose_headers,
                        c.credentials,
                        max_age,
                    )
                    .map_err(|(k, p, f)| ConfigError::route(name, k, p, f))?,
                )
            }
        };

        let rewrite = |key: &str, h: &crate::config::HeaderRewriteConfig| {
            HeaderRewrite::new(&h.set, &h.add, &h.remove).map_err(|(k, p)| {
                ConfigError::route(
                    name,
                    format!("{key}.{k}"),
                    p,
                    "use valid header names and printable ASCII values",
                )
            })
        };
        let max_body = match &r.max_body {
            None => DEFAULT_MAX_BODY,
            Some(t) => parse_size(t).map_err(|e| {
                ConfigError::route(name, "max_body", e, "write a size such as \"1MiB\"")
            })?,
        };
        let retry = match &r.retry {
            None => None,
            Some(rt) => {
                if rt.attempts > 10 {
                    return Err(ConfigError::route(
                        name,
                        "retry.attempts",
                        format!("is {}", rt.attempts),
                        "use at most 10",
                    ));
                }
                Some(Retry {
                    attempts: rt.attempts,
                    backoff: dur(
                        name,
                        "retry.backoff",
                        &rt.backoff,
                        Duration::from_millis(50),
                    )?,
                })
            }
        };
        if r.breaker.is_some()
            && !matches!(primary.kind, TargetKind::Upstream(_))
            && !canary
                .as_ref()
                .is_some_and(|(t, _)| matches!(t.kind, TargetKind::Upstream(_)))
        {
            return Err(ConfigError::route(
                name,
                "breaker",
                "is set but the route has no upstream target",
                "remove it: breakers guard upstreams only",
            ));
        }

        Ok(Route {
            name: Arc::from(name),
            path,
            cond,
            primary,
            canary,
            auth,
            limit_ip,
            limit_consumer,
            cors,
            timeout: dur(name, "timeout", &r.timeout, DEFAULT_TIMEOUT)?,
            max_body,
            body_timeout: dur(name, "body_timeout", &r.body_timeout, self.body_timeout)?,
            request_headers: rewrite("request_headers", &r.request_headers)?,
            response_headers: rewrite("response_headers", &r.response_headers)?,
            retry,
            counters: RouteCounters::default(),
        })
    }
}
