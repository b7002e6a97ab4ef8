//! Shared by the stages of the file-etl example: the messages they pass
//! through queues, the SQL schema of the warehouse and a small CSV reader.
//!
//! ```text
//! incoming/*.csv → validate ─validated→ transform ─transformed→ load → sales
//!                     └──────────┴─────────anomalies──────────┴──→ record-anomaly → anomalies
//! ```

use serde::{Deserialize, Serialize};

/// The columns a sales file must start with, in this order.
pub const COLUMNS: [&str; 6] = [
    "order_id",
    "date",
    "customer",
    "sku",
    "quantity",
    "unit_price",
];

/// The warehouse schema; every stage that touches SQL runs it first
/// (it only creates what is missing).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sales (
    order_id TEXT PRIMARY KEY,
    sold_on TEXT NOT NULL,
    customer TEXT NOT NULL,
    sku TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    unit_price_cents INTEGER NOT NULL,
    amount_cents INTEGER NOT NULL,
    source_file TEXT NOT NULL,
    source_line INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    fingerprint TEXT PRIMARY KEY,
    file TEXT NOT NULL,
    records INTEGER NOT NULL,
    loaded INTEGER NOT NULL,
    loaded_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS anomalies (
    id TEXT PRIMARY KEY,
    file TEXT NOT NULL,
    line INTEGER NOT NULL,
    stage TEXT NOT NULL,
    reason TEXT NOT NULL,
    raw TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);";

/// A record that passed validation, as written in the file (queue `validated`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawRecord {
    /// 1-based line number in the file (the header is line 1).
    pub line: u32,
    /// The fields, in [`COLUMNS`] order.
    pub fields: Vec<String>,
}

/// A clean, typed sale (queue `transformed`, then a row of `sales`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sale {
    /// 1-based line number in the file.
    pub line: u32,
    /// The order id, unique across files.
    pub order_id: String,
    /// ISO date `YYYY-MM-DD`.
    pub sold_on: String,
    /// Customer name, spaces collapsed.
    pub customer: String,
    /// SKU, upper case.
    pub sku: String,
    /// Units sold.
    pub quantity: i64,
    /// Price of one unit, in cents.
    pub unit_price_cents: i64,
    /// `quantity * unit_price_cents`.
    pub amount_cents: i64,
}

/// What travels between the stages: one file's records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch<T> {
    /// The file's path in the container (`jan.csv` for `incoming/jan.csv`).
    pub file: String,
    /// Content fingerprint: one file content is loaded once.
    pub fingerprint: String,
    /// Data records in the file (header excluded).
    pub records: u32,
    /// The records still going.
    pub items: Vec<T>,
}

/// A malformed or suspicious record (queue `anomalies`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anomaly {
    /// The file's path in the container.
    pub file: String,
    /// Its content fingerprint.
    pub fingerprint: String,
    /// 1-based line, or 0 for the file as a whole.
    pub line: u32,
    /// `validate`, `transform` or `load`.
    pub stage: String,
    /// What is wrong.
    pub reason: String,
    /// The line as written (or a description of the file).
    pub raw: String,
}

/// Content fingerprint: 64-bit FNV-1a of the bytes plus their length, hex.
pub fn fingerprint(data: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}-{}", data.len())
}

/// Splits one CSV line into fields: commas separate, double quotes enclose
/// fields that hold commas, `""` inside quotes is a quote. `Err` for an
/// unterminated quote or a quote in the middle of a bare field.
pub fn split_csv_line(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, ',') => {
                fields.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            (false, '"') if field.is_empty() && !was_quoted => {
                quoted = true;
                was_quoted = true;
            }
            (false, '"') => return Err("a quote inside an unquoted field".into()),
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err("an unterminated quoted field".into());
    }
    fields.push(field);
    Ok(fields)
}

/// `(year, month, day)` of `YYYY-MM-DD` or `DD/MM/YYYY`, if a real date.
pub fn parse_date(s: &str) -> Option<(u32, u32, u32)> {
    let parts: Vec<&str> = s.split(['-', '/']).collect();
    let [a, b, c] = parts[..] else { return None };
    let (y, m, d) = if s.contains('-') && a.len() == 4 {
        (a, b, c)
    } else if s.contains('/') && c.len() == 4 {
        (c, b, a)
    } else {
        return None;
    };
    let (y, m, d): (u32, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    ((1..=12).contains(&m) && d >= 1 && d <= days[m as usize - 1]).then_some((y, m, d))
}

/// Cents of a non-negative amount with at most two decimals (`12`, `12.5`, `12.50`).
pub fn parse_cents(s: &str) -> Option<i64> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty()
        || !whole.chars().all(|c| c.is_ascii_digit())
        || frac.len() > 2
        || !frac.chars().all(|c| c.is_ascii_digit())
        || (s.contains('.') && frac.is_empty())
    {
        return None;
    }
    let cents = format!("{frac:0<2}").parse::<i64>().ok()?;
    whole
        .parse::<i64>()
        .ok()?
        .checked_mul(100)?
        .checked_add(cents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_amounts() {
        assert_eq!(parse_date("2026-02-28"), Some((2026, 2, 28)));
        assert_eq!(parse_date("29/02/2024"), Some((2024, 2, 29)));
        assert_eq!(parse_date("29/02/2026"), None);
        assert_eq!(parse_date("2026-13-01"), None);
        assert_eq!(parse_date("yesterday"), None);
        assert_eq!(parse_cents("12.5"), Some(1250));
        assert_eq!(parse_cents("0.07"), Some(7));
        assert_eq!(parse_cents("3"), Some(300));
        assert_eq!(parse_cents("1.234"), None);
        assert_eq!(parse_cents("-1"), None);
        assert_eq!(parse_cents("12."), None);
    }

    #[test]
    fn csv_lines() {
        assert_eq!(split_csv_line("a,b,,c").unwrap(), ["a", "b", "", "c"]);
        assert_eq!(
            split_csv_line(r#"1,"Smith, Jones","say ""hi""""#).unwrap(),
            ["1", "Smith, Jones", r#"say "hi""#]
        );
        assert!(split_csv_line(r#"1,"open"#).is_err());
        assert!(split_csv_line(r#"1,ab"c"#).is_err());
    }

    #[test]
    fn fingerprints_differ_by_content() {
        assert_eq!(fingerprint(b"abc"), fingerprint(b"abc"));
        assert_ne!(fingerprint(b"abc"), fingerprint(b"abd"));
        assert!(fingerprint(b"").ends_with("-0"));
    }
}
