//! Gust's API gateway: one entry point that routes requests to functions or
//! HTTP upstreams, with versions and canaries, API keys and JWTs, rate
//! limits, CORS, header and path rewriting, retries and circuit breakers.
//!
//! It is a plain hyper/tower service and knows nothing of Wasm: the host
//! hands it a [`FunctionTarget`] that invokes functions, and optionally a
//! [`KeyCheck`] for function keys.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # async fn run(text: &str, functions: Arc<dyn gust_gateway::FunctionTarget>) -> Result<(), Box<dyn std::error::Error>> {
//! let config = gust_gateway::GatewayConfig::from_manifest(text)?;
//! let gateway = gust_gateway::Gateway::new(config, functions)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! gust_gateway::serve(listener, gateway.clone()).await?; // or gateway.handle(req, addr)
//! # Ok(()) }
//! ```
//!
//! # Configuration (`[gateway]` in `gust.toml`)
//!
//! ```toml
//! [gateway]
//! max_header_bytes = "16KiB"   # larger request heads get 431
//! body_timeout = "30s"         # a request body stalling this long gets 408
//! header_timeout = "10s"       # slow request heads are dropped (serve())
//! trust_forwarded_for = false  # client IP from X-Forwarded-For (behind a trusted proxy only)
//! jwks_refresh = "5m"          # JWKS cache lifetime
//!
//! [[gateway.consumer]]
//! name = "mobile"
//! key = "k_live_0123456789abcdef"      # sent as `x-api-key`; `keys = [..]` for rotation
//! rate_limit = "600/m"                 # the consumer's plan: one bucket across all routes
//!
//! [[gateway.route]]                     # routes are tried in order; first match wins
//! name = "orders-v1"
//! path = "/api/v1/orders/{*rest}"       # {param} = one segment, {*rest} = the remainder
//! # prefix = "/api"                     # instead of path: the prefix and all below ({rest})
//! methods = ["GET", "POST"]             # default: all (405 + Allow when only the method differs)
//! host = "api.example.com"              # or "*.example.com"; port ignored
//! headers = { "api-version" = "2" }     # exact header values required
//! target = { upstream = "http://127.0.0.1:9000", rewrite = "/orders/{rest}" }
//! # target = { function = "orders-v1" }  # or a function; `http2 = true` for h2c upstreams
//! canary = { target = { function = "orders-v2" }, weight = 10, sticky = "header:x-user" }
//! #   sticky: "header:<name>" | "query:<name>" | "consumer" | "ip"; without it: random split
//! auth = { keys = true, consumers = ["mobile"] }
//! # auth = { function_keys = true }      # checked by the host's KeyCheck
//! # auth = { jwt = { hs256_secret = "...", jwks_file = "jwks.json", jwks_url = "http://idp/jwks",
//! #          issuer = "https://idp", audience = "orders", scopes = ["orders:read"],
//! #          claims = { tenant = "acme" }, leeway = "30s" } }
//! rate_limit = { per_consumer = "100/s", per_ip = "20/s", burst = 40 }
//! cors = { origins = ["https://app.example"], methods = ["GET", "POST"], headers = ["content-type"],
//!          expose_headers = ["x-request-id"], credentials = false, max_age = "10m" }
//! timeout = "5s"                        # until the response head, per attempt -> 504
//! max_body = "1MiB"                     # -> 413
//! body_timeout = "10s"                  # overrides the gateway's
//! request_headers = { set = { "x-env" = "prod" }, add = {}, remove = ["cookie"] }
//! response_headers = { remove = ["server"] }
//! retry = { attempts = 2, backoff = "50ms" }  # idempotent methods with empty bodies; 502-504,
//!                                             # connect errors and timeouts; backoff doubles
//! breaker = { failure_ratio = 0.5, min_calls = 10, window = "10s", open_for = "5s", half_open_calls = 3 }
//! ```
//!
//! All auth methods turned on for a route must pass. Missing or invalid
//! credentials give 401, missing scopes/claims or a consumer not on the list
//! 403, with `{"error", "reason", "request_id"}`. The consumer (API key
//! consumer, else JWT `sub`) is passed on as `x-gust-consumer` and keys the
//! per-consumer limit. A consumer's own `rate_limit` (its plan) is one
//! bucket shared by every route on which it is identified; a request must
//! pass it and the route's limits, and the tightest decides the `RateLimit-*`
//! headers. Every upstream has one circuit breaker (defaults as
//! above); 5xx answers, connect errors and timeouts count as failures.
//! Requests whose path holds `.`/`..` segments (also percent-encoded) or
//! encoded separators are refused with 400, before and after rewriting.

#![warn(missing_docs)]

mod auth;
mod body;
mod breaker;
mod canary;
mod config;
mod cors;
mod gateway;
mod headers;
mod matcher;
mod proxy;
mod ratelimit;
mod rewrite;
mod route;
mod server;
mod status;
mod units;

pub use auth::KeyCheck;
pub use body::{Body, BoxError, boxed, empty, full};
pub use breaker::{BreakerSnapshot, BreakerState};
pub use config::{
    AuthConfig, BreakerConfig, CanaryConfig, ConfigError, ConsumerConfig, CorsConfig,
    GatewayConfig, HeaderRewriteConfig, JwtConfig, RateLimitConfig, RetryConfig, RouteConfig,
    TargetConfig,
};
pub use gateway::{BoxFuture, FunctionTarget, Gateway, GatewayService, NoFunctions};
pub use server::serve;
pub use status::{GatewayStatus, GlobalStatus, Responses, RouteStatus, UpstreamStatus};
