//! Slows down key guessing on the admin APIs: an address that presented
//! wrong keys more than a few times is answered `429` for a while, whatever
//! it presents, and each further failure doubles the wait (up to a cap).
//! A right key clears the address's record; records are forgotten after a
//! quiet period and their number is bounded.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::{Response, StatusCode, header};

use crate::body::{self, Body};

/// How hard repeated failures are slowed down.
#[derive(Debug, Clone)]
pub struct ThrottlePolicy {
    /// Failures allowed before the first wait.
    pub free_failures: u32,
    /// The first wait; each later failure doubles it.
    pub first_wait: Duration,
    /// The longest wait.
    pub max_wait: Duration,
    /// An address quiet for this long starts afresh.
    pub forget_after: Duration,
    /// Most addresses remembered at once.
    pub max_addresses: usize,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            free_failures: 5,
            first_wait: Duration::from_secs(1),
            max_wait: Duration::from_secs(60),
            forget_after: Duration::from_secs(15 * 60),
            max_addresses: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    blocked_until: Option<Instant>,
}

/// Failed key checks per client address.
#[derive(Debug, Default)]
pub struct AuthThrottle {
    policy: ThrottlePolicy,
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

impl AuthThrottle {
    /// A throttle with `policy`.
    pub fn new(policy: ThrottlePolicy) -> Self {
        Self {
            policy,
            failures: Mutex::default(),
        }
    }

    /// `Err(wait)` while `client` must wait before its key is checked again.
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let failures = self.failures.lock().expect("throttle lock");
        match failures.get(&client).and_then(|f| f.blocked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Records a wrong or missing key from `client`; returns the wait it
    /// now has before its next try (zero while failures are still free).
    pub fn failed(&self, client: IpAddr, now: Instant) -> Duration {
        let mut failures = self.failures.lock().expect("throttle lock");
        if failures.len() >= self.policy.max_addresses && !failures.contains_key(&client) {
            self.forget_old(&mut failures, now);
        }
        let entry = failures.entry(client).or_insert(Failures {
            count: 0,
            last: now,
            blocked_until: None,
        });
        if now.duration_since(entry.last) > self.policy.forget_after {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
        let wait = self.wait_after(entry.count);
        entry.blocked_until = (!wait.is_zero()).then(|| now + wait);
        wait
    }

    /// A right key from `client`: its record is cleared.
    pub fn succeeded(&self, client: IpAddr) {
        self.failures.lock().expect("throttle lock").remove(&client);
    }

    /// The wait after `count` failures in a row.
    fn wait_after(&self, count: u32) -> Duration {
        let over = count.saturating_sub(self.policy.free_failures);
        if over == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32 << (over - 1).min(20);
        self.policy
            .first_wait
            .saturating_mul(factor)
            .min(self.policy.max_wait)
    }

    /// Drops records of quiet addresses; if all are recent, the ones not
    /// waiting (a flood of new addresses cannot grow the map without end).
    fn forget_old(&self, failures: &mut HashMap<IpAddr, Failures>, now: Instant) {
        failures.retain(|_, f| now.duration_since(f.last) <= self.policy.forget_after);
        if failures.len() >= self.policy.max_addresses {
            failures.retain(|_, f| f.blocked_until.is_some_and(|u| u > now));
        }
        if failures.len() >= self.policy.max_addresses {
            failures.clear();
        }
    }
}

/// The answer while an address must wait: `429` with `Retry-After`.
pub fn too_many_failures(wait: Duration) -> Response<Body> {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = body::error(
        StatusCode::TOO_MANY_REQUESTS,
        "too-many-failures",
        format!("too many wrong keys from this address; try again in {seconds} s"),
    );
    response.headers_mut().insert(
        header::RETRY_AFTER,
        seconds.to_string().parse().expect("digits"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn waits_start_after_the_free_failures_and_double() {
        let t = AuthThrottle::default();
        let now = Instant::now();
        for _ in 0..5 {
            assert_eq!(t.failed(ip(1), now), Duration::ZERO);
            assert!(t.check(ip(1), now).is_ok());
        }
        assert_eq!(t.failed(ip(1), now), Duration::from_secs(1));
        assert_eq!(t.check(ip(1), now), Err(Duration::from_secs(1)));
        assert_eq!(t.failed(ip(1), now), Duration::from_secs(2));
        assert_eq!(t.failed(ip(1), now), Duration::from_secs(4));
        // Another address is not affected; the wait ends.
        assert!(t.check(ip(2), now).is_ok());
        assert!(t.check(ip(1), now + Duration::from_secs(5)).is_ok());
        for _ in 0..30 {
            t.failed(ip(1), now);
        }
        assert_eq!(t.check(ip(1), now), Err(Duration::from_secs(60)));
    }

    #[test]
    fn a_right_key_or_a_quiet_period_clears_the_record() {
        let t = AuthThrottle::default();
        let now = Instant::now();
        for _ in 0..6 {
            t.failed(ip(1), now);
        }
        t.succeeded(ip(1));
        assert!(t.check(ip(1), now).is_ok());
        assert_eq!(t.failed(ip(1), now), Duration::ZERO);
        for _ in 0..6 {
            t.failed(ip(3), now);
        }
        let later = now + Duration::from_secs(16 * 60);
        assert_eq!(t.failed(ip(3), later), Duration::ZERO);
    }

    #[test]
    fn the_number_of_addresses_is_bounded() {
        let t = AuthThrottle::new(ThrottlePolicy {
            max_addresses: 100,
            ..ThrottlePolicy::default()
        });
        let now = Instant::now();
        for i in 0..10_000u32 {
            t.failed(IpAddr::from(i.to_be_bytes()), now);
        }
        assert!(t.failures.lock().unwrap().len() <= 100);
    }

    #[test]
    fn retry_after_rounds_up() {
        let r = too_many_failures(Duration::from_millis(1500));
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
    }
}
