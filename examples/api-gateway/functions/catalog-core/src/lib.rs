//! The product catalog the api-gateway example's functions share.
//!
//! Products live in the key-value store bound as `catalog` (the store
//! `products`): `product/<id>` holds a [`Product`] as JSON, seeded with a
//! small outdoor-gear catalog the first time any function opens the store.
//! Stock moves through two counters per product, both only ever
//! incremented (the store's atomic operation): `sold/<id>` when an order
//! reserves units and `returned/<id>` when a reservation is given back (an
//! order that could not be filled, or a cancelled one). So
//! `available = stock + returned - sold`, and concurrent orders can never
//! sell more than is in stock.

use gust_sdk::http::Response;
use gust_sdk::kv::{self, Store};
use gust_sdk::serde_json::json;
use serde::{Deserialize, Serialize};

/// Marks a store that holds the seed catalog.
const SEEDED: &str = "catalog/seeded";
/// The catalog everyone starts with: id, name, category, price in cents, stock.
const SEED: &[(&str, &str, &str, u64, u64)] = &[
    ("p-100", "Trail running shoes", "shoes", 8990, 25),
    ("p-101", "Merino hiking socks", "apparel", 1490, 120),
    ("p-102", "Rain shell jacket", "apparel", 15900, 8),
    ("p-103", "Headlamp 400 lm", "gear", 3450, 40),
    ("p-104", "Titanium spork", "gear", 1290, 0),
    ("p-105", "Ultralight tent 2P", "gear", 34900, 3),
    ("p-106", "Water filter", "gear", 3990, 60),
    ("p-107", "Trekking poles (pair)", "gear", 7450, 15),
];
/// The catalog's currency.
pub const CURRENCY: &str = "EUR";

/// A product as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    /// `p-100`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// `shoes`, `apparel`, `gear`.
    pub category: String,
    /// Unit price in cents of [`CURRENCY`].
    pub price_cents: u64,
    /// Units received into the warehouse.
    pub stock: u64,
}

/// A product with the units that can still be ordered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The product.
    pub product: Product,
    /// `stock + returned - sold`.
    pub available: u64,
}

/// One line an order wants to reserve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The product.
    pub product_id: String,
    /// Units wanted.
    pub quantity: u64,
}

/// Why a reservation failed: not enough units of one product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortage {
    /// The product that ran short.
    pub product_id: String,
    /// Units asked for.
    pub requested: u64,
    /// Units that were available.
    pub available: u64,
}

/// The catalog in its key-value store.
pub struct Catalog {
    store: Store,
}

fn product_key(id: &str) -> String {
    format!("product/{id}")
}

fn counter(store: &Store, key: &str) -> Result<u64, kv::Error> {
    Ok(store
        .get_string(key)?
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

impl Catalog {
    /// Opens the catalog in the store bound as `binding`, seeding it on first use.
    pub fn open(binding: &str) -> Result<Self, kv::Error> {
        let catalog = Catalog {
            store: Store::open(binding)?,
        };
        catalog.seed()?;
        Ok(catalog)
    }

    /// Writes the seed products unless the store already has them. Two
    /// functions seeding at once write the same values, which is harmless.
    fn seed(&self) -> Result<(), kv::Error> {
        if self.store.exists(SEEDED)? {
            return Ok(());
        }
        let mut entries = Vec::with_capacity(SEED.len());
        for (id, name, category, price_cents, stock) in SEED {
            let product = Product {
                id: id.to_string(),
                name: name.to_string(),
                category: category.to_string(),
                price_cents: *price_cents,
                stock: *stock,
            };
            let value = gust_sdk::serde_json::to_vec(&product)
                .map_err(|e| kv::Error::Json(e.to_string()))?;
            entries.push((product_key(id), value));
        }
        self.store.set_many(&entries)?;
        self.store.set(SEEDED, "1")
    }

    /// Units of `product` that can still be ordered.
    fn available(&self, product: &Product) -> Result<u64, kv::Error> {
        let sold = counter(&self.store, &format!("sold/{}", product.id))?;
        let returned = counter(&self.store, &format!("returned/{}", product.id))?;
        Ok((product.stock + returned).saturating_sub(sold))
    }

    /// Every product, by id.
    pub fn items(&self) -> Result<Vec<Item>, kv::Error> {
        let mut keys: Vec<String> = self
            .store
            .list_keys()?
            .into_iter()
            .filter(|k| k.starts_with("product/"))
            .collect();
        keys.sort();
        let mut items = Vec::with_capacity(keys.len());
        for (key, value) in self.store.get_many(&keys)?.into_iter().flatten() {
            let product: Product = gust_sdk::serde_json::from_slice(&value)
                .map_err(|e| kv::Error::Json(format!("{key}: {e}")))?;
            let available = self.available(&product)?;
            items.push(Item { product, available });
        }
        Ok(items)
    }

    /// One product, if it exists.
    pub fn item(&self, id: &str) -> Result<Option<Item>, kv::Error> {
        let Some(product) = self.store.get_json::<Product>(&product_key(id))? else {
            return Ok(None);
        };
        let available = self.available(&product)?;
        Ok(Some(Item { product, available }))
    }

    /// Reserves every line or none: each line takes its units first (an
    /// atomic increment of `sold/<id>`), and when that oversells, this line
    /// and the ones before it are given back and the shortage is reported.
    pub fn reserve(&self, lines: &[Line]) -> Result<Result<(), Shortage>, kv::Error> {
        for (i, line) in lines.iter().enumerate() {
            let Some(product) = self
                .store
                .get_json::<Product>(&product_key(&line.product_id))?
            else {
                self.release(&lines[..i])?;
                return Ok(Err(Shortage {
                    product_id: line.product_id.clone(),
                    requested: line.quantity,
                    available: 0,
                }));
            };
            let sold = self
                .store
                .increment(&format!("sold/{}", line.product_id), line.quantity)?;
            let returned = counter(&self.store, &format!("returned/{}", line.product_id))?;
            let ceiling = product.stock + returned;
            if sold > ceiling {
                self.release(&lines[..=i])?;
                return Ok(Err(Shortage {
                    product_id: line.product_id.clone(),
                    requested: line.quantity,
                    available: ceiling.saturating_sub(sold - line.quantity),
                }));
            }
        }
        Ok(Ok(()))
    }

    /// Gives reserved units back (a failed or cancelled order).
    pub fn release(&self, lines: &[Line]) -> Result<(), kv::Error> {
        for line in lines {
            self.store
                .increment(&format!("returned/{}", line.product_id), line.quantity)?;
        }
        Ok(())
    }
}

/// Whether `item` matches a text search `q` (in id or name, any case) and
/// a `category` (exact, any case).
pub fn matches(item: &Item, q: Option<&str>, category: Option<&str>) -> bool {
    let p = &item.product;
    let text = q.map(str::to_lowercase);
    text.as_deref()
        .is_none_or(|t| p.name.to_lowercase().contains(t) || p.id.to_lowercase().contains(t))
        && category.is_none_or(|c| p.category.eq_ignore_ascii_case(c))
}

/// The path segment after `word`: `segment_after("/orders/o-1", "orders")`
/// is `Some("o-1")`; `None` when `word` is last or missing.
pub fn segment_after<'a>(path: &'a str, word: &str) -> Option<&'a str> {
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    segments.find(|s| *s == word)?;
    segments.next()
}

/// A JSON error: `{"error": message}` with `status`.
pub fn problem(status: u16, message: impl Into<String>) -> Response {
    Response::json(&json!({ "error": message.into() })).with_status(status)
}

/// A kv failure as a JSON 500.
pub fn storage_error(e: kv::Error) -> Response {
    problem(500, format!("the catalog store failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, name: &str, category: &str) -> Item {
        Item {
            product: Product {
                id: id.into(),
                name: name.into(),
                category: category.into(),
                price_cents: 100,
                stock: 1,
            },
            available: 1,
        }
    }

    #[test]
    fn search_by_text_and_category() {
        let shoes = item("p-100", "Trail running shoes", "shoes");
        assert!(matches(&shoes, None, None));
        assert!(matches(&shoes, Some("RUNNING"), Some("Shoes")));
        assert!(matches(&shoes, Some("p-100"), None));
        assert!(!matches(&shoes, Some("tent"), None));
        assert!(!matches(&shoes, None, Some("gear")));
    }

    #[test]
    fn segments() {
        assert_eq!(segment_after("/products/p-100", "products"), Some("p-100"));
        assert_eq!(segment_after("/products/", "products"), None);
        assert_eq!(segment_after("/products", "products"), None);
        assert_eq!(segment_after("/x/orders/o-1/y", "orders"), Some("o-1"));
        assert_eq!(segment_after("/other", "orders"), None);
    }

    #[test]
    fn the_seed_has_unique_ids_and_one_sold_out_product() {
        let mut ids: Vec<&str> = SEED.iter().map(|s| s.0).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), SEED.len());
        assert_eq!(SEED.iter().filter(|s| s.4 == 0).count(), 1);
    }
}
