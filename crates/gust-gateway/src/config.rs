//! The `[gateway]` table of an app's `gust.toml`, as written by a person.
//!
//! These types only describe the shape; [`crate::Gateway::new`] validates
//! them and reports problems as [`ConfigError`]s that name the route, the
//! key and the fix. The full shape is documented at the crate root.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The whole `[gateway]` table.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Routes, tried in the order they are written; the first match wins.
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
    /// API consumers and their keys (for routes with `auth = { keys = true }`).
    #[serde(default, rename = "consumer")]
    pub consumers: Vec<ConsumerConfig>,
    /// Largest total size of a request's header block (default `"16KiB"`);
    /// larger requests get 431.
    #[serde(default)]
    pub max_header_bytes: Option<String>,
    /// How long a request body may stall between two chunks before the
    /// request fails with 408 (default `"30s"`); a route may override it.
    #[serde(default)]
    pub body_timeout: Option<String>,
    /// How long a client may take to send its request head (default `"10s"`),
    /// used by [`crate::serve`].
    #[serde(default)]
    pub header_timeout: Option<String>,
    /// Take the client IP from the first `X-Forwarded-For` entry (only when
    /// the gateway sits behind a trusted proxy). Default `false`.
    #[serde(default)]
    pub trust_forwarded_for: bool,
    /// How long a fetched or loaded JWKS is cached (default `"5m"`).
    #[serde(default)]
    pub jwks_refresh: Option<String>,
    /// PEM file of extra root certificates trusted for `https://` upstreams
    /// and JWKS URLs, next to the system's (e.g. an internal CA).
    #[serde(default)]
    pub ca_file: Option<String>,
}

/// An API consumer: `[[gateway.consumer]] name = "mobile", key = "..."`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerConfig {
    /// The consumer's name, used for per-consumer rate limits and logs.
    pub name: String,
    /// One API key, sent by clients in `x-api-key`.
    #[serde(default)]
    pub key: Option<String>,
    /// More keys (for rotation).
    #[serde(default)]
    pub keys: Vec<String>,
    /// The consumer's own limit (its plan), e.g. `"600/m"`: one token bucket
    /// shared by every route on which the consumer is identified, checked
    /// next to the routes' own limits.
    #[serde(default)]
    pub rate_limit: Option<String>,
}

/// One `[[gateway.route]]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Unique route name, used in logs, metrics and errors.
    pub name: String,
    /// A path template: literal segments, `{param}` for one segment and a
    /// final `{*rest}` for the remainder.
    #[serde(default)]
    pub path: Option<String>,
    /// A path prefix: matches the prefix itself and everything below it; the
    /// remainder is available to rewrites as `{rest}`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Allowed methods (default: all).
    #[serde(default)]
    pub methods: Vec<String>,
    /// Required host (`api.example.com` or `*.example.com`), port ignored.
    #[serde(default)]
    pub host: Option<String>,
    /// Required request headers and their exact values, e.g. `{ "api-version" = "2" }`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Where matching requests go.
    pub target: TargetConfig,
    /// An optional weighted second target.
    #[serde(default)]
    pub canary: Option<CanaryConfig>,
    /// Who may call the route.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// Token-bucket limits.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    /// Cross-origin rules; preflights are answered by the gateway.
    #[serde(default)]
    pub cors: Option<CorsConfig>,
    /// Time allowed for the target to answer with its response head
    /// (default `"30s"`), per attempt; past it the client gets 504.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Largest request body (default `"10MiB"`); larger ones get 413.
    #[serde(default)]
    pub max_body: Option<String>,
    /// Overrides the gateway's `body_timeout` for this route.
    #[serde(default)]
    pub body_timeout: Option<String>,
    /// Changes to the request headers before they reach the target.
    #[serde(default)]
    pub request_headers: HeaderRewriteConfig,
    /// Changes to the response headers before they reach the client.
    #[serde(default)]
    pub response_headers: HeaderRewriteConfig,
    /// Retries for idempotent methods with an empty body (upstream targets).
    #[serde(default)]
    pub retry: Option<RetryConfig>,
    /// Circuit breaker for the route's upstream(s).
    #[serde(default)]
    pub breaker: Option<BreakerConfig>,
}

/// A target: exactly one of `function` or `upstream`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// A function of the app, called through [`crate::FunctionTarget`].
    #[serde(default)]
    pub function: Option<String>,
    /// An HTTP upstream base URL, e.g. `http://127.0.0.1:9000` or
    /// `http://10.0.0.5:8080/base`.
    #[serde(default)]
    pub upstream: Option<String>,
    /// Path sent to the target, with `{param}` placeholders from the route's
    /// path (default: the request path, appended to the upstream's base path).
    #[serde(default)]
    pub rewrite: Option<String>,
    /// Speak HTTP/2 (prior knowledge, h2c) to the upstream instead of HTTP/1.1.
    #[serde(default)]
    pub http2: bool,
}

/// A weighted canary: `weight` percent of requests go to `target`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryConfig {
    /// The canary target.
    pub target: TargetConfig,
    /// Percent of traffic (0–100, decimals allowed) sent to the canary.
    pub weight: f64,
    /// Sticky key: `"header:<name>"`, `"query:<name>"`, `"consumer"` or `"ip"`.
    /// The same key always lands on the same side.
    #[serde(default)]
    pub sticky: Option<String>,
}

/// Authentication for a route; every method that is turned on must pass.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Ask the host's [`crate::KeyCheck`] (function keys).
    #[serde(default)]
    pub function_keys: bool,
    /// Require a consumer API key in `x-api-key`.
    #[serde(default)]
    pub keys: bool,
    /// With `keys`: only these consumers may call the route (default: any).
    #[serde(default)]
    pub consumers: Vec<String>,
    /// Require a valid bearer JWT.
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
}

/// JWT validation rules.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Shared secret for HS256/HS384/HS512 tokens.
    #[serde(default)]
    pub hs256_secret: Option<String>,
    /// A JWKS file (RS256, ES256, ... public keys), re-read every `jwks_refresh`.
    #[serde(default)]
    pub jwks_file: Option<String>,
    /// A JWKS URL (`http://` only), fetched lazily and cached.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Required `iss`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Required `aud` (one of).
    #[serde(default)]
    pub audience: Option<String>,
    /// Scopes that must all be present in `scope` (space separated) or `scp`.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Claims that must be present with exactly these values.
    #[serde(default)]
    pub claims: BTreeMap<String, toml::Value>,
    /// Clock skew allowed for `exp`/`nbf` (default `"30s"`).
    #[serde(default)]
    pub leeway: Option<String>,
}

/// Token-bucket limits.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Rate per identified consumer (API key consumer or JWT `sub`), e.g. `"100/s"`.
    #[serde(default)]
    pub per_consumer: Option<String>,
    /// Rate per client IP, e.g. `"20/s"`.
    #[serde(default)]
    pub per_ip: Option<String>,
    /// Bucket size (default: the rate's count).
    #[serde(default)]
    pub burst: Option<u32>,
}

/// Cross-origin resource sharing.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Allowed origins, or `["*"]`.
    pub origins: Vec<String>,
    /// Allowed methods (default: the route's methods, or the common ones).
    #[serde(default)]
    pub methods: Vec<String>,
    /// Allowed request headers (default: those the preflight asks for).
    #[serde(default)]
    pub headers: Vec<String>,
    /// Response headers the browser may read.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Allow credentials (cookies); not allowed with `"*"`.
    #[serde(default)]
    pub credentials: bool,
    /// How long browsers may cache a preflight (default `"10m"`).
    #[serde(default)]
    pub max_age: Option<String>,
}

/// Header changes: `set` replaces, `add` appends, `remove` deletes.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderRewriteConfig {
    /// Headers set (replacing any existing value).
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Headers appended.
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    /// Headers removed.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// Retries for idempotent requests to an upstream.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Retries after the first try (so at most `1 + attempts` tries).
    pub attempts: u32,
    /// Wait before the first retry, doubled each time (default `"50ms"`).
    #[serde(default)]
    pub backoff: Option<String>,
}

/// Circuit breaker settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Failure ratio (0–1] over the window that opens the breaker (default 0.5).
    #[serde(default)]
    pub failure_ratio: Option<f64>,
    /// Calls needed in the window before the ratio counts (default 10).
    #[serde(default)]
    pub min_calls: Option<u32>,
    /// Length of the sliding window (default `"10s"`).
    #[serde(default)]
    pub window: Option<String>,
    /// How long the breaker stays open (default `"5s"`).
    #[serde(default)]
    pub open_for: Option<String>,
    /// Probe calls allowed while half-open; all must succeed to close (default 3).
    #[serde(default)]
    pub half_open_calls: Option<u32>,
}

/// A problem in the `[gateway]` table. The message names the route or
/// consumer, the key, what is wrong and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML itself does not parse or has the wrong shape.
    #[error("gust.toml [gateway]: {0}")]
    Toml(String),
    /// A route has a bad value.
    #[error("gateway route `{route}`: `{key}` {problem}; {fix}")]
    Route {
        /// The route's name.
        route: String,
        /// The offending key, e.g. `rate_limit.per_ip`.
        key: String,
        /// What is wrong.
        problem: String,
        /// How to fix it.
        fix: String,
    },
    /// A consumer has a bad value.
    #[error("gateway consumer `{consumer}`: `{key}` {problem}; {fix}")]
    Consumer {
        /// The consumer's name.
        consumer: String,
        /// The offending key.
        key: String,
        /// What is wrong.
        problem: String,
        /// How to fix it.
        fix: String,
    },
    /// A gateway-wide setting has a bad value.
    #[error("gateway: `{key}` {problem}; {fix}")]
    Gateway {
        /// The offending key.
        key: String,
        /// What is wrong.
        problem: String,
        /// How to fix it.
        fix: String,
    },
}

impl ConfigError {
    pub(crate) fn route(
        route: &str,
        key: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        ConfigError::Route {
            route: route.to_string(),
            key: key.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    pub(crate) fn gateway(
        key: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        ConfigError::Gateway {
            key: key.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    gateway: Option<GatewayConfig>,
}

impl GatewayConfig {
    /// Reads the `[gateway]` table from a whole `gust.toml` (other tables are
    /// ignored; a manifest without `[gateway]` gives an empty config).
    pub fn from_manifest(text: &str) -> Result<Self, ConfigError> {
        let m: Manifest = toml::from_str(text).map_err(|e| ConfigError::Toml(e.to_string()))?;
        Ok(m.gateway.unwrap_or_default())
    }
}
