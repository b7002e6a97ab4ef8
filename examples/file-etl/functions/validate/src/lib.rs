//! Stage 1 of the file-etl example (function `validate`): runs for every
//! CSV file that appears or changes in the container `incoming` (on the
//! embedded backend, the folder `.gust/blobs/incoming/`).
//!
//! It checks the file as a whole (UTF-8, the header
//! `order_id,date,customer,sku,quantity,unit_price`) and then every record:
//! the number of fields, an order id of 1 to 32 of `A-Z a-z 0-9 -`, a real
//! date as `YYYY-MM-DD` or `DD/MM/YYYY`, a customer and a SKU, a quantity of
//! 1 to 10,000 and a unit price with at most two decimals. Records that
//! pass go on, as one batch per file, to the queue `validated`; every other
//! one becomes an anomaly on the queue `anomalies`.
//!
//! A file whose content was loaded before (same fingerprint, e.g. the same
//! file copied in again) is skipped: content is loaded once.

use etl_common::{
    Anomaly, Batch, COLUMNS, RawRecord, SCHEMA, fingerprint, parse_cents, parse_date,
    split_csv_line,
};
use gust_sdk::sql::{Database, Value};
use gust_sdk::{Event, EventError, log, queue};

/// Most units one order line may hold.
const MAX_QUANTITY: i64 = 10_000;

/// Validates one dropped file.
#[gust_sdk::event]
fn handle(event: Event) -> Result<(), EventError> {
    let file = event.subject().unwrap_or("?").to_owned();
    let data = event.data();
    let print = fingerprint(data);
    let db = Database::open("db");
    db.execute_script(SCHEMA)?;
    let seen = db.query(
        "SELECT file FROM files WHERE fingerprint = ?",
        &[Value::Text(print.clone())],
    )?;
    if let Some(row) = seen.rows.first() {
        let first = row[0].as_str().unwrap_or("?");
        log::info!("{file}: same content as {first}, already loaded; skipped");
        return Ok(());
    }
    let anomaly = |line: u32, reason: String, raw: &str| -> Result<(), EventError> {
        log::warn!("{file}:{line}: {reason}");
        let a = Anomaly {
            file: file.clone(),
            fingerprint: print.clone(),
            line,
            stage: "validate".into(),
            reason,
            raw: raw.to_owned(),
        };
        queue::send_json("anomalies", &a)?;
        Ok(())
    };
    let mut batch = Batch {
        file: file.clone(),
        fingerprint: print.clone(),
        records: 0,
        items: Vec::new(),
    };
    match std::str::from_utf8(data) {
        Err(e) => anomaly(0, format!("the file is not UTF-8 text: {e}"), "")?,
        Ok(text) => {
            let mut lines = text.lines().enumerate().map(|(i, l)| (i as u32 + 1, l));
            let header = lines.next().map(|(_, l)| l.trim_start_matches('\u{feff}'));
            let header_ok = header.is_some_and(|h| {
                split_csv_line(h).is_ok_and(|cols| {
                    cols.iter()
                        .map(|c| c.trim().to_ascii_lowercase())
                        .eq(COLUMNS)
                })
            });
            if !header_ok {
                let expected = COLUMNS.join(",");
                let reason = format!("the first line must be the header `{expected}`");
                anomaly(1, reason, header.unwrap_or(""))?;
            } else {
                for (line, raw) in lines.filter(|(_, l)| !l.trim().is_empty()) {
                    batch.records += 1;
                    match check(raw) {
                        Ok(fields) => batch.items.push(RawRecord { line, fields }),
                        Err(reason) => anomaly(line, reason, raw)?,
                    }
                }
            }
        }
    }
    log::info!(
        "{file}: {} of {} records valid",
        batch.items.len(),
        batch.records
    );
    queue::send_json("next", &batch)?;
    Ok(())
}

/// Checks one record; returns its trimmed fields or what is wrong.
fn check(raw: &str) -> Result<Vec<String>, String> {
    let fields: Vec<String> = split_csv_line(raw)?
        .into_iter()
        .map(|f| f.trim().to_owned())
        .collect();
    if fields.len() != COLUMNS.len() {
        return Err(format!(
            "{} fields instead of {}",
            fields.len(),
            COLUMNS.len()
        ));
    }
    let [order_id, date, customer, sku, quantity, price] = &fields[..] else {
        unreachable!("length checked");
    };
    if order_id.is_empty()
        || order_id.len() > 32
        || !order_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(format!(
            "order_id `{order_id}` is not 1 to 32 of A-Z a-z 0-9 -"
        ));
    }
    if parse_date(date).is_none() {
        return Err(format!(
            "date `{date}` is not a real date as YYYY-MM-DD or DD/MM/YYYY"
        ));
    }
    if customer.is_empty() {
        return Err("customer is empty".into());
    }
    if sku.is_empty() {
        return Err("sku is empty".into());
    }
    match quantity.parse::<i64>() {
        Ok(q) if (1..=MAX_QUANTITY).contains(&q) => {}
        _ => {
            return Err(format!(
                "quantity `{quantity}` is not a whole number from 1 to {MAX_QUANTITY}"
            ));
        }
    }
    if parse_cents(price).is_none() {
        return Err(format!(
            "unit_price `{price}` is not an amount like 12.50 (at most two decimals)"
        ));
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records() {
        assert!(check("A-1,2026-01-05,Acme,sku-1,3,9.99").is_ok());
        assert_eq!(
            check("A-1,2026-01-05,Acme,sku-1,0,9.99").unwrap_err(),
            "quantity `0` is not a whole number from 1 to 10000"
        );
        assert_eq!(
            check("A-1,2026-01-05").unwrap_err(),
            "2 fields instead of 6"
        );
    }
}
