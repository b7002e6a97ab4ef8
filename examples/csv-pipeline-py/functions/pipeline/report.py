"""The query side (function `report`):

* `GET /api/summary` — totals (`rows`, `units`, `revenue_cents`, `files`),
  `by_region` (revenue first), `by_month` (in order) and `top_products`
  (ten, revenue first);
* `GET /api/imports` — one record per file: status, records, rows,
  rejected and the first rejected lines with reasons.

Errors are JSON `{"error": ...}` (`404` for an unknown report).
"""

import json

import gust
from gust import sql

from common import SCHEMA


def handle(request: gust.Request) -> gust.Response:
    """Serves the reports."""
    db = sql.open("db")
    db.execute_script(SCHEMA)
    report = request.params.get("report", "")
    if report == "summary":
        body = summary(db)
    elif report == "imports":
        body = imports(db)
    else:
        return error(404, f"no report `{report}`; try summary or imports")
    return gust.Response.json(body, headers={"cache-control": "no-store"})


def summary(db) -> dict:
    totals = db.query(
        "SELECT COUNT(*) AS rows, COALESCE(SUM(units), 0) AS units, "
        "COALESCE(SUM(revenue_cents), 0) AS revenue_cents, COUNT(DISTINCT file) AS files FROM sales"
    )
    body = dict(totals[0]) if totals else {}
    body["by_region"] = db.query(
        "SELECT region, SUM(units) AS units, SUM(revenue_cents) AS revenue_cents, COUNT(*) AS rows "
        "FROM sales GROUP BY region ORDER BY revenue_cents DESC, region"
    )
    body["by_month"] = db.query(
        "SELECT month, SUM(units) AS units, SUM(revenue_cents) AS revenue_cents "
        "FROM sales GROUP BY month ORDER BY month"
    )
    body["top_products"] = db.query(
        "SELECT product, SUM(units) AS units, SUM(revenue_cents) AS revenue_cents "
        "FROM sales GROUP BY product ORDER BY revenue_cents DESC, product LIMIT 10"
    )
    return body


def imports(db) -> dict:
    items = db.query(
        "SELECT file, status, records, rows, rejected, errors, imported_at FROM imports ORDER BY file"
    )
    for item in items:
        # `errors` is stored as JSON text.
        try:
            item["errors"] = json.loads(item["errors"] or "[]")
        except ValueError:
            item["errors"] = []
    return {"count": len(items), "items": items}


def error(status: int, message: str) -> gust.Response:
    """A JSON error response: `{"error": message}`."""
    return gust.Response.json({"error": message}, status)
