//! A dispatcher for tests that records every event and answers by a rule.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use gust_events::{Event, Outcome};

use crate::Dispatcher;

/// Records events; `rule` decides each outcome.
pub struct Recorder {
    /// Every event dispatched, in order.
    pub events: Mutex<Vec<Event>>,
    rule: fn(&Event) -> Outcome,
}

impl Recorder {
    /// A recorder answering with `rule`.
    pub fn new(rule: fn(&Event) -> Outcome) -> Self {
        Self {
            events: Mutex::new(Vec::new()),
            rule,
        }
    }

    /// A copy of the events so far.
    pub fn seen(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }
}

impl Dispatcher for Recorder {
    fn dispatch(
        &self,
        _function: &str,
        event: Event,
    ) -> Pin<Box<dyn Future<Output = Outcome> + Send + '_>> {
        let outcome = (self.rule)(&event);
        self.events.lock().unwrap().push(event);
        Box::pin(async move { outcome })
    }
}
