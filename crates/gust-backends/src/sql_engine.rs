//! Helpers shared by the SQL bindings on server engines (`postgres::sql`,
//! `mysql`): guests write SQLite-style SQL text, so placeholders are
//! translated, scripts split into statements, and names, errors and
//! decimals handled the same way for every engine.
//!
//! The text scanner knows each dialect's quoting well enough to leave
//! string literals, quoted identifiers and comments alone:
//!
//! | engine     | strings                        | identifiers | comments                 | other          |
//! |------------|--------------------------------|-------------|--------------------------|----------------|
//! | PostgreSQL | `'..'` (`''`), `E'..'` (`\'`)  | `".."`      | `--`, nested `/* */`     | `$tag$..$tag$` |
//! | MySQL      | `'..'` (`''`)                  | `".."`, `` `..` `` | `-- `, `#`, `/* */` |          |
//!
//! (MySQL sessions are opened with `ANSI_QUOTES` and `NO_BACKSLASH_ESCAPES`,
//! so quoting means the same as in SQLite and PostgreSQL.)

use crate::sql::SqlValue;
use crate::{BackendError, Result};

/// Largest result (approximate bytes of all values) a query may return,
/// the same limit as the embedded backend.
pub(crate) const MAX_RESULT_BYTES: usize = 32 << 20;

/// How much of a statement an error message quotes.
const QUOTED_CHARS: usize = 200;

/// Which engine's lexical rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// PostgreSQL: placeholders become `$1..$n`.
    Postgres,
    /// MySQL / MariaDB: placeholders become `?`, parameters reordered.
    MySql,
}

/// A statement with its placeholders rewritten for the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Translated {
    /// The engine's SQL text.
    pub sql: String,
    /// For each placeholder in the text, in order, the (0-based) index of
    /// the guest's parameter it takes (used by MySQL, whose `?` are
    /// positional only).
    pub order: Vec<usize>,
    /// The highest parameter number used (the number of values expected).
    pub count: usize,
}

/// A stretch of SQL text: code, or something the scanner must not touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part<'a> {
    Code(&'a str),
    Quoted(&'a str),
}

/// Splits `sql` into code and quoted stretches (strings, quoted
/// identifiers, comments, dollar quotes).
fn parts(sql: &str, dialect: Dialect) -> Vec<Part<'_>> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut code_start = 0;
    let mut i = 0;
    while i < b.len() {
        let end = match (b[i], dialect) {
            (b'\'', _) => {
                // MySQL sessions run with `NO_BACKSLASH_ESCAPES`.
                let backslash = dialect == Dialect::Postgres
                    && i > 0
                    && matches!(b[i - 1], b'e' | b'E')
                    && (i < 2 || !is_ident_byte(b[i - 2]));
                Some(quoted_end(b, i, b'\'', backslash))
            }
            // MySQL sessions run with `ANSI_QUOTES`: an identifier too.
            (b'"', _) => Some(quoted_end(b, i, b'"', false)),
            (b'`', Dialect::MySql) => Some(quoted_end(b, i, b'`', false)),
            (b'-', _) if b.get(i + 1) == Some(&b'-') => {
                let mysql_needs_space = dialect == Dialect::MySql
                    && !b.get(i + 2).is_none_or(|c| c.is_ascii_whitespace());
                (!mysql_needs_space).then(|| line_end(b, i))
            }
            (b'#', Dialect::MySql) => Some(line_end(b, i)),
            (b'/', _) if b.get(i + 1) == Some(&b'*') => {
                Some(block_comment_end(b, i, dialect == Dialect::Postgres))
            }
            (b'$', Dialect::Postgres) if i == 0 || !is_ident_byte(b[i - 1]) => {
                dollar_quote_end(b, i)
            }
            _ => None,
        };
        match end {
            Some(end) => {
                if code_start < i {
                    out.push(Part::Code(&sql[code_start..i]));
                }
                out.push(Part::Quoted(&sql[i..end]));
                i = end;
                code_start = end;
            }
            None => i += 1,
        }
    }
    if code_start < b.len() {
        out.push(Part::Code(&sql[code_start..]));
    }
    out
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

/// The end (exclusive) of a quoted stretch opened by `quote` at `start`;
/// a doubled quote stays inside, and so does an escaped one if `backslash`.
fn quoted_end(b: &[u8], start: usize, quote: u8, backslash: bool) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        if backslash && b[i] == b'\\' {
            i += 2;
        } else if b[i] == quote {
            if b.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

fn line_end(b: &[u8], start: usize) -> usize {
    b[start..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(b.len(), |p| start + p + 1)
}

fn block_comment_end(b: &[u8], start: usize, nested: bool) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i + 1 < b.len() {
        if b[i] == b'/' && b[i + 1] == b'*' && (nested || depth == 0) {
            depth += 1;
            i += 2;
        } else if b[i] == b'*' && b[i + 1] == b'/' {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

/// A PostgreSQL dollar quote (`$$..$$`, `$tag$..$tag$`) starting at
/// `start`, or `None` if the `$` starts no tag (e.g. `$1`).
fn dollar_quote_end(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < b.len() && b[i] != b'$' {
        let ok = b[i] == b'_' || b[i].is_ascii_alphabetic() || b[i] >= 0x80;
        if !(ok || (i > start + 1 && b[i].is_ascii_digit())) {
            return None;
        }
        i += 1;
    }
    if i >= b.len() {
        return None;
    }
    let tag = &b[start..=i];
    let body = i + 1;
    let close = b[body..].windows(tag.len()).position(|w| w == tag);
    Some(close.map_or(b.len(), |p| body + p + tag.len()))
}

/// Rewrites SQLite placeholders (`?`, `?NNN`) for `dialect`. A bare `?`
/// takes the number after the largest used so far, as in SQLite.
pub(crate) fn translate(sql: &str, dialect: Dialect) -> Result<Translated, String> {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut order = Vec::new();
    let mut count = 0usize;
    for part in parts(sql, dialect) {
        let code = match part {
            Part::Quoted(q) => {
                out.push_str(q);
                continue;
            }
            Part::Code(c) => c,
        };
        let mut rest = code;
        while let Some(q) = rest.find('?') {
            out.push_str(&rest[..q]);
            let after = &rest[q + 1..];
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            let n = if digits == 0 {
                count + 1
            } else {
                match after[..digits].parse::<usize>() {
                    Ok(n) if (1..=32766).contains(&n) => n,
                    _ => {
                        return Err(format!(
                            "placeholder `?{}` is out of range (1 to 32766)",
                            &after[..digits]
                        ));
                    }
                }
            };
            count = count.max(n);
            order.push(n - 1);
            match dialect {
                Dialect::Postgres => {
                    out.push('$');
                    out.push_str(&n.to_string());
                }
                Dialect::MySql => out.push('?'),
            }
            rest = &after[digits..];
        }
        out.push_str(rest);
    }
    Ok(Translated {
        sql: out,
        order,
        count,
    })
}

/// The statements of a `;`-separated script (semicolons inside strings,
/// quoted identifiers, comments and dollar quotes do not split), trimmed,
/// empty ones (and ones holding only comments) left out.
pub(crate) fn split_statements(script: &str, dialect: Dialect) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    let mut has_code = false;
    for part in parts(script, dialect) {
        match part {
            Part::Quoted(q) => {
                has_code |= !(q.starts_with("--") || q.starts_with('#') || q.starts_with("/*"));
                offset += q.len();
            }
            Part::Code(c) => {
                for (i, ch) in c.char_indices() {
                    if ch == ';' {
                        if has_code {
                            out.push(script[start..offset + i].trim());
                        }
                        start = offset + i + 1;
                        has_code = false;
                    } else if !ch.is_whitespace() {
                        has_code = true;
                    }
                }
                offset += c.len();
            }
        }
    }
    if has_code {
        out.push(script[start..].trim());
    }
    out
}

/// An identifier from `parts` joined by `_`: ASCII letters and digits kept
/// (lower-cased), everything else turned into `_`. Longer than 63 bytes
/// (PostgreSQL's limit; MySQL allows 64), it is cut and ends in a hash of
/// the whole, so distinct names stay distinct.
pub(crate) fn identifier(parts: &[&str]) -> String {
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push('_');
        }
        out.extend(part.chars().map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        }));
    }
    if out.len() > 63 {
        // FNV-1a: stable across runs and versions, unlike `DefaultHasher`.
        let hash = parts
            .join("\u{0}")
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
        out.truncate(46);
        out.push_str(&format!("_{hash:016x}"));
    }
    out
}

/// The start of `sql` for an error message.
pub(crate) fn quote(sql: &str) -> String {
    let sql = sql.trim();
    let mut short: String = sql.chars().take(QUOTED_CHARS).collect();
    if short.len() < sql.len() {
        short.push_str("...");
    }
    short
}

/// A statement failed: names the statement and the reason.
pub(crate) fn failed(
    backend: &'static str,
    sql: &str,
    reason: impl std::fmt::Display,
) -> BackendError {
    BackendError::engine(backend, format!("`{}`: {reason}", quote(sql)))
}

/// A sqlx error as text: the server's message and SQLSTATE for database
/// errors, sqlx's description otherwise.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) fn reason(err: &sqlx::Error) -> String {
    match err {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (SQLSTATE {code})", db.message()),
            None => db.message().to_string(),
        },
        other => other.to_string(),
    }
}

/// How often a transaction the engine aborted to break a deadlock (or a
/// serialization failure) is run again before the error is returned.
pub(crate) const DEADLOCK_RETRIES: u32 = 5;

/// Whether `err` says the engine rolled the whole transaction back to
/// break a deadlock or a serialization conflict (SQLSTATE `40001`,
/// `40P01`): nothing of it was applied, so running it again is safe.
pub(crate) fn is_retryable(err: &BackendError) -> bool {
    let text = err.to_string();
    text.contains("(SQLSTATE 40001)") || text.contains("(SQLSTATE 40P01)")
}

/// Runs `attempt` again (after a short, jittered pause) while it fails with
/// a [retryable](is_retryable) error, at most [`DEADLOCK_RETRIES`] times.
pub(crate) async fn retry_deadlocks<T, F, Fut>(mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut tries = 0;
    loop {
        match attempt().await {
            Err(e) if tries < DEADLOCK_RETRIES && is_retryable(&e) => {
                tries += 1;
                let jitter = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos() % 10);
                let ms = u64::from(tries * 10 + jitter);
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            }
            result => return result,
        }
    }
}

/// Checks that `given` values fill the `expected` placeholders.
pub(crate) fn check_count(expected: usize, given: usize) -> Result<(), String> {
    if expected == given {
        Ok(())
    } else {
        Err(format!(
            "the statement has {expected} placeholder(s) but {given} value(s) were given"
        ))
    }
}

/// A decimal number in text: a whole number (no `.` or exponent) that fits
/// in 64 bits is [`SqlValue::Integer`], anything else [`SqlValue::Real`]
/// (nearest `f64`), so `SUM(int_column)` stays an integer on every engine.
pub(crate) fn decimal(text: &str) -> Result<SqlValue, String> {
    let text = text.trim();
    if !text.contains(['.', 'e', 'E'])
        && let Ok(i) = text.parse::<i64>()
    {
        return Ok(SqlValue::Integer(i));
    }
    text.parse::<f64>()
        .map(SqlValue::Real)
        .map_err(|_| format!("`{text}` is not a number"))
}

/// Rough size of a value, for [`MAX_RESULT_BYTES`].
pub(crate) fn size(v: &SqlValue) -> usize {
    match v {
        SqlValue::Text(s) => s.len() + 8,
        SqlValue::Blob(b) => b.len() + 8,
        _ => 8,
    }
}

/// The error for a result over [`MAX_RESULT_BYTES`].
pub(crate) fn too_large(backend: &'static str, sql: &str) -> BackendError {
    failed(
        backend,
        sql,
        format!(
            "result is larger than {} MiB; add a LIMIT",
            MAX_RESULT_BYTES >> 20
        ),
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `days` after 1970-01-01 as (year, month, day).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `YYYY-MM-DD` (years before 1 and after 9999 as PostgreSQL would not
/// write them, but unambiguous).
pub(crate) fn format_date(y: i64, m: u32, d: u32) -> String {
    format!("{y:04}-{m:02}-{d:02}")
}

/// `HH:MM:SS` with `.ffffff` (trailing zeros dropped) if there are
/// microseconds.
pub(crate) fn format_time(h: u32, min: u32, s: u32, micros: u32) -> String {
    let mut out = format!("{h:02}:{min:02}:{s:02}");
    if micros > 0 {
        let frac = format!("{micros:06}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out
}

/// A parsed `YYYY-MM-DD[ T]HH:MM[:SS[.ffffff]][Z|±HH[:MM]]`: microseconds
/// since 1970-01-01 in the written wall-clock time, and the zone offset in
/// seconds if one was written.
pub(crate) fn parse_timestamp(text: &str) -> Option<(i64, Option<i64>)> {
    let text = text.trim();
    let (date, rest) = text.split_at(text.find([' ', 'T', 't']).unwrap_or(text.len()));
    let days = parse_date(date)?;
    let rest = rest.get(1..).unwrap_or("").trim();
    if rest.is_empty() {
        return Some((days * 86_400_000_000, None));
    }
    let zone_at = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
    let micros = parse_time(rest[..zone_at].trim())?;
    let zone = rest[zone_at..].trim();
    let offset = match zone {
        "" => None,
        "Z" | "z" => Some(0),
        _ => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
            let (h, m) = match digits.len() {
                2 => (digits.parse::<i64>().ok()?, 0),
                4 => (digits[..2].parse().ok()?, digits[2..].parse().ok()?),
                _ => return None,
            };
            Some(sign * (h * 3600 + m * 60))
        }
    };
    Some((days * 86_400_000_000 + micros, offset))
}

/// Days since 1970-01-01 of `YYYY-MM-DD`.
pub(crate) fn parse_date(text: &str) -> Option<i64> {
    let mut it = text.trim().splitn(3, '-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    ((1..=12).contains(&m) && (1..=31).contains(&d)).then(|| days_from_civil(y, m, d))
}

/// Microseconds since midnight of `HH:MM[:SS[.ffffff]]`.
pub(crate) fn parse_time(text: &str) -> Option<i64> {
    let mut it = text.splitn(3, ':');
    let h: i64 = it.next()?.parse().ok()?;
    let m: i64 = it.next()?.parse().ok()?;
    let (s, frac) = match it.next() {
        None => (0, 0),
        Some(sec) => {
            let (whole, frac) = sec.split_once('.').unwrap_or((sec, ""));
            let frac_digits: String = frac.chars().chain("000000".chars()).take(6).collect();
            (whole.parse::<i64>().ok()?, frac_digits.parse::<i64>().ok()?)
        }
    };
    (h <= 24 && m < 60 && s <= 60).then_some(((h * 60 + m) * 60 + s) * 1_000_000 + frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(sql: &str) -> String {
        translate(sql, Dialect::Postgres).unwrap().sql
    }

    fn my(sql: &str) -> (String, Vec<usize>) {
        let t = translate(sql, Dialect::MySql).unwrap();
        (t.sql, t.order)
    }

    #[test]
    fn placeholders_become_numbered_for_postgres() {
        assert_eq!(pg("SELECT ?, ?, ?"), "SELECT $1, $2, $3");
        assert_eq!(pg("SELECT ?2, ?1, ?2"), "SELECT $2, $1, $2");
        // A bare `?` follows the largest number so far, as in SQLite.
        assert_eq!(pg("SELECT ?3, ?, ?1"), "SELECT $3, $4, $1");
        assert_eq!(pg("x=?10"), "x=$10");
        let t = translate("SELECT ?2", Dialect::Postgres).unwrap();
        assert_eq!(t.count, 2);
    }

    #[test]
    fn quoted_text_and_comments_keep_their_question_marks() {
        assert_eq!(
            pg("SELECT '?', 'it''s ?', \"a?\", ? -- why?\n, ? /* ? /* ? */ ? */"),
            "SELECT '?', 'it''s ?', \"a?\", $1 -- why?\n, $2 /* ? /* ? */ ? */"
        );
        assert_eq!(pg("SELECT E'\\'?', ?"), "SELECT E'\\'?', $1");
        // Without the E prefix a backslash is an ordinary character.
        assert_eq!(pg("SELECT 'a\\', ?"), "SELECT 'a\\', $1");
        assert_eq!(
            pg("SELECT $$ ? $$, $x$ ?$$ $x$, ?"),
            "SELECT $$ ? $$, $x$ ?$$ $x$, $1"
        );
        assert_eq!(pg("SELECT $1, ?"), "SELECT $1, $1");
        assert_eq!(
            my("SELECT '?', \"?\", `?`, 'a\\', ? # ?\n, ? -- ?\n, ?--?"),
            (
                "SELECT '?', \"?\", `?`, 'a\\', ? # ?\n, ? -- ?\n, ?--?".into(),
                vec![0, 1, 2, 3]
            )
        );
    }

    #[test]
    fn numbered_placeholders_are_reordered_for_mysql() {
        assert_eq!(
            my("VALUES (?2, ?1, ?2)"),
            ("VALUES (?, ?, ?)".into(), vec![1, 0, 1])
        );
        assert_eq!(my("VALUES (?, ?)"), ("VALUES (?, ?)".into(), vec![0, 1]));
    }

    #[test]
    fn out_of_range_placeholders_are_refused() {
        assert!(translate("SELECT ?0", Dialect::Postgres).is_err());
        assert!(translate("SELECT ?99999", Dialect::MySql).is_err());
    }

    #[test]
    fn unterminated_quotes_run_to_the_end() {
        assert_eq!(pg("SELECT 'abc ?"), "SELECT 'abc ?");
        assert_eq!(pg("SELECT ? /* ?"), "SELECT $1 /* ?");
    }

    #[test]
    fn scripts_split_on_semicolons_outside_quotes() {
        let script = "CREATE TABLE a (x TEXT DEFAULT ';');\n-- c;\n INSERT INTO a VALUES ('x;y') ; ;\n/* only a comment; */";
        assert_eq!(
            split_statements(script, Dialect::Postgres),
            vec![
                "CREATE TABLE a (x TEXT DEFAULT ';')",
                "-- c;\n INSERT INTO a VALUES ('x;y')"
            ]
        );
        assert_eq!(
            split_statements(
                "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql; SELECT 2",
                Dialect::Postgres
            ),
            vec![
                "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql",
                "SELECT 2"
            ]
        );
        assert_eq!(
            split_statements("SELECT 1", Dialect::MySql),
            vec!["SELECT 1"]
        );
        assert!(split_statements(" ; ", Dialect::MySql).is_empty());
    }

    #[test]
    fn identifiers_are_plain_and_bounded() {
        assert_eq!(
            identifier(&["gust", "Shop-API", "db.1"]),
            "gust_shop_api_db_1"
        );
        let long_a = identifier(&["gust", &"a".repeat(80), "x"]);
        let long_b = identifier(&["gust", &"a".repeat(80), "y"]);
        assert_eq!(long_a.len(), 63);
        assert_ne!(long_a, long_b);
    }

    #[test]
    fn decimals_are_integers_only_when_whole() {
        assert_eq!(decimal("42").unwrap(), SqlValue::Integer(42));
        assert_eq!(decimal("-42.50").unwrap(), SqlValue::Real(-42.5));
        assert_eq!(decimal("1e3").unwrap(), SqlValue::Real(1000.0));
        assert_eq!(
            decimal("99999999999999999999").unwrap(),
            SqlValue::Real(1e20)
        );
        assert!(decimal("x").is_err());
    }

    #[test]
    fn dates_round_trip() {
        for (y, m, d) in [
            (1970, 1, 1),
            (2000, 2, 29),
            (1969, 12, 31),
            (2026, 12, 3),
            (1, 1, 1),
        ] {
            assert_eq!(civil_from_days(days_from_civil(y, m, d)), (y, m, d));
        }
        assert_eq!(days_from_civil(2000, 1, 1), 10_957);
        assert_eq!(format_time(1, 2, 3, 450_000), "01:02:03.45");
        assert_eq!(
            parse_timestamp("2000-01-01 00:00:01.5+01:00"),
            Some((10_957 * 86_400_000_000 + 1_500_000, Some(3600)))
        );
        assert_eq!(
            parse_timestamp("2000-01-01T10:30Z"),
            Some((10_957 * 86_400_000_000 + 37_800_000_000, Some(0)))
        );
        assert_eq!(
            parse_timestamp("2000-01-01"),
            Some((10_957 * 86_400_000_000, None))
        );
        assert_eq!(parse_timestamp("yesterday"), None);
    }
}
