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

    mod props {
        use super::*;
        use jsonwebtoken::{EncodingKey, Header};
        use proptest::prelude::*;

        const SECRET: &[u8] = b"a-test-secret-of-some-length";

        fn validator() -> JwtValidator {
            JwtValidator {
                secret: Some(DecodingKey::from_secret(SECRET)),
                jwks: None,
                issuer: Some("gust".into()),
                audience: Some("api".into()),
                scopes: vec!["read".into()],
                claims: vec![("tier".into(), json!("gold"))],
                leeway_secs: 5,
            }
        }

        fn validate(value: &str) -> Result<Option<String>, AuthFailure> {
            let mut headers = HeaderMap::new();
            if let Ok(v) = http::HeaderValue::from_str(value) {
                headers.insert(http::header::AUTHORIZATION, v);
            }
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(validator().validate(&headers))
        }

        /// A claim value of any JSON shape.
        fn value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                ".{0,12}".prop_map(Value::from),
                Just(json!("gust")),
                Just(json!("api")),
                Just(json!("read write")),
                Just(json!(4_102_444_800u64)),
            ];
            leaf.prop_recursive(2, 8, 4, |inner| {
                prop::collection::vec(inner, 0..4).prop_map(Value::from)
            })
        }

        fn claims() -> impl Strategy<Value = serde_json::Map<String, Value>> {
            let name = prop_oneof![
                Just("sub"),
                Just("exp"),
                Just("nbf"),
                Just("iss"),
                Just("aud"),
                Just("scope"),
                Just("scp"),
                Just("scopes"),
                Just("tier"),
                Just("x"),
            ];
            prop::collection::btree_map(name, value(), 0..10)
                .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(128))]

            /// Any header value is refused with a reason, never a panic.
            #[test]
            fn any_bearer_text_is_refused(text in ".{0,300}") {
                let refused = validate(&format!("Bearer {text}"));
                prop_assert!(refused.is_err());
            }

            /// Three base64url-ish parts of anything: refused.
            #[test]
            fn token_shaped_garbage_is_refused(
                parts in prop::collection::vec("[A-Za-z0-9_=-]{0,60}", 1..5)
            ) {
                let token = format!("Bearer {}", parts.join("."));
                prop_assert!(validate(&token).is_err());
            }

            /// Correctly signed tokens with claims of any shape are judged
            /// without a panic; the same claims under another key never pass.
            #[test]
            fn signed_claims_of_any_shape_are_judged(claims in claims()) {
                let claims = Value::Object(claims);
                let sign = |secret: &[u8]| {
                    jsonwebtoken::encode(
                        &Header::default(),
                        &claims,
                        &EncodingKey::from_secret(secret),
                    )
                    .unwrap()
                };
                let verdict = validate(&format!("Bearer {}", sign(SECRET)));
                if verdict.is_ok() {
                    prop_assert_eq!(&claims["iss"], &json!("gust"));
                    prop_assert_eq!(&claims["tier"], &json!("gold"));
                }
                let forged = format!("Bearer {}", sign(b"another-secret"));
                prop_assert!(validate(&forged).is_err());
            }
        }
    }
}
