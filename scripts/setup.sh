#!/usr/bin/env bash
# Installs what building and testing Gust needs on a fresh machine: the
# wasm32-wasip2 Rust target; with --services (the test path, scripts/test.sh)
# also Debian's chromium and chromedriver (the example apps' pages are tested
# in a headless browser) and prometheus (promtool and a server for the
# metrics test), and starts the local services the engine-backed
# tests talk to if they are down (installing the S3 test server, moto, with
# pip if it is missing). With --bench, instead, what the benchmarks in
# bench/ need beyond that (wrk).
set -euo pipefail

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  echo "setup: rustup target add wasm32-wasip2"
  rustup target add wasm32-wasip2
fi

# The headless browser is for the tests only (scripts/test.sh passes
# --services); running Gust (scripts/up.sh) never waits for it.
install_browser() {
  if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then return 0; fi
  if command -v apt-get >/dev/null; then
    echo "setup: apt-get install chromium chromium-driver (headless browser tests)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "setup: chromium and chromedriver are missing and apt-get is not available; the browser tests will fail" >&2
  fi
}
# promtool and a Prometheus server check the metrics text and scrape it in
# crates/gust/tests/metrics.rs (tests only, like the browser).
install_prometheus() {
  if command -v promtool >/dev/null && command -v prometheus >/dev/null; then return 0; fi
  if command -v apt-get >/dev/null; then
    echo "setup: apt-get install prometheus (promtool and a server for the metrics test)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    echo "setup: promtool is missing and apt-get is not available; the metrics test will fail" >&2
  fi
}
# wrk drives bench/gateway.sh (benchmarks only: `scripts/setup.sh --bench`).
install_wrk() {
  if command -v wrk >/dev/null; then return 0; fi
  if command -v apt-get >/dev/null; then
    echo "setup: apt-get install wrk (HTTP load for bench/gateway.sh)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
  else
    echo "setup: wrk is missing and apt-get is not available; bench/gateway.sh will not run" >&2
  fi
}
if [[ "${1:-}" == "--services" ]]; then
  install_browser
  install_prometheus
fi
if [[ "${1:-}" == "--bench" ]]; then
  install_wrk
  exit 0
fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

ensure_service() { # name port command...
  local name=$1 port=$2; shift 2
  if port_open "$port"; then return 0; fi
  echo "setup: $name is down on :$port, starting it"
  "$@" || echo "setup: could not start $name" >&2
  for _ in $(seq 1 30); do port_open "$port" && return 0; sleep 1; done
  echo "setup: $name still not listening on :$port" >&2
  return 1
}

if [[ "${1:-}" == "--services" ]]; then
  ensure_service nats 4222 start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  ensure_service postgresql 5432 bash -c 'pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start'
  ensure_service redis 6379 redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
  ensure_service mosquitto 1883 mosquitto -d -c /etc/mosquitto/mosquitto.conf
  ensure_service rabbitmq 5672 rabbitmq-server -detached
  # S3: moto's server (any credentials, no signature checks) on :9000.
  if ! port_open 9000 && ! python3 -c 'import moto.server' 2>/dev/null; then
    echo "setup: pip install moto[server] (S3 test server)"
    python3 -m pip install --quiet --disable-pip-version-check 'moto[server]'
  fi
  ensure_service s3 9000 bash -c 'setsid nohup python3 -m moto.server -H 127.0.0.1 -p 9000 >/var/log/moto-s3.log 2>&1 &'
  ensure_service mariadb 3306 start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
fi
