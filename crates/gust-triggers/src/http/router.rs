//! Route templates (`/api/items/{id}`, `/files/{*path}`) to functions.

use gust_events::percent_decode;
use gust_manifest::{App, AuthLevel, route_shape};
use http::Method;
use thiserror::Error;

/// A function reachable on a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    /// The function to run.
    pub function: String,
    /// The route template as written.
    pub route: String,
    /// Parameter names of the template, in order.
    pub params: Vec<String>,
    /// Allowed methods (empty: any).
    pub methods: Vec<Method>,
    /// Who may call it.
    pub auth: AuthLevel,
}

impl RouteEntry {
    fn allows(&self, method: &Method) -> bool {
        self.methods.is_empty()
            || self.methods.contains(method)
            || (*method == Method::HEAD && self.methods.contains(&Method::GET))
    }
}

/// The outcome of matching a request.
#[derive(Debug, PartialEq, Eq)]
pub enum RouteMatch<'a> {
    /// A function takes this request, with the path parameters bound.
    Found {
        /// The route.
        entry: &'a RouteEntry,
        /// `(name, value)` of each parameter, decoded.
        params: Vec<(String, String)>,
    },
    /// The path exists but not for this method (405).
    MethodNotAllowed {
        /// Methods that would be accepted.
        allowed: Vec<Method>,
    },
    /// No route (404).
    NotFound,
}

/// Routes that cannot live together.
#[derive(Debug, Error)]
#[error("route `{route}` of function `{function}` conflicts with another route: {reason}")]
pub struct RouterError {
    /// The route that could not be added.
    pub route: String,
    /// Its function.
    pub function: String,
    /// What the matcher said.
    pub reason: String,
}

/// All HTTP routes of an app.
#[derive(Default)]
pub struct HttpRouter {
    matcher: matchit::Router<usize>,
    /// Entries grouped by route shape; the matcher points at a group.
    groups: Vec<Vec<RouteEntry>>,
}

impl HttpRouter {
    /// Builds the router for every HTTP function of `app`.
    pub fn new(app: &App) -> Result<Self, RouterError> {
        let mut router = Self::default();
        for function in &app.functions {
            if let Some(http) = function.http() {
                router.add(RouteEntry {
                    function: function.name.clone(),
                    route: http.route.clone(),
                    params: gust_manifest::validate_route(&http.route).unwrap_or_default(),
                    methods: http.methods.clone(),
                    auth: http.auth,
                })?;
            }
        }
        Ok(router)
    }

    /// Adds one route.
    pub fn add(&mut self, entry: RouteEntry) -> Result<(), RouterError> {
        // Routes of the same shape (e.g. GET and POST on `/items/{id}`)
        // share one matcher slot.
        if let Ok(found) = self.matcher.at(&probe_path(&entry.route))
            && route_shape(&self.groups[*found.value][0].route) == route_shape(&entry.route)
        {
            self.groups[*found.value].push(entry);
            return Ok(());
        }
        let index = self.groups.len();
        self.matcher
            .insert(entry.route.clone(), index)
            .map_err(|e| RouterError {
                route: entry.route.clone(),
                function: entry.function.clone(),
                reason: e.to_string(),
            })?;
        self.groups.push(vec![entry]);
        Ok(())
    }

    /// Every route, in insertion order.
    pub fn entries(&self) -> impl Iterator<Item = &RouteEntry> {
        self.groups.iter().flatten()
    }

    /// Matches `method` and `path` (without query).
    pub fn route(&self, method: &Method, path: &str) -> RouteMatch<'_> {
        let Ok(found) = self.matcher.at(path) else {
            return RouteMatch::NotFound;
        };
        let values: Vec<String> = found
            .params
            .iter()
            .map(|(_, v)| percent_decode(v))
            .collect();
        let group = &self.groups[*found.value];
        match group.iter().find(|e| e.allows(method)) {
            Some(entry) => RouteMatch::Found {
                entry,
                params: entry.params.iter().cloned().zip(values).collect(),
            },
            None => {
                let mut allowed: Vec<Method> = group
                    .iter()
                    .flat_map(|e| e.methods.iter().cloned())
                    .collect();
                allowed.dedup();
                RouteMatch::MethodNotAllowed { allowed }
            }
        }
    }
}

/// A concrete path that a template matches (parameters filled with `x`).
fn probe_path(route: &str) -> String {
    route
        .split('/')
        .map(|s| if s.starts_with('{') { "x" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: &str, route: &str, methods: &[Method]) -> RouteEntry {
        RouteEntry {
            function: function.into(),
            route: route.into(),
            params: gust_manifest::validate_route(route).unwrap(),
            methods: methods.to_vec(),
            auth: AuthLevel::Anonymous,
        }
    }

    fn router() -> HttpRouter {
        let mut r = HttpRouter::default();
        r.add(entry("list", "/api/items", &[Method::GET])).unwrap();
        r.add(entry("get", "/api/items/{id}", &[Method::GET]))
            .unwrap();
        r.add(entry("put", "/api/items/{key}", &[Method::PUT]))
            .unwrap();
        r.add(entry("files", "/files/{*path}", &[])).unwrap();
        r
    }

    #[test]
    fn binds_params_and_methods() {
        let r = router();
        match r.route(&Method::GET, "/api/items/a%20b") {
            RouteMatch::Found { entry, params } => {
                assert_eq!(entry.function, "get");
                assert_eq!(params, vec![("id".to_string(), "a b".to_string())]);
            }
            other => panic!("{other:?}"),
        }
        match r.route(&Method::PUT, "/api/items/7") {
            RouteMatch::Found { entry, params } => {
                assert_eq!(entry.function, "put");
                assert_eq!(params, vec![("key".to_string(), "7".to_string())]);
            }
            other => panic!("{other:?}"),
        }
        match r.route(&Method::POST, "/files/a/b.txt") {
            RouteMatch::Found { entry, params } => {
                assert_eq!(entry.function, "files");
                assert_eq!(params[0].1, "a/b.txt");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn not_found_and_method_not_allowed() {
        let r = router();
        assert_eq!(r.route(&Method::GET, "/nope"), RouteMatch::NotFound);
        assert_eq!(
            r.route(&Method::DELETE, "/api/items/1"),
            RouteMatch::MethodNotAllowed {
                allowed: vec![Method::GET, Method::PUT]
            }
        );
        assert!(matches!(
            r.route(&Method::HEAD, "/api/items"),
            RouteMatch::Found { .. }
        ));
    }
}
