//! The seam between triggers and the runtime: a trigger hands an event to a
//! [`Dispatcher`] and settles the message by the [`Outcome`].

use std::future::Future;
use std::pin::Pin;

use gust_events::{Event, Outcome};
use tokio::sync::watch;

/// Runs a function on an event (implemented by the host over the runtime).
pub trait Dispatcher: Send + Sync + 'static {
    /// Invokes `function` with `event`; a trap or timeout is `Outcome::Retry`.
    fn dispatch(
        &self,
        function: &str,
        event: Event,
    ) -> Pin<Box<dyn Future<Output = Outcome> + Send + '_>>;
}

/// Tells trigger loops to stop taking new work; handlers already running
/// finish and settle.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// A signal and the handle that fires it.
    pub fn new() -> (watch::Sender<bool>, Self) {
        let (tx, rx) = watch::channel(false);
        (tx, Self(rx))
    }

    /// Resolves once shutdown was requested (or the sender is gone).
    pub async fn requested(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// Whether shutdown was requested.
    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }
}
