//! End-to-end: `examples/web-api` under a real `gust up`, used the way a
//! visitor does: a headless Chromium opens the single-page app served from
//! the app's `[[static]]` folder, fills the profile, gets the ad the API
//! chose, clicks it and reads the stats; the API and the static file
//! serving (content types, 304, fallback, 404, traversal) are checked over
//! HTTP; then the same page works under `/web-api/` when `gust up` serves a
//! folder of apps.
//!
//! Every test runs against both versions of the app: `examples/web-api`
//! (functions in Rust) and `examples/web-api-ts` (the same functions in
//! TypeScript).

mod browser;
mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use browser::Browser;
use common::*;
use serde_json::{Value, json};

/// The two versions of the example: Rust and TypeScript functions.
const RUST: &str = "web-api";
const TYPESCRIPT: &str = "web-api-ts";

/// Copies the example `name` into `dest` (its manifest with sources
/// pointing back at the example's functions, and its `public/` folder).
fn copy_example(name: &str, dest: &Path) {
    let example = repo().join("examples").join(name);
    std::fs::create_dir_all(dest.join("public")).unwrap();
    let manifest = std::fs::read_to_string(example.join("gust.toml")).unwrap();
    let functions = format!("source = \"{}/functions/", example.display());
    std::fs::write(
        dest.join("gust.toml"),
        manifest.replace("source = \"functions/", &functions),
    )
    .unwrap();
    for entry in std::fs::read_dir(example.join("public")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dest.join("public").join(entry.file_name())).unwrap();
    }
}

/// A raw HTTP/1.1 GET (no client-side path normalisation): status line.
fn raw_get(url: &str, path: &str) -> String {
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn post_json(url: &str, body: &Value) -> Reply {
    send(
        "POST",
        url,
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    )
}

/// The stats row of ad `id`: (impressions, clicks, ctr).
fn stats_of(url: &str, id: &str) -> (u64, u64, f64) {
    let stats = get(&format!("{url}/api/stats"), &[]).json();
    let ad = stats["ads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id)
        .unwrap_or_else(|| panic!("no stats for {id}: {stats}"))
        .clone();
    (
        ad["impressions"].as_u64().unwrap(),
        ad["clicks"].as_u64().unwrap(),
        ad["ctr"].as_f64().unwrap(),
    )
}

/// In the browser: fill the profile, ask for the ad, return its title.
fn choose_in_browser(b: &Browser, age: u32, region: &str, interests: &[&str]) -> String {
    let wait = Duration::from_secs(20);
    b.wait_text("body", wait, |t| t.contains("Personalised ads"));
    assert!(
        browser::wait(wait, || b
            .execute("return document.body.dataset.ready === 'yes'", vec![])
            == json!(true)),
        "the page never loaded its catalogue: {}",
        b.text_of("#form-error")
    );
    let age_input = b.find("#age");
    b.clear(&age_input);
    b.type_text(&age_input, &age.to_string());
    b.click(&b.find(&format!("#region option[value={region}]")));
    for i in interests {
        b.click(&b.find(&format!("#interest-{i}")));
    }
    b.click(&b.find("#show"));
    b.wait_text("#ad-title", wait, |t| !t.is_empty())
}

#[test]
fn visitor_gets_a_targeted_ad_and_stats_in_a_real_browser() {
    visitor_gets_a_targeted_ad_and_stats(RUST);
}

#[test]
fn typescript_visitor_gets_a_targeted_ad_and_stats_in_a_real_browser() {
    visitor_gets_a_targeted_ad_and_stats(TYPESCRIPT);
}

fn visitor_gets_a_targeted_ad_and_stats(example: &str) {
    let app = tempfile::tempdir().unwrap();
    copy_example(example, app.path());
    let mut host = up(app.path(), &["--quiet"]);
    let url = host.url.clone();

    // ── Static files: the page, its assets, revalidation, fallback, errors.
    let page = get(&format!("{url}/"), &[]);
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page.body.contains("Personalised ads"));
    let tag = page.header("etag").expect("etag").to_string();
    let again = get(&format!("{url}/"), &[("if-none-match", &tag)]);
    assert_eq!((again.status, again.body.as_str()), (304, ""));
    for (file, ty) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let r = get(&format!("{url}/{file}"), &[]);
        assert_eq!(
            (r.status, r.header("content-type")),
            (200, Some(ty)),
            "{file}"
        );
    }
    let deep = get(&format!("{url}/campaigns/summer"), &[]);
    assert_eq!(deep.status, 200);
    assert!(deep.body.contains("Personalised ads"), "SPA fallback");
    let missing = get(&format!("{url}/missing.js"), &[]);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "not-found");
    for path in [
        "/../gust.toml",
        "/%2e%2e/gust.toml",
        "/public/..%2f..%2fgust.toml",
    ] {
        let r = raw_get(&url, path);
        assert!(r.starts_with("HTTP/1.1 400"), "{path}: {r}");
        assert!(!r.contains("[app]"), "{path} leaked the manifest");
    }
    // Function routes win; a file edited on disk shows without a reload.
    std::fs::write(app.path().join("public/note.txt"), "first").unwrap();
    assert_eq!(get(&format!("{url}/note.txt"), &[]).body, "first");
    std::fs::write(app.path().join("public/note.txt"), "second edit").unwrap();
    assert_eq!(get(&format!("{url}/note.txt"), &[]).body, "second edit");
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        !host.stderr().contains("reloaded"),
        "editing a static file reloaded the app"
    );

    // ── The API refuses bad input clearly.
    let bad = post_json(
        &format!("{url}/api/ad"),
        &json!({"age": 30, "region": "mars"}),
    );
    assert_eq!(bad.status, 422, "{bad:?}");
    assert!(
        bad.json()["error"]
            .as_str()
            .unwrap()
            .contains("unknown region")
    );
    let bad = send("POST", &format!("{url}/api/ad"), &[], b"not json");
    assert_eq!(bad.status, 400, "{bad:?}");
    let bad = post_json(&format!("{url}/api/ads/nope/click"), &json!({}));
    assert_eq!(bad.status, 404);
    let never_shown = post_json(&format!("{url}/api/ads/savings/click"), &json!({}));
    assert_eq!(never_shown.status, 409);
    assert_eq!(get(&format!("{url}/api/nothing"), &[]).status, 404);
    let catalogue = get(&format!("{url}/api/ads"), &[]).json();
    assert_eq!(catalogue["ads"].as_array().unwrap().len(), 8);

    // ── A visitor in the browser.
    let b = Browser::start();
    b.goto(&format!("{url}/"));
    // 34, Europe, outdoors + travel: trail boots score 420 × 2 × 1.25 = 1050,
    // ahead of the rail pass (712.5) and audiobooks (390).
    let title = choose_in_browser(&b, 34, "eu", &["outdoors", "travel"]);
    assert_eq!(title, "Trail boots that climb with you");
    let why = b.text_of("#ad-why");
    assert!(why.contains("outdoors, travel"), "{why}");
    assert!(why.contains("shown 1 time."), "{why}");
    b.click(&b.find("#ad-click"));
    b.wait_text("#click-result", Duration::from_secs(20), |t| {
        t.contains("clicked 1 time.")
    });
    b.wait_text("#stats-trail-boots", Duration::from_secs(20), |t| {
        t.contains("100.0%")
    });
    let row = b.execute(
        "const r = document.getElementById('stats-trail-boots');
         return [...r.cells].map((c) => c.textContent);",
        vec![],
    );
    assert_eq!(
        row,
        json!(["Trail boots that climb with you", "1", "1", "100.0%"])
    );
    assert_eq!(b.text_of("#total-impressions"), "1");
    b.screenshot(&browser::artifact(example));

    // ── The API agrees with what the page showed.
    assert_eq!(stats_of(&url, "trail-boots"), (1, 1, 1.0));
    let r = post_json(
        &format!("{url}/api/ad"),
        &json!({"age": 19, "region": "na", "interests": ["gaming"]}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let choice = r.json();
    // The retro console wants 25+; the laptop (500 × 1.5) wins.
    assert_eq!(choice["ad"]["id"], "dev-laptop");
    assert_eq!(choice["matched_interests"], json!(["gaming"]));
    let stats = get(&format!("{url}/api/stats"), &[]).json();
    assert_eq!(
        (stats["impressions"].as_u64(), stats["clicks"].as_u64()),
        (Some(2), Some(1))
    );
    assert!((stats["ctr"].as_f64().unwrap() - 0.5).abs() < 1e-9);
    drop(b);

    // ── HEAD answers the headers only.
    let head = send("HEAD", &format!("{url}/app.js"), &[], b"");
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    let size = std::fs::metadata(app.path().join("public/app.js"))
        .unwrap()
        .len();
    assert_eq!(
        head.header("content-length"),
        Some(size.to_string().as_str())
    );

    // ── Hot reload picks up a new [[static]] mount; a broken one is refused
    //    and the previous version keeps serving.
    let manifest = app.path().join("gust.toml");
    let original = std::fs::read_to_string(&manifest).unwrap();
    std::fs::create_dir_all(app.path().join("docs")).unwrap();
    std::fs::write(app.path().join("docs/guide.md"), "# Guide").unwrap();
    std::fs::write(
        &manifest,
        format!("{original}\n[[static]]\nroute = \"/docs\"\ndir = \"docs\"\n"),
    )
    .unwrap();
    assert!(
        eventually(Duration::from_secs(60), || get(
            &format!("{url}/docs/guide.md"),
            &[]
        )
        .status
            == 200),
        "the new mount never served: {}",
        host.stderr()
    );
    let guide = get(&format!("{url}/docs/guide.md"), &[]);
    assert_eq!(
        guide.header("content-type"),
        Some("text/markdown; charset=utf-8")
    );
    std::fs::write(
        &manifest,
        format!("{original}\n[[static]]\nroute = \"/docs\"\ndir = \"no-such-folder\"\n"),
    )
    .unwrap();
    assert!(
        eventually(Duration::from_secs(60), || host
            .stderr()
            .contains("static dir `no-such-folder` does not exist")),
        "{}",
        host.stderr()
    );
    assert_eq!(get(&format!("{url}/docs/guide.md"), &[]).body, "# Guide");
    assert_eq!(get(&format!("{url}/app.js"), &[]).status, 200);
    assert_eq!(host.stop(), Some(0));
}

#[test]
fn the_page_works_under_its_prefix_in_a_folder_of_apps() {
    page_works_under_its_prefix(RUST);
}

#[test]
fn typescript_page_works_under_its_prefix_in_a_folder_of_apps() {
    page_works_under_its_prefix(TYPESCRIPT);
}

fn page_works_under_its_prefix(example: &str) {
    let root = tempfile::tempdir().unwrap();
    copy_example(example, &root.path().join("web-api"));
    let mut host = up(root.path(), &["--quiet", "--no-watch"]);
    let front = host.url.clone();

    let b = Browser::start();
    // `/web-api` redirects to `/web-api/`, so the page's relative URLs
    // (`api/ad`, `app.js`) resolve under the prefix.
    b.goto(&format!("{front}/web-api"));
    let title = choose_in_browser(&b, 40, "apac", &["food"]);
    // Food in APAC: the noodle kit (300 × 1.5 × 1.25 = 562.5).
    assert_eq!(title, "Hand-pulled noodles at home");
    assert!(b.url().ends_with("/web-api/"), "{}", b.url());
    let stats = get(&format!("{front}/web-api/api/stats"), &[]).json();
    assert_eq!(stats["impressions"], 1);
    drop(b);
    assert_eq!(host.stop(), Some(0));
}
