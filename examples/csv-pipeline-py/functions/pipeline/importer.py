"""The import (function `import-csv`): runs once for every new or changed
`<name>.csv` in the container `uploads`.

It parses the file with the `csv` module (quotes, embedded commas and a
UTF-8 byte-order mark are fine), finds the columns `date, region, product,
units, unit_price` in any order, checks every record (`common.parse_sale`)
and then, **in one transaction**, replaces the file's rows in `sales` and
writes its record in `imports`. The rows are keyed by (file, line):
importing a file again never duplicates a row. Content already imported
under the same name is skipped.

Rejected records are counted and the first 20 reasons kept in the import
record; a file without the needed columns is recorded as `failed` with no
rows.
"""

import csv
import io
import json

import gust
from gust import log, sql

from common import COLUMNS, SCHEMA, fingerprint, parse_sale

KEEP_ERRORS = 20
"""Most rejected-line reasons kept per file."""


class Parsed:
    """What parsing a file gave."""

    def __init__(self):
        self.rows = []  # (line, Sale) for every accepted record
        self.records = 0  # records read (not counting the header)
        self.rejected = 0
        self.errors = []  # the first reasons, as `line N: why`

    def reject(self, line: int, why: str) -> None:
        self.rejected += 1
        if len(self.errors) < KEEP_ERRORS:
            self.errors.append(f"line {line}: {why}")


def handle(event: gust.Event) -> None:
    """Imports one dropped file."""
    file = event.subject or "unnamed.csv"
    data = event.data
    print_ = fingerprint(data)
    db = sql.open("db")
    db.execute_script(SCHEMA)
    seen = db.query("SELECT fingerprint FROM imports WHERE file = ?", [file])
    if seen and seen[0]["fingerprint"] == print_:
        log.info(f"{file}: content unchanged since its last import; skipped")
        return

    try:
        parsed = parse(data)
        status = "imported"
    except ValueError as e:
        log.warn(f"{file}: not imported: {e}")
        parsed = Parsed()
        parsed.errors = [str(e)]
        status = "failed"

    statements = [("DELETE FROM sales WHERE file = ?", [file])]
    for line, sale in parsed.rows:
        statements.append(
            (
                "INSERT INTO sales (file, line, date, month, region, product, units, unit_price_cents, revenue_cents) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    file,
                    line,
                    sale.date,
                    sale.month,
                    sale.region,
                    sale.product,
                    sale.units,
                    sale.unit_price_cents,
                    sale.revenue_cents(),
                ],
            )
        )
    statements.append(
        (
            "INSERT OR REPLACE INTO imports (file, fingerprint, status, records, rows, rejected, errors, imported_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))",
            [
                file,
                print_,
                status,
                parsed.records,
                len(parsed.rows),
                parsed.rejected,
                json.dumps(parsed.errors),
            ],
        )
    )
    db.transaction(statements)
    log.info(
        f"{file}: {len(parsed.rows)} rows imported, {parsed.rejected} of {parsed.records} records rejected"
    )


def parse(data: bytes) -> Parsed:
    """Reads the CSV; raises ValueError when the file as a whole cannot be imported."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    text = data.decode("utf-8", errors="replace")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        headers = [h.strip() for h in next(reader)]
    except StopIteration:
        headers = []
    except csv.Error as e:
        raise ValueError(f"cannot read the header line: {e}") from None
    lowered = [h.lower() for h in headers]
    index = []
    for column in COLUMNS:
        if column not in lowered:
            raise ValueError(
                f"the header has no column `{column}`; it needs {', '.join(COLUMNS)}"
            )
        index.append(lowered.index(column))
    parsed = Parsed()
    while True:
        line = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            parsed.records += 1
            parsed.reject(line, f"unreadable record: {e}")
            continue
        record = [f.strip() for f in record]
        if all(f == "" for f in record):
            continue
        parsed.records += 1
        if len(record) != len(headers):
            parsed.reject(line, f"has {len(record)} fields, the header has {len(headers)}")
            continue
        try:
            parsed.rows.append((line, parse_sale([record[i] for i in index])))
        except ValueError as e:
            parsed.reject(line, str(e))
    return parsed
