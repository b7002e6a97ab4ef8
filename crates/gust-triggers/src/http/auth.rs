//! Authorisation levels: anonymous, function key, admin key.

use std::collections::BTreeMap;

use gust_manifest::AuthLevel;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// An app's secrets: the admin key (admin API and `admin` routes), the host
/// key (every `function` route, topic ingress) and one key per function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Keys {
    /// Grants everything, including the admin API.
    pub admin: String,
    /// Grants every function-level route of the app.
    pub host: String,
    /// Function name -> its own key.
    #[serde(default)]
    pub functions: BTreeMap<String, String>,
}

/// Why a request was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AuthFailure {
    /// No key was presented to a protected route.
    #[error("this route needs a key: send it as header `x-gust-key` or query `code`")]
    Missing,
    /// A key was presented but does not grant this route.
    #[error("the key does not grant access to this route")]
    Denied,
}

/// The key a request presents: header `x-gust-key`, else query `code`.
pub fn presented_key<'a>(headers: &'a http::HeaderMap, query: Option<&'a str>) -> Option<String> {
    if let Some(v) = headers.get("x-gust-key").and_then(|v| v.to_str().ok()) {
        return Some(v.to_string());
    }
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == "code")
        .map(|(_, v)| super::percent_decode(v))
}

/// Decides whether `presented` may call `function` at `level`.
pub fn authorize(
    level: AuthLevel,
    function: &str,
    presented: Option<&str>,
    keys: &Keys,
) -> Result<(), AuthFailure> {
    if level == AuthLevel::Anonymous {
        return Ok(());
    }
    let key = presented.ok_or(AuthFailure::Missing)?;
    let admin = constant_time_eq(key, &keys.admin);
    let granted = match level {
        AuthLevel::Anonymous => true,
        AuthLevel::Admin => admin,
        AuthLevel::Function => {
            admin
                || constant_time_eq(key, &keys.host)
                || keys
                    .functions
                    .get(function)
                    .is_some_and(|k| constant_time_eq(key, k))
        }
    };
    if granted {
        Ok(())
    } else {
        Err(AuthFailure::Denied)
    }
}

/// Compares without an early exit, so timing reveals nothing of the key.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() || b.is_empty() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys {
            admin: "A".into(),
            host: "H".into(),
            functions: [("f".to_string(), "F".to_string())].into(),
        }
    }

    #[test]
    fn levels() {
        let k = keys();
        assert_eq!(authorize(AuthLevel::Anonymous, "f", None, &k), Ok(()));
        assert_eq!(
            authorize(AuthLevel::Function, "f", None, &k),
            Err(AuthFailure::Missing)
        );
        for key in ["A", "H", "F"] {
            assert_eq!(authorize(AuthLevel::Function, "f", Some(key), &k), Ok(()));
        }
        assert_eq!(
            authorize(AuthLevel::Function, "g", Some("F"), &k),
            Err(AuthFailure::Denied)
        );
        assert_eq!(
            authorize(AuthLevel::Admin, "f", Some("H"), &k),
            Err(AuthFailure::Denied)
        );
        assert_eq!(authorize(AuthLevel::Admin, "f", Some("A"), &k), Ok(()));
        assert_eq!(
            authorize(AuthLevel::Function, "f", Some(""), &Keys::default()),
            Err(AuthFailure::Denied)
        );
    }

    #[test]
    fn key_from_header_or_query() {
        let mut h = http::HeaderMap::new();
        assert_eq!(
            presented_key(&h, Some("a=1&code=x%2By")),
            Some("x+y".into())
        );
        h.insert("x-gust-key", "hk".parse().unwrap());
        assert_eq!(presented_key(&h, Some("code=q")), Some("hk".into()));
        assert_eq!(presented_key(&http::HeaderMap::new(), None), None);
    }
}
