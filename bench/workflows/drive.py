"""Drives bench/workflows.sh: starts `gust up` on a fresh app per backend,
measures the 3-step workflow and the 3-function queue chain, prints a table."""
import json, os, shutil, statistics, subprocess, sys, tempfile, threading, time, urllib.request

gust, wasm, n, runs, postgres = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]

def manifest(name):
    m = f'[app]\nname = "{name}"\n'
    m += '[[function]]\nname = "chain"\nsource = "probe.wasm"\ntrigger = { workflow = {} }\n'
    m += '[[function]]\nname = "double"\nsource = "probe.wasm"\ntrigger = { activity = {} }\n'
    for i, (src, dst) in enumerate([("chain-a", "chain-b"), ("chain-b", "chain-c"), ("chain-c", "chain-done")]):
        m += (f'[[function]]\nname = "hop{i + 1}"\nsource = "probe.wasm"\n'
              f'trigger = {{ queue = {{ queue = "{src}", batch_size = 64, concurrency = 64 }} }}\n'
              f'bindings = {{ next = {{ queue = "{dst}" }} }}\n')
    return m

def call(method, url, key, body=None):
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={"x-gust-key": key, "content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"null")

def run(label, extra):
    d = tempfile.mkdtemp()
    name = f"wfbench-{os.getpid()}-{int(time.time())}"
    open(os.path.join(d, "gust.toml"), "w").write(manifest(name))
    shutil.copy(wasm, os.path.join(d, "probe.wasm"))
    p = subprocess.Popen([gust, "up", d, "--listen", "127.0.0.1:0", "--quiet", "--no-watch", *extra],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url = None
    for line in p.stdout:
        if "ready" in line:
            url = line.split(" on ")[1].split()[0]
            break
    threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()
    key = json.load(open(os.path.join(d, ".gust/keys.json")))["admin"]
    wf = lambda path, body=None, m="GET": call(m, f"{url}/_gust/workflows/{path}", key, body)
    depth = lambda: call("GET", f"{url}/_gust/queues/chain-done", key)["depth"]
    send = lambda: call("POST", f"{url}/_gust/queues/chain-a/messages", key, b"1")

    def wf_once():
        t = time.perf_counter()
        i = wf("chain", b"1", "POST")["id"]
        while wf(f"chain/{i}")["status"] != "completed":
            time.sleep(0.001)
        return time.perf_counter() - t

    def q_once():
        before = depth()
        t = time.perf_counter()
        send()
        while depth() <= before:
            time.sleep(0.001)
        return time.perf_counter() - t

    for f in (wf_once, q_once):  # warm up
        f(); f()
    wf_lat = sorted(wf_once() for _ in range(runs))
    q_lat = sorted(q_once() for _ in range(runs))

    def burst(start, done):
        t = time.perf_counter()
        threads = [threading.Thread(target=lambda k=k: [start() for _ in range(k, n, 8)]) for k in range(8)]
        [th.start() for th in threads]
        [th.join() for th in threads]
        while not done():
            time.sleep(0.02)
        return time.perf_counter() - t

    base = len([i for i in wf("chain") if i["status"] == "completed"])
    wf_t = burst(lambda: wf("chain", b"1", "POST"),
                 lambda: len([i for i in wf("chain?max=100000") if i["status"] == "completed"]) >= base + n)
    d0 = depth()
    q_t = burst(send, lambda: depth() >= d0 + n)
    p.terminate(); p.wait()
    shutil.rmtree(d, ignore_errors=True)
    pct = lambda xs, q: xs[min(len(xs) - 1, int(q * len(xs)))] * 1000
    return [(label, "workflow (3 activities)", pct(wf_lat, .5), pct(wf_lat, .9), 3 * n / wf_t),
            (label, "queue chain (3 functions)", pct(q_lat, .5), pct(q_lat, .9), 3 * n / q_t)]

rows = run("embedded", [])
if postgres:
    rows += run("postgres", ["--postgres", postgres])
print(f"\nN = {n} at once for steps/s; {runs} sequential runs for latency (poll every 1 ms)\n")
print("| backend | what | latency p50 | latency p90 | steps/s |")
print("|---|---|---:|---:|---:|")
for b, w, p50, p90, sps in rows:
    print(f"| {b} | {w} | {p50:.1f} ms | {p90:.1f} ms | {sps:,.0f} |")
