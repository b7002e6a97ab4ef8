//! Orders API (function `orders`), reached only through the gateway, which
//! proves who is calling: the consumer named by the API key arrives in
//! `x-gust-consumer`, and every order belongs to that consumer.
//!
//! * `POST .../orders` `{"items": [{"product_id": "p-100", "quantity": 2}], "reference": "PO-7"}`
//!   — checks the lines against the catalog, reserves the stock (all lines
//!   or none) and stores the order: `201` with the order and a relative
//!   `Location`; `422` for invalid lines, `409` when stock runs short.
//! * `GET .../orders` — the consumer's orders, newest first.
//! * `GET .../orders/{id}` — one of the consumer's orders (another
//!   consumer's order is `404`, as if it did not exist).
//! * `DELETE .../orders/{id}` — cancels a confirmed order and gives its
//!   units back to the catalog.
//!
//! Orders live in the key-value store bound as `orders`, under
//! `order/<consumer>/<id>`; ids come from the counter `seq`.

use catalog_core::{CURRENCY, Catalog, Line, problem, segment_after, storage_error};
use gust_sdk::http::{Request, Response};
use gust_sdk::kv::Store;
use gust_sdk::serde_json::json;
use serde::{Deserialize, Serialize};

/// Most lines in one order.
const MAX_LINES: usize = 20;
/// Most units of one product in one order.
const MAX_QUANTITY: u64 = 100;

/// What a client sends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOrder {
    items: Vec<NewLine>,
    #[serde(default)]
    reference: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewLine {
    product_id: String,
    quantity: u64,
}

/// An order as stored and answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    id: String,
    consumer: String,
    status: String,
    reference: Option<String>,
    lines: Vec<OrderLine>,
    total_cents: u64,
    currency: String,
    created_unix: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OrderLine {
    product_id: String,
    name: String,
    quantity: u64,
    unit_price_cents: u64,
    line_total_cents: u64,
}

/// Serves the orders API.
#[gust_sdk::http]
fn handle(req: Request) -> Response {
    // Set by the gateway from the API key; a request that did not come
    // through the gateway has no consumer and no orders.
    let Some(consumer) = req.header("x-gust-consumer").map(str::to_owned) else {
        return problem(
            401,
            "orders are placed through the API gateway with an API key (x-api-key)",
        );
    };
    let orders = match Store::open("orders") {
        Ok(s) => s,
        Err(e) => return storage_error(e),
    };
    let id = segment_after(req.path(), "orders");
    let result = match (req.method(), id) {
        ("POST", None) => create(&orders, &consumer, &req),
        ("GET", None) => list(&orders, &consumer),
        ("GET", Some(id)) => one(&orders, &consumer, id).map(|o| Response::json(&o)),
        ("DELETE", Some(id)) => cancel(&orders, &consumer, id),
        _ => Err(problem(
            405,
            "use POST or GET on orders, GET or DELETE on orders/{id}",
        )),
    };
    result.unwrap_or_else(|e| e)
}

fn order_key(consumer: &str, id: &str) -> String {
    format!("order/{consumer}/{id}")
}

/// `POST .../orders`.
fn create(orders: &Store, consumer: &str, req: &Request) -> Result<Response, Response> {
    let new: NewOrder = req
        .json()
        .map_err(|e| problem(400, format!("the body is not an order: {e}")))?;
    let lines = validate(&new)?;
    let catalog = Catalog::open("catalog").map_err(storage_error)?;
    let mut priced = Vec::with_capacity(lines.len());
    for line in &lines {
        let item = catalog
            .item(&line.product_id)
            .map_err(storage_error)?
            .ok_or_else(|| problem(422, format!("no product `{}`", line.product_id)))?;
        priced.push(OrderLine {
            product_id: line.product_id.clone(),
            name: item.product.name.clone(),
            quantity: line.quantity,
            unit_price_cents: item.product.price_cents,
            line_total_cents: item.product.price_cents * line.quantity,
        });
    }
    if let Err(short) = catalog.reserve(&lines).map_err(storage_error)? {
        return Err(Response::json(&json!({
            "error": format!(
                "only {} of `{}` available, {} requested",
                short.available, short.product_id, short.requested
            ),
            "product_id": short.product_id,
            "requested": short.requested,
            "available": short.available,
        }))
        .with_status(409));
    }
    let seq = orders.increment("seq", 1).map_err(storage_error)?;
    let order = Order {
        id: format!("o-{seq:06}"),
        consumer: consumer.to_string(),
        status: "confirmed".into(),
        reference: new.reference,
        total_cents: priced.iter().map(|l| l.line_total_cents).sum(),
        lines: priced,
        currency: CURRENCY.into(),
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    if let Err(e) = orders.set_json(&order_key(consumer, &order.id), &order) {
        // Not stored: the units go back to the catalog.
        let _ = catalog.release(&lines);
        return Err(storage_error(e));
    }
    gust_sdk::log::info(format!(
        "order {} for {consumer}: {} line(s), {} cents",
        order.id,
        order.lines.len(),
        order.total_cents
    ));
    // Relative to the collection the client posted to (`.../orders`).
    let location = format!("orders/{}", order.id);
    Ok(Response::json(&order)
        .with_status(201)
        .with_header("location", location))
}

/// Checks the lines: 1 to 20, quantities 1 to 100, each product once.
fn validate(new: &NewOrder) -> Result<Vec<Line>, Response> {
    if new.items.is_empty() || new.items.len() > MAX_LINES {
        return Err(problem(
            422,
            format!(
                "an order has 1 to {MAX_LINES} items, not {}",
                new.items.len()
            ),
        ));
    }
    if new.reference.as_ref().is_some_and(|r| r.len() > 64) {
        return Err(problem(422, "reference is longer than 64 characters"));
    }
    let mut lines: Vec<Line> = Vec::with_capacity(new.items.len());
    for item in &new.items {
        if !(1..=MAX_QUANTITY).contains(&item.quantity) {
            return Err(problem(
                422,
                format!(
                    "quantity of `{}` must be 1 to {MAX_QUANTITY}, not {}",
                    item.product_id, item.quantity
                ),
            ));
        }
        if lines.iter().any(|l| l.product_id == item.product_id) {
            return Err(problem(
                422,
                format!("`{}` appears twice; put it on one line", item.product_id),
            ));
        }
        lines.push(Line {
            product_id: item.product_id.clone(),
            quantity: item.quantity,
        });
    }
    Ok(lines)
}

/// `GET .../orders`.
fn list(orders: &Store, consumer: &str) -> Result<Response, Response> {
    let prefix = format!("order/{consumer}/");
    let keys: Vec<String> = orders
        .list_keys()
        .map_err(storage_error)?
        .into_iter()
        .filter(|k| k.starts_with(&prefix))
        .collect();
    let mut all: Vec<Order> = Vec::with_capacity(keys.len());
    for (key, value) in orders
        .get_many(&keys)
        .map_err(storage_error)?
        .into_iter()
        .flatten()
    {
        let order = gust_sdk::serde_json::from_slice(&value)
            .map_err(|e| problem(500, format!("order {key} is unreadable: {e}")))?;
        all.push(order);
    }
    all.sort_by(|a, b| b.id.cmp(&a.id));
    Ok(Response::json(
        &json!({ "count": all.len(), "orders": all }),
    ))
}

/// One of `consumer`'s orders.
fn one(orders: &Store, consumer: &str, id: &str) -> Result<Order, Response> {
    orders
        .get_json::<Order>(&order_key(consumer, id))
        .map_err(storage_error)?
        .ok_or_else(|| problem(404, format!("no order `{id}`")))
}

/// `DELETE .../orders/{id}`: cancels and gives the units back.
fn cancel(orders: &Store, consumer: &str, id: &str) -> Result<Response, Response> {
    let mut order = one(orders, consumer, id)?;
    // Only the first of two concurrent cancels gives the units back.
    let first = orders
        .increment(&format!("cancel/{consumer}/{id}"), 1)
        .map_err(storage_error)?
        == 1;
    if order.status != "confirmed" || !first {
        return Err(problem(409, format!("order `{id}` is already cancelled")));
    }
    order.status = "cancelled".into();
    orders
        .set_json(&order_key(consumer, id), &order)
        .map_err(storage_error)?;
    let lines: Vec<Line> = order
        .lines
        .iter()
        .map(|l| Line {
            product_id: l.product_id.clone(),
            quantity: l.quantity,
        })
        .collect();
    Catalog::open("catalog")
        .and_then(|c| c.release(&lines))
        .map_err(storage_error)?;
    Ok(Response::json(&order))
}
