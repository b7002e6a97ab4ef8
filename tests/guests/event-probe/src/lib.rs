//! An event function for the host's end-to-end tests. The event's data, as
//! text, says what to do:
//!
//! | data    | behaviour |
//! |---------|-----------|
//! | `fail`  | retryable error (retried, then dead-lettered) |
//! | `fatal` | non-retryable error (dead-lettered at once) |
//! | `trap`  | panics (a trap: retried like a retryable error) |
//! | contains `gated` | non-retryable error while kv binding `gate` has no key `hits` (the gate is closed), else as other |
//! | other   | counts it in kv binding `seen` (key = the data) and logs `handled <data> #<n> attempt <a> source <s>`, then ` replay <what>` for a replayed event (extension `gust-replay`) |
//!
//! A change-feed delete (type `gust.table.deleted`, no data) counts as
//! `deleted:<subject>`.

use gust_sdk::{Event, EventError, kv, log};

#[gust_sdk::event]
fn handle(event: Event) -> Result<(), EventError> {
    let text = if event.ty() == "gust.table.deleted" {
        format!("deleted:{}", event.subject().unwrap_or_default())
    } else {
        event
            .text()
            .map_err(|e| EventError::fatal(format!("not text: {e}")))?
            .to_string()
    };
    match text.as_str() {
        "fail" => Err(EventError::retryable("asked to fail")),
        "fatal" => Err(EventError::fatal("asked to fail for good")),
        "trap" => panic!("event trap"),
        gated if gated.contains("gated") && kv::Store::open("gate")?.get("hits")?.is_none() => {
            Err(EventError::fatal("the gate is closed"))
        }
        _ => {
            let n = kv::Store::open("seen")?.increment(&text, 1)?;
            let replay = match event.extension("gust-replay") {
                Some(what) => format!(" replay {what}"),
                None => String::new(),
            };
            log::info!(
                "handled {text} #{n} attempt {} source {}{replay}",
                event.attempt(),
                event.source()
            );
            Ok(())
        }
    }
}
