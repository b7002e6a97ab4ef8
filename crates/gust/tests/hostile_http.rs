//! End-to-end: the listener against hostile and sloppy clients — slow and
//! silent connections are cut off after the header timeout while others
//! are served, `Host` is checked on every route, and HTTPS (HTTP/1.1 and
//! HTTP/2 by ALPN) with a certificate that is reloaded when its files
//! change; the CLI talks to an HTTPS host trusting a given CA; wrong admin
//! keys are slowed down per address, and keys rotate without a restart; a
//! `Last-Event-ID` holding any id the event stream wrote resumes after it.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// One anonymous wasi:http function answering `raw wasip2: <path>`, also
/// reachable through a gateway route under `/gw/`, and an event stream of
/// topic `job-events`.
fn app() -> TestApp {
    let app = TestApp::new(
        r#"
[app]
name = "hostile"

[[function]]
name = "raw"
source = "raw.wasm"
trigger = { http = { route = "/raw/{*rest}", auth = "anonymous" } }

[[function]]
name = "locked"
source = "raw.wasm"
trigger = { http = { route = "/locked/{*rest}", auth = "function" } }

[gateway]

[[gateway.route]]
name = "gw"
prefix = "/gw"
target = { function = "raw", rewrite = "/raw/{rest}" }

[[sse]]
route = "/jobs/{id}/events"
topic = "job-events"
subject = "{id}"
auth = "anonymous"
"#,
    );
    app.add_component("raw.wasm", &guest("raw-wasip2"));
    app
}

/// `host:port` of a URL like `http://127.0.0.1:1234`.
fn authority(url: &str) -> &str {
    url.split_once("://").map(|(_, a)| a).unwrap_or(url)
}

/// Sends `request` as is and reads the whole answer (the server closes
/// after it: every request here says `Connection: close` or is HTTP/1.0).
fn raw(addr: &str, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    (status, text)
}

/// Whether the server closed `s` (EOF or reset) within `bound`.
fn closed_within(s: &mut TcpStream, bound: Duration) -> bool {
    s.set_read_timeout(Some(bound)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn slow_and_silent_clients_are_cut_off_while_others_are_served() {
    let app = app();
    // Through node.toml, so its header_timeout and idle_timeout are used.
    let config = app.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\napp = \"{}\"\nheader_timeout = \"1s\"\nidle_timeout = \"2s\"\n",
            app.path().display()
        ),
    )
    .unwrap();
    let mut cmd = gust_command();
    cmd.arg("serve").arg("--config").arg(&config);
    let running = start_ready(cmd);
    let addr = authority(&running.url).to_string();
    let started = Instant::now();

    // 40 half request heads, 5 silent connections, 5 that trickle a byte
    // of their head every 200 ms (slow loris), 1 HTTP/2 preface and
    // nothing more.
    let mut half = Vec::new();
    for i in 0..40 {
        let mut s = TcpStream::connect(&addr).unwrap();
        write!(s, "GET /raw/{i} HTTP/1.1\r\nHost: a\r\nX-Slow: ").unwrap();
        half.push(s);
    }
    let silent: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    let trickle: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    let writers: Vec<TcpStream> = trickle.iter().map(|s| s.try_clone().unwrap()).collect();
    let trickler = std::thread::spawn(move || {
        let mut writers = writers;
        let head = b"GET /raw/loris HTTP/1.1\r\nHost: a\r\nX-A: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        // Stops when every connection refuses more, or after 60 bytes.
        for byte in head.iter().take(60) {
            let mut any = false;
            for w in &mut writers {
                any |= w.write_all(&[*byte]).is_ok();
            }
            if !any {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let mut h2 = TcpStream::connect(&addr).unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .unwrap();

    // Meanwhile a normal client is served.
    let ok = get(&format!("{}/raw/ok", running.url), &[]);
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body, "raw wasip2: /raw/ok");

    let bound = Duration::from_secs(15);
    for (i, s) in half.iter_mut().enumerate() {
        assert!(closed_within(s, bound), "half head #{i} still open");
    }
    for (i, mut s) in silent.into_iter().enumerate() {
        assert!(closed_within(&mut s, bound), "silent #{i} still open");
    }
    for (i, mut s) in trickle.into_iter().enumerate() {
        assert!(closed_within(&mut s, bound), "slow loris #{i} still open");
    }
    assert!(
        closed_within(&mut h2, bound),
        "idle HTTP/2 connection still open"
    );
    trickler.join().unwrap();

    // A kept-alive connection that served a request is closed once idle.
    let mut kept = TcpStream::connect(&addr).unwrap();
    kept.write_all(b"GET /raw/kept HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    kept.set_read_timeout(Some(bound)).unwrap();
    let mut buf = [0u8; 4096];
    let n = kept.read(&mut buf).unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert!(
        closed_within(&mut kept, bound),
        "idle keep-alive connection still open"
    );

    // And the server still serves.
    let ok = get(&format!("{}/raw/after", running.url), &[]);
    assert_eq!(ok.status, 200, "{}", ok.body);
    eprintln!("slow clients test: {:?}", started.elapsed());
}

#[test]
fn host_is_checked_on_every_route() {
    let app = app();
    let running = up(app.path(), &["--no-watch"]);
    let addr = authority(&running.url).to_string();
    let paths = ["/raw/x", "/gw/x", "/_gust/health"];
    for path in paths {
        let bad: [(&str, Vec<u8>); 8] = [
            (
                "missing",
                format!("GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n").into(),
            ),
            (
                "twice",
                format!("GET {path} HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n")
                    .into(),
            ),
            (
                "space",
                format!("GET {path} HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n").into(),
            ),
            (
                "bracket",
                format!("GET {path} HTTP/1.1\r\nHost: [::1\r\nConnection: close\r\n\r\n").into(),
            ),
            (
                "port",
                format!("GET {path} HTTP/1.1\r\nHost: x:99999\r\nConnection: close\r\n\r\n").into(),
            ),
            (
                "empty",
                format!("GET {path} HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n").into(),
            ),
            (
                "userinfo",
                format!("GET {path} HTTP/1.1\r\nHost: u@x\r\nConnection: close\r\n\r\n").into(),
            ),
            (
                "not utf-8",
                [
                    format!("GET {path} HTTP/1.1\r\nHost: caf").as_bytes(),
                    b"\xe9\xff",
                    b"\r\nConnection: close\r\n\r\n",
                ]
                .concat(),
            ),
        ];
        for (what, request) in bad {
            let (status, text) = raw(&addr, &request);
            assert_eq!(status, 400, "{what} Host on {path}: {text}");
            assert!(text.contains("bad-host") && text.contains("Host"), "{text}");
        }
        // HTTP/1.0 without Host is served (as the address connected to).
        let (status, text) = raw(&addr, format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes());
        assert_eq!(status, 200, "HTTP/1.0 on {path}: {text}");
        for host in ["example.com", "example.com:8080", "[::1]:80", &addr] {
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
            let (status, text) = raw(&addr, request.as_bytes());
            assert_eq!(status, 200, "Host {host} on {path}: {text}");
        }
    }
    let (_, text) = raw(&addr, b"GET /raw/ten HTTP/1.0\r\n\r\n");
    assert!(text.ends_with("raw wasip2: /raw/ten"), "{text}");
}

/// Writes a self-signed certificate for `localhost` and 127.0.0.1 to
/// `cert` and its key to `key` with the openssl CLI.
fn self_signed(dir: &Path, cert: &str, key: &str) {
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            key,
            "-out",
            cert,
        ])
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run openssl");
    assert!(status.success(), "openssl req failed");
}

/// `curl` over HTTPS trusting `ca`: (exit code, body, HTTP version).
fn curl(ca: &Path, url: &str, version: &str) -> (i32, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", version, "--cacert"])
        .arg(ca)
        .args(["-w", "\n%{http_version}", url])
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, http) = text.rsplit_once('\n').unwrap_or((&text, ""));
    (
        out.status.code().unwrap_or(-1),
        body.to_string(),
        http.to_string(),
    )
}

#[test]
fn https_and_http2_with_a_certificate_reloaded_on_change() {
    let app = app();
    let certs = tempfile::tempdir().unwrap();
    self_signed(certs.path(), "cert.pem", "key.pem");
    self_signed(certs.path(), "next-cert.pem", "next-key.pem");
    let cert = certs.path().join("cert.pem");
    let key = certs.path().join("key.pem");
    let first_ca = certs.path().join("first-ca.pem");
    std::fs::copy(&cert, &first_ca).unwrap();
    let running = up(
        app.path(),
        &[
            "--no-watch",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--header-timeout",
            "2s",
        ],
    );
    assert!(
        running.url.starts_with("https://127.0.0.1:"),
        "{}",
        running.url
    );
    let url = format!("{}/raw/secure?x=1", running.url);

    let (code, body, http) = curl(&first_ca, &url, "--http1.1");
    assert_eq!(code, 0, "curl over HTTP/1.1 failed: {body}");
    assert_eq!(
        (body.as_str(), http.as_str()),
        ("raw wasip2: /raw/secure?x=1", "1.1")
    );
    let (code, body, http) = curl(&first_ca, &url, "--http2");
    assert_eq!(code, 0, "curl over HTTP/2 failed: {body}");
    assert_eq!(
        (body.as_str(), http.as_str()),
        ("raw wasip2: /raw/secure?x=1", "2")
    );

    // Plain HTTP on the TLS port is not served; a client that never says
    // hello is closed after the header timeout.
    let addr = authority(&running.url).to_string();
    let mut plain = TcpStream::connect(&addr).unwrap();
    plain
        .write_all(b"GET /raw/x HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    assert!(closed_within(&mut plain, Duration::from_secs(15)));
    let mut silent = TcpStream::connect(&addr).unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(15)));

    // Replace the pair (key first, as a renewal script might): new
    // connections get the new certificate.
    std::fs::rename(certs.path().join("next-key.pem"), &key).unwrap();
    std::fs::rename(certs.path().join("next-cert.pem"), &cert).unwrap();
    let renewed = eventually(Duration::from_secs(15), || {
        curl(&cert, &url, "--http2").0 == 0
    });
    assert!(
        renewed,
        "the new certificate was never served:\n{}",
        running.stderr()
    );
    let (code, _, _) = curl(&first_ca, &url, "--http1.1");
    assert_ne!(code, 0, "the old certificate is still served");
}

/// Writes a test CA (`ca.pem`) and a certificate it signed for localhost
/// and 127.0.0.1 (`cert.pem`, key `key.pem`) into `dir` with the openssl
/// CLI. (rustls refuses a self-signed CA certificate as a server's own.)
fn ca_signed(dir: &Path) {
    let run = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("run openssl");
        assert!(status.success(), "openssl {args:?} failed");
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    let with_ec = |before: &[&'static str], after: &[&'static str]| -> Vec<&'static str> {
        [before, &ec[..], after].concat()
    };
    run(&with_ec(
        &["req", "-x509", "-nodes", "-days", "2"],
        &[
            "-subj",
            "/CN=gust test CA",
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca.pem",
        ],
    ));
    run(&with_ec(
        &["req", "-new", "-nodes"],
        &[
            "-subj",
            "/CN=localhost",
            "-keyout",
            "key.pem",
            "-out",
            "cert.csr",
        ],
    ));
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "cert.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca-key.pem",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
        "-out",
        "cert.pem",
    ]);
}

#[test]
fn the_cli_talks_https_trusting_a_given_ca() {
    let app = app();
    let certs = tempfile::tempdir().unwrap();
    ca_signed(certs.path());
    let file = |name: &str| certs.path().join(name).to_str().unwrap().to_string();
    let (ca, cert, key) = (file("ca.pem"), file("cert.pem"), file("key.pem"));
    let running = up(
        app.path(),
        &["--no-watch", "--tls-cert", &cert, "--tls-key", &key],
    );
    assert!(
        running.url.starts_with("https://127.0.0.1:"),
        "{}",
        running.url
    );
    let dir = app.path().to_str().unwrap().to_string();
    let admin = admin_key(app.path());
    // `gust <args>` in the app folder, with `env` and no GUST_CA_CERT of ours.
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = gust_command();
        cmd.env_remove("GUST_CA_CERT")
            .args(args)
            .current_dir(app.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let url = running.url.as_str();

    // With the CA: by flag, by environment, and with the URL from the app
    // folder's record.
    let (code, out, err) = run(
        &["ls", "--url", url, "--key", &admin, "--ca-cert", &ca],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("FUNCTION") && out.contains("raw"), "{out}");
    let (code, out, err) = run(
        &["ls", "--url", url, "--key", &admin],
        &[("GUST_CA_CERT", &ca)],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("raw"), "{out}");
    let (code, out, err) = run(&["ls", "--app", &dir, "--ca-cert", &ca], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("raw"), "{out}");

    // Without it: a clear certificate error, not "is gust up running?".
    let (code, _, err) = run(&["ls", "--url", url, "--key", &admin], &[]);
    assert_ne!(code, 0);
    assert!(
        err.contains("certificate") && err.contains("not trusted") && err.contains("--ca-cert"),
        "{err}"
    );
    // Plain HTTP to the HTTPS listener: a hint at the scheme.
    let plain_url = url.replacen("https://", "http://", 1);
    let (code, _, err) = run(&["ls", "--url", &plain_url, "--key", &admin], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("use an https:// URL"), "{err}");
    // The server's own certificate is not a CA: refused as well.
    let (code, _, err) = run(
        &["ls", "--url", url, "--key", &admin, "--ca-cert", &cert],
        &[],
    );
    assert_ne!(code, 0);
    assert!(err.contains("certificate"), "{err}");
    let (code, _, err) = run(
        &["ls", "--url", url, "--key", &admin, "--ca-cert", "nope.pem"],
        &[],
    );
    assert_ne!(code, 0);
    assert!(err.contains("cannot read the CA file nope.pem"), "{err}");
    let (code, _, err) = run(
        &["ls", "--url", url, "--key", &admin, "--ca-cert", &key],
        &[],
    );
    assert_ne!(code, 0);
    assert!(err.contains("holds no certificate"), "{err}");

    // `keys rotate` does not fall back to rotating offline when the host
    // runs but is not trusted (it would keep the old keys); with the CA
    // the host rotates at once.
    let before = keys(app.path());
    let (code, _, err) = run(&["keys", "rotate", &dir, "--admin"], &[]);
    assert_ne!(code, 0, "rotated without trusting the host");
    assert!(err.contains("not trusted"), "{err}");
    assert_eq!(keys(app.path())["admin"], before["admin"]);
    let (code, _, err) = run(&["keys", "rotate", &dir, "--admin", "--ca-cert", &ca], &[]);
    assert_eq!(code, 0, "{err}");
    let new_admin = admin_key(app.path());
    assert_ne!(new_admin, before["admin"].as_str().unwrap());
    let (code, _, err) = run(
        &["ls", "--url", url, "--key", &new_admin, "--ca-cert", &ca],
        &[],
    );
    assert_eq!(code, 0, "{err}");
}

/// Opens `path` as an event stream over a raw HTTP/1.1 connection with
/// the `extra` header lines and reads until `frames` events came (or 30 s
/// passed): the bytes received and each `id:` value, as a browser keeps it.
fn sse_ids(addr: &str, path: &str, extra: &[u8], frames: usize) -> (String, Vec<Vec<u8>>) {
    let mut s = TcpStream::connect(addr).unwrap();
    let head = [
        format!("GET {path} HTTP/1.1\r\nHost: a\r\n").as_bytes(),
        extra,
        b"\r\n",
    ]
    .concat();
    s.write_all(&head).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let ids = |got: &[u8]| -> Vec<Vec<u8>> {
        got.split(|b| *b == b'\n')
            .filter_map(|line| line.strip_prefix(b"id: ").map(<[u8]>::to_vec))
            .collect()
    };
    while ids(&got).len() < frames {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let found = ids(&got);
    (String::from_utf8_lossy(&got).into_owned(), found)
}

#[test]
fn last_event_id_resumes_after_any_id_the_stream_wrote() {
    let app = app();
    let running = up(app.path(), &["--no-watch"]);
    let addr = authority(&running.url).to_string();
    let host_key = keys(app.path())["host"].as_str().unwrap().to_string();
    // Ids a browser cannot send back as they are: non-ASCII text, spaces
    // and tabs around, a line break.
    let ids = ["caf\u{e9} \u{1f600}", " padded\t", "two\nlines", "plain"];
    for id in ids {
        let event = serde_json::json!({
            "specversion": "1.0", "id": id, "source": "/jobs", "type": "job.progress",
            "subject": "j1", "datacontenttype": "text/plain", "data": "d",
        });
        let r = send(
            "POST",
            &format!("{}/_gust/topics/job-events", running.url),
            &[
                ("x-gust-key", host_key.as_str()),
                ("content-type", "application/cloudevents+json"),
            ],
            event.to_string().as_bytes(),
        );
        assert_eq!(r.status, 202, "{r:?}");
    }
    let (text, written) = sse_ids(&addr, "/jobs/j1/events", b"", ids.len());
    assert_eq!(written.len(), ids.len(), "{text}");
    // What the browser keeps (one space after `id:` dropped) goes back
    // byte for byte: the stream resumes with the next event.
    for k in 0..ids.len() - 1 {
        let header = [&b"Last-Event-ID: "[..], &written[k], b"\r\n"].concat();
        let (text, resumed) = sse_ids(&addr, "/jobs/j1/events", &header, 1);
        assert_eq!(
            resumed.first(),
            Some(&written[k + 1]),
            "after {:?}: {text}",
            ids[k]
        );
    }
    // A header that is not UTF-8 names no event: everything is replayed,
    // with a comment saying why.
    let (text, replayed) = sse_ids(
        &addr,
        "/jobs/j1/events",
        b"Last-Event-ID: \xff\xfe\r\n",
        ids.len(),
    );
    assert!(text.contains(": Last-Event-ID is not UTF-8"), "{text}");
    assert_eq!(replayed, written, "{text}");
    let (text, replayed) = sse_ids(
        &addr,
        "/jobs/j1/events",
        b"Last-Event-ID: plain\r\nLast-Event-ID: plain\r\n",
        ids.len(),
    );
    assert!(text.contains("sent 2 times"), "{text}");
    assert_eq!(replayed, written, "{text}");
}

/// `curl` from source address `from` with header `x-gust-key: key`: the
/// status code.
fn status_from(from: &str, url: &str, key: &str) -> u16 {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "--max-time",
            "10",
            "--interface",
            from,
        ])
        .args(["-w", "%{http_code}", "-H"])
        .arg(format!("x-gust-key: {key}"))
        .arg(url)
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0)
}

#[test]
fn wrong_admin_keys_are_slowed_down_per_address() {
    let app = app();
    let running = up(app.path(), &["--no-watch"]);
    let admin = admin_key(app.path());
    let url = format!("{}/_gust/app", running.url);
    // Five wrong keys are answered 401 as usual; the sixth makes the
    // address wait, so the seventh is 429 with Retry-After.
    for attempt in 1..=6 {
        let r = get(&url, &[("x-gust-key", "guess")]);
        assert_eq!(r.status, 401, "attempt {attempt}: {}", r.body);
    }
    let blocked = get(&url, &[("x-gust-key", "guess")]);
    assert_eq!(blocked.status, 429, "{}", blocked.body);
    assert_eq!(blocked.json()["error"], "too-many-failures");
    let wait: u64 = blocked.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    // While it waits, even the right key from that address is refused ...
    assert_eq!(get(&url, &[("x-gust-key", &admin)]).status, 429);
    // ... but another address is served, and functions are not throttled.
    assert_eq!(status_from("127.0.0.2", &url, &admin), 200);
    assert_eq!(get(&format!("{}/raw/x", running.url), &[]).status, 200);
    // After the wait the right key works again and clears the record.
    std::thread::sleep(Duration::from_secs(wait));
    assert_eq!(get(&url, &[("x-gust-key", &admin)]).status, 200);
    assert_eq!(get(&url, &[("x-gust-key", "guess")]).status, 401);
}

#[test]
fn keys_rotate_without_a_restart() {
    let app = app();
    let dir = app.path().to_str().unwrap().to_string();
    let mut running = up(app.path(), &["--no-watch"]);
    let before = keys(app.path());
    let locked = format!("{}/locked/x", running.url);
    let admin_url = format!("{}/_gust/app", running.url);
    let old_fn = before["functions"]["locked"].as_str().unwrap().to_string();
    let old_admin = before["admin"].as_str().unwrap().to_string();
    assert_eq!(get(&locked, &[("x-gust-key", &old_fn)]).status, 200);

    // One function's key: the old one stops working at once, nothing else changes.
    let (code, out, err) = gust(
        &["keys", "rotate", &dir, "--function", "locked"],
        app.path(),
    );
    assert_eq!(code, 0, "{err}");
    let after = keys(app.path());
    let new_fn = after["functions"]["locked"].as_str().unwrap();
    assert_ne!(new_fn, old_fn);
    assert!(out.contains(&format!("function locked {new_fn}")), "{out}");
    assert_eq!(after["admin"], before["admin"]);
    assert_eq!(after["host"], before["host"]);
    assert_eq!(get(&locked, &[("x-gust-key", &old_fn)]).status, 403);
    assert_eq!(get(&locked, &[("x-gust-key", new_fn)]).status, 200);

    // All keys, the admin key included: the CLI used the old admin key to
    // ask the host, which now accepts only the new one.
    let (code, out, err) = gust(&["keys", "rotate", &dir], app.path());
    assert_eq!(code, 0, "{err}");
    let rotated = keys(app.path());
    let new_admin = rotated["admin"].as_str().unwrap();
    assert_ne!(new_admin, old_admin);
    assert!(out.contains(&format!("admin {new_admin}")), "{out}");
    assert_ne!(rotated["host"], after["host"]);
    assert_eq!(get(&admin_url, &[("x-gust-key", &old_admin)]).status, 401);
    assert_eq!(get(&admin_url, &[("x-gust-key", new_admin)]).status, 200);
    assert_eq!(get(&locked, &[("x-gust-key", new_fn)]).status, 403);
    let host_key = rotated["host"].as_str().unwrap();
    assert_eq!(get(&locked, &[("x-gust-key", host_key)]).status, 200);
    assert!(running.alive(), "{}", running.stderr());
    let logs = get(
        &format!("{}/_gust/logs?tail=50", running.url),
        &[("x-gust-key", new_admin)],
    );
    assert!(logs.body.contains("keys rotated (all)"), "{}", logs.body);
    assert!(!logs.body.contains(new_admin), "a key reached the log");

    // With no host running, the file is rewritten for the next start.
    running.stop();
    let (code, _, err) = gust(&["keys", "rotate", &dir, "--host"], app.path());
    assert_eq!(code, 0, "{err}");
    let offline = keys(app.path());
    assert_ne!(offline["host"], rotated["host"]);
    assert_eq!(offline["admin"], rotated["admin"]);
}
