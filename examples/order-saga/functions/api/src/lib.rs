//! `GET /api/shop`: the shop's state for people and the example's test:
//! stock per SKU, payments, shipments and every effect done, counted by
//! kind (each activity's effect appears once per idempotency key).

use gust_sdk::http::{Request, Response};
use gust_sdk::serde_json::{Map, Value as Json, json};
use gust_sdk::sql::Database;

fn rows(db: &Database, sql: &str) -> Result<Vec<Json>, String> {
    let rows = db.query(sql, &[]).map_err(|e| e.to_string())?;
    Ok(rows
        .rows
        .iter()
        .map(|r| {
            let mut m = Map::new();
            for (c, v) in rows.columns.iter().zip(r) {
                m.insert(c.clone(), v.to_json());
            }
            Json::Object(m)
        })
        .collect())
}

#[gust_sdk::http]
fn handle(_req: Request) -> Response {
    let db = Database::open("shop");
    let report = (|| -> Result<Json, String> {
        // Tables exist once the first activity ran.
        if db.query("SELECT 1 FROM effects", &[]).is_err() {
            return Ok(json!({ "stock": [], "payments": [], "shipments": [], "effects": {} }));
        }
        let mut effects = Map::new();
        for row in rows(&db, "SELECT kind, COUNT(*) AS n FROM effects GROUP BY kind")? {
            effects.insert(
                row["kind"].as_str().unwrap_or("?").to_string(),
                row["n"].clone(),
            );
        }
        Ok(json!({
            "stock": rows(&db, "SELECT sku, qty FROM stock ORDER BY sku")?,
            "payments": rows(&db, "SELECT key, order_id, amount, refunded FROM payments ORDER BY key")?,
            "shipments": rows(&db, "SELECT key, order_id, address FROM shipments ORDER BY key")?,
            "effects": effects,
        }))
    })();
    match report {
        Ok(v) => Response::json(&v),
        Err(e) => Response::status(500).with_body(e),
    }
}
