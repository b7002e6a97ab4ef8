//! What the csv-pipeline functions share: the SQL schema, the expected CSV
//! columns and the rules one record must pass to become a row.

/// The tables: `sales` (one row per accepted CSV record, keyed by file and
/// line, so a file imported again replaces its rows instead of adding
/// them) and `imports` (one record per file: content fingerprint, counts,
/// the first rejected lines).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sales (
    file             TEXT    NOT NULL,
    line             INTEGER NOT NULL,
    date             TEXT    NOT NULL,
    month            TEXT    NOT NULL,
    region           TEXT    NOT NULL,
    product          TEXT    NOT NULL,
    units            INTEGER NOT NULL,
    unit_price_cents INTEGER NOT NULL,
    revenue_cents    INTEGER NOT NULL,
    PRIMARY KEY (file, line)
);
CREATE INDEX IF NOT EXISTS sales_region ON sales (region);
CREATE INDEX IF NOT EXISTS sales_month ON sales (month);
CREATE TABLE IF NOT EXISTS imports (
    file        TEXT PRIMARY KEY,
    fingerprint TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    records     INTEGER NOT NULL,
    rows        INTEGER NOT NULL,
    rejected    INTEGER NOT NULL,
    errors      TEXT    NOT NULL,
    imported_at TEXT    NOT NULL
);
";

/// The columns a file must have (in any order; names are matched without
/// case and surrounding spaces).
pub const COLUMNS: [&str; 5] = ["date", "region", "product", "units", "unit_price"];

/// Most units one record may hold.
pub const MAX_UNITS: i64 = 1_000_000;
/// Highest unit price, in cents.
pub const MAX_PRICE_CENTS: i64 = 100_000_000;

/// One accepted record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sale {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// `YYYY-MM`.
    pub month: String,
    /// Region name as written (trimmed).
    pub region: String,
    /// Product name as written (trimmed).
    pub product: String,
    /// Units sold, 1 to [`MAX_UNITS`].
    pub units: i64,
    /// Price of one unit, in cents.
    pub unit_price_cents: i64,
}

impl Sale {
    /// `units × unit price`, in cents.
    pub fn revenue_cents(&self) -> i64 {
        self.units * self.unit_price_cents
    }
}

/// Checks one record's fields (already in [`COLUMNS`] order).
pub fn parse_sale(fields: [&str; 5]) -> Result<Sale, String> {
    let [date, region, product, units, price] = fields.map(str::trim);
    check_date(date)?;
    for (name, value) in [("region", region), ("product", product)] {
        if value.is_empty() {
            return Err(format!("{name} is empty"));
        }
        if value.chars().count() > 80 {
            return Err(format!("{name} is longer than 80 characters"));
        }
    }
    let units: i64 = units
        .parse()
        .map_err(|_| format!("units `{units}` is not a whole number"))?;
    if !(1..=MAX_UNITS).contains(&units) {
        return Err(format!("units {units} is not between 1 and {MAX_UNITS}"));
    }
    let unit_price_cents = parse_cents(price)?;
    Ok(Sale {
        date: date.to_string(),
        month: date[..7].to_string(),
        region: region.to_string(),
        product: product.to_string(),
        units,
        unit_price_cents,
    })
}

/// A real calendar date written `YYYY-MM-DD`.
pub fn check_date(date: &str) -> Result<(), String> {
    let bad = || format!("date `{date}` is not a real date written YYYY-MM-DD");
    let b = date.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(bad());
    }
    let num = |s: &str| s.parse::<u32>().map_err(|_| bad());
    let (y, m, d) = (num(&date[..4])?, num(&date[5..7])?, num(&date[8..])?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(bad()),
    };
    if !(1900..=2999).contains(&y) || d == 0 || d > days {
        return Err(bad());
    }
    Ok(())
}

/// `12.5` -> 1250: a non-negative amount with at most two decimals.
pub fn parse_cents(text: &str) -> Result<i64, String> {
    let bad = || format!("unit_price `{text}` is not an amount like 12.50");
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || whole.len() > 9
        || frac.len() > 2
        || !whole.bytes().all(|c| c.is_ascii_digit())
        || !frac.bytes().all(|c| c.is_ascii_digit())
        || (text.contains('.') && frac.is_empty())
    {
        return Err(bad());
    }
    let whole: i64 = whole.parse().map_err(|_| bad())?;
    let frac: i64 = format!("{frac:0<2}").parse().map_err(|_| bad())?;
    let cents = whole * 100 + frac;
    if cents > MAX_PRICE_CENTS {
        return Err(format!("unit_price `{text}` is above {}", MAX_PRICE_CENTS / 100));
    }
    Ok(cents)
}

/// FNV-1a of the content plus its length: tells an unchanged file apart.
pub fn fingerprint(data: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}-{}", data.len())
}

/// Whether `name` may name an uploaded file: `A-Z a-z 0-9 . _ -`, ending
/// in `.csv`, at most 100 characters, not starting with `.`.
pub fn is_file_name(name: &str) -> bool {
    name.len() <= 100
        && name.len() > 4
        && name.ends_with(".csv")
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_checked() {
        let s = parse_sale(["2026-02-28", " North ", "Widget", "3", "19.9"]).unwrap();
        assert_eq!((s.month.as_str(), s.region.as_str()), ("2026-02", "North"));
        assert_eq!(s.revenue_cents(), 5970);
        assert!(parse_sale(["2026-02-30", "N", "W", "1", "1"]).is_err());
        assert!(parse_sale(["2024-02-29", "N", "W", "1", "1"]).is_ok());
        assert!(parse_sale(["2026-01-01", "", "W", "1", "1"]).is_err());
        assert!(parse_sale(["2026-01-01", "N", "W", "0", "1"]).is_err());
        assert!(parse_sale(["2026-01-01", "N", "W", "1", "1.999"]).is_err());
        assert!(parse_sale(["2026-01-01", "N", "W", "1", "-1"]).is_err());
        assert!(parse_sale(["2026-01-01", "N", "W", "1", "abc"]).is_err());
    }

    #[test]
    fn amounts_and_names() {
        assert_eq!(parse_cents("0.5"), Ok(50));
        assert_eq!(parse_cents("12"), Ok(1200));
        assert!(parse_cents("12.").is_err());
        assert!(is_file_name("q1-2026.csv"));
        assert!(!is_file_name("../x.csv"));
        assert!(!is_file_name("x.txt"));
    }
}
