//! Static files of `[[static]]` mounts: GET and HEAD under a URL prefix,
//! read from disk on every request (edits show at once), with content
//! types by extension, `index.html` for folders, `ETag`/`Last-Modified`
//! revalidation (304), an optional single-page-app fallback, and no way
//! out of the folder (`..`, percent-encoded or not, and symlinks leading
//! outside are refused).
//!
//! Function routes win: the dispatcher asks here only when no function
//! route matches.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Uri, header};

use crate::body::{self, Body};
use gust_manifest::StaticMount;

/// The app's static mounts, longest route first.
#[derive(Debug, Clone, Default)]
pub struct StaticFiles {
    mounts: Vec<StaticMount>,
}

/// Why a request path cannot name a file.
#[derive(Debug, PartialEq, Eq)]
enum BadPath {
    /// A `.`/`..` segment, a backslash or NUL, possibly percent-encoded.
    Traversal,
    /// Percent-encoding that is malformed or not UTF-8.
    Encoding,
}

/// What the path under a mount names.
enum Found {
    /// A regular file inside the mount.
    File(PathBuf, std::fs::Metadata),
    /// A folder requested without a trailing `/`.
    Folder,
    /// Nothing (or something outside the mount).
    Missing,
}

impl StaticFiles {
    /// The mounts of an app's `[[static]]` tables.
    pub fn new(mounts: &[StaticMount]) -> Self {
        let mut mounts = mounts.to_vec();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.route.len()));
        Self { mounts }
    }

    /// Whether the app has no static mounts.
    pub fn is_empty(&self) -> bool {
        self.mounts.is_empty()
    }

    /// Answers a GET or HEAD for `uri` when a mount covers its path; `None`
    /// for other methods and paths outside every mount.
    pub async fn serve(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Option<Response<Body>> {
        if method != Method::GET && method != Method::HEAD {
            return None;
        }
        let path = uri.path();
        let (mount, rest) = self
            .mounts
            .iter()
            .find_map(|m| under(&m.route, path).map(|rest| (m, rest)))?;
        let segments = match segments(rest) {
            Ok(s) => s,
            Err(BadPath::Traversal) => {
                return Some(body::error(
                    StatusCode::BAD_REQUEST,
                    "bad-path",
                    format!("path {path} tries to leave the static folder"),
                ));
            }
            Err(BadPath::Encoding) => {
                return Some(body::error(
                    StatusCode::BAD_REQUEST,
                    "bad-path",
                    format!("path {path} is not valid percent-encoded UTF-8"),
                ));
            }
        };
        let head = method == Method::HEAD;
        let wants_folder = rest.is_empty() || rest.ends_with('/');
        let found = tokio::task::spawn_blocking({
            let root = mount.dir.clone();
            let segments = segments.clone();
            move || find(&root, &segments, wants_folder)
        })
        .await
        .unwrap_or(Found::Missing);
        match found {
            Found::File(file, meta) => Some(file_response(&file, &meta, headers, head).await),
            Found::Folder => {
                // `/docs` -> `docs/`: relative, so it also works under a
                // prefix added by a front proxy.
                let last = path.rsplit('/').next().unwrap_or_default();
                let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
                let mut r = Response::new(body::full(""));
                *r.status_mut() = StatusCode::MOVED_PERMANENTLY;
                if let Ok(v) = HeaderValue::from_str(&format!("{last}/{query}")) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                Some(r)
            }
            Found::Missing => {
                let fallback = mount
                    .fallback
                    .as_ref()
                    .filter(|_| !segments.last().is_some_and(|s| s.contains('.')));
                if let Some(name) = fallback {
                    let root = mount.dir.clone();
                    let parts: Vec<String> = name.split('/').map(str::to_owned).collect();
                    let found = tokio::task::spawn_blocking(move || find(&root, &parts, false))
                        .await
                        .unwrap_or(Found::Missing);
                    if let Found::File(file, meta) = found {
                        return Some(file_response(&file, &meta, headers, head).await);
                    }
                }
                Some(body::error(
                    StatusCode::NOT_FOUND,
                    "not-found",
                    format!("no route or file matches {path}"),
                ))
            }
        }
    }

    /// `(route, folder)` of every mount, for announcing them.
    pub fn mounts(&self) -> impl Iterator<Item = &StaticMount> {
        self.mounts.iter()
    }
}

/// The rest of `path` under mount `route` (`/` covers everything), if any.
fn under<'p>(route: &str, path: &'p str) -> Option<&'p str> {
    if route == "/" {
        return Some(path.strip_prefix('/').unwrap_or(path));
    }
    let rest = path.strip_prefix(route)?;
    if rest.is_empty() {
        Some("")
    } else {
        rest.strip_prefix('/')
    }
}

/// Decodes and checks the path segments under a mount (empty segments are
/// dropped).
fn segments(rest: &str) -> Result<Vec<String>, BadPath> {
    let decoded = gust_events::percent_decode_strict(rest).ok_or(BadPath::Encoding)?;
    let mut out = Vec::new();
    for segment in decoded.split('/') {
        if segment == "." || segment == ".." || segment.contains(['\\', '\0']) {
            return Err(BadPath::Traversal);
        }
        if !segment.is_empty() {
            out.push(segment.to_string());
        }
    }
    Ok(out)
}

/// Looks `segments` up under `root`, following symlinks only while they
/// stay inside `root`; a folder answers its `index.html`.
fn find(root: &Path, segments: &[String], wants_folder: bool) -> Found {
    let Ok(root) = root.canonicalize() else {
        return Found::Missing;
    };
    let mut path = root.clone();
    path.extend(segments);
    let Ok(real) = path.canonicalize() else {
        return Found::Missing;
    };
    if !real.starts_with(&root) {
        return Found::Missing;
    }
    let Ok(meta) = std::fs::metadata(&real) else {
        return Found::Missing;
    };
    if meta.is_file() {
        return Found::File(real, meta);
    }
    if !meta.is_dir() {
        return Found::Missing;
    }
    if !wants_folder {
        return Found::Folder;
    }
    let index = real.join("index.html");
    match (index.canonicalize(), std::fs::metadata(&index)) {
        (Ok(i), Ok(m)) if i.starts_with(&root) && m.is_file() => Found::File(i, m),
        _ => Found::Missing,
    }
}

/// `200` with the file, or `304` when the client's copy is current.
async fn file_response(
    file: &Path,
    meta: &std::fs::Metadata,
    headers: &HeaderMap,
    head: bool,
) -> Response<Body> {
    let modified = meta.modified().unwrap_or(UNIX_EPOCH);
    let tag = etag(meta.len(), modified);
    let last_modified = httpdate::fmt_http_date(modified);
    let not_modified = match headers.get(header::IF_NONE_MATCH) {
        Some(v) => v.to_str().is_ok_and(|v| etag_matches(v, &tag)),
        None => headers
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| httpdate::parse_http_date(v.to_str().ok()?).ok())
            .is_some_and(|since| whole_seconds(modified) <= whole_seconds(since)),
    };
    let mut response = if not_modified {
        let mut r = Response::new(body::full(""));
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else if head {
        let mut r = Response::new(body::full(""));
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(meta.len()));
        r
    } else {
        match tokio::fs::read(file).await {
            Ok(bytes) => Response::new(body::full(bytes)),
            Err(e) => {
                return body::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "static-read",
                    format!("cannot read {}: {e}", file.display()),
                );
            }
        }
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&last_modified) {
        h.insert(header::LAST_MODIFIED, v);
    }
    // Always revalidate, so an edited file shows on the next load.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if !not_modified {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(content_type(file)),
        );
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
    }
    response
}

/// A weak validator from size and modification time.
fn etag(len: u64, modified: SystemTime) -> String {
    let nanos = modified
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("W/\"{len:x}-{nanos:x}\"")
}

/// `If-None-Match` (a list, or `*`) against our tag, compared weakly.
fn etag_matches(header: &str, tag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_string();
    header
        .split(',')
        .any(|t| t.trim() == "*" || bare(t) == bare(tag))
}

fn whole_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The media type for a file name's extension.
pub fn content_type(file: &Path) -> &'static str {
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "txt" => "text/plain; charset=utf-8",
        "md" => "text/markdown; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "pdf" => "application/pdf",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn site() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir_all(p.join("public/docs")).unwrap();
        std::fs::write(p.join("public/index.html"), "<h1>home</h1>").unwrap();
        std::fs::write(p.join("public/app.js"), "let x = 1;").unwrap();
        std::fs::write(p.join("public/docs/index.html"), "docs").unwrap();
        std::fs::write(p.join("secret.txt"), "secret").unwrap();
        dir
    }

    fn files(dir: &Path, route: &str, fallback: Option<&str>) -> StaticFiles {
        StaticFiles::new(&[StaticMount {
            route: route.into(),
            dir: dir.join("public").canonicalize().unwrap(),
            fallback: fallback.map(str::to_owned),
        }])
    }

    async fn get(
        files: &StaticFiles,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Option<(u16, HeaderMap, String)> {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let uri: Uri = path.parse().unwrap();
        let r = files.serve(&Method::GET, &uri, &h).await?;
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.into_body().collect().await.unwrap().to_bytes();
        Some((status, headers, String::from_utf8_lossy(&body).into_owned()))
    }

    #[tokio::test]
    async fn serves_files_with_types_and_index() {
        let dir = site();
        let f = files(dir.path(), "/", None);
        let (s, h, b) = get(&f, "/", &[]).await.unwrap();
        assert_eq!((s, b.as_str()), (200, "<h1>home</h1>"));
        assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=utf-8");
        let (s, h, _) = get(&f, "/app.js", &[]).await.unwrap();
        assert_eq!(s, 200);
        assert_eq!(h[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert_eq!(get(&f, "/docs/", &[]).await.unwrap().2, "docs");
        let (s, h, _) = get(&f, "/docs?x=1", &[]).await.unwrap();
        assert_eq!(s, 301);
        assert_eq!(h[header::LOCATION], "docs/?x=1");
        let (s, _, b) = get(&f, "/nope.css", &[]).await.unwrap();
        assert_eq!(s, 404);
        assert!(b.contains("\"not-found\""), "{b}");
    }

    #[tokio::test]
    async fn mounts_under_a_prefix_only_cover_it() {
        let dir = site();
        let f = files(dir.path(), "/site", None);
        assert!(get(&f, "/other", &[]).await.is_none());
        assert!(get(&f, "/sitex/app.js", &[]).await.is_none());
        assert_eq!(get(&f, "/site/app.js", &[]).await.unwrap().0, 200);
        assert_eq!(get(&f, "/site", &[]).await.unwrap().2, "<h1>home</h1>");
        let uri: Uri = "/site/app.js".parse().unwrap();
        assert!(
            f.serve(&Method::POST, &uri, &HeaderMap::new())
                .await
                .is_none()
        );
    }

    #[tokio::test]
    async fn traversal_is_refused_encoded_or_not() {
        let dir = site();
        let f = files(dir.path(), "/", None);
        for path in [
            "/../secret.txt",
            "/%2e%2e/secret.txt",
            "/docs/%2E%2E%2F..%2Fsecret.txt",
            "/..%5csecret.txt",
            "/%00",
        ] {
            let (s, _, b) = get(&f, path, &[]).await.unwrap();
            assert_eq!(s, 400, "{path}: {b}");
            assert!(!b.contains("secret\""), "{path}");
        }
        assert_eq!(get(&f, "/%ff", &[]).await.unwrap().0, 400);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn symlinks_leaving_the_folder_are_not_followed() {
        let dir = site();
        let p = dir.path();
        std::os::unix::fs::symlink(p.join("secret.txt"), p.join("public/leak.txt")).unwrap();
        std::os::unix::fs::symlink(p.join("public/app.js"), p.join("public/alias.js")).unwrap();
        let f = files(p, "/", None);
        assert_eq!(get(&f, "/leak.txt", &[]).await.unwrap().0, 404);
        assert_eq!(get(&f, "/alias.js", &[]).await.unwrap().2, "let x = 1;");
    }

    #[tokio::test]
    async fn revalidation_answers_304() {
        let dir = site();
        let f = files(dir.path(), "/", None);
        let (_, h, _) = get(&f, "/app.js", &[]).await.unwrap();
        let tag = h[header::ETAG].to_str().unwrap().to_string();
        let date = h[header::LAST_MODIFIED].to_str().unwrap().to_string();
        let (s, _, b) = get(&f, "/app.js", &[("if-none-match", &tag)])
            .await
            .unwrap();
        assert_eq!((s, b.as_str()), (304, ""));
        let (s, _, _) = get(&f, "/app.js", &[("if-modified-since", &date)])
            .await
            .unwrap();
        assert_eq!(s, 304);
        let (s, _, _) = get(&f, "/app.js", &[("if-none-match", "W/\"other\"")])
            .await
            .unwrap();
        assert_eq!(s, 200);
        let old = "Mon, 01 Jan 2001 00:00:00 GMT";
        let (s, _, _) = get(&f, "/app.js", &[("if-modified-since", old)])
            .await
            .unwrap();
        assert_eq!(s, 200);
        // An edit changes the tag and shows at once.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(dir.path().join("public/app.js"), "let x = 22;").unwrap();
        let (s, _, b) = get(&f, "/app.js", &[("if-none-match", &tag)])
            .await
            .unwrap();
        assert_eq!((s, b.as_str()), (200, "let x = 22;"));
    }

    #[tokio::test]
    async fn fallback_serves_the_app_for_extensionless_paths() {
        let dir = site();
        let f = files(dir.path(), "/", Some("index.html"));
        let (s, h, b) = get(&f, "/profile/42", &[]).await.unwrap();
        assert_eq!((s, b.as_str()), (200, "<h1>home</h1>"));
        assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(get(&f, "/missing.js", &[]).await.unwrap().0, 404);
    }

    #[test]
    fn content_types_by_extension() {
        for (name, ty) in [
            ("a.HTML", "text/html; charset=utf-8"),
            ("a.mjs", "text/javascript; charset=utf-8"),
            ("a.svg", "image/svg+xml"),
            ("a.png", "image/png"),
            ("a.jpeg", "image/jpeg"),
            ("favicon.ico", "image/x-icon"),
            ("m.wasm", "application/wasm"),
            ("d.json", "application/json"),
            ("noext", "application/octet-stream"),
        ] {
            assert_eq!(content_type(Path::new(name)), ty, "{name}");
        }
    }

    mod props {
        use super::super::{segments, under};
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Whatever the request path, an accepted one names only plain
            /// segments below the mount: nothing can climb out of it.
            #[test]
            fn accepted_paths_stay_inside_the_mount(
                path in prop::collection::vec(
                    prop_oneof![
                        Just("..".to_string()), Just(".".to_string()),
                        Just("%2e%2e".to_string()), Just("%2E.".to_string()),
                        Just("%2f".to_string()), Just("%5c".to_string()),
                        Just("%00".to_string()), Just("%".to_string()),
                        Just("%c3%28".to_string()), "[a-z.]{0,6}", ".{0,4}",
                    ],
                    0..8,
                ).prop_map(|parts| parts.join("/"))
            ) {
                if let Ok(found) = segments(&path) {
                    for s in &found {
                        prop_assert!(!s.is_empty() && s != "." && s != "..", "{s:?} from {path:?}");
                        prop_assert!(!s.contains(['/', '\\', '\0']), "{s:?} from {path:?}");
                    }
                }
            }

            /// Mount prefixes match whole segments only.
            #[test]
            fn mounts_cover_whole_segments(route in "/[a-z]{1,4}", path in "/[a-z/]{0,10}") {
                if let Some(rest) = under(&route, &path) {
                    let below = format!("{route}/");
                    prop_assert!(path == route || path.starts_with(&below), "{} under {}", path, route);
                    prop_assert!(path.ends_with(rest));
                }
            }
        }
    }
}
