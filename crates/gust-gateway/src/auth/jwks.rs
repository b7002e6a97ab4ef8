//! JSON Web Key Sets from a file or an `http://` URL, cached and refreshed.

use std::path::PathBuf;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use http::Uri;
use http_body_util::BodyExt;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::JwkSet;

use crate::body;
use crate::proxy::HttpClient;

/// Where the keys come from.
#[derive(Debug, Clone)]
pub(crate) enum JwksSource {
    File(PathBuf),
    Url(Uri),
}

/// Never refetch more often than this, even for unknown `kid`s.
const MIN_REFETCH: Duration = Duration::from_secs(10);
/// A JWKS larger than this is refused.
const MAX_JWKS_BYTES: usize = 1 << 20;

type Keys = Vec<(Option<String>, DecodingKey)>;

/// A cached key set.
pub(crate) struct JwksCache {
    source: JwksSource,
    refresh: Duration,
    client: HttpClient,
    current: RwLock<Option<(std::sync::Arc<Keys>, Instant)>>,
    fetching: tokio::sync::Mutex<()>,
}

/// Parses a JWKS document into decoding keys (keys that cannot be used for
/// signatures are skipped).
pub(crate) fn parse_jwks(bytes: &[u8]) -> Result<Keys, String> {
    let set: JwkSet =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        match DecodingKey::from_jwk(jwk) {
            Ok(k) => keys.push((jwk.common.key_id.clone(), k)),
            Err(e) => tracing::warn!(kid = ?jwk.common.key_id, error = %e, "skipping unusable JWK"),
        }
    }
    Ok(keys)
}

impl JwksCache {
    pub fn new(source: JwksSource, refresh: Duration, client: HttpClient) -> Self {
        JwksCache {
            source,
            refresh,
            client,
            current: RwLock::new(None),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// Loads a file source now, so a bad file is a configuration error.
    pub fn preload(&self) -> Result<(), String> {
        if let JwksSource::File(path) = &self.source {
            let keys = load_file(path)?;
            *self.current.write().unwrap_or_else(|e| e.into_inner()) =
                Some((std::sync::Arc::new(keys), Instant::now()));
        }
        Ok(())
    }

    fn select(keys: &Keys, kid: Option<&str>) -> Vec<DecodingKey> {
        keys.iter()
            .filter(|(k, _)| kid.is_none() || k.as_deref() == kid)
            .map(|(_, d)| d.clone())
            .collect()
    }

    /// Keys that may have signed a token with this `kid` (all keys without one).
    pub async fn keys(&self, kid: Option<&str>) -> Result<Vec<DecodingKey>, String> {
        let cached = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some((keys, at)) = &cached {
            let selected = Self::select(keys, kid);
            if at.elapsed() < self.refresh && !selected.is_empty() {
                return Ok(selected);
            }
            if at.elapsed() < MIN_REFETCH {
                return Ok(selected);
            }
        }
        let _guard = self.fetching.lock().await;
        // Someone else may have refreshed while we waited.
        if let Some((keys, at)) = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            && cached.as_ref().is_none_or(|(_, old)| at > *old)
        {
            return Ok(Self::select(&keys, kid));
        }
        match self.fetch().await {
            Ok(keys) => {
                let selected = Self::select(&keys, kid);
                *self.current.write().unwrap_or_else(|e| e.into_inner()) =
                    Some((std::sync::Arc::new(keys), Instant::now()));
                Ok(selected)
            }
            Err(e) => match cached {
                // Keep serving the last good keys while the source is down.
                Some((keys, _)) => {
                    tracing::warn!(error = %e, "JWKS refresh failed; using cached keys");
                    *self.current.write().unwrap_or_else(|e| e.into_inner()) =
                        Some((keys.clone(), Instant::now()));
                    Ok(Self::select(&keys, kid))
                }
                None => Err(e),
            },
        }
    }

    async fn fetch(&self) -> Result<Keys, String> {
        match &self.source {
            JwksSource::File(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || load_file(&path))
                    .await
                    .map_err(|e| e.to_string())?
            }
            JwksSource::Url(uri) => {
                let req = http::Request::get(uri.clone())
                    .header(http::header::ACCEPT, "application/json")
                    .body(body::empty())
                    .map_err(|e| e.to_string())?;
                let resp = tokio::time::timeout(Duration::from_secs(10), self.client.request(req))
                    .await
                    .map_err(|_| format!("fetching {uri} timed out"))?
                    .map_err(|e| format!("fetching {uri}: {e}"))?;
                if !resp.status().is_success() {
                    return Err(format!("fetching {uri}: status {}", resp.status()));
                }
                let limited = http_body_util::Limited::new(resp.into_body(), MAX_JWKS_BYTES);
                let bytes = limited
                    .collect()
                    .await
                    .map_err(|e| format!("reading {uri}: {e}"))?
                    .to_bytes();
                parse_jwks(&bytes)
            }
        }
    }
}

fn load_file(path: &PathBuf) -> Result<Keys, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_jwks(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}
