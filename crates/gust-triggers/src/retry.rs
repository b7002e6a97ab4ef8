//! Backoff between delivery attempts.

use std::time::Duration;

use gust_manifest::{RetryPolicy, RetryStrategy};

/// The delay before delivery `attempt + 1` after delivery `attempt` failed:
/// fixed `min`, or `min * 2^(attempt-1)` capped at `max`; exponential delays
/// get ±20% jitter so retries of a burst spread out. Never shorter than
/// [`RetryPolicy::MIN_DELAY`], whatever the policy says.
pub fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let delay = match policy.strategy {
        RetryStrategy::Fixed => policy.min,
        RetryStrategy::Exponential => {
            let exp = attempt.saturating_sub(1).min(30);
            let base = policy.min.saturating_mul(1u32 << exp).min(policy.max);
            let jitter = 0.8 + 0.4 * unit_random();
            base.mul_f64(jitter).min(policy.max)
        }
    };
    delay.max(RetryPolicy::MIN_DELAY)
}

fn unit_random() -> f64 {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    u32::from_le_bytes(b) as f64 / u32::MAX as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_and_exponential() {
        let mut p = RetryPolicy {
            strategy: RetryStrategy::Fixed,
            max_attempts: 5,
            min: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert_eq!(backoff(&p, 3), Duration::from_millis(100));
        let zero = RetryPolicy {
            min: Duration::ZERO,
            max: Duration::ZERO,
            ..p.clone()
        };
        assert_eq!(
            backoff(&zero, 1),
            RetryPolicy::MIN_DELAY,
            "delays are floored"
        );
        p.strategy = RetryStrategy::Exponential;
        let d1 = backoff(&p, 1);
        assert!(
            d1 >= Duration::from_millis(80) && d1 <= Duration::from_millis(120),
            "{d1:?}"
        );
        let d3 = backoff(&p, 3);
        assert!(
            d3 >= Duration::from_millis(320) && d3 <= Duration::from_millis(480),
            "{d3:?}"
        );
        assert!(backoff(&p, 20) <= Duration::from_secs(1));
    }
}
