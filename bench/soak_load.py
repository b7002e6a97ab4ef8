#!/usr/bin/env python3
"""Mixed load for bench/soak.sh against `gust up examples` (one front on BASE).

Each worker thread loops over one kind of request for DURATION seconds:
HTTP (hello, web-api), queue (async-jobs submissions, worked off a queue),
topic (event-sourcing tasks published to a topic), stream (iot-stream
telemetry appended to a stream), change feed (cqrs commands: creates, and deletes every other contact
it created) and SSE
(clients that open a job's event stream, read, and leave). Every WINDOW
seconds it prints one CSV line: t, requests, errors, p50_ms, p99_ms.
Stdlib only.
"""
import http.client
import json
import random
import sys
import threading
import time
import urllib.parse

BASE = sys.argv[1]
DURATION = float(sys.argv[2])
WINDOW = float(sys.argv[3]) if len(sys.argv) > 3 else 10.0
host, port = urllib.parse.urlsplit(BASE).netloc.split(":")
port = int(port)

lock = threading.Lock()
latencies = []
errors = [0]
error_samples = []
stop_at = time.monotonic() + DURATION

# A tiny valid PNG (1x1) for async-jobs: it makes a thumbnail of it.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de"
    "0000000c4944415408d763f8cfc0000003010100c9fe92ef0000000049454e44ae426082"
)


def record(ms, ok, what=""):
    with lock:
        latencies.append(ms)
        if not ok:
            errors[0] += 1
            if len(error_samples) < 5:
                error_samples.append(what)


def request(conn, method, path, body=None, headers=None, ok=(200, 201, 202)):
    started = time.monotonic()
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        good = r.status in ok
        record((time.monotonic() - started) * 1000, good, f"{method} {path}: {r.status} {data[:120]!r}")
        return data
    except Exception as e:  # a broken connection counts as an error
        record((time.monotonic() - started) * 1000, False, f"{method} {path}: {e}")
        conn.close()
        return None


def worker(kind):
    conn = http.client.HTTPConnection(host, port, timeout=30)
    n = 0
    while time.monotonic() < stop_at:
        n += 1
        if kind == "hello":
            request(conn, "GET", f"/hello/hello?name=soak{n}")
        elif kind == "web":
            request(conn, "POST", "/web-api/api/ad",
                    json.dumps({"age": 19 + n % 50, "region": "na", "interests": ["gaming"]}),
                    {"content-type": "application/json"})
        elif kind == "queue":
            request(conn, "POST", "/async-jobs/jobs", PNG, {"content-type": "image/png"})
            time.sleep(0.2)
        elif kind == "topic":
            request(conn, "POST", "/event-sourcing/api/tasks",
                    json.dumps({"title": f"soak {n}", "priority": random.choice(["low", "high"])}),
                    {"content-type": "application/json"})
        elif kind == "stream":
            device = f"soak{n % 20:02d}"
            reading = {"seq": n, "ts": int(time.time() * 1000), "temperature": 20 + random.random() * 5}
            request(conn, "POST", f"/iot-stream/api/devices/{device}/telemetry",
                    json.dumps(reading), {"content-type": "application/json"})
        elif kind == "feed":
            # Create, then delete every other contact: the change feed sees
            # both, and the table grows half as fast.
            data = request(conn, "POST", "/cqrs/api/commands/contacts",
                           json.dumps({"name": f"Soak {n}", "email": f"soak{n}@example.org"}),
                           {"content-type": "application/json"})
            try:
                contact = json.loads(data)["id"] if data and n % 2 else None
            except (ValueError, KeyError):
                contact = None
            if contact:
                request(conn, "DELETE", f"/cqrs/api/commands/contacts/{contact}", ok=(204,))
        elif kind == "sse":
            data = request(conn, "POST", "/async-jobs/jobs", PNG, {"content-type": "image/png"})
            try:
                job = json.loads(data)["id"] if data else None
            except (ValueError, KeyError):
                job = None
            if job:
                sse = http.client.HTTPConnection(host, port, timeout=10)
                started = time.monotonic()
                try:
                    sse.request("GET", f"/async-jobs/jobs/{job}/events", headers={"accept": "text/event-stream"})
                    r = sse.getresponse()
                    ok = r.status == 200
                    # Read until the job's completion event or 5 s.
                    deadline = time.monotonic() + 5
                    seen = b""
                    while ok and time.monotonic() < deadline and b"completed" not in seen and b"failed" not in seen:
                        chunk = r.fp.readline()
                        if not chunk:
                            break
                        seen += chunk
                    record((time.monotonic() - started) * 1000, ok, f"SSE {job}: {r.status}")
                except Exception as e:
                    record((time.monotonic() - started) * 1000, False, f"SSE {job}: {e}")
                finally:
                    sse.close()
            time.sleep(0.5)


KINDS = ["hello", "hello", "web", "queue", "topic", "stream", "feed", "sse", "sse"]
threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in KINDS]
for t in threads:
    t.start()

began = time.monotonic()
print("t,requests,errors,p50_ms,p99_ms", flush=True)
while time.monotonic() < stop_at:
    time.sleep(WINDOW)
    with lock:
        window, latencies[:] = sorted(latencies), []
        errs, errors[0] = errors[0], 0
    if window:
        p50 = window[len(window) // 2]
        p99 = window[min(len(window) - 1, int(len(window) * 0.99))]
    else:
        p50 = p99 = 0.0
    print(f"{time.monotonic() - began:.0f},{len(window)},{errs},{p50:.1f},{p99:.1f}", flush=True)
for t in threads:
    t.join(timeout=35)
if error_samples:
    print("# first errors: " + " | ".join(error_samples), file=sys.stderr)
