//! Retry discipline for AWS calls, in one place: transient errors (throttling, 5xx, network)
//! are retried with exponential backoff and full jitter under a deadline; everything else is
//! returned at once. Only use this for calls that are safe to repeat (reads, StopTask, and
//! RunTask with a clientToken).

use std::time::{Duration, Instant};

use super::AwsError;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// No new attempt starts after this much time.
    pub deadline: Duration,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    pub const fn within(deadline: Duration) -> Self {
        RetryPolicy {
            deadline,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

/// Calls `f` until it succeeds, fails permanently, or the deadline passes (then the last
/// error is returned).
pub fn with_retries<T>(policy: RetryPolicy, mut f: impl FnMut() -> Result<T, AwsError>) -> Result<T, AwsError> {
    let start = Instant::now();
    let mut attempt: u32 = 0;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if !e.is_transient() => return Err(e),
            Err(e) => {
                let delay = backoff(policy, attempt);
                let elapsed = start.elapsed();
                if elapsed + delay >= policy.deadline {
                    return Err(e);
                }
                log::debug!(attempt = attempt + 1, delay_ms = delay.as_millis(); "retrying after transient AWS error: {e}");
                std::thread::sleep(delay);
                attempt = attempt.saturating_add(1);
            }
        }
    }
}

/// Full jitter: a uniform delay in [0, min(max, base * 2^attempt)].
pub fn backoff(policy: RetryPolicy, attempt: u32) -> Duration {
    let exp = policy.base_delay.saturating_mul(1u32 << attempt.min(20));
    let ceiling = exp.min(policy.max_delay);
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(random_u64() % (nanos + 1))
}

/// A random number from std's per-process random hash keys (no RNG crate needed; this is
/// jitter, not cryptography).
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::ErrorKind;

    fn err(kind: ErrorKind) -> AwsError {
        AwsError {
            kind,
            operation: "DescribeTasks".into(),
            code: "X".into(),
            message: "m".into(),
            status: None,
        }
    }

    #[test]
    fn transient_errors_are_retried_until_success() {
        let mut calls = 0;
        let policy = RetryPolicy {
            deadline: Duration::from_secs(5),
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        };
        let r = with_retries(policy, || {
            calls += 1;
            if calls < 3 {
                Err(err(ErrorKind::Throttling))
            } else {
                Ok(calls)
            }
        });
        assert_eq!(r.unwrap(), 3);
    }

    #[test]
    fn permanent_errors_are_not_retried() {
        let mut calls = 0;
        let r: Result<(), _> = with_retries(RetryPolicy::within(Duration::from_secs(5)), || {
            calls += 1;
            Err(err(ErrorKind::Auth))
        });
        assert_eq!(r.unwrap_err().kind, ErrorKind::Auth);
        assert_eq!(calls, 1);
    }

    #[test]
    fn deadline_bounds_the_retries() {
        let policy = RetryPolicy {
            deadline: Duration::from_millis(50),
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(20),
        };
        let start = Instant::now();
        let r: Result<(), _> = with_retries(policy, || Err(err(ErrorKind::Server)));
        assert_eq!(r.unwrap_err().kind, ErrorKind::Server);
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn backoff_is_capped() {
        let policy = RetryPolicy {
            deadline: Duration::from_secs(1),
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(300),
        };
        for attempt in 0..40 {
            assert!(backoff(policy, attempt) <= Duration::from_millis(300));
        }
    }
}
