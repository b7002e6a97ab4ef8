//! The app's keys in `.gust/keys.json`: generated on first start, random,
//! readable only by the owner, never logged, and rotated without a restart
//! ([`rotate`], [`LiveKeys`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use arc_swap::ArcSwap;
use gust_manifest::App;
pub use gust_triggers::http::Keys;

/// The keys a running host checks requests against. Every clone sees the
/// same keys, so a rotation takes effect at once for every route.
#[derive(Clone)]
pub struct LiveKeys(Arc<ArcSwap<Keys>>);

impl LiveKeys {
    /// Live keys starting as `keys`.
    pub fn new(keys: Keys) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(keys)))
    }

    /// The keys as they are now.
    pub fn current(&self) -> Arc<Keys> {
        self.0.load_full()
    }

    /// From now on, requests are checked against `keys`.
    pub fn replace(&self, keys: Keys) {
        self.0.store(Arc::new(keys));
    }
}

impl std::fmt::Debug for LiveKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveKeys(..)")
    }
}

/// Which keys [`rotate`] replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyScope {
    /// The admin key, the host key and every function key.
    All,
    /// The admin key only.
    Admin,
    /// The host key only.
    Host,
    /// One function's key.
    Function(String),
}

impl KeyScope {
    /// Reads `all`, `admin`, `host` or `function:<name>`.
    pub fn parse(text: &str) -> Result<Self> {
        Ok(match text {
            "" | "all" => Self::All,
            "admin" => Self::Admin,
            "host" => Self::Host,
            other => match other.strip_prefix("function:") {
                Some(name) if !name.is_empty() => Self::Function(name.to_string()),
                _ => bail!("unknown key scope `{other}`: use all, admin, host or function:<name>"),
            },
        })
    }

    /// The text [`KeyScope::parse`] reads back.
    pub fn as_query(&self) -> String {
        match self {
            Self::All => "all".into(),
            Self::Admin => "admin".into(),
            Self::Host => "host".into(),
            Self::Function(name) => format!("function:{name}"),
        }
    }
}

/// Replaces the keys `scope` names with new random ones, saves the keys
/// file of the app whose state folder is `state_dir`, and returns the new
/// keys. The old keys stop working as soon as a running host swaps the new
/// ones in (see [`LiveKeys`]).
pub fn rotate(state_dir: &Path, keys: &Keys, scope: &KeyScope) -> Result<Keys> {
    let mut next = keys.clone();
    match scope {
        KeyScope::All => {
            next.admin = new_key()?;
            next.host = new_key()?;
            for key in next.functions.values_mut() {
                *key = new_key()?;
            }
        }
        KeyScope::Admin => next.admin = new_key()?,
        KeyScope::Host => next.host = new_key()?,
        KeyScope::Function(name) => match next.functions.get_mut(name) {
            Some(key) => *key = new_key()?,
            None => bail!("the app has no function named `{name}`"),
        },
    }
    save(&keys_path(state_dir), &next)?;
    Ok(next)
}

/// The keys file inside an app's state folder.
pub fn keys_path(state_dir: &Path) -> PathBuf {
    state_dir.join("keys.json")
}

/// Loads the app's keys, creating the file and any missing key (a new
/// function gets its own key); writes back only when something was added.
pub fn load_or_create(app: &App) -> Result<Keys> {
    let path = keys_path(&app.state_dir());
    let mut keys: Keys = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is not a valid keys file; delete it to generate new keys",
                path.display()
            )
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Keys::default(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut changed = false;
    for slot in [&mut keys.admin, &mut keys.host] {
        if slot.is_empty() {
            *slot = new_key()?;
            changed = true;
        }
    }
    for f in &app.functions {
        if !keys.functions.contains_key(&f.name) {
            keys.functions.insert(f.name.clone(), new_key()?);
            changed = true;
        }
    }
    if changed {
        save(&path, &keys)?;
    }
    Ok(keys)
}

/// A random 256-bit key, hex encoded.
pub fn new_key() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for keys: {e}"))?;
    Ok(hex::encode(bytes))
}

fn save(path: &Path, keys: &Keys) -> Result<()> {
    let dir = path.parent().expect("keys file has a folder");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(keys)?;
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        file.write_all(&text)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_and_adds_new_functions() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::create_dir_all(&f).unwrap();
        std::fs::write(f.join("Cargo.toml"), "[package]\nname = \"f\"\n").unwrap();
        let text = "[app]\nname = \"a\"\n[[function]]\nname = \"one\"\nsource = \"f\"\ntrigger = { http = { route = \"/1\" } }\n";
        let app =
            gust_manifest::parse_app(dir.path(), &dir.path().join("gust.toml"), text).unwrap();
        let first = load_or_create(&app).unwrap();
        assert_eq!(first.admin.len(), 64);
        assert_ne!(first.admin, first.host);
        assert_eq!(load_or_create(&app).unwrap(), first);
        let text2 = format!(
            "{text}[[function]]\nname = \"two\"\nsource = \"f\"\ntrigger = {{ http = {{ route = \"/2\" }} }}\n"
        );
        let app2 =
            gust_manifest::parse_app(dir.path(), &dir.path().join("gust.toml"), &text2).unwrap();
        let second = load_or_create(&app2).unwrap();
        assert_eq!(second.host, first.host);
        assert_eq!(second.functions["one"], first.functions["one"]);
        assert!(second.functions.contains_key("two"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(keys_path(&app.state_dir()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn rotation_replaces_only_the_chosen_keys_and_saves_them() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys {
            admin: "a".repeat(64),
            host: "h".repeat(64),
            functions: [("f".to_string(), "f".repeat(64))].into(),
        };
        let next = rotate(dir.path(), &keys, &KeyScope::Function("f".into())).unwrap();
        assert_eq!((&next.admin, &next.host), (&keys.admin, &keys.host));
        assert_ne!(next.functions["f"], keys.functions["f"]);
        let saved: Keys =
            serde_json::from_slice(&std::fs::read(keys_path(dir.path())).unwrap()).unwrap();
        assert_eq!(saved, next);
        let all = rotate(dir.path(), &next, &KeyScope::All).unwrap();
        assert!(all.admin != next.admin && all.host != next.host);
        assert_ne!(all.functions["f"], next.functions["f"]);
        let err = rotate(dir.path(), &all, &KeyScope::Function("nope".into())).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn scopes_read_back_what_they_write() {
        for scope in [
            KeyScope::All,
            KeyScope::Admin,
            KeyScope::Host,
            KeyScope::Function("resize".into()),
        ] {
            assert_eq!(KeyScope::parse(&scope.as_query()).unwrap(), scope);
        }
        assert!(KeyScope::parse("function:").is_err());
        assert!(KeyScope::parse("root").is_err());
    }

    #[test]
    fn live_keys_are_shared_by_every_clone() {
        let live = LiveKeys::new(Keys::default());
        let clone = live.clone();
        live.replace(Keys {
            admin: "new".into(),
            ..Keys::default()
        });
        assert_eq!(clone.current().admin, "new");
    }
}
