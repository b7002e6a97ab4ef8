//! A Gust HTTP function that misbehaves on demand, for the host's end-to-end tests.
//!
//! It dispatches on the LAST segment of the request path (any route works,
//! e.g. `/t/{action}` or `/misbehave/loop`):
//!
//! | segment     | behaviour |
//! |-------------|-----------|
//! | `ok`        | 200 `ok` |
//! | `echo`      | 200 JSON `{method, path, query, params, body, route, function}` |
//! | `trap`      | `panic!("boom")` (a trap) |
//! | `loop`      | spins the CPU forever without calling the host (epoch interruption) |
//! | `oom`       | allocates and touches 1 MiB chunks forever (memory limit) |
//! | `stack`     | unbounded recursion (stack overflow) |
//! | `kv`        | increments `hits` in binding `store`, returns the new value |
//! | `kv-denied` | opens undeclared store `not-declared`: 200 `denied` on access-denied, else 500 |
//! | `var`       | 200 with the value of variable `?name=` (404 when unset) |
//! | `log`       | logs `hello from guest` at info and warn, 200 `logged` |
//! | `big`       | 200 with a 1 MiB body of `x` |
//! | `slow`      | busy-spins `?ms=` milliseconds on the monotonic clock, 200 `done` |
//! | `enqueue`   | sends the request body to queue binding `out`, 200 with the message id |
//! | `enqueue-denied` | sends to undeclared binding `nope`: 200 `denied` when refused |
//! | `log-flood` | logs `?lines=` lines (default 100,000) of ~120 bytes, 200 `logged N` |
//! | `outbound-flood` | opens `?n=` GET requests to `http://{?authority=}/{i}` all at once, then waits for each: 200 `ok A failed B refused C` |
//! | `fs` | reads `/etc/passwd` and lists `/`: 200 `denied` when both fail |
//! | `env` | 200 with the number of environment variables it sees |
//! | `socket` | opens a TCP connection to `?addr=`: 200 `denied` when refused |
//!
//! Anything else is a 404 listing the actions.

use gust_sdk::http::{self, Request, Response};
use gust_sdk::wasi::clocks::monotonic_clock;
use gust_sdk::{kv, log, queue, serde_json, variables};
use std::hint::black_box;

#[gust_sdk::http]
fn handle(req: Request) -> http::Result {
    let action = req.path().rsplit('/').next().unwrap_or("");
    match action {
        "ok" => Ok(Response::ok("ok")),
        "echo" => Ok(echo(&req)),
        "trap" => panic!("boom"),
        "loop" => spin_forever(),
        "oom" => exhaust_memory(),
        "stack" => Ok(Response::ok(recurse(black_box(0)).to_string())),
        "kv" => {
            let hits = kv::Store::open("store")?.increment("hits", 1)?;
            Ok(Response::ok(hits.to_string()))
        }
        "kv-denied" => Ok(match kv::Store::open("not-declared") {
            Err(kv::Error::AccessDenied) => Response::ok("denied"),
            Err(other) => Response::internal_error(format!("expected access-denied, got: {other}")),
            Ok(_) => Response::internal_error("expected access-denied, but the store opened"),
        }),
        "var" => {
            let name = req
                .query("name")
                .ok_or_else(|| http::Error::bad_request("missing ?name="))?;
            Ok(match variables::get(name)? {
                Some(value) => Response::ok(value),
                None => Response::text(404, format!("variable {name:?} is not set")),
            })
        }
        "log" => {
            log::info("hello from guest");
            log::warn("hello from guest");
            Ok(Response::ok("logged"))
        }
        "big" => Ok(Response::ok("x".repeat(1 << 20))),
        "enqueue" => Ok(match queue::send("out", req.body(), Some("text/plain")) {
            Ok(id) => Response::ok(id),
            Err(e) => Response::internal_error(e.to_string()),
        }),
        "enqueue-denied" => Ok(match queue::send("nope", b"x", None) {
            Err(_) => Response::ok("denied"),
            Ok(_) => Response::internal_error("expected the undeclared binding to be refused"),
        }),
        "log-flood" => {
            let lines: u32 = req.query("lines").unwrap_or("100000").parse().unwrap_or(0);
            let filler = "x".repeat(100);
            for i in 0..lines {
                log::info(&format!("flood line {i} {filler}"));
            }
            Ok(Response::ok(format!("logged {lines}")))
        }
        "outbound-flood" => {
            let n: usize = req.query("n").unwrap_or("500").parse().unwrap_or(0);
            let authority = req
                .query("authority")
                .ok_or_else(|| http::Error::bad_request("missing ?authority="))?;
            Ok(Response::ok(outbound_flood(n, authority)))
        }
        "fs" => {
            let read = std::fs::read_to_string("/etc/passwd");
            let list = std::fs::read_dir("/");
            Ok(match (read, list) {
                (Err(_), Err(_)) => Response::ok("denied"),
                _ => Response::internal_error("the guest could read the host's files"),
            })
        }
        "env" => Ok(Response::ok(std::env::vars().count().to_string())),
        "socket" => {
            let addr = req
                .query("addr")
                .ok_or_else(|| http::Error::bad_request("missing ?addr="))?;
            Ok(match std::net::TcpStream::connect(addr) {
                Err(_) => Response::ok("denied"),
                Ok(_) => Response::internal_error("the guest opened a socket"),
            })
        }
        "slow" => {
            let ms: u64 = req
                .query("ms")
                .unwrap_or("100")
                .parse()
                .map_err(|_| http::Error::bad_request("?ms= must be a number"))?;
            busy_wait(ms);
            Ok(Response::ok("done"))
        }
        _ => Ok(Response::text(
            404,
            "unknown action; try ok echo trap loop oom stack kv kv-denied var log big slow log-flood outbound-flood fs env socket",
        )),
    }
}

/// Everything the function saw, as JSON.
fn echo(req: &Request) -> Response {
    let pairs = |pairs: &[(String, String)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect::<serde_json::Map<_, _>>()
    };
    Response::json(&serde_json::json!({
        "method": req.method(),
        "path": req.path(),
        "query": pairs(req.query_pairs()),
        "params": pairs(req.params()),
        "body": String::from_utf8_lossy(req.body()),
        "route": req.route(),
        "function": req.function_name(),
        "headers": {
            "x-gust-route": req.header("x-gust-route"),
            "x-gust-function": req.header("x-gust-function"),
        },
    }))
}

/// Pure CPU work that never calls the host and is never optimised away.
fn spin_forever() -> ! {
    let mut x: u64 = 0;
    loop {
        x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

/// Keeps every 1 MiB chunk alive and writes to each page of it.
fn exhaust_memory() -> ! {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; 1 << 20];
        for i in (0..chunk.len()).step_by(4096) {
            chunk[i] = 1;
        }
        chunks.push(black_box(chunk));
        black_box(&chunks);
    }
}

/// Recursion without a base case; `black_box` keeps each frame on the stack.
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth; 32]);
    recurse(black_box(depth + 1)).wrapping_add(frame[black_box(7)])
}

/// Sends `n` GET requests to `authority` without waiting for any, then
/// waits for each answer.
fn outbound_flood(n: usize, authority: &str) -> String {
    use gust_sdk::wasi::http::outgoing_handler;
    use gust_sdk::wasi::http::types::{Fields, OutgoingBody, OutgoingRequest, Scheme};
    let mut pending = Vec::new();
    let mut refused = 0;
    for i in 0..n {
        let request = OutgoingRequest::new(Fields::new());
        let _ = request.set_scheme(Some(&Scheme::Http));
        let _ = request.set_authority(Some(authority));
        let _ = request.set_path_with_query(Some(&format!("/{i}")));
        let Ok(body) = request.body() else {
            refused += 1;
            continue;
        };
        match outgoing_handler::handle(request, None) {
            Ok(response) => {
                let _ = OutgoingBody::finish(body, None);
                pending.push(response);
            }
            Err(_) => refused += 1,
        }
    }
    let (mut ok, mut failed) = (0, 0);
    for response in pending {
        response.subscribe().block();
        match response.get() {
            Some(Ok(Ok(r))) if r.status() == 200 => ok += 1,
            _ => failed += 1,
        }
    }
    format!("ok {ok} failed {failed} refused {refused}")
}

/// Busy-waits `ms` milliseconds by polling the monotonic clock (no sleeping).
fn busy_wait(ms: u64) {
    let deadline = monotonic_clock::now().saturating_add(ms.saturating_mul(1_000_000));
    while monotonic_clock::now() < deadline {
        black_box(0);
    }
}
