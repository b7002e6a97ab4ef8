//! `outbound_http = ["http://127.0.0.1:*", "https://*.example.com/hooks"]`:
//! the destinations a function may call over HTTP, one rule each.
//!
//! A rule is `scheme://host[:port][/path-prefix]`:
//!
//! * `scheme` is `http` or `https` and must match exactly;
//! * `host` is a name or IP address (`[::1]` for IPv6), `*` for any host, or
//!   `*.example.com` for any subdomain of `example.com` (not `example.com`
//!   itself);
//! * `port` is a number or `*`; without one only the scheme's default port
//!   (80 or 443) is allowed;
//! * an optional path prefix limits the paths, segment by segment:
//!   `/hooks` allows `/hooks` and `/hooks/a`, not `/hooksx`; a request path
//!   with a `..` segment never matches a rule with a prefix.

use std::fmt;

/// One allowed outbound destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRule {
    text: String,
    https: bool,
    host: HostPattern,
    port: Option<u16>,
    path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    Exact(String),
    /// `*.example.com` stored as `.example.com`.
    Subdomain(String),
}

impl OutboundRule {
    /// Parses one rule; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (scheme, rest) = text.split_once("://").ok_or_else(|| {
            format!("`{text}` has no scheme; write `http://...` or `https://...`")
        })?;
        let https = match scheme {
            "http" => false,
            "https" => true,
            other => {
                return Err(format!(
                    "scheme `{other}` is not allowed; use http or https"
                ));
            }
        };
        if rest.contains(['?', '#', '@']) {
            return Err(format!(
                "`{text}` may not hold a query, fragment or user name"
            ));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i..])),
            None => (rest, None),
        };
        let (host, port) = split_host_port(authority)
            .ok_or_else(|| format!("`{text}` has a malformed host or port"))?;
        let host = host.to_ascii_lowercase();
        let host = if host == "*" {
            HostPattern::Any
        } else if let Some(domain) = host.strip_prefix("*.") {
            if !valid_host(domain) {
                return Err(format!("`{text}`: `{domain}` is not a host name"));
            }
            HostPattern::Subdomain(format!(".{domain}"))
        } else if valid_host(&host) {
            HostPattern::Exact(host)
        } else {
            return Err(format!(
                "`{text}`: `{host}` is not a host name, IP address, `*` or `*.domain`"
            ));
        };
        let port = match port {
            None => Some(if https { 443 } else { 80 }),
            Some("*") => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("`{text}`: port `{p}` is not 1-65535 or `*`"))?,
            ),
        };
        let path = match path {
            None | Some("/") => None,
            Some(p) if p.split('/').any(|s| s == ".." || s == ".") => {
                return Err(format!("`{text}`: the path may not hold `.` or `..`"));
            }
            Some(p) => Some(p.trim_end_matches('/').to_string()),
        };
        Ok(Self {
            text: text.to_string(),
            https,
            host,
            port,
            path,
        })
    }

    /// Whether a request to `scheme://host:port/path` is allowed by this
    /// rule. `host` may be bracketed (IPv6); `port` is the effective port.
    pub fn allows(&self, scheme: &str, host: &str, port: u16, path: &str) -> bool {
        let https = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            _ => return false,
        };
        if https != self.https {
            return false;
        }
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        let host = unbracket(host).to_ascii_lowercase();
        let host = host.trim_end_matches('.');
        let host_ok = match &self.host {
            HostPattern::Any => true,
            HostPattern::Exact(h) => unbracket(h) == host,
            HostPattern::Subdomain(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        };
        if !host_ok {
            return false;
        }
        match &self.path {
            None => true,
            Some(prefix) => {
                let path = path.split(['?', '#']).next().unwrap_or("");
                if path.split('/').any(|s| s == ".." || s == ".") {
                    return false;
                }
                path == prefix
                    || path
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            }
        }
    }

    /// Whether a request to `uri` (absolute: scheme and authority) is allowed.
    pub fn allows_uri(&self, uri: &http::Uri) -> bool {
        let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
            return false;
        };
        let port = uri.port_u16().unwrap_or(match scheme {
            "https" => 443,
            _ => 80,
        });
        self.allows(scheme, host, port, uri.path())
    }

    /// The rule as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for OutboundRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Whether any of `rules` allows a request to `uri`.
pub fn outbound_allowed(rules: &[OutboundRule], uri: &http::Uri) -> bool {
    rules.iter().any(|r| r.allows_uri(uri))
}

fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if authority.is_empty() {
        return None;
    }
    if authority.starts_with('[') {
        let end = authority.find(']')?;
        let host = &authority[..=end];
        return match &authority[end + 1..] {
            "" => Some((host, None)),
            rest => Some((host, Some(rest.strip_prefix(':')?))),
        };
    }
    match authority.split_once(':') {
        Some((host, port)) if !host.is_empty() && !port.is_empty() => Some((host, Some(port))),
        Some(_) => None,
        None => Some((authority, None)),
    }
}

fn unbracket(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

fn valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> OutboundRule {
        OutboundRule::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn allowed(rule_text: &str, url: &str) -> bool {
        rule(rule_text).allows_uri(&url.parse().unwrap())
    }

    #[test]
    fn any_port_on_loopback() {
        let r = "http://127.0.0.1:*";
        assert!(allowed(r, "http://127.0.0.1:8080/hook"));
        assert!(allowed(r, "http://127.0.0.1/"));
        assert!(!allowed(r, "https://127.0.0.1:8080/hook"));
        assert!(!allowed(r, "http://127.0.0.2:8080/"));
        assert!(!allowed(r, "http://localhost:8080/"));
    }

    #[test]
    fn default_port_only_without_one() {
        let r = "https://hooks.example.com";
        assert!(allowed(r, "https://hooks.example.com/a/b?x=1"));
        assert!(allowed(r, "https://HOOKS.example.com:443/"));
        assert!(!allowed(r, "https://hooks.example.com:8443/"));
        assert!(!allowed(r, "http://hooks.example.com/"));
        assert!(!allowed(r, "https://hooks.example.com.evil.net/"));
        assert!(!allowed(r, "https://evilhooks.example.com/"));
        assert!(allowed("http://a.b:8080", "http://a.b:8080/x"));
        assert!(!allowed("http://a.b:8080", "http://a.b/x"));
    }

    #[test]
    fn subdomain_wildcard() {
        let r = "https://*.example.com";
        assert!(allowed(r, "https://api.example.com/"));
        assert!(allowed(r, "https://a.b.example.com/"));
        assert!(!allowed(r, "https://example.com/"));
        assert!(!allowed(r, "https://notexample.com/"));
        assert!(allowed("https://*:*", "https://anything.net:9/"));
    }

    #[test]
    fn path_prefix_by_segment() {
        let r = "https://api.example.com/v1/hooks/";
        assert!(allowed(r, "https://api.example.com/v1/hooks"));
        assert!(allowed(r, "https://api.example.com/v1/hooks/7?x=1"));
        assert!(!allowed(r, "https://api.example.com/v1/hooksx"));
        assert!(!allowed(r, "https://api.example.com/v1/hooks/../admin"));
        assert!(!allowed(r, "https://api.example.com/v2"));
    }

    #[test]
    fn ipv6_hosts() {
        let r = "http://[::1]:*";
        assert!(allowed(r, "http://[::1]:9000/"));
        assert!(!allowed(r, "http://[::2]:9000/"));
    }

    #[test]
    fn bad_rules_say_why() {
        for (text, why) in [
            ("127.0.0.1:80", "no scheme"),
            ("ftp://x.org", "scheme `ftp`"),
            ("http://x.org:99999", "port"),
            ("http://x.org:", "malformed"),
            ("http://", "malformed"),
            ("http://exa mple.org", "not a host"),
            ("http://user@x.org", "user name"),
            ("http://x.org/a?b=1", "query"),
            ("http://x.org/a/../b", "`..`"),
            ("http://[zz]:1", "not a host"),
        ] {
            let e = OutboundRule::parse(text).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
        }
    }

    #[test]
    fn no_rules_allow_nothing() {
        assert!(!outbound_allowed(
            &[],
            &"http://127.0.0.1/".parse().unwrap()
        ));
        let rules = [rule("http://127.0.0.1:*"), rule("https://x.org")];
        assert!(outbound_allowed(&rules, &"https://x.org/".parse().unwrap()));
        assert!(!outbound_allowed(
            &rules,
            &"https://y.org/".parse().unwrap()
        ));
        assert!(!outbound_allowed(&rules, &"/relative".parse().unwrap()));
    }
}
