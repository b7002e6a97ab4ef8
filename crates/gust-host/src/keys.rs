//! The app's keys in `.gust/keys.json`: generated on first start, random,
//! readable only by the owner, and never logged.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use gust_manifest::App;
pub use gust_triggers::http::Keys;

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
}
