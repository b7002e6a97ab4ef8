//! Stage 3 of the file-etl example (function `load`): takes a batch of
//! sales from the queue `transformed` and loads it into the SQL table
//! `sales`, recording the file in `files`, in one transaction.
//!
//! Loading is idempotent: a batch whose content fingerprint is already in
//! `files` (a redelivered message, or the same content dropped twice) is
//! skipped, and an order id already in `sales` — from another file, or twice
//! in this one — is not loaded again but reported as an anomaly.

use std::collections::HashMap;

use etl_common::{Anomaly, Batch, SCHEMA, Sale};
use gust_sdk::sql::{Database, Value};
use gust_sdk::{Event, EventError, log, queue};

/// Loads one file's sales.
#[gust_sdk::event]
fn handle(event: Event) -> Result<(), EventError> {
    let batch: Batch<Sale> = event
        .json()
        .map_err(|e| EventError::fatal(format!("not a batch of sales: {e}")))?;
    let db = Database::open("db");
    db.execute_script(SCHEMA)?;
    let done = db.query(
        "SELECT file FROM files WHERE fingerprint = ?",
        &[Value::Text(batch.fingerprint.clone())],
    )?;
    if !done.rows.is_empty() {
        log::info!("{}: already loaded, skipped", batch.file);
        return Ok(());
    }
    // Orders already in the warehouse, and where they came from.
    let mut known: HashMap<String, String> = HashMap::new();
    for chunk in batch.items.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(",");
        let ids: Vec<Value> = chunk
            .iter()
            .map(|s| Value::Text(s.order_id.clone()))
            .collect();
        let rows = db.query(
            &format!("SELECT order_id, source_file FROM sales WHERE order_id IN ({marks})"),
            &ids,
        )?;
        for row in rows.rows {
            let id = row[0].as_str().unwrap_or_default().to_owned();
            known.insert(id, row[1].as_str().unwrap_or_default().to_owned());
        }
    }
    let mut statements: Vec<(&str, Vec<Value>)> = Vec::new();
    for sale in &batch.items {
        if let Some(from) = known.get(&sale.order_id) {
            let reason = if *from == batch.file {
                format!("order {} appears twice in this file", sale.order_id)
            } else {
                format!("order {} was already loaded from {from}", sale.order_id)
            };
            anomaly(&batch, sale, reason)?;
            continue;
        }
        known.insert(sale.order_id.clone(), batch.file.clone());
        statements.push((
            "INSERT INTO sales (order_id, sold_on, customer, sku, quantity, unit_price_cents,
                                amount_cents, source_file, source_line)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            vec![
                Value::Text(sale.order_id.clone()),
                Value::Text(sale.sold_on.clone()),
                Value::Text(sale.customer.clone()),
                Value::Text(sale.sku.clone()),
                Value::Integer(sale.quantity),
                Value::Integer(sale.unit_price_cents),
                Value::Integer(sale.amount_cents),
                Value::Text(batch.file.clone()),
                Value::Integer(i64::from(sale.line)),
            ],
        ));
    }
    let loaded = statements.len();
    statements.push((
        "INSERT INTO files (fingerprint, file, records, loaded, loaded_at)
         VALUES (?, ?, ?, ?, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))",
        vec![
            Value::Text(batch.fingerprint.clone()),
            Value::Text(batch.file.clone()),
            Value::Integer(i64::from(batch.records)),
            Value::Integer(loaded as i64),
        ],
    ));
    db.transaction(&statements)?;
    log::info!(
        "{}: loaded {loaded} of {} records",
        batch.file,
        batch.records
    );
    Ok(())
}

/// Sends an anomaly of the load stage about `sale`.
fn anomaly(batch: &Batch<Sale>, sale: &Sale, reason: String) -> Result<(), EventError> {
    log::warn!("{}:{}: {reason}", batch.file, sale.line);
    let a = Anomaly {
        file: batch.file.clone(),
        fingerprint: batch.fingerprint.clone(),
        line: sale.line,
        stage: "load".into(),
        reason,
        raw: sale.order_id.clone(),
    };
    queue::send_json("anomalies", &a)?;
    Ok(())
}
