//! Request matching: path templates and prefixes, hosts, headers, methods.

use http::{HeaderMap, HeaderName, HeaderValue, Method};

/// Values captured from the path, still percent-encoded as received.
pub(crate) type Params = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Segment {
    Literal(String),
    Param(String),
    Rest(String),
}

/// How a route matches the request path.
#[derive(Debug, Clone)]
pub(crate) enum PathPattern {
    /// `path = "/a/{id}/{*rest}"`.
    Template(Vec<Segment>),
    /// `prefix = "/api"`; captures the remainder as `rest`.
    Prefix(String),
    /// Neither given: every path.
    Any,
}

impl PathPattern {
    /// Parses a template such as `/api/v1/orders/{id}` or `/files/{*rest}`.
    pub fn template(text: &str) -> Result<Self, String> {
        let Some(body) = text.strip_prefix('/') else {
            return Err(format!("`{text}` must start with `/`"));
        };
        let parts: Vec<&str> = if body.is_empty() {
            Vec::new()
        } else {
            body.split('/').collect()
        };
        let mut segments = Vec::with_capacity(parts.len());
        let mut names = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let seg = if let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}'))
            {
                let (rest, name) = match inner.strip_prefix('*') {
                    Some(n) => (true, n),
                    None => (false, inner),
                };
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!(
                        "`{{{inner}}}` in `{text}` is not a valid parameter name"
                    ));
                }
                if names.contains(&name) {
                    return Err(format!("parameter `{name}` appears twice in `{text}`"));
                }
                names.push(name);
                if rest {
                    if i + 1 != parts.len() {
                        return Err(format!(
                            "`{{*{name}}}` must be the last segment of `{text}`"
                        ));
                    }
                    Segment::Rest(name.to_string())
                } else {
                    Segment::Param(name.to_string())
                }
            } else if part.contains('{') || part.contains('}') {
                return Err(format!(
                    "segment `{part}` of `{text}` mixes text and a parameter; a parameter must be a whole segment"
                ));
            } else {
                Segment::Literal((*part).to_string())
            };
            segments.push(seg);
        }
        Ok(PathPattern::Template(segments))
    }

    /// Parses a prefix such as `/api`.
    pub fn prefix(text: &str) -> Result<Self, String> {
        if !text.starts_with('/') {
            return Err(format!("`{text}` must start with `/`"));
        }
        if text.contains('{') {
            return Err(format!(
                "`{text}` is a prefix and cannot hold parameters; use `path` for templates"
            ));
        }
        Ok(PathPattern::Prefix(text.trim_end_matches('/').to_string()))
    }

    /// The parameter names this pattern captures.
    pub fn param_names(&self) -> Vec<&str> {
        match self {
            PathPattern::Template(segs) => segs
                .iter()
                .filter_map(|s| match s {
                    Segment::Param(n) | Segment::Rest(n) => Some(n.as_str()),
                    Segment::Literal(_) => None,
                })
                .collect(),
            PathPattern::Prefix(_) => vec!["rest"],
            PathPattern::Any => vec!["rest"],
        }
    }

    /// Matches a request path (without query), returning the captures.
    pub fn matches(&self, path: &str) -> Option<Params> {
        match self {
            PathPattern::Any => Some(vec![("rest".into(), path.trim_start_matches('/').into())]),
            PathPattern::Prefix(prefix) => {
                let rest = path.strip_prefix(prefix.as_str())?;
                if rest.is_empty() || rest.starts_with('/') || prefix.is_empty() {
                    Some(vec![("rest".into(), rest.trim_start_matches('/').into())])
                } else {
                    None
                }
            }
            PathPattern::Template(segs) => {
                let mut rest = path.strip_prefix('/')?;
                let mut params = Vec::new();
                for (i, seg) in segs.iter().enumerate() {
                    if let Segment::Rest(name) = seg {
                        params.push((name.clone(), rest.to_string()));
                        return Some(params);
                    }
                    let (part, tail, more) = match rest.split_once('/') {
                        Some((p, t)) => (p, t, true),
                        None => (rest, "", false),
                    };
                    match seg {
                        Segment::Literal(l) if l == part => {}
                        Segment::Param(name) if !part.is_empty() => {
                            params.push((name.clone(), part.to_string()));
                        }
                        _ => return None,
                    }
                    let last = i + 1 == segs.len();
                    if last {
                        return (!more).then_some(params);
                    }
                    if !more {
                        // Only a trailing `{*rest}` may match nothing more.
                        return match &segs[i + 1] {
                            Segment::Rest(name) if i + 2 == segs.len() => {
                                params.push((name.clone(), String::new()));
                                Some(params)
                            }
                            _ => None,
                        };
                    }
                    rest = tail;
                }
                // An empty template (`/`) matches only the root.
                (segs.is_empty() && rest.is_empty()).then_some(params)
            }
        }
    }
}

/// A required host: exact (`api.example.com`) or a wildcard (`*.example.com`).
#[derive(Debug, Clone)]
pub(crate) enum HostPattern {
    Exact(String),
    Suffix(String),
}

impl HostPattern {
    pub fn parse(text: &str) -> Self {
        let t = text.trim().to_ascii_lowercase();
        match t.strip_prefix("*.") {
            Some(s) => HostPattern::Suffix(format!(".{s}")),
            None => HostPattern::Exact(t),
        }
    }

    /// Matches a host (port already stripped, any case).
    pub fn matches(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        match self {
            HostPattern::Exact(h) => *h == host,
            HostPattern::Suffix(s) => host.ends_with(s.as_str()) && host.len() > s.len(),
        }
    }
}

/// Everything a route requires of a request besides its path.
#[derive(Debug, Clone, Default)]
pub(crate) struct Conditions {
    pub methods: Vec<Method>,
    pub host: Option<HostPattern>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Conditions {
    /// Host and header conditions (methods are checked separately so a
    /// mismatch can become 405).
    pub fn matches_host_and_headers(&self, host: Option<&str>, headers: &HeaderMap) -> bool {
        if let Some(p) = &self.host {
            match host {
                Some(h) if p.matches(h) => {}
                _ => return false,
            }
        }
        self.headers
            .iter()
            .all(|(name, value)| headers.get_all(name).iter().any(|v| v == value))
    }

    /// Whether the method is allowed.
    pub fn allows(&self, method: &Method) -> bool {
        self.methods.is_empty()
            || self.methods.contains(method)
            || (*method == Method::HEAD && self.methods.contains(&Method::GET))
    }
}

/// The request's host without port: the URI authority (HTTP/2) or `Host`.
pub(crate) fn request_host<'a>(uri: &'a http::Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    let raw = uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| headers.get(http::header::HOST)?.to_str().ok())?;
    let raw = raw.rsplit_once('@').map_or(raw, |(_, h)| h);
    if raw.starts_with('[') {
        return Some(
            raw.split_once(']')
                .map_or(raw, |(h, _)| h)
                .trim_start_matches('['),
        );
    }
    Some(raw.split_once(':').map_or(raw, |(h, _)| h))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(p: &'a Params, k: &str) -> &'a str {
        &p.iter().find(|(n, _)| n == k).unwrap().1
    }

    #[test]
    fn templates() {
        let p = PathPattern::template("/api/v1/orders/{id}").unwrap();
        assert_eq!(get(&p.matches("/api/v1/orders/42").unwrap(), "id"), "42");
        assert!(p.matches("/api/v1/orders").is_none());
        assert!(p.matches("/api/v1/orders/").is_none());
        assert!(p.matches("/api/v1/orders/42/x").is_none());
        assert!(p.matches("/api/v2/orders/42").is_none());

        let r = PathPattern::template("/api/v1/orders/{*rest}").unwrap();
        assert_eq!(
            get(&r.matches("/api/v1/orders/1/items").unwrap(), "rest"),
            "1/items"
        );
        assert_eq!(get(&r.matches("/api/v1/orders/").unwrap(), "rest"), "");
        assert_eq!(get(&r.matches("/api/v1/orders").unwrap(), "rest"), "");
        assert!(r.matches("/api/v1/ordersx").is_none());

        let root = PathPattern::template("/").unwrap();
        assert!(root.matches("/").is_some());
        assert!(root.matches("/a").is_none());

        let two = PathPattern::template("/u/{user}/f/{file}").unwrap();
        let m = two.matches("/u/ann/f/x.txt").unwrap();
        assert_eq!((get(&m, "user"), get(&m, "file")), ("ann", "x.txt"));
    }

    #[test]
    fn bad_templates() {
        assert!(PathPattern::template("api").is_err());
        assert!(PathPattern::template("/a/{*rest}/b").is_err());
        assert!(PathPattern::template("/a/x{id}").is_err());
        assert!(PathPattern::template("/a/{id}/{id}").is_err());
        assert!(PathPattern::template("/a/{}").is_err());
        assert!(PathPattern::prefix("/a/{id}").is_err());
    }

    #[test]
    fn prefixes() {
        let p = PathPattern::prefix("/api/").unwrap();
        assert_eq!(get(&p.matches("/api").unwrap(), "rest"), "");
        assert_eq!(get(&p.matches("/api/x/y").unwrap(), "rest"), "x/y");
        assert!(p.matches("/apix").is_none());
        let root = PathPattern::prefix("/").unwrap();
        assert_eq!(get(&root.matches("/a/b").unwrap(), "rest"), "a/b");
    }

    #[test]
    fn hosts_headers_methods() {
        let c = Conditions {
            methods: vec![Method::GET],
            host: Some(HostPattern::parse("*.example.com")),
            headers: vec![(
                HeaderName::from_static("api-version"),
                HeaderValue::from_static("2"),
            )],
        };
        let mut h = HeaderMap::new();
        h.insert("api-version", HeaderValue::from_static("2"));
        assert!(c.matches_host_and_headers(Some("API.example.com"), &h));
        assert!(!c.matches_host_and_headers(Some("example.com"), &h));
        assert!(!c.matches_host_and_headers(None, &h));
        h.insert("api-version", HeaderValue::from_static("1"));
        assert!(!c.matches_host_and_headers(Some("a.example.com"), &h));
        assert!(c.allows(&Method::GET) && c.allows(&Method::HEAD) && !c.allows(&Method::POST));

        let uri: http::Uri = "/x".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("api.example.com:8443"));
        assert_eq!(request_host(&uri, &h), Some("api.example.com"));
        h.insert("host", HeaderValue::from_static("[::1]:80"));
        assert_eq!(request_host(&uri, &h), Some("::1"));
    }
}
