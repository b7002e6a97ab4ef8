//! Loading an app folder with every trigger's settings checked by its own
//! kind: the manifest checks the shape of `gust.toml`, each
//! [`crate::registry::TriggerKind`] its settings, and a refusal is located
//! to the line of the setting at fault.

use std::path::Path;

use gust_manifest::{App, ManifestError};

use crate::registry::{self, TriggerError};

/// Reads and validates the app in `dir` (the folder holding `gust.toml`),
/// trigger settings included.
pub fn load_app(dir: &Path) -> Result<App, ManifestError> {
    let app = gust_manifest::load_app(dir)?;
    check_triggers(&app, || {
        std::fs::read_to_string(&app.manifest_path).unwrap_or_default()
    })?;
    Ok(app)
}

/// Checks every function's trigger settings of `app`; `source` gives the
/// manifest's text, read only to locate an error.
pub fn check_triggers(app: &App, source: impl FnOnce() -> String) -> Result<(), ManifestError> {
    for (index, function) in app.functions.iter().enumerate() {
        if let Err(e) = registry::validate(function) {
            return Err(located(app, index, &source(), e));
        }
    }
    Ok(())
}

/// `e` about function number `index` as a manifest error at its setting.
fn located(app: &App, index: usize, source: &str, e: TriggerError) -> ManifestError {
    let function = &app.functions[index];
    let mut key = format!("function[{index}].trigger.{}", function.trigger.kind());
    if let Some(field) = &e.field {
        key = format!("{key}.{field}");
    }
    let message = format!("function `{}`: {}", e.function, e.message);
    ManifestError::at_key(&app.manifest_path, source, key, message, e.fix)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str =
        "[app]\nname = \"a\"\n[[function]]\nname = \"f\"\nsource = \"prebuilt.wasm\"\n";

    fn app_dir(manifest: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("prebuilt.wasm"), b"\0asm").unwrap();
        std::fs::write(dir.path().join("gust.toml"), manifest).unwrap();
        dir
    }

    fn error_of(trigger: &str) -> ManifestError {
        let dir = app_dir(&format!("{HEAD}trigger = {{ {trigger} }}\n"));
        load_app(dir.path()).unwrap_err()
    }

    fn loads(trigger: &str) -> App {
        let dir = app_dir(&format!("{HEAD}trigger = {{ {trigger} }}\n"));
        load_app(dir.path()).unwrap()
    }

    #[test]
    fn queue_trigger_settings_are_checked_and_located() {
        let e = error_of("queue = { queue = \"q\", batch = 3 }");
        assert_eq!(e.key, "function[0].trigger.queue.batch", "{e}");
        assert_eq!(e.line, 6, "{e}");
        assert!(
            e.message.contains("unknown field `batch`") && e.fix.contains("batch_size"),
            "{e}"
        );
        let e = error_of("queue = { batch_size = 3 }");
        assert_eq!(e.key, "function[0].trigger.queue.queue", "{e}");
        let e = error_of("queue = { queue = \"q\", batch_size = 0 }");
        assert_eq!(e.key, "function[0].trigger.queue.batch_size", "{e}");
        assert!(e.message.contains("1 to 1000"), "{e}");
        let e = error_of("queue = { queue = \"q\", visibility = \"soon\" }");
        assert_eq!(e.key, "function[0].trigger.queue.visibility", "{e}");
        loads("queue = { queue = \"q\", batch_size = 5, visibility = \"10s\" }");
    }

    #[test]
    fn changefeed_triggers_are_checked() {
        loads("changefeed = { table = \"contacts\", start = \"beginning\" }");
        let e = error_of("changefeed = { table = \"t\", start = \"yesterday\" }");
        assert_eq!(e.key, "function[0].trigger.changefeed.start", "{e}");
        assert_eq!(e.line, 6);
        let e = error_of("changefeed = { }");
        assert_eq!(e.key, "function[0].trigger.changefeed.table", "{e}");
    }

    #[test]
    fn timer_schedules_and_zones_are_checked() {
        loads(
            "timer = { schedule = \"*/5 * * * * *\", time_zone = \"Europe/Paris\", run_on_startup = true }",
        );
        loads("timer = { schedule = \"0 3 * * *\" }");
        let e = error_of("timer = { schedule = \"61 * * * * *\" }");
        assert_eq!(e.key, "function[0].trigger.timer.schedule", "{e}");
        assert_eq!(e.line, 6);
        let e = error_of("timer = { schedule = \"* * * * *\", time_zone = \"Mars/Base\" }");
        assert_eq!(e.key, "function[0].trigger.timer.time_zone", "{e}");
    }

    #[test]
    fn topic_and_blob_triggers_are_checked() {
        loads(
            "topic = { topic = \"orders\", type = \"placed\", attributes = { region = \"eu\" } }",
        );
        let e = error_of("topic = { topic = \"orders\", attributes = { region = 3 } }");
        assert!(
            e.key.starts_with("function[0].trigger.topic.attributes"),
            "{e}"
        );
        loads("blob = { container = \"uploads\", path = \"incoming/{name}.csv\" }");
        let e = error_of("blob = { container = \"uploads\", path = \"a/{\" }");
        assert_eq!(e.key, "function[0].trigger.blob.path", "{e}");
    }

    #[test]
    fn settings_are_read_only_by_their_own_kind() {
        use crate::settings::Settings;
        let app = loads("queue = { queue = \"q\" }");
        let f = &app.functions[0];
        assert_eq!(crate::queue::QueueSettings::of(f).unwrap().queue, "q");
        let e = crate::topic::TopicSettings::of(f).unwrap_err();
        assert!(e.message.contains("not a topic trigger"), "{e}");
    }

    #[test]
    fn settings_written_as_their_own_table_are_located_too() {
        let dir = app_dir(&format!(
            "{HEAD}[function.trigger.stream]\nstream = \"s\"\n\nbatch_size = 0\n"
        ));
        let e = load_app(dir.path()).unwrap_err();
        assert_eq!(e.key, "function[0].trigger.stream.batch_size", "{e}");
        assert_eq!(e.line, 9, "{e}");
    }
}
