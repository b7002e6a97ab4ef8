//! Values that are never shown: those of variables marked `secret = true`
//! (from their default or from `GUST_VAR_<NAME>`). Log lines, error
//! messages and admin API answers that would carry one show
//! `[secret <name>]` instead.

use std::borrow::Cow;

use gust_manifest::App;

/// Secret values and the variables they belong to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    /// (value, variable name), longest value first so a value that
    /// contains another is replaced whole.
    values: Vec<(String, String)>,
}

impl Secrets {
    /// The secrets of `app`, given its resolved variable values.
    pub fn of(app: &App, resolved: &[(String, String)]) -> Self {
        let mut secrets = Self::default();
        for (name, value) in resolved {
            if app.variables.get(name).is_some_and(|v| v.secret) {
                secrets.add(name, value);
            }
        }
        secrets
    }

    /// Adds `value` of variable `name` (an empty value hides nothing).
    pub fn add(&mut self, name: &str, value: &str) {
        if value.is_empty() || self.values.iter().any(|(v, _)| v == value) {
            return;
        }
        self.values.push((value.to_string(), name.to_string()));
        self.values
            .sort_by_key(|(value, _)| std::cmp::Reverse(value.len()));
    }

    /// Both sets of secrets.
    pub fn merged(&self, other: &Secrets) -> Secrets {
        let mut out = self.clone();
        for (value, name) in &other.values {
            out.add(name, value);
        }
        out
    }

    /// Whether there is nothing to hide.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every secret value replaced by `[secret <name>]`.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for (value, name) in &self.values {
            if out.contains(value.as_str()) {
                out = Cow::Owned(out.replace(value.as_str(), &format!("[secret {name}]")));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_every_value_longest_first() {
        let mut s = Secrets::default();
        s.add("short", "abc");
        s.add("long", "abcdef");
        s.add("empty", "");
        assert_eq!(
            s.redact("x abcdef y abc z"),
            "x [secret long] y [secret short] z"
        );
        assert!(matches!(s.redact("nothing here"), Cow::Borrowed(_)));
        assert!(Secrets::default().is_empty());
    }

    #[test]
    fn only_secret_variables_count() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("gust.toml"),
            "[app]\nname = \"s\"\n[variables]\ntoken = { default = \"t0ken-value\", secret = true }\nplain = { default = \"visible\" }\n",
        )
        .unwrap();
        let app = gust_manifest::load_app(dir.path()).unwrap();
        let resolved = crate::app::resolve_variables(&app).unwrap();
        let s = Secrets::of(&app, &resolved);
        assert_eq!(s.redact("t0ken-value visible"), "[secret token] visible");
    }
}
