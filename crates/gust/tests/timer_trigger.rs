//! End-to-end: a timer function fires every second, never twice for a slot,
//! and after downtime fires once with `past_due`.

mod common;

use std::time::Duration;

use common::*;

fn fired(app: &TestApp) -> Vec<serde_json::Value> {
    let out = function_logs(app.path(), "tick");
    out.lines()
        .filter(|l| l.contains("source /gust/timer/tick"))
        .filter_map(|l| {
            l.split("handled ")
                .nth(1)?
                .split(" #")
                .next()
                .map(str::to_string)
        })
        .filter_map(|json| serde_json::from_str(&json).ok())
        .collect()
}

#[test]
fn timer_fires_each_slot_once_and_catches_up_after_downtime() {
    let app = TestApp::new(
        r#"
[app]
name = "timers"
[[function]]
name = "tick"
source = "probe.wasm"
trigger = { timer = { schedule = "* * * * * *", run_on_startup = true } }
bindings = { seen = { kv = "seen" } }
"#,
    );
    app.add_component("probe.wasm", &guest("event-probe"));
    let first_run = {
        let mut host = up(app.path(), &["--quiet", "--no-watch"]);
        let ticked = eventually(Duration::from_secs(30), || fired(&app).len() >= 4);
        assert!(ticked, "timer did not fire: {}", host.stderr());
        let events = fired(&app);
        host.stop();
        events
    };
    let slots: Vec<&str> = first_run
        .iter()
        .filter_map(|e| e["scheduled_time"].as_str())
        .collect();
    let unique: std::collections::HashSet<&&str> = slots.iter().collect();
    assert_eq!(unique.len(), slots.len(), "a slot fired twice: {slots:?}");
    assert!(first_run.iter().all(|e| e["past_due"] == false));

    // Down across several slots: the restart fires once, past due.
    std::thread::sleep(Duration::from_millis(2500));
    let _host = up(app.path(), &["--quiet", "--no-watch"]);
    let caught_up = eventually(Duration::from_secs(30), || {
        fired(&app).iter().any(|e| e["past_due"] == true)
    });
    assert!(caught_up, "no past-due firing after restart");
    std::thread::sleep(Duration::from_millis(1500));
    let all = fired(&app);
    assert_eq!(
        all.iter().filter(|e| e["past_due"] == true).count(),
        1,
        "{all:?}"
    );
}
