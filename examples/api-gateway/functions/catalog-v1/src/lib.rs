//! Catalog API, version 1 (function `catalog-v1`), the shape the first
//! mobile app shipped with and still relies on: flat products with a
//! decimal `price` and an `in_stock` flag, and the whole list at once.
//!
//! * `GET .../products?q=tent&category=gear` — `{"products": [...], "count": n}`
//! * `GET .../products/{id}` — one product, `404` when unknown.
//!
//! The gateway routes `/v1/products` (and unversioned `/products`) here; it
//! marks these answers with a `Deprecation` header pointing at v2.

use catalog_core::{CURRENCY, Catalog, Item, matches, problem, segment_after, storage_error};
use gust_sdk::http::{Request, Response};
use gust_sdk::serde_json::{Value as Json, json};

/// Serves the list and single products.
#[gust_sdk::http]
fn handle(req: Request) -> Response {
    if req.method() != "GET" {
        return problem(405, "the v1 catalog is read-only").with_header("allow", "GET");
    }
    let catalog = match Catalog::open("catalog") {
        Ok(c) => c,
        Err(e) => return storage_error(e),
    };
    match segment_after(req.path(), "products") {
        Some(id) => match catalog.item(id) {
            Ok(Some(item)) => Response::json(&v1(&item)),
            Ok(None) => problem(404, format!("no product `{id}`")),
            Err(e) => storage_error(e),
        },
        None => match catalog.items() {
            Ok(items) => {
                let products: Vec<Json> = items
                    .iter()
                    .filter(|i| matches(i, req.query("q"), req.query("category")))
                    .map(v1)
                    .collect();
                Response::json(&json!({ "count": products.len(), "products": products }))
            }
            Err(e) => storage_error(e),
        },
    }
}

/// The v1 shape of a product.
fn v1(item: &Item) -> Json {
    let p = &item.product;
    json!({
        "id": p.id,
        "name": p.name,
        "category": p.category,
        "price": p.price_cents as f64 / 100.0,
        "currency": CURRENCY,
        "in_stock": item.available > 0,
    })
}
