//! Finding where a key is written in a TOML file, for errors found after the
//! file was read into plain values (the `[gateway]` table is checked by the
//! gateway, which never sees the text).

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::error::line_column;

/// One step of a path into a TOML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyStep<'a> {
    /// A table key.
    Key(&'a str),
    /// An array element by position.
    Index(usize),
    /// The element of an array of tables whose `name` is this.
    Named(&'a str),
}

/// Splits a dotted key such as `gateway.route[2].target.upstream` into steps
/// (`Key("gateway")`, `Key("route")`, `Index(2)`, ...).
pub fn key_steps(dotted: &str) -> Vec<KeyStep<'_>> {
    let mut steps = Vec::new();
    for part in dotted.split('.').filter(|p| !p.is_empty()) {
        let (name, mut rest) = part.split_once('[').map_or((part, ""), |(n, r)| (n, r));
        if !name.is_empty() {
            steps.push(KeyStep::Key(name));
        }
        while let Some((index, after)) = rest.split_once(']') {
            if let Ok(i) = index.parse() {
                steps.push(KeyStep::Index(i));
            }
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    steps
}

/// 1-based line and column where the deepest reachable step of `path` is
/// written in `source` (the key of a table entry, or the start of an
/// array element); `None` when the text does not parse or the first step
/// is not there.
pub fn locate(source: &str, path: &[KeyStep<'_>]) -> Option<(usize, usize)> {
    let document = DeTable::parse(source).ok()?;
    let root: &DeTable<'_> = document.get_ref();
    let mut current: Option<&Spanned<DeValue<'_>>> = None;
    let mut found = None;
    for step in path {
        let next = match (step, current.map(Spanned::get_ref)) {
            (KeyStep::Key(key), None | Some(DeValue::Table(_))) => {
                let table = match current.map(Spanned::get_ref) {
                    Some(DeValue::Table(t)) => t,
                    _ => root,
                };
                table
                    .iter()
                    .find(|(k, _)| k.get_ref().as_ref() == *key)
                    .map(|(k, v)| (k.span().start, v))
            }
            (KeyStep::Index(i), Some(DeValue::Array(items))) => {
                items.get(*i).map(|v| (v.span().start, v))
            }
            (KeyStep::Named(name), Some(DeValue::Array(items))) => items
                .iter()
                .find(|v| match v.get_ref() {
                    DeValue::Table(t) => t.iter().any(|(k, v)| {
                        k.get_ref().as_ref() == "name"
                            && matches!(v.get_ref(), DeValue::String(s) if s.as_ref() == *name)
                    }),
                    _ => false,
                })
                .map(|v| (v.span().start, v)),
            _ => None,
        };
        let Some((start, value)) = next else { break };
        found = Some(start);
        current = Some(value);
    }
    found.map(|offset| line_column(source, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATEWAY: &str = r#"[app]
name = "a"

[[gateway.route]]
name = "one"
path = "/one"
target = { function = "f" }

[[gateway.route]]
name = "two"
path = "/two"
target = { upstream = "{{ backend }}" }

[[gateway.consumer]]
name = "mobile"
rate_limit = "lots"
"#;

    #[test]
    fn splits_dotted_keys_with_indices() {
        assert_eq!(
            key_steps("gateway.route[2].target.upstream"),
            vec![
                KeyStep::Key("gateway"),
                KeyStep::Key("route"),
                KeyStep::Index(2),
                KeyStep::Key("target"),
                KeyStep::Key("upstream"),
            ]
        );
    }

    #[test]
    fn finds_keys_by_index_and_by_name() {
        let at = |path: &[KeyStep<'_>]| locate(GATEWAY, path).map(|(line, _)| line);
        assert_eq!(at(&key_steps("gateway.route[1].target.upstream")), Some(12));
        use KeyStep::*;
        assert_eq!(
            at(&[Key("gateway"), Key("route"), Named("one"), Key("target")]),
            Some(7)
        );
        assert_eq!(
            at(&[
                Key("gateway"),
                Key("consumer"),
                Named("mobile"),
                Key("rate_limit")
            ]),
            Some(16)
        );
        // The deepest step that exists: the route, when its key is absent.
        assert!(at(&[Key("gateway"), Key("route"), Named("two"), Key("cors")]).is_some());
        assert_eq!(at(&[Key("nothing")]), None);
        assert_eq!(locate("not = = toml", &[Key("not")]), None);
    }
}
