//! Catalog API, version 2 (function `catalog-v2`), deployed next to v1:
//! products have a `title`, a structured `price` in integer cents (no
//! floating-point money) and an `availability` with a status and the units
//! left; lists are paged with a cursor.
//!
//! * `GET .../products?q=&category=&availability=in_stock&limit=20&cursor=<id>` —
//!   `{"api_version": 2, "data": [...], "page": {"limit", "next_cursor"}}`
//! * `GET .../products/{id}` — one product, `404` when unknown.
//!
//! The gateway routes `/v2/products` here, and unversioned `/products` when
//! the request says `api-version: 2`.

use catalog_core::{CURRENCY, Catalog, Item, matches, problem, segment_after, storage_error};
use gust_sdk::http::{Request, Response};
use gust_sdk::serde_json::{Value as Json, json};

/// Page size when the client gives none.
const DEFAULT_LIMIT: usize = 20;
/// Largest page.
const MAX_LIMIT: usize = 50;
/// At or below this many units a product is `low_stock`.
const LOW_STOCK: u64 = 5;

/// Serves the list and single products.
#[gust_sdk::http]
fn handle(req: Request) -> Response {
    if req.method() != "GET" {
        return problem(405, "the catalog is read-only").with_header("allow", "GET");
    }
    let catalog = match Catalog::open("catalog") {
        Ok(c) => c,
        Err(e) => return storage_error(e),
    };
    match segment_after(req.path(), "products") {
        Some(id) => match catalog.item(id) {
            Ok(Some(item)) => Response::json(&v2(&item)),
            Ok(None) => problem(404, format!("no product `{id}`")),
            Err(e) => storage_error(e),
        },
        None => list(&catalog, &req).unwrap_or_else(|e| e),
    }
}

/// `GET .../products`: filtered, then one page after `cursor`.
fn list(catalog: &Catalog, req: &Request) -> Result<Response, Response> {
    let limit = match req.query("limit") {
        None => DEFAULT_LIMIT,
        Some(n) => n
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| problem(400, format!("limit must be a number from 1 to {MAX_LIMIT}")))?,
    };
    let wanted = match req.query("availability") {
        None => None,
        Some(s @ ("in_stock" | "low_stock" | "out_of_stock")) => Some(s),
        Some(other) => {
            return Err(problem(
                400,
                format!("availability `{other}` is not one of in_stock, low_stock, out_of_stock"),
            ));
        }
    };
    let cursor = req.query("cursor");
    let items = catalog.items().map_err(storage_error)?;
    let mut page: Vec<&Item> = items
        .iter()
        .filter(|i| matches(i, req.query("q"), req.query("category")))
        .filter(|i| wanted.is_none_or(|w| status(i.available) == w))
        .filter(|i| cursor.is_none_or(|c| i.product.id.as_str() > c))
        .take(limit + 1)
        .collect();
    let next = (page.len() > limit).then(|| {
        page.truncate(limit);
        page[limit - 1].product.id.clone()
    });
    let data: Vec<Json> = page.into_iter().map(v2).collect();
    Ok(Response::json(&json!({
        "api_version": 2,
        "data": data,
        "page": { "limit": limit, "next_cursor": next },
    })))
}

/// `in_stock`, `low_stock` or `out_of_stock`.
fn status(available: u64) -> &'static str {
    match available {
        0 => "out_of_stock",
        n if n <= LOW_STOCK => "low_stock",
        _ => "in_stock",
    }
}

/// The v2 shape of a product.
fn v2(item: &Item) -> Json {
    let p = &item.product;
    json!({
        "id": p.id,
        "title": p.name,
        "category": p.category,
        "price": {
            "amount_cents": p.price_cents,
            "currency": CURRENCY,
            "formatted": format!("{CURRENCY} {}.{:02}", p.price_cents / 100, p.price_cents % 100),
        },
        "availability": { "status": status(item.available), "quantity": item.available },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn availability_status() {
        assert_eq!(status(0), "out_of_stock");
        assert_eq!(status(1), "low_stock");
        assert_eq!(status(5), "low_stock");
        assert_eq!(status(6), "in_stock");
    }
}
