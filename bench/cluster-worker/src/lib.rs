//! A queue worker whose work is waiting on I/O: each message makes one
//! outbound `GET` to the URL in variable `upstream` (bench/cluster.sh points
//! it at a server that answers after 20 ms), then logs `handled <body>`.

use gust_sdk::{Event, EventError, log, outbound, variables};

#[gust_sdk::event]
fn handle(event: Event) -> Result<(), EventError> {
    let upstream = variables::get("upstream")?
        .ok_or_else(|| EventError::fatal("variable `upstream` is not set"))?;
    let response = outbound::Request::get(&upstream)
        .send()
        .map_err(|e| EventError::retryable(format!("upstream: {e}")))?;
    if response.status() != 200 {
        return Err(EventError::retryable(format!("upstream answered {}", response.status())));
    }
    log::info!("handled {}", event.text().unwrap_or_default());
    Ok(())
}
