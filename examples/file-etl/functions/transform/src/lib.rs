//! Stage 2 of the file-etl example (function `transform`): takes a batch of
//! validated records from the queue `validated` and turns each into a
//! clean, typed [`Sale`]: the date as ISO `YYYY-MM-DD`, the customer's
//! spaces collapsed, the SKU in upper case, prices in integer cents and the
//! line amount computed. A line above the review limit (1,000,000.00) is
//! held back as an anomaly instead of being loaded. The batch goes on to the
//! queue `transformed`.

use etl_common::{Anomaly, Batch, RawRecord, Sale, parse_cents, parse_date};
use gust_sdk::{Event, EventError, log, queue};

/// Line amounts above this (in cents) need a human look before loading.
const REVIEW_LIMIT_CENTS: i64 = 100_000_000;

/// Transforms one file's validated records.
#[gust_sdk::event]
fn handle(event: Event) -> Result<(), EventError> {
    let batch: Batch<RawRecord> = event
        .json()
        .map_err(|e| EventError::fatal(format!("not a batch of validated records: {e}")))?;
    let mut sales = Vec::with_capacity(batch.items.len());
    for record in &batch.items {
        match transform(record) {
            Ok(sale) if sale.amount_cents > REVIEW_LIMIT_CENTS => {
                let reason = format!(
                    "amount {} exceeds the review limit {}",
                    money(sale.amount_cents),
                    money(REVIEW_LIMIT_CENTS)
                );
                anomaly(&batch, record, reason)?;
            }
            Ok(sale) => sales.push(sale),
            Err(reason) => anomaly(&batch, record, reason)?,
        }
    }
    log::info!(
        "{}: {} of {} records transformed",
        batch.file,
        sales.len(),
        batch.items.len()
    );
    let out = Batch {
        file: batch.file,
        fingerprint: batch.fingerprint,
        records: batch.records,
        items: sales,
    };
    queue::send_json("next", &out)?;
    Ok(())
}

/// One validated record as a typed sale.
fn transform(record: &RawRecord) -> Result<Sale, String> {
    let [order_id, date, customer, sku, quantity, price] = &record.fields[..] else {
        return Err(format!("{} fields instead of 6", record.fields.len()));
    };
    let (y, m, d) = parse_date(date).ok_or_else(|| format!("bad date `{date}`"))?;
    let quantity: i64 = quantity
        .parse()
        .map_err(|_| format!("bad quantity `{quantity}`"))?;
    let unit_price_cents = parse_cents(price).ok_or_else(|| format!("bad price `{price}`"))?;
    let amount_cents = quantity
        .checked_mul(unit_price_cents)
        .ok_or_else(|| "the amount overflows".to_string())?;
    Ok(Sale {
        line: record.line,
        order_id: order_id.clone(),
        sold_on: format!("{y:04}-{m:02}-{d:02}"),
        customer: customer.split_whitespace().collect::<Vec<_>>().join(" "),
        sku: sku.to_ascii_uppercase(),
        quantity,
        unit_price_cents,
        amount_cents,
    })
}

/// Sends an anomaly of the transform stage about `record`.
fn anomaly(batch: &Batch<RawRecord>, record: &RawRecord, reason: String) -> Result<(), EventError> {
    log::warn!("{}:{}: {reason}", batch.file, record.line);
    let a = Anomaly {
        file: batch.file.clone(),
        fingerprint: batch.fingerprint.clone(),
        line: record.line,
        stage: "transform".into(),
        reason,
        raw: record.fields.join(","),
    };
    queue::send_json("anomalies", &a)?;
    Ok(())
}

/// Cents as `1234.56`.
fn money(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_become_typed_sales() {
        let record = RawRecord {
            line: 2,
            fields: ["A-1", "05/01/2026", " Acme   Corp ", "sku-9", "3", "9.99"]
                .map(String::from)
                .to_vec(),
        };
        let sale = transform(&record).unwrap();
        assert_eq!(sale.sold_on, "2026-01-05");
        assert_eq!(sale.customer, "Acme Corp");
        assert_eq!(sale.sku, "SKU-9");
        assert_eq!(sale.amount_cents, 2997);
        assert_eq!(money(100_000_000), "1000000.00");
    }
}
