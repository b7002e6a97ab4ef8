//! Route template syntax: `/api/items/{id}` and a trailing catch-all `{*rest}`.

use thiserror::Error;

/// Why a route template is not valid.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RouteError {
    /// Routes are absolute paths.
    #[error("route `{0}` must start with `/`")]
    NotAbsolute(String),
    /// `/_gust` belongs to the admin API.
    #[error("route `{0}` is under `/_gust/`, which is reserved for the admin API")]
    Reserved(String),
    /// A `{` without `}` or an empty/invalid parameter name.
    #[error("route `{route}` has a malformed parameter `{segment}`")]
    BadParameter {
        /// The route template.
        route: String,
        /// The offending path segment.
        segment: String,
    },
    /// `{*rest}` anywhere but the last segment.
    #[error("route `{0}` has a catch-all `{{*...}}` that is not the last segment")]
    CatchAllNotLast(String),
    /// Two parameters with the same name.
    #[error("route `{route}` uses parameter `{name}` twice")]
    DuplicateParameter {
        /// The route template.
        route: String,
        /// The repeated name.
        name: String,
    },
}

/// Checks a route template and returns its parameter names in order.
pub fn validate_route(route: &str) -> Result<Vec<String>, RouteError> {
    if !route.starts_with('/') {
        return Err(RouteError::NotAbsolute(route.to_string()));
    }
    if route == "/_gust" || route.starts_with("/_gust/") {
        return Err(RouteError::Reserved(route.to_string()));
    }
    let segments: Vec<&str> = route[1..].split('/').collect();
    let mut names = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        let has_brace = segment.contains('{') || segment.contains('}');
        if !has_brace {
            continue;
        }
        let bad = || RouteError::BadParameter {
            route: route.to_string(),
            segment: segment.to_string(),
        };
        let inner = segment
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .ok_or_else(bad)?;
        let (catch_all, name) = match inner.strip_prefix('*') {
            Some(name) => (true, name),
            None => (false, inner),
        };
        let valid_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid_name {
            return Err(bad());
        }
        if catch_all && i + 1 != segments.len() {
            return Err(RouteError::CatchAllNotLast(route.to_string()));
        }
        if names.iter().any(|n| n == name) {
            return Err(RouteError::DuplicateParameter {
                route: route.to_string(),
                name: name.to_string(),
            });
        }
        names.push(name.to_string());
    }
    Ok(names)
}

/// A route with parameter names erased, so `/a/{id}` and `/a/{key}` compare
/// equal: two routes of one shape match the same paths.
pub fn route_shape(route: &str) -> String {
    route
        .split('/')
        .map(|s| {
            if s.starts_with("{*") {
                "{*}"
            } else if s.starts_with('{') {
                "{}"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_params_and_catch_all() {
        assert_eq!(
            validate_route("/api/items/{id}/{*rest}").unwrap(),
            vec!["id", "rest"]
        );
        assert!(validate_route("/").unwrap().is_empty());
    }

    #[test]
    fn shapes_ignore_parameter_names() {
        assert_eq!(route_shape("/a/{id}/{*rest}"), "/a/{}/{*}");
        assert_eq!(route_shape("/a/{id}"), route_shape("/a/{key}"));
    }

    #[test]
    fn rejects_mistakes() {
        assert!(matches!(
            validate_route("api"),
            Err(RouteError::NotAbsolute(_))
        ));
        assert!(matches!(
            validate_route("/_gust/x"),
            Err(RouteError::Reserved(_))
        ));
        assert!(matches!(
            validate_route("/a/{id"),
            Err(RouteError::BadParameter { .. })
        ));
        assert!(matches!(
            validate_route("/a/{}"),
            Err(RouteError::BadParameter { .. })
        ));
        assert!(matches!(
            validate_route("/a/{*x}/b"),
            Err(RouteError::CatchAllNotLast(_))
        ));
        assert!(matches!(
            validate_route("/a/{id}/{id}"),
            Err(RouteError::DuplicateParameter { .. })
        ));
    }
}
