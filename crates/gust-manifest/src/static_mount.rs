//! `[[static]]`: folders of the app served as files.
//!
//! ```toml
//! [[static]]
//! route = "/"              # URL prefix the folder is served under
//! dir = "public"           # folder inside the app
//! fallback = "index.html"  # optional: single-page-app fallback
//! ```

use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::error::ManifestError;
use crate::model::StaticMount;
use crate::parse::Parser;

/// One `[[static]]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStatic {
    route: Option<Spanned<String>>,
    dir: Option<Spanned<String>>,
    fallback: Option<Spanned<String>>,
}

impl Parser<'_> {
    /// Validates every `[[static]]` table.
    pub(crate) fn statics(
        &self,
        raw: Vec<Spanned<RawStatic>>,
    ) -> Result<Vec<StaticMount>, ManifestError> {
        let mut out: Vec<StaticMount> = Vec::new();
        for (index, table) in raw.into_iter().enumerate() {
            let span = table.span();
            let mount = self.static_mount(index, table.into_inner(), span.clone())?;
            if let Some(first) = out.iter().find(|m| m.route == mount.route) {
                return Err(self.err(
                    Some(span),
                    format!("static[{index}].route"),
                    format!(
                        "route `{}` is already served from {}",
                        mount.route,
                        first.dir.display()
                    ),
                    "give every [[static]] its own route, or put the files in one folder",
                ));
            }
            out.push(mount);
        }
        Ok(out)
    }

    fn static_mount(
        &self,
        index: usize,
        raw: RawStatic,
        span: Range<usize>,
    ) -> Result<StaticMount, ManifestError> {
        let key = |k: &str| format!("static[{index}].{k}");
        let route = raw.route.ok_or_else(|| {
            self.err(
                Some(span.clone()),
                key("route"),
                "a [[static]] table has no `route`",
                "add the URL prefix to serve the folder under, e.g. `route = \"/\"`",
            )
        })?;
        let route_span = route.span();
        let route = normalize_route(route.get_ref()).map_err(|why| {
            self.err(
                Some(route_span),
                key("route"),
                format!("static route `{}` {why}", route.get_ref()),
                "write a URL prefix such as `/` or `/assets` (no parameters, `..`, `?` or `#`)",
            )
        })?;

        let dir = raw.dir.ok_or_else(|| {
            self.err(
                Some(span.clone()),
                key("dir"),
                "a [[static]] table has no `dir`",
                "add the folder to serve, relative to the app folder, e.g. `dir = \"public\"`",
            )
        })?;
        let dir_span = dir.span();
        let rel = dir.into_inner();
        let dir = self
            .static_dir(&rel)
            .map_err(|(message, fix)| self.err(Some(dir_span), key("dir"), message, fix))?;

        let fallback = match raw.fallback {
            None => None,
            Some(f) => {
                let f_span = f.span();
                let name = f.into_inner();
                check_fallback(&dir, &name).map_err(|message| {
                    self.err(
                        Some(f_span),
                        key("fallback"),
                        message,
                        format!(
                            "name a file inside `{rel}`, e.g. `fallback = \"index.html\"`, or remove `fallback`"
                        ),
                    )
                })?;
                Some(name)
            }
        };
        Ok(StaticMount {
            route,
            dir,
            fallback,
        })
    }

    /// The served folder: relative, inside the app (also after following
    /// symlinks), existing. Returns its canonical path or (message, fix).
    fn static_dir(&self, rel: &str) -> Result<PathBuf, (String, String)> {
        let inside = "use a folder inside the app, e.g. `dir = \"public\"`".to_string();
        if rel.is_empty() {
            return Err(("static `dir` is empty".into(), inside));
        }
        let path = Path::new(rel);
        if path.is_absolute() || !relative_without_dots(path) {
            return Err((
                format!("static dir `{rel}` must be a relative path without `..`"),
                inside,
            ));
        }
        let full = self.dir.join(path);
        if !full.is_dir() {
            return Err((
                format!("static dir `{rel}` does not exist"),
                format!(
                    "create the folder {} or fix the path (it is relative to {})",
                    full.display(),
                    self.dir.display()
                ),
            ));
        }
        let canonical = full.canonicalize().map_err(|e| {
            (
                format!("cannot resolve static dir `{rel}`: {e}"),
                inside.clone(),
            )
        })?;
        let root = self
            .dir
            .canonicalize()
            .unwrap_or_else(|_| self.dir.to_path_buf());
        if !canonical.starts_with(&root) {
            return Err((
                format!(
                    "static dir `{rel}` resolves to {}, outside the app folder",
                    canonical.display()
                ),
                inside,
            ));
        }
        Ok(canonical)
    }
}

/// `/assets/` -> `/assets`; errors say why a route cannot be a static prefix.
fn normalize_route(route: &str) -> Result<String, &'static str> {
    if !route.starts_with('/') {
        return Err("must start with `/`");
    }
    if route.contains(['{', '}', '*', '?', '#', '%', '\\']) {
        return Err("may not hold `{`, `}`, `*`, `?`, `#`, `%` or `\\`");
    }
    let trimmed = route.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok("/".into());
    }
    if trimmed[1..]
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err("has an empty, `.` or `..` segment");
    }
    if trimmed == "/_gust" || trimmed.starts_with("/_gust/") {
        return Err("is under `/_gust/`, which is reserved for the admin API");
    }
    Ok(trimmed.to_string())
}

/// Whether `path` has only normal components (no `..`, `.`, root).
fn relative_without_dots(path: &Path) -> bool {
    path.components().all(|c| matches!(c, Component::Normal(_)))
}

/// The fallback must be a file inside `dir`.
fn check_fallback(dir: &Path, name: &str) -> Result<(), String> {
    let path = Path::new(name);
    if name.is_empty() || path.is_absolute() || !relative_without_dots(path) {
        return Err(format!(
            "static fallback `{name}` must be a relative file path without `..`"
        ));
    }
    let full = dir.join(path);
    if !full.is_file() {
        return Err(format!(
            "static fallback `{name}` is not a file in {}",
            dir.display()
        ));
    }
    match full.canonicalize() {
        Ok(c) if c.starts_with(dir) => Ok(()),
        _ => Err(format!(
            "static fallback `{name}` resolves outside {}",
            dir.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_app;

    fn app(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "x").unwrap();
        }
        dir
    }

    fn parse(dir: &Path, statics: &str) -> Result<crate::App, ManifestError> {
        let text = format!("[app]\nname = \"site\"\n{statics}");
        parse_app(dir, &dir.join("gust.toml"), &text)
    }

    #[test]
    fn parses_mounts_and_normalises_routes() {
        let dir = app(&["public/index.html", "assets/a.css"]);
        let app = parse(
            dir.path(),
            "[[static]]\nroute = \"/\"\ndir = \"public\"\nfallback = \"index.html\"\n\
             [[static]]\nroute = \"/assets/\"\ndir = \"./assets\"\n",
        );
        // `./assets` has a `.` component: refused, so the author writes `assets`.
        let e = app.unwrap_err();
        assert_eq!(e.key, "static[1].dir");
        assert_eq!(e.line, 9, "{e}");

        let app = parse(
            dir.path(),
            "[[static]]\nroute = \"/\"\ndir = \"public\"\nfallback = \"index.html\"\n\
             [[static]]\nroute = \"/assets/\"\ndir = \"assets\"\n",
        )
        .unwrap();
        assert_eq!(app.statics.len(), 2);
        assert_eq!(app.statics[0].route, "/");
        assert_eq!(app.statics[0].fallback.as_deref(), Some("index.html"));
        assert_eq!(app.statics[1].route, "/assets");
        assert_eq!(
            app.statics[1].dir,
            dir.path().join("assets").canonicalize().unwrap()
        );
    }

    #[test]
    fn bad_routes_are_located_with_a_fix() {
        let dir = app(&["public/index.html"]);
        for route in ["public", "/a/{id}", "/../x", "/_gust/x", "/a//b"] {
            let e = parse(
                dir.path(),
                &format!("[[static]]\nroute = \"{route}\"\ndir = \"public\"\n"),
            )
            .unwrap_err();
            assert_eq!(e.key, "static[0].route", "{route}: {e}");
            assert_eq!(e.line, 4, "{route}: {e}");
            assert!(!e.fix.is_empty());
        }
    }

    #[test]
    fn dirs_must_exist_inside_the_app() {
        let dir = app(&["public/index.html"]);
        for (d, why) in [
            ("missing", "does not exist"),
            ("../public", "without `..`"),
            ("/etc", "without `..`"),
            ("", "is empty"),
        ] {
            let e = parse(
                dir.path(),
                &format!("[[static]]\nroute = \"/\"\ndir = \"{d}\"\n"),
            )
            .unwrap_err();
            assert_eq!(e.key, "static[0].dir", "{d}: {e}");
            assert!(e.message.contains(why), "{d}: {e}");
            assert_eq!((e.line, e.column), (5, 7), "{d}: {e}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_escaping_the_app_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        let dir = app(&[]);
        std::os::unix::fs::symlink(outside.path(), dir.path().join("public")).unwrap();
        let e = parse(dir.path(), "[[static]]\nroute = \"/\"\ndir = \"public\"\n").unwrap_err();
        assert!(e.message.contains("outside the app folder"), "{e}");
    }

    #[test]
    fn fallback_route_and_keys_are_checked() {
        let dir = app(&["public/index.html"]);
        let e = parse(
            dir.path(),
            "[[static]]\nroute = \"/\"\ndir = \"public\"\nfallback = \"app.html\"\n",
        )
        .unwrap_err();
        assert_eq!(e.key, "static[0].fallback");
        let e = parse(dir.path(), "[[static]]\ndir = \"public\"\n").unwrap_err();
        assert_eq!(e.key, "static[0].route");
        let e = parse(
            dir.path(),
            "[[static]]\nroute = \"/\"\ndir = \"public\"\nindex = \"x\"\n",
        )
        .unwrap_err();
        assert!(e.message.contains("unknown field"), "{e}");
        let e = parse(
            dir.path(),
            "[[static]]\nroute = \"/\"\ndir = \"public\"\n[[static]]\nroute = \"\"\ndir = \"public\"\n",
        )
        .unwrap_err();
        assert_eq!(e.key, "static[1].route");
        let e = parse(
            dir.path(),
            "[[static]]\nroute = \"/\"\ndir = \"public\"\n[[static]]\nroute = \"//\"\ndir = \"public\"\n",
        )
        .unwrap_err();
        assert!(e.message.contains("already served"), "{e}");
    }
}
