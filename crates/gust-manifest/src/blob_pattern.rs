//! Blob path patterns such as `incoming/{name}.csv`.

/// A compiled path pattern: literal text and `{param}` captures (a capture
/// never crosses `/`; `{*param}` as the whole last segment matches the rest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobPattern {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Param { name: String, rest: bool },
}

impl BlobPattern {
    /// Parses `pattern`; parameter names are 1-20 lowercase letters or digits
    /// (they become CloudEvents extension attributes).
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = pattern;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_string()));
            }
            let close = rest[open..]
                .find('}')
                .map(|c| open + c)
                .ok_or_else(|| format!("path pattern `{pattern}` has a `{{` without `}}`"))?;
            let inner = &rest[open + 1..close];
            let (is_rest, name) = match inner.strip_prefix('*') {
                Some(n) => (true, n),
                None => (false, inner),
            };
            let valid = !name.is_empty()
                && name.len() <= 20
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
            if !valid {
                return Err(format!(
                    "path pattern `{pattern}`: parameter `{inner}` must be 1-20 lowercase letters or digits"
                ));
            }
            if matches!(parts.last(), Some(Part::Param { .. })) {
                return Err(format!(
                    "path pattern `{pattern}`: two parameters need text between them"
                ));
            }
            parts.push(Part::Param {
                name: name.to_string(),
                rest: is_rest,
            });
            rest = &rest[close + 1..];
            if is_rest && !rest.is_empty() {
                return Err(format!(
                    "path pattern `{pattern}`: `{{*{name}}}` must come last"
                ));
            }
        }
        if rest.contains('}') {
            return Err(format!("path pattern `{pattern}` has a `}}` without `{{`"));
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(Self { parts })
    }

    /// Matches `path` (relative, `/`-separated) and returns the bound
    /// parameters, or `None`.
    pub fn matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        let mut bound = Vec::new();
        let mut at = 0;
        for (i, part) in self.parts.iter().enumerate() {
            match part {
                Part::Literal(text) => {
                    if !path[at..].starts_with(text.as_str()) {
                        return None;
                    }
                    at += text.len();
                }
                Part::Param { name, rest } => {
                    let end = if *rest {
                        path.len()
                    } else {
                        let segment_end = path[at..].find('/').map_or(path.len(), |e| at + e);
                        match self.parts.get(i + 1) {
                            // The capture ends where the next literal last occurs
                            // within this segment (`{name}.csv` takes `a.b.csv` -> `a.b`).
                            Some(Part::Literal(next)) => {
                                let window = &path[at..segment_end.max(at)];
                                let next_head = next.split('/').next().unwrap_or("");
                                if next.starts_with('/') || next_head.is_empty() {
                                    segment_end
                                } else {
                                    at + window.rfind(next_head)?
                                }
                            }
                            _ => segment_end,
                        }
                    };
                    if end <= at {
                        return None;
                    }
                    bound.push((name.clone(), path[at..end].to_string()));
                    at = end;
                }
            }
        }
        (at == path.len()).then_some(bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, path: &str) -> Option<Vec<(String, String)>> {
        BlobPattern::parse(p).unwrap().matches(path)
    }

    #[test]
    fn binds_parameters() {
        assert_eq!(
            m("incoming/{name}.csv", "incoming/jan.csv"),
            Some(vec![("name".into(), "jan".into())])
        );
        assert_eq!(
            m("incoming/{name}.csv", "incoming/a.b.csv"),
            Some(vec![("name".into(), "a.b".into())])
        );
        assert_eq!(m("incoming/{name}.csv", "incoming/jan.json"), None);
        assert_eq!(m("incoming/{name}.csv", "incoming/x/jan.csv"), None);
        assert_eq!(
            m("{dir}/{file}", "a/b"),
            Some(vec![
                ("dir".into(), "a".into()),
                ("file".into(), "b".into())
            ])
        );
        assert_eq!(
            m("{*path}", "a/b/c.txt"),
            Some(vec![("path".into(), "a/b/c.txt".into())])
        );
        assert_eq!(
            m("logs/{*rest}", "logs/2026/x"),
            Some(vec![("rest".into(), "2026/x".into())])
        );
    }

    #[test]
    fn rejects_bad_patterns() {
        assert!(BlobPattern::parse("a/{Name}.csv").is_err());
        assert!(BlobPattern::parse("a/{name.csv").is_err());
        assert!(BlobPattern::parse("{a}{b}").is_err());
        assert!(BlobPattern::parse("{*a}/b").is_err());
    }
}
