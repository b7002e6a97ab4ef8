#!/usr/bin/env python3
"""Shipping quotes: the api-gateway example's external HTTP backend.

A stand-in for a carrier-rates service the shop does not run on Gust. The
gateway proxies `GET /v1/shipping/quotes` to `GET /quotes` here, adding the
caller's consumer name in `x-gust-consumer`.

    python3 examples/api-gateway/backend/shipping.py            # 127.0.0.1:7081
    python3 examples/api-gateway/backend/shipping.py --port 0   # any free port

Routes:
    GET /quotes?weight_kg=2.5&to=DE[&from=NL]  -> quotes from three carriers
    GET /health                                 -> {"status": "ok"}

Only the Python standard library is used.
"""

import argparse
import json
import math
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

ORIGIN = "NL"
EU = {
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR",
    "HU", "IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
}
MAX_WEIGHT_KG = 30.0

# carrier, service, base price in cents and price per started kg by zone, days by zone
CARRIERS = [
    ("PostNL", "standard", {"domestic": (495, 50), "eu": (1195, 150), "world": (2495, 450)},
     {"domestic": 1, "eu": 3, "world": 8}),
    ("DPD", "economy", {"domestic": (595, 35), "eu": (995, 120), "world": (2995, 380)},
     {"domestic": 2, "eu": 4, "world": 10}),
    ("DHL", "express", {"domestic": (1295, 80), "eu": (2495, 250), "world": (5995, 700)},
     {"domestic": 1, "eu": 1, "world": 3}),
]


def zone(origin, destination):
    """The price zone of a shipment between two ISO country codes."""
    if origin == destination:
        return "domestic"
    if origin in EU and destination in EU:
        return "eu"
    return "world"


def quotes(origin, destination, weight_kg):
    """Every carrier's quote, cheapest first."""
    z = zone(origin, destination)
    kilos = max(1, math.ceil(weight_kg))
    out = []
    for carrier, service, prices, days in CARRIERS:
        base, per_kg = prices[z]
        out.append({
            "carrier": carrier,
            "service": service,
            "price_cents": base + per_kg * kilos,
            "currency": "EUR",
            "days": days[z],
        })
    out.sort(key=lambda q: (q["price_cents"], q["days"]))
    return z, out


def parse_quote_request(query):
    """(origin, destination, weight) from a query string, or raises ValueError."""
    params = parse_qs(query)

    def one(name, default=None):
        values = params.get(name)
        return values[0].strip() if values else default

    weight_text = one("weight_kg")
    if weight_text is None:
        raise ValueError("weight_kg is required, e.g. weight_kg=2.5")
    try:
        weight = float(weight_text)
    except ValueError:
        raise ValueError(f"weight_kg `{weight_text}` is not a number") from None
    if not (0 < weight <= MAX_WEIGHT_KG) or math.isnan(weight):
        raise ValueError(f"weight_kg must be above 0 and at most {MAX_WEIGHT_KG:g}")
    destination = (one("to") or "").upper()
    origin = (one("from", ORIGIN) or "").upper()
    for name, code in (("to", destination), ("from", origin)):
        if len(code) != 2 or not code.isalpha() or not code.isascii():
            raise ValueError(f"{name} must be a two-letter country code such as DE")
    return origin, destination, weight


class Handler(BaseHTTPRequestHandler):
    server_version = "shipping-backend/1.0"
    protocol_version = "HTTP/1.1"

    def send_json(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path == "/health":
            return self.send_json(200, {"status": "ok"})
        if url.path != "/quotes":
            return self.send_json(404, {"error": f"no route {url.path}"})
        try:
            origin, destination, weight = parse_quote_request(url.query)
        except ValueError as e:
            return self.send_json(400, {"error": str(e)})
        z, offers = quotes(origin, destination, weight)
        self.send_json(200, {
            "from": origin,
            "to": destination,
            "weight_kg": weight,
            "zone": z,
            "quotes": offers,
            # Who asked, as the gateway vouched for it.
            "quoted_for": self.headers.get("x-gust-consumer"),
        })

    def log_message(self, fmt, *args):
        sys.stderr.write("shipping: %s %s\n" % (self.address_string(), fmt % args))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("SHIPPING_PORT", "7081")),
                        help="port to listen on (0: any free port; default 7081 or $SHIPPING_PORT)")
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    host, port = server.server_address[:2]
    print(f"shipping backend listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
