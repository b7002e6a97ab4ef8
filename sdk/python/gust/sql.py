"""SQL databases the function declared, e.g.
``bindings = { db = { sql = "analytics" } }`` (SQLite on the embedded
backend). Placeholders are ``?``, ``?1``, ``?2``, ...

    from gust import sql
    db = sql.open("db")
    db.execute("INSERT INTO sales (region, amount) VALUES (?, ?)", ["north", 12.5])
    rows = db.query("SELECT region, SUM(amount) AS total FROM sales GROUP BY region")
    # [{"region": "north", "total": 12.5}]
"""

from typing import Any, Dict, List, Optional, Sequence, Tuple

from wit_world.imports import sql as _sql

from .errors import host

Row = Dict[str, Any]


def _to_host(value: Any):
    if value is None:
        return _sql.Value_Null()
    if isinstance(value, bool):
        return _sql.Value_Integer(int(value))
    if isinstance(value, int):
        return _sql.Value_Integer(value)
    if isinstance(value, float):
        return _sql.Value_Real(value)
    if isinstance(value, str):
        return _sql.Value_Text(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _sql.Value_Blob(bytes(value))
    raise TypeError(f"cannot send {type(value).__name__} to SQL; use int, float, str, bytes, bool or None")


def _from_host(value) -> Any:
    if isinstance(value, _sql.Value_Null):
        return None
    return value.value


class Database:
    """An open SQL database."""

    def __init__(self, binding: str):
        self.binding = binding

    def query(self, sql: str, params: Sequence[Any] = ()) -> List[Row]:
        """Runs a statement that returns rows; one dict per row, keyed by column."""
        columns, rows = self.query_raw(sql, params)
        return [dict(zip(columns, row)) for row in rows]

    def query_raw(self, sql: str, params: Sequence[Any] = ()) -> Tuple[List[str], List[List[Any]]]:
        """Runs a statement that returns rows; column names and rows as lists."""
        result = host(_sql.query, self.binding, sql, [_to_host(p) for p in params])
        return result.columns, [[_from_host(v) for v in row] for row in result.rows]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Runs a statement; returns the number of rows it changed (durable on return)."""
        return host(_sql.execute, self.binding, sql, [_to_host(p) for p in params])

    def transaction(self, statements: Sequence[Tuple[str, Sequence[Any]]]) -> List[int]:
        """Runs ``(sql, params)`` statements in one transaction (all or
        nothing); returns the rows each changed."""
        batch = [_sql.Statement(s, [_to_host(p) for p in params]) for s, params in statements]
        return host(_sql.transaction, self.binding, batch)

    def execute_script(self, script: str) -> None:
        """Runs ``;``-separated statements without parameters in one
        transaction (schema set-up, migrations)."""
        host(_sql.execute_script, self.binding, script)


def open(binding: str) -> Database:
    """The database bound as ``binding`` (checked on first use)."""
    return Database(binding)
