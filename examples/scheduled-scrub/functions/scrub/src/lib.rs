//! The scrub: a timer function that cleans the legacy `customers` and
//! `orders` tables, which have no keys and no constraints.
//!
//! Every firing runs these rules, in this order, in **one transaction**:
//!
//! | rule                 | table     | action                                            |
//! |----------------------|-----------|---------------------------------------------------|
//! | `duplicate-customer` | customers | delete all but the first row of a customer id     |
//! | `email-normalised`   | customers | trim and lower-case an email that is then valid   |
//! | `email-cleared`      | customers | set an email that cannot be repaired to `NULL`    |
//! | `duplicate-order`    | orders    | delete all but the first row of an order id       |
//! | `invalid-amount`     | orders    | delete orders whose amount is missing, not a number or negative |
//! | `orphan-order`       | orders    | delete orders whose customer does not exist       |
//!
//! Each rule that changes rows adds a row to `scrub_audit` (time, rule,
//! action, table, row count) and every run adds one row to `scrub_runs`, in
//! the same transaction as the changes: the log never disagrees with the
//! data. Running the scrub again changes nothing (it is idempotent).
//!
//! The SQL is portable: the same code cleans an embedded SQLite database, a
//! MariaDB / MySQL database or a PostgreSQL schema (`gust up --backend
//! sql=...`). So it uses no engine catalogue (a table exists when a query
//! on it works), no `rowid` (the legacy app numbers its rows in `row_id`),
//! no `changes()` (each rule's audit row counts the rows its condition
//! matches, in the transaction, right before the change), no `typeof()` or
//! JSON functions (Rust decides, SQL re-checks) and no auto-increment (ids
//! are `max(id) + 1`).

use gust_sdk::serde_json;
use gust_sdk::sql::{Database, Value};
use gust_sdk::{Event, EventError, log};

/// The audit tables (the only tables of this app with constraints).
const AUDIT_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS scrub_audit (
    id INTEGER NOT NULL PRIMARY KEY,
    run_at VARCHAR(64) NOT NULL,
    rule VARCHAR(64) NOT NULL,
    action VARCHAR(16) NOT NULL,
    table_name VARCHAR(64) NOT NULL,
    "rows" INTEGER NOT NULL CHECK ("rows" > 0),
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS scrub_runs (
    id INTEGER NOT NULL PRIMARY KEY,
    run_at VARCHAR(64) NOT NULL,
    rows_changed INTEGER NOT NULL
)"#;

/// One cleaning rule: which rows of `table` it changes and how, and how
/// to describe what it did.
struct Rule {
    name: &'static str,
    action: &'static str,
    table: &'static str,
    detail: &'static str,
    /// The rows the rule changes: a `WHERE` condition on `table`, with its
    /// parameters (`?`).
    rows: String,
    params: Vec<Value>,
    /// `None` deletes the rows; `Some((assignments, params))` updates them
    /// with `SET assignments`.
    set: Option<(String, Vec<Value>)>,
}

impl Rule {
    /// The audit row for this rule: the number of rows its condition
    /// matches, written only when that is more than zero.
    fn audit(&self, run_at: &str) -> (String, Vec<Value>) {
        let sql = format!(
            r#"INSERT INTO scrub_audit (id, run_at, rule, action, table_name, "rows", detail)
               SELECT (SELECT coalesce(max(id), 0) + 1 FROM scrub_audit), ?, ?, ?, ?, c.n, ?
               FROM (SELECT count(*) AS n FROM {} WHERE {}) AS c WHERE c.n > 0"#,
            self.table, self.rows
        );
        let mut params: Vec<Value> = vec![
            run_at.into(),
            self.name.into(),
            self.action.into(),
            self.table.into(),
            self.detail.into(),
        ];
        params.extend(self.params.iter().cloned());
        (sql, params)
    }

    /// The change itself.
    fn change(&self) -> (String, Vec<Value>) {
        match &self.set {
            None => (
                format!("DELETE FROM {} WHERE {}", self.table, self.rows),
                self.params.clone(),
            ),
            Some((set, set_params)) => {
                let mut params = set_params.clone();
                params.extend(self.params.iter().cloned());
                (
                    format!("UPDATE {} SET {set} WHERE {}", self.table, self.rows),
                    params,
                )
            }
        }
    }
}

/// Runs every rule once per timer firing.
#[gust_sdk::event]
fn handle(event: Event) -> Result<(), EventError> {
    let db = Database::open("db");
    db.execute_script(AUDIT_SCHEMA)?;
    if !table_exists(&db, "customers") || !table_exists(&db, "orders") {
        log::info("nothing to scrub yet: the customers and orders tables do not exist");
        return Ok(());
    }
    let run_at = run_time(&event);
    let rules = rules(&db)?;
    let mut statements: Vec<(String, Vec<Value>)> = Vec::new();
    for rule in &rules {
        statements.push(rule.audit(&run_at));
        statements.push(rule.change());
    }
    // (`run_at` twice rather than `?1` twice: PostgreSQL would deduce
    // `text` for one use and `varchar` for the other.)
    statements.push((
        r#"INSERT INTO scrub_runs (id, run_at, rows_changed)
           SELECT (SELECT coalesce(max(id), 0) + 1 FROM scrub_runs), ?, coalesce(sum("rows"), 0)
           FROM scrub_audit WHERE run_at = ?"#
            .to_owned(),
        vec![run_at.clone().into(), run_at.clone().into()],
    ));
    let statements: Vec<(&str, Vec<Value>)> = statements
        .iter()
        .map(|(sql, params)| (sql.as_str(), params.clone()))
        .collect();
    let changed = db.transaction(&statements)?;
    // What each change statement reported (the audit rows counted the same
    // rows in the same transaction).
    let summary: Vec<String> = rules
        .iter()
        .zip(changed.iter().skip(1).step_by(2))
        .filter(|(_, n)| **n > 0)
        .map(|(rule, n)| format!("{} {n}", rule.name))
        .collect();
    if summary.is_empty() {
        log::info!("scrub at {run_at}: the data is clean");
    } else {
        log::info!("scrub at {run_at}: {}", summary.join(", "));
    }
    Ok(())
}

/// Whether the legacy app created `table` yet: a query on it works (the
/// same on every engine, unlike their catalogues).
fn table_exists(db: &Database, table: &str) -> bool {
    db.query(&format!("SELECT 1 FROM {table} WHERE 1 = 0"), &[])
        .is_ok()
}

/// The timer slot this run belongs to (the event's `scheduled_time`).
fn run_time(event: &Event) -> String {
    event
        .json::<serde_json::Value>()
        .ok()
        .and_then(|data| data["scheduled_time"].as_str().map(str::to_owned))
        .or_else(|| event.time().map(str::to_owned))
        .unwrap_or_else(|| event.id().to_owned())
}

/// `(row_id = ? AND email = ?) OR ...` for `fixes` of `(row_id, old
/// email)`, so a row the legacy app changed since it was read is left
/// alone; `1 = 0` for none.
fn rows_with_email(fixes: &[(i64, String, Option<String>)]) -> (String, Vec<Value>) {
    if fixes.is_empty() {
        return ("1 = 0".into(), Vec::new());
    }
    let sql = vec!["(row_id = ? AND email = ?)"; fixes.len()].join(" OR ");
    let params = fixes
        .iter()
        .flat_map(|(row, old, _)| [Value::from(*row), Value::from(old.as_str())])
        .collect();
    (sql, params)
}

/// The rules, in the order they run. The email rules need Rust to decide
/// (validation is not expressible in portable SQL), so the customers are
/// read first and the fixes named by `row_id` and old value; the same goes
/// for amounts that are not numbers (only SQLite can store those in a
/// `DOUBLE PRECISION` column).
fn rules(db: &Database) -> Result<Vec<Rule>, EventError> {
    let customers = db.query(
        "SELECT row_id, email FROM customers WHERE email IS NOT NULL",
        &[],
    )?;
    let mut normalised = Vec::new();
    let mut cleared = Vec::new();
    for row in &customers.rows {
        let (Some(row_id), Some(old)) = (row[0].as_i64(), row[1].as_str()) else {
            continue;
        };
        match check_email(old) {
            EmailCheck::Valid => {}
            EmailCheck::Normalise(email) => normalised.push((row_id, old.to_owned(), Some(email))),
            EmailCheck::Invalid => cleared.push((row_id, old.to_owned(), None)),
        }
    }
    let (normalised_rows, normalised_params) = rows_with_email(&normalised);
    let normalise = if normalised.is_empty() {
        ("email = email".to_owned(), Vec::new())
    } else {
        let whens = vec!["WHEN ? THEN ?"; normalised.len()].join(" ");
        let params = normalised
            .iter()
            .flat_map(|(row, _, new)| [Value::from(*row), Value::from(new.clone())])
            .collect();
        (format!("email = CASE row_id {whens} END"), params)
    };
    let (cleared_rows, cleared_params) = rows_with_email(&cleared);

    let orders = db.query("SELECT row_id, amount FROM orders", &[])?;
    let not_numbers: Vec<Value> = orders
        .rows
        .iter()
        .filter(|row| matches!(row[1], Value::Text(_) | Value::Blob(_)))
        .filter_map(|row| row[0].as_i64().map(Value::from))
        .collect();
    let invalid_amount = if not_numbers.is_empty() {
        "amount IS NULL OR amount < 0".to_owned()
    } else {
        format!(
            "amount IS NULL OR amount < 0 OR row_id IN ({})",
            vec!["?"; not_numbers.len()].join(", ")
        )
    };

    let duplicates = |table: &str| {
        format!(
            "id IS NOT NULL AND row_id NOT IN
             (SELECT min(row_id) FROM {table} WHERE id IS NOT NULL GROUP BY id)"
        )
    };
    Ok(vec![
        Rule {
            name: "duplicate-customer",
            action: "deleted",
            table: "customers",
            detail: "a customer id appeared more than once; the first row is kept",
            rows: duplicates("customers"),
            params: vec![],
            set: None,
        },
        Rule {
            name: "email-normalised",
            action: "fixed",
            table: "customers",
            detail: "email trimmed and lower-cased",
            rows: normalised_rows,
            params: normalised_params,
            set: Some(normalise),
        },
        Rule {
            name: "email-cleared",
            action: "fixed",
            table: "customers",
            detail: "email was not a valid address and could not be repaired; set to NULL",
            rows: cleared_rows,
            params: cleared_params,
            set: Some(("email = NULL".to_owned(), Vec::new())),
        },
        Rule {
            name: "duplicate-order",
            action: "deleted",
            table: "orders",
            detail: "an order id appeared more than once; the first row is kept",
            rows: duplicates("orders"),
            params: vec![],
            set: None,
        },
        Rule {
            name: "invalid-amount",
            action: "deleted",
            table: "orders",
            detail: "amount was missing, not a number or negative",
            rows: invalid_amount,
            params: not_numbers,
            set: None,
        },
        Rule {
            name: "orphan-order",
            action: "deleted",
            table: "orders",
            detail: "the order's customer does not exist",
            rows: "customer_id IS NULL OR customer_id NOT IN
                   (SELECT id FROM customers WHERE id IS NOT NULL)"
                .to_owned(),
            params: vec![],
            set: None,
        },
    ])
}

/// What to do with a stored email.
#[derive(Debug, PartialEq, Eq)]
enum EmailCheck {
    /// Keep it.
    Valid,
    /// Replace it with this (trimmed, lower-case) spelling.
    Normalise(String),
    /// It cannot be repaired.
    Invalid,
}

/// Classifies a stored email.
fn check_email(raw: &str) -> EmailCheck {
    let normal = raw.trim().to_ascii_lowercase();
    if !is_valid_email(&normal) {
        EmailCheck::Invalid
    } else if normal != raw {
        EmailCheck::Normalise(normal)
    } else {
        EmailCheck::Valid
    }
}

/// A practical address check: `local@domain.tld`, printable ASCII local
/// part without leading, trailing or double dots, a domain of at least two
/// labels of letters, digits and inner hyphens, and an alphabetic TLD.
fn is_valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = domain.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
    local_ok && domain_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_kept_normalised_or_cleared() {
        assert_eq!(check_email("ada@example.com"), EmailCheck::Valid);
        assert_eq!(
            check_email("  Alan.Turing@Example.COM "),
            EmailCheck::Normalise("alan.turing@example.com".into())
        );
        for bad in [
            "",
            "edsger-at-example.com",
            "a@b",
            "a@@b.com",
            "a b@c.com",
            ".a@b.com",
            "a@-b.com",
            "a@b.c0m",
            "a@b..com",
        ] {
            assert_eq!(check_email(bad), EmailCheck::Invalid, "{bad}");
        }
    }
}
