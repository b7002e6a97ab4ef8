//! An event function that accepts every event and does nothing else: what
//! `bench/queue.sh` runs to measure the queue trigger's own cost.

use gust_sdk::{Event, EventError};

#[gust_sdk::event]
fn handle(_event: Event) -> Result<(), EventError> {
    Ok(())
}
