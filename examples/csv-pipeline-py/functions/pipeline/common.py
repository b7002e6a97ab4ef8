"""What the csv-pipeline functions share: the SQL schema, the expected CSV
columns and the rules one record must pass to become a row."""

import re
from dataclasses import dataclass

# The tables: `sales` (one row per accepted CSV record, keyed by file and
# line, so a file imported again replaces its rows instead of adding them)
# and `imports` (one record per file: content fingerprint, counts, the
# first rejected lines).
SCHEMA = """
CREATE TABLE IF NOT EXISTS sales (
    file             TEXT    NOT NULL,
    line             INTEGER NOT NULL,
    date             TEXT    NOT NULL,
    month            TEXT    NOT NULL,
    region           TEXT    NOT NULL,
    product          TEXT    NOT NULL,
    units            INTEGER NOT NULL,
    unit_price_cents INTEGER NOT NULL,
    revenue_cents    INTEGER NOT NULL,
    PRIMARY KEY (file, line)
);
CREATE INDEX IF NOT EXISTS sales_region ON sales (region);
CREATE INDEX IF NOT EXISTS sales_month ON sales (month);
CREATE TABLE IF NOT EXISTS imports (
    file        TEXT PRIMARY KEY,
    fingerprint TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    records     INTEGER NOT NULL,
    rows        INTEGER NOT NULL,
    rejected    INTEGER NOT NULL,
    errors      TEXT    NOT NULL,
    imported_at TEXT    NOT NULL
);
"""

# The columns a file must have (in any order; names are matched without
# case and surrounding spaces).
COLUMNS = ("date", "region", "product", "units", "unit_price")

MAX_UNITS = 1_000_000
"""Most units one record may hold."""
MAX_PRICE_CENTS = 100_000_000
"""Highest unit price, in cents."""

_WHOLE = re.compile(r"^[+-]?[0-9]+$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass
class Sale:
    """One accepted record."""

    date: str
    month: str
    region: str
    product: str
    units: int
    unit_price_cents: int

    def revenue_cents(self) -> int:
        """`units × unit price`, in cents."""
        return self.units * self.unit_price_cents


def parse_sale(fields) -> Sale:
    """Checks one record's fields (already in COLUMNS order); raises
    ValueError with the reason."""
    date, region, product, units, price = (f.strip() for f in fields)
    check_date(date)
    for name, value in (("region", region), ("product", product)):
        if not value:
            raise ValueError(f"{name} is empty")
        if len(value) > 80:
            raise ValueError(f"{name} is longer than 80 characters")
    if not _WHOLE.match(units):
        raise ValueError(f"units `{units}` is not a whole number")
    count = int(units)
    if not 1 <= count <= MAX_UNITS:
        raise ValueError(f"units {count} is not between 1 and {MAX_UNITS}")
    return Sale(date, date[:7], region, product, count, parse_cents(price))


def check_date(date: str) -> None:
    """A real calendar date written YYYY-MM-DD."""
    bad = ValueError(f"date `{date}` is not a real date written YYYY-MM-DD")
    if len(date) != 10 or date[4] != "-" or date[7] != "-":
        raise bad
    parts = (date[:4], date[5:7], date[8:])
    if not all(p.isascii() and p.isdigit() for p in parts):
        raise bad
    y, m, d = (int(p) for p in parts)
    leap = (y % 4 == 0 and y % 100 != 0) or y % 400 == 0
    if m in (1, 3, 5, 7, 8, 10, 12):
        days = 31
    elif m in (4, 6, 9, 11):
        days = 30
    elif m == 2:
        days = 29 if leap else 28
    else:
        raise bad
    if not 1900 <= y <= 2999 or d == 0 or d > days:
        raise bad


def parse_cents(text: str) -> int:
    """`12.5` -> 1250: a non-negative amount with at most two decimals."""
    bad = ValueError(f"unit_price `{text}` is not an amount like 12.50")
    whole, dot, frac = text.partition(".")
    if (
        not whole
        or len(whole) > 9
        or len(frac) > 2
        or not (whole.isascii() and whole.isdigit())
        or not (frac == "" or (frac.isascii() and frac.isdigit()))
        or (dot and not frac)
    ):
        raise bad
    cents = int(whole) * 100 + int(frac.ljust(2, "0"))
    if cents > MAX_PRICE_CENTS:
        raise ValueError(f"unit_price `{text}` is above {MAX_PRICE_CENTS // 100}")
    return cents


def fingerprint(data: bytes) -> str:
    """FNV-1a of the content plus its length: tells an unchanged file apart."""
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}-{len(data)}"


def is_file_name(name: str) -> bool:
    """Whether `name` may name an uploaded file: `A-Z a-z 0-9 . _ -`, ending
    in `.csv`, at most 100 characters, not starting with `.`."""
    return (
        4 < len(name) <= 100
        and name.endswith(".csv")
        and not name.startswith(".")
        and bool(_FILE_NAME.match(name))
    )
