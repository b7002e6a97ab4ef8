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
//! Each rule that changed rows adds a row to `scrub_audit` (time, rule,
//! action, table, row count) and every run adds one row to `scrub_runs`, in
//! the same transaction as the changes: the log never disagrees with the
//! data. Running the scrub again changes nothing (it is idempotent).

use gust_sdk::serde_json::{self, json};
use gust_sdk::sql::{Database, Value};
use gust_sdk::{Event, EventError, log};

/// The audit tables (the only tables of this app with constraints).
const AUDIT_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS scrub_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_at TEXT NOT NULL,
    rule TEXT NOT NULL,
    action TEXT NOT NULL,
    table_name TEXT NOT NULL,
    rows INTEGER NOT NULL CHECK (rows > 0),
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS scrub_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_at TEXT NOT NULL,
    rows_changed INTEGER NOT NULL
)";

/// Records the previous statement's change count (`changes()`) as an audit
/// row, only when it changed something.
const AUDIT: &str = "INSERT INTO scrub_audit (run_at, rule, action, table_name, rows, detail)
    SELECT ?1, ?2, ?3, ?4, changes(), ?5 WHERE changes() > 0";

/// One cleaning rule: a statement and how to describe what it did.
struct Rule {
    name: &'static str,
    action: &'static str,
    table: &'static str,
    detail: &'static str,
    sql: &'static str,
    params: Vec<Value>,
}

/// Runs every rule once per timer firing.
#[gust_sdk::event]
fn handle(event: Event) -> Result<(), EventError> {
    let db = Database::open("db");
    db.execute_script(AUDIT_SCHEMA)?;
    if !legacy_tables_exist(&db)? {
        log::info("nothing to scrub yet: the customers and orders tables do not exist");
        return Ok(());
    }
    let run_at = run_time(&event);
    let rules = rules(&db)?;
    let mut statements: Vec<(&str, Vec<Value>)> = Vec::new();
    for rule in &rules {
        statements.push((rule.sql, rule.params.clone()));
        statements.push((
            AUDIT,
            vec![
                run_at.clone().into(),
                rule.name.into(),
                rule.action.into(),
                rule.table.into(),
                rule.detail.into(),
            ],
        ));
    }
    statements.push((
        "INSERT INTO scrub_runs (run_at, rows_changed)
         SELECT ?1, coalesce(sum(rows), 0) FROM scrub_audit WHERE run_at = ?1",
        vec![run_at.clone().into()],
    ));
    let changed = db.transaction(&statements)?;
    let summary: Vec<String> = rules
        .iter()
        .zip(changed.iter().step_by(2))
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

/// Whether the legacy app created its tables yet.
fn legacy_tables_exist(db: &Database) -> Result<bool, EventError> {
    let rows = db.query(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('customers', 'orders')",
        &[],
    )?;
    Ok(rows.rows.first().and_then(|r| r[0].as_i64()) == Some(2))
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

/// The rules, in the order they run. The email rules need Rust to decide
/// (validation is not expressible in SQLite), so the customers are read
/// first and the fixes passed as a JSON parameter; the update re-checks the
/// old value so a concurrent write by the legacy app is never overwritten.
fn rules(db: &Database) -> Result<Vec<Rule>, EventError> {
    let customers = db.query(
        "SELECT rowid, email FROM customers WHERE email IS NOT NULL",
        &[],
    )?;
    let mut normalised = Vec::new();
    let mut cleared = Vec::new();
    for row in &customers.rows {
        let rowid = row[0].as_i64().unwrap_or_default();
        match row[1].as_str().map(check_email) {
            Some(EmailCheck::Valid) => {}
            Some(EmailCheck::Normalise(email)) => {
                normalised.push(json!([rowid, row[1].to_json(), email]))
            }
            Some(EmailCheck::Invalid) | None => {
                cleared.push(json!([rowid, row[1].to_json(), null]))
            }
        }
    }
    const FIX_EMAILS: &str = "
        WITH fix AS (
            SELECT json_extract(value, '$[0]') AS rid,
                   json_extract(value, '$[1]') AS old,
                   json_extract(value, '$[2]') AS new
            FROM json_each(?1))
        UPDATE customers SET email = (SELECT new FROM fix WHERE rid = customers.rowid)
        WHERE rowid IN (SELECT rid FROM fix WHERE old IS customers.email)";
    Ok(vec![
        Rule {
            name: "duplicate-customer",
            action: "deleted",
            table: "customers",
            detail: "a customer id appeared more than once; the first row is kept",
            sql: "DELETE FROM customers WHERE id IS NOT NULL AND rowid NOT IN
                  (SELECT min(rowid) FROM customers WHERE id IS NOT NULL GROUP BY id)",
            params: vec![],
        },
        Rule {
            name: "email-normalised",
            action: "fixed",
            table: "customers",
            detail: "email trimmed and lower-cased",
            sql: FIX_EMAILS,
            params: vec![serde_json::Value::from(normalised).to_string().into()],
        },
        Rule {
            name: "email-cleared",
            action: "fixed",
            table: "customers",
            detail: "email was not a valid address and could not be repaired; set to NULL",
            sql: FIX_EMAILS,
            params: vec![serde_json::Value::from(cleared).to_string().into()],
        },
        Rule {
            name: "duplicate-order",
            action: "deleted",
            table: "orders",
            detail: "an order id appeared more than once; the first row is kept",
            sql: "DELETE FROM orders WHERE id IS NOT NULL AND rowid NOT IN
                  (SELECT min(rowid) FROM orders WHERE id IS NOT NULL GROUP BY id)",
            params: vec![],
        },
        Rule {
            name: "invalid-amount",
            action: "deleted",
            table: "orders",
            detail: "amount was missing, not a number or negative",
            sql: "DELETE FROM orders
                  WHERE typeof(amount) NOT IN ('integer', 'real') OR amount < 0",
            params: vec![],
        },
        Rule {
            name: "orphan-order",
            action: "deleted",
            table: "orders",
            detail: "the order's customer does not exist",
            sql: "DELETE FROM orders WHERE customer_id IS NULL OR customer_id NOT IN
                  (SELECT id FROM customers WHERE id IS NOT NULL)",
            params: vec![],
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
