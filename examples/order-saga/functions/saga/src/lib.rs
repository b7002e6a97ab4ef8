//! The order saga: the orchestrator `order` and its activities, one crate
//! (it dispatches on the workflow or activity name).
//!
//! `order` reserves stock, waits for approval when the amount is large,
//! charges the payment and ships. When a step fails it runs the
//! compensations of the steps before it in reverse order (refund, then
//! release the stock) and fails the workflow with the reason.
//!
//! Every activity does its effect at most once per idempotency key (the
//! workflow id and the step): it first claims the key in `effects` with a
//! token of this execution, and the effect's statements only apply where
//! that claim is its own, all in one transaction. A retried or re-delivered
//! call finds the key taken and changes nothing.

use std::time::Duration;

use gust_sdk::serde_json::{Value as Json, json};
use gust_sdk::sql::{Database, Value};
use gust_sdk::workflow::{self, Context, Error};
use gust_sdk::{Event, EventError, variables};
use serde::{Deserialize, Serialize};

/// Tables of the shop (portable SQL: SQLite and PostgreSQL).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS stock (sku VARCHAR(255) PRIMARY KEY, qty BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS effects (key VARCHAR(255) PRIMARY KEY, token VARCHAR(64) NOT NULL,
                                    order_id VARCHAR(255) NOT NULL, kind VARCHAR(64) NOT NULL);
CREATE TABLE IF NOT EXISTS payments (key VARCHAR(255) PRIMARY KEY, order_id VARCHAR(255) NOT NULL,
                                     amount BIGINT NOT NULL, refunded BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS shipments (key VARCHAR(255) PRIMARY KEY, order_id VARCHAR(255) NOT NULL,
                                      address VARCHAR(255) NOT NULL)";

/// Units of a SKU the shop has before its first order.
const INITIAL_STOCK: i64 = 1000;

/// One line of an order.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Item {
    sku: String,
    qty: i64,
}

/// An order, the workflow's input.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    order: String,
    items: Vec<Item>,
    /// In cents.
    amount: i64,
    card: String,
    address: String,
}

// ── The orchestrator ────────────────────────────────────────────────────

/// A duration variable like `24h`, `30m`, `2s` or `500ms`.
fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86_400),
        _ => return None,
    })
}

fn variable(name: &str) -> Option<String> {
    variables::get(name).ok().flatten()
}

/// Runs `undo` (activity, input) pairs in order; returns their names.
fn compensate(ctx: &mut Context, undo: &[(&str, Json)]) -> Result<Vec<String>, Error> {
    let mut done = Vec::new();
    for (activity, input) in undo {
        // A compensation that gives up after its retries is reported, and
        // the others still run.
        match ctx.try_call::<Json, _>(activity, input)? {
            Ok(_) => done.push(activity.to_string()),
            Err(e) => done.push(format!("{activity} (FAILED: {e})")),
        }
    }
    Ok(done)
}

fn order(ctx: &mut Context) -> Result<Json, Error> {
    let order: Order = ctx.input()?;
    let mut undo: Vec<(&str, Json)> = Vec::new();

    // 1. Reserve the stock.
    let reservation: Json = ctx.call(
        "reserve-stock",
        &json!({ "order": order.order, "items": order.items }),
    )?;
    undo.push((
        "release-stock",
        json!({ "order": order.order, "items": order.items }),
    ));

    // 2. Large orders wait for a person: the event `approved`.
    let threshold = variable("approval_threshold")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    if order.amount >= threshold {
        let timeout = variable("approval_timeout")
            .and_then(|v| parse_duration(&v))
            .unwrap_or(Duration::from_secs(24 * 3600));
        let reason = match ctx.wait_for_event::<Json>("approved", Some(timeout))? {
            Some(answer) if answer["approved"] != json!(false) => None,
            Some(answer) => Some(format!(
                "rejected by {}",
                answer["by"].as_str().unwrap_or("the approver")
            )),
            None => Some(format!(
                "no approval within {}",
                variable("approval_timeout").unwrap_or("24h".into())
            )),
        };
        if let Some(reason) = reason {
            undo.reverse();
            let done = compensate(ctx, &undo)?;
            return Err(Error::Failed(format!(
                "{reason}; compensated: {}",
                done.join(", ")
            )));
        }
    }

    // 3. Charge the payment.
    let payment: Json = match ctx.try_call(
        "charge-payment",
        &json!({ "order": order.order, "amount": order.amount, "card": order.card }),
    )? {
        Ok(p) => p,
        Err(e) => {
            undo.reverse();
            let done = compensate(ctx, &undo)?;
            return Err(Error::Failed(format!(
                "payment failed: {e}; compensated: {}",
                done.join(", ")
            )));
        }
    };
    undo.push((
        "refund-payment",
        json!({ "order": order.order, "payment": payment["payment"] }),
    ));

    // 4. Ship.
    let shipment: Json = match ctx.try_call(
        "ship-order",
        &json!({ "order": order.order, "address": order.address }),
    )? {
        Ok(s) => s,
        Err(e) => {
            undo.reverse();
            let done = compensate(ctx, &undo)?;
            return Err(Error::Failed(format!(
                "shipping failed: {e}; compensated: {}",
                done.join(", ")
            )));
        }
    };

    Ok(json!({
        "order": order.order,
        "status": "shipped",
        "reservation": reservation["reservation"],
        "payment": payment["payment"],
        "tracking": shipment["tracking"],
    }))
}

// ── Activities ──────────────────────────────────────────────────────────

/// A token unique to this execution of an activity.
fn token() -> String {
    format!("{:016x}", gust_sdk::wasi::random::random::get_random_u64())
}

fn db() -> Result<Database, EventError> {
    let db = Database::open("shop");
    db.execute_script(SCHEMA)
        .map_err(|e| EventError::retryable(format!("schema: {e}")))?;
    Ok(db)
}

fn retry(e: impl std::fmt::Display) -> EventError {
    EventError::retryable(e.to_string())
}

/// The statement claiming `key` for this execution, first in every
/// effect's transaction (a concurrent execution of the same key waits on
/// the primary key, then claims nothing).
fn claim(key: &str, token: &str, order: &str, kind: &str) -> (&'static str, Vec<Value>) {
    (
        "INSERT INTO effects (key, token, order_id, kind) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        vec![key.into(), token.into(), order.into(), kind.into()],
    )
}

/// `WHERE` clause true only in the execution that claimed `key`.
const MINE: &str = "EXISTS (SELECT 1 FROM effects WHERE key = ?8 AND token = ?9)";

fn reserve(input: Json, ev: &Event) -> Result<Json, EventError> {
    let key = workflow::idempotency_key(ev).to_string();
    let order = input["order"].as_str().unwrap_or_default().to_string();
    let items: Vec<Item> = gust_sdk::serde_json::from_value(input["items"].clone())
        .map_err(|e| EventError::fatal(format!("bad items: {e}")))?;
    let db = db()?;
    let taken = db
        .query(
            "SELECT 1 FROM effects WHERE key = ?1",
            &[key.as_str().into()],
        )
        .map_err(retry)?;
    if taken.rows.is_empty() {
        for item in &items {
            db.execute(
                "INSERT INTO stock (sku, qty) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                &[item.sku.as_str().into(), INITIAL_STOCK.into()],
            )
            .map_err(retry)?;
            let rows = db
                .query(
                    "SELECT qty FROM stock WHERE sku = ?1",
                    &[item.sku.as_str().into()],
                )
                .map_err(retry)?;
            let have = rows.rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0);
            if have < item.qty {
                return Err(EventError::fatal(format!(
                    "out of stock: {} has {have}, the order needs {}",
                    item.sku, item.qty
                )));
            }
        }
        let token = token();
        let mut statements = vec![claim(&key, &token, &order, "reserve")];
        let update = format!("UPDATE stock SET qty = qty - ?1 WHERE sku = ?2 AND {MINE}");
        for item in &items {
            statements.push((
                update.as_str(),
                mine_params(
                    vec![item.qty.into(), item.sku.as_str().into()],
                    &key,
                    &token,
                ),
            ));
        }
        db.transaction(&statements).map_err(retry)?;
    }
    Ok(json!({ "reservation": key }))
}

/// `params` padded to `?7`, then the key and token as `?8`, `?9`.
fn mine_params(mut params: Vec<Value>, key: &str, token: &str) -> Vec<Value> {
    while params.len() < 7 {
        params.push(Value::Null);
    }
    params.push(key.into());
    params.push(token.into());
    params
}

fn release(input: Json, ev: &Event) -> Result<Json, EventError> {
    let key = workflow::idempotency_key(ev).to_string();
    let order = input["order"].as_str().unwrap_or_default().to_string();
    let items: Vec<Item> = gust_sdk::serde_json::from_value(input["items"].clone())
        .map_err(|e| EventError::fatal(format!("bad items: {e}")))?;
    let db = db()?;
    let token = token();
    let mut statements = vec![claim(&key, &token, &order, "release")];
    let update = format!("UPDATE stock SET qty = qty + ?1 WHERE sku = ?2 AND {MINE}");
    for item in &items {
        statements.push((
            update.as_str(),
            mine_params(
                vec![item.qty.into(), item.sku.as_str().into()],
                &key,
                &token,
            ),
        ));
    }
    db.transaction(&statements).map_err(retry)?;
    Ok(json!({ "released": key }))
}

fn charge(input: Json, ev: &Event) -> Result<Json, EventError> {
    let key = workflow::idempotency_key(ev).to_string();
    let order = input["order"].as_str().unwrap_or_default().to_string();
    let card = input["card"].as_str().unwrap_or_default();
    if card == "declined" {
        return Err(EventError::fatal("the card was declined"));
    }
    let amount = input["amount"].as_i64().unwrap_or(0);
    let db = db()?;
    let token = token();
    let insert = format!(
        "INSERT INTO payments (key, order_id, amount, refunded) SELECT ?1, ?2, ?3, 0 WHERE {MINE}"
    );
    db.transaction(&[
        claim(&key, &token, &order, "charge"),
        (
            insert.as_str(),
            mine_params(
                vec![key.as_str().into(), order.as_str().into(), amount.into()],
                &key,
                &token,
            ),
        ),
    ])
    .map_err(retry)?;
    Ok(json!({ "payment": key }))
}

fn refund(input: Json, ev: &Event) -> Result<Json, EventError> {
    let key = workflow::idempotency_key(ev).to_string();
    let order = input["order"].as_str().unwrap_or_default().to_string();
    let payment = input["payment"].as_str().unwrap_or_default().to_string();
    let db = db()?;
    let token = token();
    let update = format!("UPDATE payments SET refunded = 1 WHERE key = ?1 AND {MINE}");
    db.transaction(&[
        claim(&key, &token, &order, "refund"),
        (
            update.as_str(),
            mine_params(vec![payment.as_str().into()], &key, &token),
        ),
    ])
    .map_err(retry)?;
    Ok(json!({ "refunded": payment }))
}

fn ship(input: Json, ev: &Event) -> Result<Json, EventError> {
    let key = workflow::idempotency_key(ev).to_string();
    let order = input["order"].as_str().unwrap_or_default().to_string();
    let address = input["address"].as_str().unwrap_or_default().to_string();
    if address.is_empty() || address == "nowhere" {
        return Err(EventError::fatal(format!(
            "no carrier delivers to `{address}`"
        )));
    }
    let db = db()?;
    let token = token();
    let insert =
        format!("INSERT INTO shipments (key, order_id, address) SELECT ?1, ?2, ?3 WHERE {MINE}");
    db.transaction(&[
        claim(&key, &token, &order, "ship"),
        (
            insert.as_str(),
            mine_params(
                vec![
                    key.as_str().into(),
                    order.as_str().into(),
                    address.as_str().into(),
                ],
                &key,
                &token,
            ),
        ),
    ])
    .map_err(retry)?;
    Ok(json!({ "tracking": format!("TRK-{}", key.replace(':', "-")) }))
}

#[gust_sdk::event]
fn handle(event: Event) -> Result<(), EventError> {
    match workflow::activity_name(&event)
        .map(str::to_string)
        .as_deref()
    {
        Some("reserve-stock") => workflow::activity(event, reserve),
        Some("release-stock") => workflow::activity(event, release),
        Some("charge-payment") => workflow::activity(event, charge),
        Some("refund-payment") => workflow::activity(event, refund),
        Some("ship-order") => workflow::activity(event, ship),
        Some(other) => Err(EventError::fatal(format!("no activity `{other}` here"))),
        None => workflow::orchestrate(event, order),
    }
}
