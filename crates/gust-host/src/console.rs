//! The web console at `/_gust/console/`: plain HTML, CSS and JavaScript
//! from the repository's `console/` folder, embedded in the binary (no
//! build step, nothing fetched from the internet). The files are served
//! without the admin key; the page asks for the key once, keeps it in the
//! tab's `sessionStorage` and sends it as `x-gust-key` on its calls to the
//! admin API (`stats`, `invocations`, `logs`, `queues/...`), which it
//! addresses relative to its own URL, so it works under a prefix
//! (`/<app>/_gust/console/` behind a multi-app front or a cluster node).

use std::sync::OnceLock;

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use sha2::{Digest, Sha256};

use crate::body::{self, Body};

/// The console's files: (name, content type, bytes).
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../../../console/index.html"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("../../../console/console.css"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../console/console.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../../../console/favicon.svg"),
    ),
];

/// What the page may load and call: only this origin, no inline scripts.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Whether `path` (as requested, not trimmed) is the console's.
pub fn is_console_path(path: &str) -> bool {
    path == "/_gust/console" || path.starts_with("/_gust/console/")
}

/// Serves a GET or HEAD of a console path: `/_gust/console` redirects to
/// `console/` (relative, so a prefix in front is kept), `/_gust/console/`
/// is `index.html`, `/_gust/console/<file>` a file. Files carry a strong
/// `ETag` (a hash of their bytes) with `Cache-Control: no-cache`, so a
/// browser revalidates each time and gets 304 until the binary changes.
pub fn serve(method: &Method, path: &str, headers: &HeaderMap) -> Response<Body> {
    let Some(rest) = path.strip_prefix("/_gust/console/") else {
        let mut r = body::error(
            StatusCode::PERMANENT_REDIRECT,
            "moved",
            "the console is at /_gust/console/",
        );
        r.headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static("console/"));
        return r;
    };
    let name = if rest.is_empty() { "index.html" } else { rest };
    let Some(index) = ASSETS.iter().position(|(n, _, _)| *n == name) else {
        return body::error(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("the console has no file `{name}`"),
        );
    };
    let (_, content_type, bytes) = ASSETS[index];
    let tag = &etags()[index];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut r = if fresh {
        let mut r = Response::new(body::full(""));
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else if method == Method::HEAD {
        let mut r = Response::new(body::full(""));
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        r
    } else {
        Response::new(body::full(bytes))
    };
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(tag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if content_type.starts_with("text/html") {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    r
}

/// The `ETag` of each asset, in [`ASSETS`] order.
fn etags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|(_, _, bytes)| {
                let digest = Sha256::digest(bytes);
                format!("\"{}\"", hex::encode(&digest[..12]))
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn get(path: &str, headers: &[(header::HeaderName, &str)]) -> Response<Body> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(k.clone(), v.parse().unwrap());
        }
        serve(&Method::GET, path, &map)
    }

    async fn text(r: Response<Body>) -> String {
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn serves_the_page_and_its_files_with_types_and_tags() {
        let r = get("/_gust/console/", &[]);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
        assert!(r.headers().contains_key(header::CONTENT_SECURITY_POLICY));
        let tag = r.headers()[header::ETAG].to_str().unwrap().to_string();
        let page = text(r).await;
        for file in ["console.js", "console.css"] {
            assert!(page.contains(file), "index.html loads {file}");
        }
        let again = get(
            "/_gust/console/index.html",
            &[(header::IF_NONE_MATCH, &tag)],
        );
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        for (file, ty) in [
            ("console.js", "text/javascript; charset=utf-8"),
            ("console.css", "text/css; charset=utf-8"),
            ("favicon.svg", "image/svg+xml"),
        ] {
            let r = get(&format!("/_gust/console/{file}"), &[]);
            assert_eq!(r.status(), StatusCode::OK, "{file}");
            assert_eq!(r.headers()[header::CONTENT_TYPE], ty, "{file}");
            assert_ne!(r.headers()[header::ETAG], tag.as_str(), "{file}");
        }
        let head = serve(
            &Method::HEAD,
            "/_gust/console/console.js",
            &HeaderMap::new(),
        );
        assert!(text(head).await.is_empty());
    }

    #[test]
    fn redirects_to_the_folder_and_refuses_unknown_files() {
        let r = get("/_gust/console", &[]);
        assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(r.headers()[header::LOCATION], "console/");
        assert_eq!(
            get("/_gust/console/../keys.json", &[]).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get("/_gust/console/nope.js", &[]).status(),
            StatusCode::NOT_FOUND
        );
        assert!(is_console_path("/_gust/console"));
        assert!(is_console_path("/_gust/console/x"));
        assert!(!is_console_path("/_gust/consoles"));
    }
}
