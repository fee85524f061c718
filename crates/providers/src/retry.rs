//! When to try again: exponential backoff with jitter, `Retry-After`, and a circuit breaker.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;

/// The most retries a policy makes: with backoff of up to 20 s a retry, more would keep a
/// failing request going for many minutes rather than report it.
pub const MAX_RETRIES: u32 = 10;

/// How often and how patiently to retry a request that failed for a transient reason
/// (HTTP 429, 5xx, a timeout, a broken connection).
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt; 0 never retries. At most [`MAX_RETRIES`] are made.
    pub max_retries: u32,
    /// The wait before the first retry; each later wait doubles, up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// The longest `Retry-After` honoured; a server asking for more fails the request at once.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0-based): `base × 2^retry`, capped at `max_delay`,
    /// then a random point in its upper half, so that clients that failed together do not
    /// retry together.
    pub fn backoff(&self, retry: u32) -> Duration {
        let full =
            self.base_delay.saturating_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX)).min(self.max_delay);
        full.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
    }
}

/// `Retry-After` as a number of seconds. (The HTTP-date form is not used by the vendors'
/// APIs; it falls back to the backoff.)
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// When to stop calling an endpoint that keeps failing.
#[derive(Clone, Debug, PartialEq)]
pub struct BreakerPolicy {
    /// Consecutive failed requests (each after its retries) that open the circuit.
    pub failure_threshold: u32,
    /// How long an open circuit refuses requests before letting one through to test the endpoint.
    pub cooldown: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy { failure_threshold: 5, cooldown: Duration::from_secs(30) }
    }
}

/// A circuit breaker for one endpoint: closed while it works, open (refusing at once) after
/// `failure_threshold` failures in a row, half-open after the cooldown (one trial request).
#[derive(Debug)]
pub(crate) struct Breaker {
    policy: BreakerPolicy,
    state: Mutex<BreakerState>,
}

#[derive(Debug, Default)]
struct BreakerState {
    failures: u32,
    open_until: Option<Instant>,
}

impl Breaker {
    pub(crate) fn new(policy: BreakerPolicy) -> Breaker {
        Breaker { policy, state: Mutex::default() }
    }

    /// `Err((failures, wait))` while the circuit is open.
    pub(crate) fn check(&self) -> Result<(), (u32, Duration)> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match state.open_until {
            Some(until) if Instant::now() < until => Err((state.failures, until - Instant::now())),
            Some(_) => {
                // Half-open: this request is the trial; until it reports, the circuit stays
                // open for the others.
                state.open_until = Some(Instant::now() + self.policy.cooldown);
                Ok(())
            }
            None => Ok(()),
        }
    }

    pub(crate) fn success(&self) {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *state = BreakerState::default();
    }

    pub(crate) fn failure(&self) {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.failures += 1;
        if state.failures >= self.policy.failure_threshold {
            state.open_until = Some(Instant::now() + self.policy.cooldown);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_caps() {
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            ..Default::default()
        };
        for _ in 0..50 {
            let first = policy.backoff(0);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100), "{first:?}");
            let third = policy.backoff(2);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400), "{third:?}");
            let late = policy.backoff(40);
            assert!(late >= Duration::from_millis(500) && late <= Duration::from_millis(1000), "{late:?}");
        }
    }

    #[test]
    fn retry_after_in_seconds() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn breaker_opens_after_the_threshold_and_half_opens_after_the_cooldown() {
        let breaker =
            Breaker::new(BreakerPolicy { failure_threshold: 2, cooldown: Duration::from_millis(50) });
        breaker.failure();
        assert!(breaker.check().is_ok());
        breaker.failure();
        let (failures, wait) = breaker.check().unwrap_err();
        assert_eq!(failures, 2);
        assert!(wait <= Duration::from_millis(50));
        std::thread::sleep(Duration::from_millis(60));
        assert!(breaker.check().is_ok(), "the trial request goes through");
        assert!(breaker.check().is_err(), "others wait for the trial");
        breaker.success();
        assert!(breaker.check().is_ok());
    }
}
