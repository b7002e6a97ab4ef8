//! Who may call a route: function keys (via the host), consumer API keys
//! and JWTs. Every method a route turns on must pass.

pub(crate) mod jwks;
mod jwt;

use std::collections::HashMap;
use std::sync::Arc;

use http::StatusCode;
use http::request::Parts;

pub(crate) use jwks::JwksCache;
pub(crate) use jwt::JwtValidator;

/// The host's check of function keys, used by routes with
/// `auth = { function_keys = true }`.
///
/// The gateway passes the route name, the function the route targets (if
/// any) and the request head; the host looks for its key wherever it
/// accepts one (`x-functions-key`, `?code=`...) and answers `Err(reason)`
/// to refuse with 401.
pub trait KeyCheck: Send + Sync + 'static {
    /// Accepts or refuses the request.
    fn check(&self, route: &str, function: Option<&str>, request: &Parts) -> Result<(), String>;
}

impl<F> KeyCheck for F
where
    F: Fn(&str, Option<&str>, &Parts) -> Result<(), String> + Send + Sync + 'static,
{
    fn check(&self, route: &str, function: Option<&str>, request: &Parts) -> Result<(), String> {
        self(route, function, request)
    }
}

/// A refused request: status (401/403/503), a short code and a reason.
#[derive(Debug, Clone)]
pub(crate) struct AuthFailure {
    pub status: StatusCode,
    pub code: &'static str,
    pub reason: String,
}

impl AuthFailure {
    pub fn unauthorized(reason: impl Into<String>) -> Self {
        AuthFailure {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            reason: reason.into(),
        }
    }

    pub fn forbidden(reason: impl Into<String>) -> Self {
        AuthFailure {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            reason: reason.into(),
        }
    }
}

/// API keys of all consumers: key -> consumer name.
#[derive(Debug, Default)]
pub(crate) struct ConsumerKeys {
    by_key: HashMap<String, Arc<str>>,
}

impl ConsumerKeys {
    pub fn insert(&mut self, key: String, consumer: Arc<str>) -> Option<Arc<str>> {
        self.by_key.insert(key, consumer)
    }

    /// The consumer owning `key`.
    pub fn lookup(&self, key: &str) -> Option<&Arc<str>> {
        self.by_key.get(key)
    }
}

/// A route's compiled auth rules.
pub(crate) struct RouteAuth {
    pub function_keys: bool,
    pub keys: bool,
    /// With `keys`: allowed consumers (empty: any).
    pub consumers: Vec<String>,
    pub jwt: Option<JwtValidator>,
}

impl RouteAuth {
    /// Checks the request; returns the consumer identified (API key consumer,
    /// else JWT `sub`).
    pub async fn check(
        &self,
        route: &str,
        function: Option<&str>,
        parts: &Parts,
        keys: &ConsumerKeys,
        key_check: Option<&Arc<dyn KeyCheck>>,
    ) -> Result<Option<Arc<str>>, AuthFailure> {
        let mut consumer = None;
        if self.function_keys {
            let Some(kc) = key_check else {
                tracing::error!(
                    route,
                    "route needs function keys but the host gave no key check"
                );
                return Err(AuthFailure::unauthorized("function keys cannot be checked"));
            };
            kc.check(route, function, parts)
                .map_err(AuthFailure::unauthorized)?;
        }
        if self.keys {
            let key = parts
                .headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| AuthFailure::unauthorized("missing API key in x-api-key"))?;
            let name = keys
                .lookup(key)
                .ok_or_else(|| AuthFailure::unauthorized("unknown API key"))?;
            if !self.consumers.is_empty() && !self.consumers.iter().any(|c| **c == **name) {
                return Err(AuthFailure::forbidden(format!(
                    "consumer `{name}` may not call this route"
                )));
            }
            consumer = Some(name.clone());
        }
        if let Some(jwt) = &self.jwt {
            let sub = jwt.validate(&parts.headers).await?;
            if consumer.is_none() {
                consumer = sub.map(Arc::from);
            }
        }
        Ok(consumer)
    }
}
