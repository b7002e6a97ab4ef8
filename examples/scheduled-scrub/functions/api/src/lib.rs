//! The HTTP side of the scrub example, standing in for the legacy app and
//! for a person inspecting the data (functions `seed` and `report`):
//!
//! * `POST /api/seed` drops and recreates the legacy tables (no keys, no
//!   constraints, like the real thing) and the audit log, then inserts a
//!   demo data set of good and bad rows. With a JSON body
//!   `{"customers": [{...}], "orders": [{...}]}` it inserts those rows
//!   instead, exactly as given; `?reset=false` keeps the existing data.
//! * `GET /api/report` returns the tables, the audit log and the runs.
//!
//! The SQL is portable (SQLite, MariaDB / MySQL, PostgreSQL): the legacy
//! app numbers its rows itself (`row_id`, `max + 1`), and a table exists
//! when a query on it works.

use gust_sdk::http::{Request, Response};
use gust_sdk::serde_json::{self, Map, Value as Json, json};
use gust_sdk::sql::{Database, Value};

/// The legacy schema: no primary keys, no foreign keys, no checks; each
/// row has a number (`row_id`) the legacy app gives it, in insertion order.
const LEGACY_SCHEMA: &str = "
DROP TABLE IF EXISTS orders;
DROP TABLE IF EXISTS customers;
DROP TABLE IF EXISTS scrub_audit;
DROP TABLE IF EXISTS scrub_runs;
CREATE TABLE customers (row_id INTEGER NOT NULL, id INTEGER, name VARCHAR(255), email VARCHAR(255));
CREATE TABLE orders (row_id INTEGER NOT NULL, id INTEGER, customer_id INTEGER,
                     amount DOUBLE PRECISION, placed_on VARCHAR(255))";

/// The columns a seeded row may set, per table.
const CUSTOMER_COLUMNS: [&str; 3] = ["id", "name", "email"];
const ORDER_COLUMNS: [&str; 4] = ["id", "customer_id", "amount", "placed_on"];

/// Serves `/api/seed` and `/api/report`.
#[gust_sdk::http]
fn handle(req: Request) -> Response {
    let db = Database::open("db");
    let result = match (req.method(), req.path()) {
        ("POST", "/api/seed") => seed(&db, &req),
        ("GET", "/api/report") => report(&db),
        _ => Err(error(
            404,
            "no such endpoint; try POST /api/seed or GET /api/report",
        )),
    };
    result.unwrap_or_else(|e| e)
}

/// A JSON error response: `{"error": message}`.
fn error(status: u16, message: impl Into<String>) -> Response {
    Response::json(&json!({ "error": message.into() })).with_status(status)
}

/// A database failure as a 500 response.
fn db_error(e: gust_sdk::sql::Error) -> Response {
    error(500, e.message())
}

/// `POST /api/seed[?reset=false]` with an optional body of rows.
fn seed(db: &Database, req: &Request) -> Result<Response, Response> {
    let reset = match req.query("reset") {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(error(
                400,
                format!("reset must be true or false, not `{other}`"),
            ));
        }
    };
    let (customers, orders) = if req.body().iter().all(u8::is_ascii_whitespace) {
        demo_rows()
    } else {
        let body: Json = req
            .json()
            .map_err(|e| error(400, format!("the body is not JSON: {e}")))?;
        let Json::Object(body) = body else {
            return Err(error(
                400,
                "the body must be an object: {\"customers\": [...], \"orders\": [...]}",
            ));
        };
        if let Some(key) = body.keys().find(|k| *k != "customers" && *k != "orders") {
            return Err(error(
                400,
                format!("unknown key `{key}`: use `customers` and `orders`"),
            ));
        }
        (
            rows_of(&body, "customers", &CUSTOMER_COLUMNS)?,
            rows_of(&body, "orders", &ORDER_COLUMNS)?,
        )
    };
    // Schema and rows in one transaction: the scrub never sees half a seed
    // (on SQLite and PostgreSQL; MySQL commits after each DROP / CREATE).
    let mut statements: Vec<(&str, Vec<Value>)> = Vec::new();
    let (mut customer_row, mut order_row) = (0, 0);
    if reset {
        statements.extend(
            LEGACY_SCHEMA
                .split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| (s, Vec::new())),
        );
    } else {
        // The last row numbers; a query that fails means no tables yet.
        let last = |table: &str| {
            db.query(
                &format!("SELECT coalesce(max(row_id), 0) FROM {table}"),
                &[],
            )
            .ok()
            .and_then(|rows| rows.rows.first().and_then(|r| r[0].as_i64()))
        };
        let (Some(c), Some(o)) = (last("customers"), last("orders")) else {
            return Err(error(
                409,
                "the tables do not exist yet: seed once without reset=false",
            ));
        };
        (customer_row, order_row) = (c, o);
    }
    let numbered = |rows: &[Vec<Value>], last: i64| -> Vec<Vec<Value>> {
        (last + 1..)
            .zip(rows)
            .map(|(n, row)| {
                std::iter::once(Value::from(n))
                    .chain(row.iter().cloned())
                    .collect()
            })
            .collect()
    };
    let (customer_rows, order_rows) = (
        numbered(&customers, customer_row),
        numbered(&orders, order_row),
    );
    for row in customer_rows {
        statements.push((
            "INSERT INTO customers (row_id, id, name, email) VALUES (?1, ?2, ?3, ?4)",
            row,
        ));
    }
    for row in order_rows {
        statements.push((
            "INSERT INTO orders (row_id, id, customer_id, amount, placed_on) VALUES (?1, ?2, ?3, ?4, ?5)",
            row,
        ));
    }
    db.transaction(&statements).map_err(db_error)?;
    Ok(Response::json(&json!({
        "reset": reset,
        "inserted": { "customers": customers.len(), "orders": orders.len() },
    }))
    .with_status(201))
}

/// The rows under `key` of the seed body, as values in `columns` order. A
/// missing column is `NULL`; values are stored as given (legacy!).
fn rows_of(
    body: &Map<String, Json>,
    key: &str,
    columns: &[&str],
) -> Result<Vec<Vec<Value>>, Response> {
    let Some(list) = body.get(key) else {
        return Ok(Vec::new());
    };
    let Json::Array(list) = list else {
        return Err(error(400, format!("`{key}` must be an array of objects")));
    };
    list.iter()
        .enumerate()
        .map(|(i, row)| {
            let Json::Object(row) = row else {
                return Err(error(400, format!("`{key}[{i}]` must be an object")));
            };
            if let Some(col) = row.keys().find(|c| !columns.contains(&c.as_str())) {
                return Err(error(
                    400,
                    format!(
                        "`{key}[{i}]` has unknown column `{col}`; the columns are {}",
                        columns.join(", ")
                    ),
                ));
            }
            columns
                .iter()
                .map(|c| to_sql(row.get(*c).unwrap_or(&Json::Null)))
                .collect::<Option<Vec<Value>>>()
                .ok_or_else(|| {
                    error(
                        400,
                        format!("`{key}[{i}]`: values must be strings, numbers or null"),
                    )
                })
        })
        .collect()
}

/// A JSON scalar as an SQL value.
fn to_sql(v: &Json) -> Option<Value> {
    match v {
        Json::Null => Some(Value::Null),
        Json::String(s) => Some(Value::Text(s.clone())),
        Json::Number(n) => n
            .as_i64()
            .map(Value::Integer)
            .or_else(|| n.as_f64().map(Value::Real)),
        Json::Bool(b) => Some(Value::Integer(i64::from(*b))),
        _ => None,
    }
}

/// The demo data set: good rows and one or two of each kind of bad row.
fn demo_rows() -> (Vec<Vec<Value>>, Vec<Vec<Value>>) {
    let customer = |id: i64, name: &str, email: &str| vec![id.into(), name.into(), email.into()];
    let order = |id: i64, customer: Option<i64>, amount: f64, on: &str| {
        vec![id.into(), customer.into(), amount.into(), on.into()]
    };
    let customers = vec![
        customer(1, "Ada Lovelace", "ada@example.com"),
        customer(2, "Grace Hopper", "grace@example.org"),
        customer(3, "Alan Turing", "  Alan.Turing@Example.COM "), // fixable email
        customer(4, "Edsger Dijkstra", "edsger-at-example.com"),  // invalid email
        customer(2, "Grace Hopper", "grace@example.org"),         // duplicate
        customer(5, "Barbara Liskov", "barbara@example.net"),
    ];
    let orders = vec![
        order(100, Some(1), 25.0, "2024-03-01"),
        order(101, Some(2), 99.9, "2024-03-02"),
        order(102, Some(3), 12.5, "2024-03-03"),
        order(103, Some(42), 10.0, "2024-03-04"), // orphan: no customer 42
        order(104, Some(5), -15.0, "2024-03-05"), // negative amount
        order(101, Some(2), 99.9, "2024-03-02"),  // duplicate
        order(105, Some(4), 7.25, "2024-03-06"),
        order(106, None, 5.0, "2024-03-07"), // orphan: no customer at all
    ];
    (customers, orders)
}

/// `GET /api/report`: every table as a list of row objects.
fn report(db: &Database) -> Result<Response, Response> {
    let mut out = Map::new();
    for (name, table, sql) in [
        (
            "customers",
            "customers",
            "SELECT id, name, email FROM customers ORDER BY row_id",
        ),
        (
            "orders",
            "orders",
            "SELECT id, customer_id, amount, placed_on FROM orders ORDER BY row_id",
        ),
        (
            "audit",
            "scrub_audit",
            r#"SELECT run_at, rule, action, table_name, "rows", detail FROM scrub_audit ORDER BY id DESC LIMIT 100"#,
        ),
        (
            "runs",
            "scrub_runs",
            "SELECT run_at, rows_changed FROM scrub_runs ORDER BY id DESC LIMIT 20",
        ),
    ] {
        // The scrub creates its tables on its first run; a table exists
        // when a query on it works.
        let exists = db
            .query(&format!("SELECT 1 FROM {table} WHERE 1 = 0"), &[])
            .is_ok();
        let rows = if exists {
            let rows = db.query(sql, &[]).map_err(db_error)?;
            rows.rows
                .iter()
                .map(|row| {
                    let object: Map<String, Json> = rows
                        .columns
                        .iter()
                        .cloned()
                        .zip(row.iter().map(Value::to_json))
                        .collect();
                    Json::Object(object)
                })
                .collect()
        } else {
            Vec::new()
        };
        out.insert(name.to_owned(), Json::Array(rows));
    }
    Ok(Response::json(&serde_json::Value::Object(out)))
}
