//! The inputs of recent event invocations, kept so they can be replayed:
//! every event function's CloudEvent with the invocation it started, for a
//! bounded window ([`ReplayLimits`]: total bytes and age, oldest forgotten
//! first). Kept in memory, per host, across reloads, so an input recorded
//! by one version of a function can be replayed against the next.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gust_events::Event;

use crate::invocations::Invocation;

/// How much input is kept for replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayLimits {
    /// Memory the kept inputs may hold in all: the events (data,
    /// attributes, extensions), their invocations and the store's own
    /// entries; 0 keeps nothing.
    pub max_bytes: u64,
    /// Inputs older than this are forgotten.
    pub max_age: Duration,
}

impl Default for ReplayLimits {
    /// 32 MiB, one hour.
    fn default() -> Self {
        Self {
            max_bytes: 32 << 20,
            max_age: Duration::from_secs(3600),
        }
    }
}

/// One kept input: the event as the function received it, and what came
/// of that invocation.
#[derive(Debug, Clone)]
pub struct KeptInput {
    /// The event function.
    pub function: String,
    /// The event it was invoked with.
    pub event: Event,
    /// The recorded invocation (outcome, duration, error).
    pub invocation: Invocation,
}

/// Inputs by invocation id, bounded by [`ReplayLimits`].
#[derive(Debug)]
pub struct EventInputs {
    limits: ReplayLimits,
    kept: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    /// Invocation ids, oldest first, with when each was kept and its size.
    order: VecDeque<(String, Instant, u64)>,
    by_id: HashMap<String, KeptInput>,
    bytes: u64,
}

impl EventInputs {
    /// An empty store keeping at most `limits`.
    pub fn new(limits: ReplayLimits) -> Self {
        Self {
            limits,
            kept: Mutex::default(),
        }
    }

    /// Whether inputs are kept at all (a zero byte limit turns it off, and
    /// then events are not even copied).
    pub fn enabled(&self) -> bool {
        self.limits.max_bytes > 0 && !self.limits.max_age.is_zero()
    }

    /// The limits.
    pub fn limits(&self) -> ReplayLimits {
        self.limits
    }

    /// Keeps `input` under its invocation id, forgetting the oldest inputs
    /// beyond the limits. An input larger than the whole byte limit is not
    /// kept.
    pub fn keep(&self, input: KeptInput) {
        self.keep_at(input, Instant::now());
    }

    fn keep_at(&self, input: KeptInput, now: Instant) {
        let size = weight(&input);
        if !self.enabled() || size > self.limits.max_bytes {
            return;
        }
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let id = input.invocation.id.clone();
        if let Some(old) = kept.by_id.insert(id.clone(), input) {
            // The same id again (not expected): count it once.
            kept.bytes -= weight(&old);
            kept.order.retain(|(i, _, _)| *i != id);
        }
        kept.order.push_back((id, now, size));
        kept.bytes += size;
        self.forget_old(&mut kept, now);
    }

    /// The kept input of invocation `id` (a prefix of 8 or more characters
    /// that names one invocation is enough).
    pub fn get(&self, id: &str) -> Option<KeptInput> {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        self.forget_old(&mut kept, Instant::now());
        if let Some(input) = kept.by_id.get(id) {
            return Some(input.clone());
        }
        if id.len() < 8 {
            return None;
        }
        let mut matching = kept.by_id.iter().filter(|(k, _)| k.starts_with(id));
        match (matching.next(), matching.next()) {
            (Some((_, input)), None) => Some(input.clone()),
            _ => None,
        }
    }

    /// Whether the input of invocation `id` is kept (and so [`Self::get`]
    /// finds it).
    pub fn contains(&self, id: &str) -> bool {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        self.forget_old(&mut kept, Instant::now());
        kept.by_id.contains_key(id)
    }

    /// How many inputs, and how many bytes, are kept.
    pub fn usage(&self) -> (usize, u64) {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        (kept.by_id.len(), kept.bytes)
    }

    fn forget_old(&self, kept: &mut Kept, now: Instant) {
        while let Some((id, at, size)) = kept.order.front() {
            let too_old = now.saturating_duration_since(*at) > self.limits.max_age;
            if !too_old && kept.bytes <= self.limits.max_bytes {
                break;
            }
            let (id, size) = (id.clone(), *size);
            kept.order.pop_front();
            kept.by_id.remove(&id);
            kept.bytes -= size;
        }
    }
}

/// What a kept input holds in memory: its event, the strings of its
/// invocation, and its entries in the store (the map's slot counted twice,
/// as a map that has just grown is half empty, and the order's slot), so
/// that the byte limit bounds the memory, not only the payloads (a window
/// of small events costs several times their size).
fn weight(input: &KeptInput) -> u64 {
    let inv = &input.invocation;
    let optional = [&inv.request, &inv.event, &inv.error];
    let strings = input.function.len()
        + 3 * inv.id.len() // the invocation's, the map key and the order's
        + inv.trace_id.len()
        + inv.function.len()
        + optional.iter().map(|s| s.as_ref().map_or(0, String::len)).sum::<usize>();
    let slots = 2 * std::mem::size_of::<(String, KeptInput)>()
        + std::mem::size_of::<(String, Instant, u64)>();
    (input.event.heap_size() + strings + slots) as u64
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn input(id: &str, data_len: usize) -> KeptInput {
        let ids = gust_runtime::InvocationIds {
            id: id.to_string(),
            ..Default::default()
        };
        KeptInput {
            function: "worker".into(),
            event: Event::new("/q", "t", vec![b'x'; data_len]),
            invocation: Invocation::new(&ids, "worker", "queue", SystemTime::now(), Duration::ZERO),
        }
    }

    fn limits(max_bytes: u64, max_age: Duration) -> ReplayLimits {
        ReplayLimits { max_bytes, max_age }
    }

    #[test]
    fn forgets_the_oldest_beyond_the_byte_limit() {
        let one = weight(&input("id-00000001", 1000));
        let inputs = EventInputs::new(limits(3 * one, Duration::from_secs(60)));
        for id in ["id-00000001", "id-00000002", "id-00000003", "id-00000004"] {
            inputs.keep(input(id, 1000));
        }
        let (count, bytes) = inputs.usage();
        assert_eq!(count, 3);
        assert!(bytes <= 3 * one, "{bytes} > {}", 3 * one);
        assert!(inputs.get("id-00000001").is_none(), "the oldest went first");
        assert_eq!(inputs.get("id-00000004").unwrap().event.data.len(), 1000);
    }

    #[test]
    fn forgets_inputs_older_than_the_age_limit() {
        let inputs = EventInputs::new(limits(1 << 20, Duration::from_secs(10)));
        let start = Instant::now();
        inputs.keep_at(input("old-0000001", 10), start);
        inputs.keep_at(input("new-0000001", 10), start + Duration::from_secs(8));
        assert!(inputs.contains("old-0000001"));
        // Keeping a newer one walks the window forward.
        inputs.keep_at(input("new-0000002", 10), start + Duration::from_secs(11));
        assert!(!inputs.contains("old-0000001"));
        assert!(inputs.contains("new-0000001"));
        assert_eq!(inputs.usage().0, 2);
    }

    #[test]
    fn small_inputs_weigh_what_they_hold_not_only_their_payload() {
        let small = input("id-00000001", 10);
        let weight = weight(&small);
        assert!(weight > 10 + std::mem::size_of::<KeptInput>() as u64);
        // A 64 KiB window holds what fits in 64 KiB, not 64 KiB of payloads.
        let inputs = EventInputs::new(limits(64 << 10, Duration::from_secs(60)));
        for n in 0..10_000 {
            inputs.keep(input(&format!("id-{n:08}"), 10));
        }
        let (count, bytes) = inputs.usage();
        assert!(bytes <= 64 << 10);
        assert_eq!(count as u64, (64 << 10) / weight, "{count} inputs kept");
    }

    #[test]
    fn an_input_larger_than_the_limit_or_a_zero_limit_keeps_nothing() {
        let inputs = EventInputs::new(limits(100, Duration::from_secs(60)));
        inputs.keep(input("big-0000001", 1000));
        assert_eq!(inputs.usage(), (0, 0));
        let off = EventInputs::new(limits(0, Duration::from_secs(60)));
        assert!(!off.enabled());
        off.keep(input("any-0000001", 1));
        assert_eq!(off.usage(), (0, 0));
    }

    #[test]
    fn finds_an_input_by_a_unique_prefix_of_eight_or_more() {
        let inputs = EventInputs::new(ReplayLimits::default());
        inputs.keep(input("0123456789abcdef", 1));
        inputs.keep(input("0123456799999999", 1));
        assert!(inputs.get("01234567").is_none(), "two match");
        assert_eq!(
            inputs.get("012345678").unwrap().invocation.id,
            "0123456789abcdef"
        );
        assert!(inputs.get("0123").is_none(), "too short");
        assert!(inputs.get("ffffffff").is_none());
    }
}
