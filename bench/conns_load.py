#!/usr/bin/env python3
"""Connection load for bench/conns.sh against one `gust up` on ADDR (pid PID).

Phases, one after another; in each, one client sends SAMPLES plain requests
(GET /raw/x, a wasi:http function) one at a time on a kept-alive connection
and we take p50/p99 of their latency, plus the host's RSS and open fds:
  baseline  nothing else going on
  silent    IDLE idle connections that never sent a byte
  kept      IDLE idle keep-alive connections, each after one served request
  headers   FLOODERS processes sending requests with 100,000 headers (and
            one 1 MiB header) back to back; counts how each was answered
  sse       SSE clients on one event stream, then one event published:
            every client must get it; time until the last one did
  kept again  the kept phase AGAIN more times (default 2): memory freed by
            the first round is reused, not added to
Prints one markdown table row per phase, and notes. Stdlib only.
"""
import http.client
import json
import multiprocessing
import os
import selectors
import socket
import sys
import time

ADDR = sys.argv[1]
PID = int(sys.argv[2])
HOST_KEY = sys.argv[3]
IDLE = int(os.environ.get("IDLE", "10000"))
SSE = int(os.environ.get("SSE", "2000"))
SAMPLES = int(os.environ.get("SAMPLES", "2000"))
FLOODERS = int(os.environ.get("FLOODERS", "4"))
AGAIN = int(os.environ.get("AGAIN", "2"))
host, port = ADDR.split(":")
port = int(port)


def rss_mib():
    with open(f"/proc/{PID}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def fds():
    return len(os.listdir(f"/proc/{PID}/fd"))


def plain_latencies(n):
    """n plain GETs on one kept-alive connection: latencies in ms, errors."""
    conn = http.client.HTTPConnection(host, port, timeout=30)
    out, errors = [], 0
    for i in range(n):
        t = time.perf_counter()
        try:
            conn.request("GET", f"/raw/{i}")
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                errors += 1
        except Exception:
            errors += 1
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=30)
        out.append((time.perf_counter() - t) * 1000)
    conn.close()
    return out, errors


def overflows():
    """The kernel's count of SYNs dropped for a full accept queue (the
    whole machine)."""
    with open("/proc/net/netstat") as f:
        rows = [l.split() for l in f if l.startswith("TcpExt:")]
    return int(rows[1][rows[0].index("ListenOverflows")])


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p / 100))]


rows = []
notes = []


def measure(phase, load):
    lat, errors = plain_latencies(SAMPLES)
    rows.append(
        f"| {phase} | {load} | {rss_mib():.0f} | {fds()} | {pct(lat, 50):.3f} | "
        f"{pct(lat, 99):.3f} | {max(lat):.1f} | {errors} |"
    )


# Warm up the function (compile cache, instance pool).
plain_latencies(200)
measure("baseline", "none")

# ---- idle connections ------------------------------------------------------
def idle_round(phase, served):
    idle = []
    t0 = time.perf_counter()
    o0 = overflows()
    for i in range(IDLE):
        s = socket.socket()
        s.settimeout(30)
        s.connect((host, port))
        if served:
            s.sendall(b"GET /_gust/health HTTP/1.1\r\nHost: a\r\n\r\n")
        idle.append(s)
    opened = time.perf_counter() - t0
    dropped = overflows() - o0
    time.sleep(1)  # let the host accept and answer them all
    kind = "keep-alive connections after one request" if served else "silent connections"
    measure(phase, f"{IDLE:,} idle {kind}")
    notes.append(
        f"{phase}: opened {IDLE:,} connections in {opened:.1f} s; accept-queue "
        f"overflows meanwhile (whole machine): {dropped}"
    )
    for s in idle:
        s.close()
    time.sleep(2)


idle_round("silent", False)
idle_round("kept", True)

# ---- header floods -----------------------------------------------------------
HEADERS = b"GET /raw/flood HTTP/1.1\r\nHost: a\r\n" + b"".join(
    b"X-H%d: v\r\n" % i for i in range(100_000)
) + b"\r\n"
BIG = b"GET /raw/flood HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n"
def flooder(stop, results):
    answers = {}
    n = 0
    while not stop.is_set():
        req = BIG if n % 2 else HEADERS
        n += 1
        try:
            s = socket.create_connection((host, port), timeout=30)
            try:
                s.sendall(req)
            except OSError:
                pass
            data = b""
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                pass
            s.close()
            what = data.split(b"\r\n", 1)[0].decode(errors="replace") or "closed"
        except OSError as e:
            what = f"error {e.__class__.__name__}"
        answers[what] = answers.get(what, 0) + 1
    results.put(answers)


# Separate processes, so the flooders do not hold the measuring client's GIL.
ctx = multiprocessing.get_context("fork")
stop = ctx.Event()
results = ctx.Queue()
procs = [ctx.Process(target=flooder, args=(stop, results)) for _ in range(FLOODERS)]
for p in procs:
    p.start()
time.sleep(0.5)
measure("headers", f"{FLOODERS} processes flooding 100k headers / 1 MiB header")
stop.set()
answers = {}
for _ in procs:
    for k, v in results.get().items():
        answers[k] = answers.get(k, 0) + v
for p in procs:
    p.join()
notes.append(
    "flood answers: " + ", ".join(f"{k}: {v}" for k, v in sorted(answers.items()))
)

# ---- SSE clients ---------------------------------------------------------------
sel = selectors.DefaultSelector()
streams = []
t0 = time.perf_counter()
for i in range(SSE):
    s = socket.create_connection((host, port), timeout=30)
    s.sendall(b"GET /jobs/j1/events HTTP/1.1\r\nHost: a\r\n\r\n")
    streams.append(s)
bufs = {s.fileno(): b"" for s in streams}


def wait_all(needle, deadline):
    """Reads every stream until each holds `needle`: how many did."""
    pending = {s.fileno(): s for s in streams if needle not in bufs[s.fileno()]}
    for s in pending.values():
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    while pending and time.perf_counter() < deadline:
        for key, _ in sel.select(timeout=1):
            s = key.fileobj
            try:
                chunk = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            bufs[s.fileno()] += chunk
            if needle in bufs[s.fileno()] or not chunk:
                sel.unregister(s)
                del pending[s.fileno()]
    for s in pending.values():
        sel.unregister(s)
    return sum(needle in bufs[s.fileno()] for s in streams)


connected = wait_all(b": connected", time.perf_counter() + 60)
notes.append(
    f"{connected:,} of {SSE:,} event streams open in {time.perf_counter() - t0:.1f} s"
)
measure("sse", f"{SSE:,} open event streams")
event = json.dumps({
    "specversion": "1.0", "id": "conns-1", "source": "/bench", "type": "job.progress",
    "subject": "j1", "datacontenttype": "text/plain", "data": "fan out",
}).encode()
conn = http.client.HTTPConnection(host, port, timeout=30)
t0 = time.perf_counter()
conn.request("POST", "/_gust/topics/job-events", body=event, headers={
    "x-gust-key": HOST_KEY, "content-type": "application/cloudevents+json"})
status = conn.getresponse().status
got = wait_all(b"id: conns-1\n", time.perf_counter() + 60)
notes.append(
    f"event published ({status}): {got:,} of {SSE:,} streams got it, the last after "
    f"{(time.perf_counter() - t0) * 1000:.0f} ms; host RSS then {rss_mib():.0f} MiB"
)
for s in streams:
    s.close()
time.sleep(2)
for i in range(AGAIN):
    idle_round(f"kept again ({i + 1})", True)
measure("after", "all closed")

print("| phase | load | RSS MiB | host fds | plain p50 ms | p99 ms | max ms | errors |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for r in rows:
    print(r)
print()
for n in notes:
    print(f"- {n}")
