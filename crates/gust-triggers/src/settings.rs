//! A trigger kind's settings: the table under `trigger = { <kind> = { ... } }`
//! in `gust.toml`, read with serde into the kind's own type and then
//! checked by it. Errors name the setting at fault, so
//! [`crate::load_app`] can point at its line.

use std::time::Duration;

use gust_manifest::Function;
use serde::de::{DeserializeOwned, Deserializer};

use crate::registry::TriggerError;

/// The settings type of one trigger kind.
pub trait Settings: DeserializeOwned {
    /// The kind's name in `gust.toml` (`queue`, `timer`, ...).
    const KIND: &'static str;

    /// What the kind takes, written as the fix of any error in its settings.
    const HELP: &'static str;

    /// Checks what serde cannot: names, ranges, patterns.
    fn check(&self) -> Result<(), Invalid>;

    /// Reads and checks the settings of `function`'s trigger; an error if
    /// its trigger is of another kind.
    fn of(function: &Function) -> Result<Self, TriggerError> {
        let table = function
            .trigger
            .settings()
            .filter(|_| function.trigger.kind() == Self::KIND)
            .ok_or_else(|| {
                TriggerError::new(&function.name, format!("not a {} trigger", Self::KIND))
            })?;
        let settings: Self = read(table).map_err(|(field, message)| {
            TriggerError::new(
                &function.name,
                format!("invalid {} trigger settings: {message}", Self::KIND),
            )
            .at(field)
            .fix(Self::HELP)
        })?;
        settings.check().map_err(|invalid| {
            TriggerError::new(&function.name, invalid.message)
                .at(Some(invalid.field.to_string()))
                .fix(Self::HELP)
        })?;
        Ok(settings)
    }
}

/// A setting whose value a kind refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The setting's key (`batch_size`).
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl Invalid {
    /// `field` is wrong because of `message`.
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// `Err(Invalid)` unless `value` is within `range`.
pub fn check_range(
    field: &'static str,
    value: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<(), Invalid> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(Invalid::new(
            field,
            format!(
                "`{field}` must be {} to {}, not {value}",
                range.start(),
                range.end()
            ),
        ))
    }
}

/// `Err(Invalid)` unless `name` may name a resource.
pub fn check_resource_name(field: &'static str, kind: &str, name: &str) -> Result<(), Invalid> {
    if gust_manifest::is_resource_name(name) {
        Ok(())
    } else if name.is_empty() {
        Err(Invalid::new(
            field,
            format!("the {kind} trigger needs `{field}`, the name of its {field}"),
        ))
    } else {
        Err(Invalid::new(
            field,
            format!("`{name}` is not a valid {field} name (lowercase letters, digits, `-`, `_`)"),
        ))
    }
}

/// Reads `table` into `T`; on error, the dotted key at fault (when known)
/// and the message.
fn read<T: DeserializeOwned>(table: &toml::Table) -> Result<T, (Option<String>, String)> {
    let value = toml::Value::Table(table.clone());
    serde_path_to_error::deserialize(value).map_err(|e| {
        let message = e.inner().message().trim().to_string();
        let mut path = e.path().to_string();
        if path == "." {
            path.clear();
        }
        // Name an unknown key itself, where the path stops at its table.
        if let Some(unknown) = message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split('`').next())
            && path.rsplit('.').next() != Some(unknown)
        {
            path = if path.is_empty() {
                unknown.to_string()
            } else {
                format!("{path}.{unknown}")
            };
        }
        ((!path.is_empty()).then_some(path), message)
    })
}

/// Serde helper: a duration written like `30s`, `500ms` or `1m`.
pub fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = <String as serde::Deserialize>::deserialize(deserializer)?;
    gust_manifest::parse_duration(&text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Probe {
        #[allow(dead_code)]
        name: String,
        #[serde(default, deserialize_with = "duration")]
        #[allow(dead_code)]
        every: Duration,
    }

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn errors_name_the_key_at_fault() {
        let (key, message) = read::<Probe>(&table("name = \"a\"\nbatch = 3")).unwrap_err();
        assert_eq!(key.as_deref(), Some("batch"));
        assert!(message.contains("unknown field `batch`"), "{message}");
        let (key, _) = read::<Probe>(&table("name = 3")).unwrap_err();
        assert_eq!(key.as_deref(), Some("name"));
        let (key, message) = read::<Probe>(&table("name = \"a\"\nevery = \"soon\"")).unwrap_err();
        assert_eq!(key.as_deref(), Some("every"), "{message}");
        let (key, message) = read::<Probe>(&table("")).unwrap_err();
        assert_eq!(key, None);
        assert!(message.contains("missing field `name`"), "{message}");
    }

    #[test]
    fn ranges_and_names_are_checked() {
        assert!(check_range("n", 5, 1..=10).is_ok());
        assert_eq!(check_range("n", 0, 1..=10).unwrap_err().field, "n");
        assert!(check_resource_name("queue", "queue", "jobs").is_ok());
        assert!(
            check_resource_name("queue", "queue", "")
                .unwrap_err()
                .message
                .contains("needs `queue`")
        );
        assert!(check_resource_name("queue", "queue", "Jobs!").is_err());
    }
}
