//! Bearer JWT validation with required issuer, audience, claims and scopes.

use std::sync::Arc;

use http::HeaderMap;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::{AuthFailure, JwksCache};

/// A route's JWT rules.
pub(crate) struct JwtValidator {
    pub secret: Option<DecodingKey>,
    pub jwks: Option<Arc<JwksCache>>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub scopes: Vec<String>,
    pub claims: Vec<(String, Value)>,
    pub leeway_secs: u64,
}

fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

fn describe(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::ImmatureSignature => "token not valid yet",
        ErrorKind::InvalidSignature => "token signature is invalid",
        ErrorKind::InvalidIssuer => "token issuer is not accepted",
        ErrorKind::InvalidAudience => "token audience is not accepted",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "token algorithm is not accepted"
        }
        ErrorKind::MissingRequiredClaim(_) => "token lacks a required claim (exp)",
        ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidKeyFormat => {
            "token signature is invalid"
        }
        _ => "token is malformed",
    }
}

/// All scopes granted by `scope` (space separated), `scp` or `scopes`.
fn granted_scopes(claims: &Value) -> Vec<&str> {
    let mut out = Vec::new();
    for name in ["scope", "scp", "scopes"] {
        match claims.get(name) {
            Some(Value::String(s)) => out.extend(s.split_whitespace()),
            Some(Value::Array(a)) => out.extend(a.iter().filter_map(Value::as_str)),
            _ => {}
        }
    }
    out
}

impl JwtValidator {
    /// Validates the bearer token; returns its `sub`.
    pub async fn validate(&self, headers: &HeaderMap) -> Result<Option<String>, AuthFailure> {
        let token = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| AuthFailure::unauthorized("missing bearer token"))?;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthFailure::unauthorized(describe(e.kind())))?;

        let keys: Vec<DecodingKey> = if is_hmac(header.alg) {
            match &self.secret {
                Some(k) => vec![k.clone()],
                None => return Err(AuthFailure::unauthorized("token algorithm is not accepted")),
            }
        } else {
            match &self.jwks {
                Some(jwks) => jwks.keys(header.kid.as_deref()).await.map_err(|e| {
                    tracing::warn!(error = %e, "JWKS unavailable");
                    AuthFailure {
                        status: http::StatusCode::SERVICE_UNAVAILABLE,
                        code: "jwks_unavailable",
                        reason: "signing keys are unavailable".into(),
                    }
                })?,
                None => return Err(AuthFailure::unauthorized("token algorithm is not accepted")),
            }
        };
        if keys.is_empty() {
            return Err(AuthFailure::unauthorized("token signing key is unknown"));
        }

        let mut v = Validation::new(header.alg);
        v.leeway = self.leeway_secs;
        match &self.audience {
            Some(a) => v.set_audience(&[a]),
            None => v.validate_aud = false,
        }
        if let Some(iss) = &self.issuer {
            v.set_issuer(&[iss]);
        }
        v.validate_nbf = true;

        let mut last = ErrorKind::InvalidSignature;
        let mut claims = None;
        for key in &keys {
            match jsonwebtoken::decode::<Value>(token, key, &v) {
                Ok(data) => {
                    claims = Some(data.claims);
                    break;
                }
                Err(e) => {
                    let kind = e.into_kind();
                    // Another key of the set may still match the signature.
                    let try_next = matches!(
                        kind,
                        ErrorKind::InvalidSignature
                            | ErrorKind::InvalidAlgorithm
                            | ErrorKind::InvalidEcdsaKey
                            | ErrorKind::InvalidRsaKey(_)
                            | ErrorKind::InvalidKeyFormat
                    );
                    last = kind;
                    if !try_next {
                        break;
                    }
                }
            }
        }
        let claims = claims.ok_or_else(|| AuthFailure::unauthorized(describe(&last)))?;

        let granted = granted_scopes(&claims);
        if let Some(missing) = self.scopes.iter().find(|s| !granted.contains(&s.as_str())) {
            return Err(AuthFailure::forbidden(format!(
                "token lacks scope `{missing}`"
            )));
        }
        for (name, want) in &self.claims {
            let ok = match claims.get(name) {
                Some(Value::Array(a)) if !want.is_array() => a.contains(want),
                Some(have) => have == want,
                None => false,
            };
            if !ok {
                return Err(AuthFailure::forbidden(format!(
                    "token claim `{name}` does not have the required value"
                )));
            }
        }
        Ok(claims.get("sub").and_then(Value::as_str).map(String::from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scopes_from_all_claim_styles() {
        let c = json!({"scope": "a b", "scp": ["c"], "scopes": "d"});
        assert_eq!(granted_scopes(&c), vec!["a", "b", "c", "d"]);
        assert!(granted_scopes(&json!({})).is_empty());
    }
}
