//! Path safety and path rewriting.

use crate::matcher::Params;

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnsafePath {
    /// A `..` or `.` segment, plain or percent-encoded.
    DotSegment,
    /// An encoded `/`, `\` or NUL that could hide a traversal.
    EncodedSeparator,
    /// Bad percent-encoding.
    BadEncoding,
}

impl UnsafePath {
    pub fn reason(self) -> &'static str {
        match self {
            UnsafePath::DotSegment => "path contains a `.` or `..` segment",
            UnsafePath::EncodedSeparator => "path contains an encoded `/`, `\\` or NUL",
            UnsafePath::BadEncoding => "path contains invalid percent-encoding",
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes one path segment (bytes; may not be UTF-8).
fn decode(segment: &str) -> Result<Vec<u8>, UnsafePath> {
    let b = segment.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(UnsafePath::BadEncoding);
            };
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Refuses paths that could escape a rewrite's base: dot segments (plain or
/// encoded, also `%2e%2e`), encoded separators and NUL, backslashes.
pub(crate) fn check_path(path: &str) -> Result<(), UnsafePath> {
    for segment in path.split('/') {
        if !segment.contains('%') && !segment.contains('.') && !segment.contains('\\') {
            continue;
        }
        let decoded = decode(segment)?;
        if decoded == b".." || decoded == b"." {
            return Err(UnsafePath::DotSegment);
        }
        if decoded.iter().any(|&c| c == b'/' || c == b'\\' || c == 0) {
            // A raw backslash is also a separator to some servers.
            return Err(if segment.contains('\\') {
                UnsafePath::DotSegment
            } else {
                UnsafePath::EncodedSeparator
            });
        }
    }
    Ok(())
}

/// Fills `{name}` placeholders of a rewrite template with captured values.
pub(crate) fn fill(template: &str, params: &Params) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let name = after[..close].trim_start_matches('*');
                if let Some((_, v)) = params.iter().find(|(n, _)| n == name) {
                    out.push_str(v);
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    // `/orders/{rest}` with an empty rest gives `/orders/`; collapse `//`.
    while out.contains("//") {
        out = out.replace("//", "/");
    }
    if !out.starts_with('/') {
        out.insert(0, '/');
    }
    out
}

/// The placeholder names used in a rewrite template.
pub(crate) fn placeholders(template: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        names.push(after[..close].trim_start_matches('*').to_string());
        rest = &after[close + 1..];
    }
    names
}

/// Joins an upstream base path and a request path.
pub(crate) fn join(base: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    if path.starts_with('/') {
        format!("{base}{path}")
    } else {
        format!("{base}/{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_refused() {
        assert!(check_path("/api/v1/orders/1").is_ok());
        assert!(check_path("/files/a.b/c..d").is_ok());
        assert!(check_path("/a%20b").is_ok());
        for bad in [
            "/a/../b",
            "/a/..",
            "/a/./b",
            "/a/%2e%2e/b",
            "/a/%2E./b",
            "/a/.%2e",
            "/a/%2e",
        ] {
            assert_eq!(check_path(bad), Err(UnsafePath::DotSegment), "{bad}");
        }
        assert_eq!(
            check_path("/a/..%2f..%2fetc"),
            Err(UnsafePath::EncodedSeparator)
        );
        assert_eq!(check_path("/a/%5c..%5c"), Err(UnsafePath::EncodedSeparator));
        assert_eq!(check_path("/a/x%00"), Err(UnsafePath::EncodedSeparator));
        assert_eq!(check_path("/a/..\\b"), Err(UnsafePath::DotSegment));
        assert_eq!(check_path("/a/%zz"), Err(UnsafePath::BadEncoding));
    }

    #[test]
    fn rewrites() {
        let p: Params = vec![("rest".into(), "1/items".into()), ("id".into(), "7".into())];
        assert_eq!(fill("/orders/{rest}", &p), "/orders/1/items");
        assert_eq!(fill("/o/{id}/x", &p), "/o/7/x");
        let empty: Params = vec![("rest".into(), String::new())];
        assert_eq!(fill("/orders/{rest}", &empty), "/orders/");
        assert_eq!(fill("{rest}", &p), "/1/items");
        assert_eq!(placeholders("/a/{id}/{*rest}"), vec!["id", "rest"]);
        assert_eq!(join("/base/", "/x"), "/base/x");
        assert_eq!(join("", "/x"), "/x");
    }

    mod props {
        use super::super::{check_path, fill};
        use crate::matcher::PathPattern;
        use proptest::prelude::*;

        /// Path pieces a hostile client sends.
        fn piece() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("..".to_string()),
                Just(".".to_string()),
                Just("%2e%2e".to_string()),
                Just("%2E%2e".to_string()),
                Just(".%2e".to_string()),
                Just("%2f".to_string()),
                Just("%5C".to_string()),
                Just("\\".to_string()),
                Just("%00".to_string()),
                Just("%".to_string()),
                Just("%zz".to_string()),
                Just("".to_string()),
                "[a-z0-9.%]{1,6}",
                ".{0,3}",
            ]
        }

        fn path() -> impl Strategy<Value = String> {
            prop::collection::vec(piece(), 0..6).prop_map(|p| format!("/{}", p.join("/")))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Any template text parses or is refused; any path against a
            /// parsed one matches or not, without a panic.
            #[test]
            fn templates_and_paths_never_panic(template in "[a-z/{}*]{0,16}", path in path()) {
                if let Ok(pattern) = PathPattern::template(&template) {
                    let _ = pattern.matches(&path);
                }
            }

            /// Captured values put into a rewrite either give a path that
            /// cannot climb above the upstream's base once decoded, or are
            /// refused.
            #[test]
            fn rewritten_paths_never_climb(path in path(), rewrite in "(/[a-z]{1,3}|/\\{id\\}|/\\{rest\\}){1,4}") {
                // Only what arrives in a request: a path `http` accepts.
                prop_assume!(http::Uri::try_from(format!("/api{path}")).is_ok());
                let pattern = PathPattern::template("/api/{id}/{*rest}").unwrap();
                let Some(params) = pattern.matches(&format!("/api{path}")) else {
                    return Ok(());
                };
                let filled = fill(&rewrite, &params);
                if check_path(&filled).is_ok() {
                    let decoded = crate::rewrite::decode(&filled).unwrap();
                    let decoded = String::from_utf8_lossy(&decoded);
                    for segment in decoded.split('/') {
                        prop_assert!(segment != ".." && segment != ".", "{filled} -> {decoded}");
                        prop_assert!(!segment.contains(['\\', '\0']), "{filled}");
                    }
                }
            }
        }
    }
}
