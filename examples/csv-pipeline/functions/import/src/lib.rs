//! The import of the csv-pipeline example (function `import-csv`): runs
//! once for every new or changed `<name>.csv` in the container `uploads`.
//!
//! It parses the file with the `csv` crate (quotes, embedded commas and a
//! UTF-8 byte-order mark are fine), finds the columns `date, region,
//! product, units, unit_price` in any order, checks every record
//! (`csv_pipeline_common::parse_sale`) and then, **in one transaction**,
//! replaces the file's rows in `sales` and writes its record in `imports`.
//! The rows are keyed by (file, line): importing a file again — the same
//! file copied in once more, or a corrected version — never duplicates a
//! row. Content already imported under the same name is skipped.
//!
//! Rejected records are counted and the first 20 reasons kept in the
//! import record; a file without the needed columns is recorded as
//! `failed` with no rows.

use csv_pipeline_common::{COLUMNS, SCHEMA, fingerprint, parse_sale};
use gust_sdk::serde_json::json;
use gust_sdk::sql::{Database, Value};
use gust_sdk::{Event, EventError, log};

/// Most rejected-line reasons kept per file.
const KEEP_ERRORS: usize = 20;

/// What parsing a file gave.
struct Parsed {
    /// (line, sale) for every accepted record.
    rows: Vec<(u64, csv_pipeline_common::Sale)>,
    /// Records read (not counting the header).
    records: u64,
    /// Records rejected.
    rejected: u64,
    /// The first reasons, as `line N: why`.
    errors: Vec<String>,
}

/// Imports one dropped file.
#[gust_sdk::event]
fn handle(event: Event) -> Result<(), EventError> {
    let file = event.subject().unwrap_or("unnamed.csv").to_owned();
    let data = event.data();
    let print = fingerprint(data);
    let db = Database::open("db");
    db.execute_script(SCHEMA)?;
    let seen = db.query(
        "SELECT fingerprint FROM imports WHERE file = ?",
        &[Value::Text(file.clone())],
    )?;
    if seen.rows.first().and_then(|r| r[0].as_str()) == Some(print.as_str()) {
        log::info!("{file}: content unchanged since its last import; skipped");
        return Ok(());
    }

    let (status, parsed) = match parse(data) {
        Ok(parsed) => ("imported", parsed),
        Err(why) => {
            log::warn!("{file}: not imported: {why}");
            let failed = Parsed {
                rows: Vec::new(),
                records: 0,
                rejected: 0,
                errors: vec![why],
            };
            ("failed", failed)
        }
    };

    let mut statements: Vec<(&str, Vec<Value>)> = Vec::with_capacity(parsed.rows.len() + 2);
    statements.push((
        "DELETE FROM sales WHERE file = ?",
        vec![Value::Text(file.clone())],
    ));
    for (line, sale) in &parsed.rows {
        statements.push((
            "INSERT INTO sales (file, line, date, month, region, product, units, unit_price_cents, revenue_cents) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            vec![
                Value::Text(file.clone()),
                Value::Integer(*line as i64),
                Value::Text(sale.date.clone()),
                Value::Text(sale.month.clone()),
                Value::Text(sale.region.clone()),
                Value::Text(sale.product.clone()),
                Value::Integer(sale.units),
                Value::Integer(sale.unit_price_cents),
                Value::Integer(sale.revenue_cents()),
            ],
        ));
    }
    statements.push((
        "INSERT OR REPLACE INTO imports (file, fingerprint, status, records, rows, rejected, errors, imported_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))",
        vec![
            Value::Text(file.clone()),
            Value::Text(print),
            Value::Text(status.into()),
            Value::Integer(parsed.records as i64),
            Value::Integer(parsed.rows.len() as i64),
            Value::Integer(parsed.rejected as i64),
            Value::Text(json!(parsed.errors).to_string()),
        ],
    ));
    db.transaction(&statements)?;
    log::info!(
        "{file}: {} rows imported, {} of {} records rejected",
        parsed.rows.len(),
        parsed.rejected,
        parsed.records
    );
    Ok(())
}

/// Reads the CSV; `Err` when the file as a whole cannot be imported.
fn parse(data: &[u8]) -> Result<Parsed, String> {
    let data = data.strip_prefix(b"\xef\xbb\xbf").unwrap_or(data);
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(data);
    let headers = reader
        .headers()
        .map_err(|e| format!("cannot read the header line: {e}"))?
        .clone();
    let mut index = [0usize; 5];
    for (slot, column) in index.iter_mut().zip(COLUMNS) {
        *slot = headers
            .iter()
            .position(|h| h.eq_ignore_ascii_case(column))
            .ok_or_else(|| {
                format!(
                    "the header has no column `{column}`; it needs {}",
                    COLUMNS.join(", ")
                )
            })?;
    }
    let mut parsed = Parsed {
        rows: Vec::new(),
        records: 0,
        rejected: 0,
        errors: Vec::new(),
    };
    let reject = |parsed: &mut Parsed, line: u64, why: String| {
        parsed.rejected += 1;
        if parsed.errors.len() < KEEP_ERRORS {
            parsed.errors.push(format!("line {line}: {why}"));
        }
    };
    for record in reader.records() {
        parsed.records += 1;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                reject(&mut parsed, line, format!("unreadable record: {e}"));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        if record.iter().all(str::is_empty) {
            parsed.records -= 1;
            continue;
        }
        if record.len() != headers.len() {
            let why = format!(
                "has {} fields, the header has {}",
                record.len(),
                headers.len()
            );
            reject(&mut parsed, line, why);
            continue;
        }
        let fields = index.map(|i| record.get(i).unwrap_or_default());
        match parse_sale(fields) {
            Ok(sale) => parsed.rows.push((line, sale)),
            Err(why) => reject(&mut parsed, line, why),
        }
    }
    Ok(parsed)
}
