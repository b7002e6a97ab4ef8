//! Header rewriting and proxy header hygiene.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Compiled `request_headers` / `response_headers` rules.
#[derive(Debug, Default)]
pub(crate) struct HeaderRewrite {
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

impl HeaderRewrite {
    /// Builds the rules; `Err((key, problem))` names the bad entry.
    pub fn new(
        set: &std::collections::BTreeMap<String, String>,
        add: &std::collections::BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<Self, (String, String)> {
        let pair = |group: &str, (k, v): (&String, &String)| {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                (
                    format!("{group}.{k}"),
                    "is not a valid header name".to_string(),
                )
            })?;
            let value = HeaderValue::from_str(v).map_err(|_| {
                (
                    format!("{group}.{k}"),
                    format!("`{v}` is not a valid header value"),
                )
            })?;
            Ok::<_, (String, String)>((name, value))
        };
        Ok(HeaderRewrite {
            set: set
                .iter()
                .map(|e| pair("set", e))
                .collect::<Result<_, _>>()?,
            add: add
                .iter()
                .map(|e| pair("add", e))
                .collect::<Result<_, _>>()?,
            remove: remove
                .iter()
                .map(|k| {
                    HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                        (
                            format!("remove `{k}`"),
                            "is not a valid header name".to_string(),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        })
    }

    /// Applies removals, then sets, then additions.
    pub fn apply(&self, h: &mut HeaderMap) {
        for name in &self.remove {
            h.remove(name);
        }
        for (name, value) in &self.set {
            h.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            h.append(name.clone(), value.clone());
        }
    }
}

/// A `static`, not a `const`: a const array of `HeaderName`s would be built
/// and dropped again at every use, and [`is_hop_by_hop`] runs for every
/// header of every request and response.
static HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
];

/// Whether `n` is a header [`strip_hop_by_hop`] may remove or rewrite.
fn is_hop_by_hop(n: &HeaderName) -> bool {
    *n == header::TRANSFER_ENCODING || *n == header::UPGRADE || HOP_BY_HOP.contains(n)
}

/// Removes hop-by-hop headers (and those named in `Connection`). With
/// `upgrade`, keeps `Connection: upgrade` and `Upgrade` for WebSockets.
pub(crate) fn strip_hop_by_hop(h: &mut HeaderMap, upgrade: bool) {
    // Most requests and responses carry none of them: one pass over the
    // names is cheaper than a hashed removal per hop-by-hop name.
    if !upgrade && !h.keys().any(is_hop_by_hop) {
        return;
    }
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .filter(|n| !(upgrade && *n == header::UPGRADE))
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in &HOP_BY_HOP {
        h.remove(n);
    }
    h.remove(header::TRANSFER_ENCODING);
    if upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        h.remove(header::UPGRADE);
    }
}

/// Whether a request asks for a protocol upgrade (WebSocket).
pub(crate) fn wants_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE)
        && h.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
        })
}

/// Total size of a header block as HTTP/2 counts it (name + value + 32 each).
pub(crate) fn header_bytes(h: &HeaderMap) -> usize {
    h.iter().map(|(n, v)| n.as_str().len() + v.len() + 32).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrite_and_hop_by_hop() {
        let mut set = std::collections::BTreeMap::new();
        set.insert("x-a".to_string(), "1".to_string());
        let mut add = std::collections::BTreeMap::new();
        add.insert("x-b".to_string(), "2".to_string());
        let r = HeaderRewrite::new(&set, &add, &["x-secret".to_string()]).unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-a", HeaderValue::from_static("0"));
        h.insert("x-b", HeaderValue::from_static("1"));
        h.insert("x-secret", HeaderValue::from_static("s"));
        r.apply(&mut h);
        assert_eq!(h["x-a"], "1");
        assert_eq!(h.get_all("x-b").iter().count(), 2);
        assert!(!h.contains_key("x-secret"));
        assert!(
            HeaderRewrite::new(
                &Default::default(),
                &Default::default(),
                &["bad name".into()]
            )
            .is_err()
        );

        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-hop, Upgrade"),
        );
        h.insert("x-hop", HeaderValue::from_static("1"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("te", HeaderValue::from_static("trailers"));
        assert!(wants_upgrade(&h));
        for n in &HOP_BY_HOP {
            assert!(is_hop_by_hop(n), "{n}");
        }
        assert!(!is_hop_by_hop(&header::HOST));
        assert!(!is_hop_by_hop(&HeaderName::from_static("x-keep-alive")));
        let mut plain = h.clone();
        strip_hop_by_hop(&mut plain, false);
        assert!(plain.is_empty(), "{plain:?}");
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
        assert!(!h.contains_key("x-hop"));
    }
}
