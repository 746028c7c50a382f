//! Caching and refresh of temporary credentials, in front of any source.
//!
//! Credentials with an expiry are kept and handed out until [`REFRESH_AHEAD`] before they
//! expire; then the next caller refreshes them while the others wait for that one refresh (one
//! at a time, however many threads ask). If the refresh fails while the old credentials are
//! still valid, the failure is logged and the old ones are used. Credentials without an expiry
//! are either kept for good (those marked [`Credentials::keep_without_expiry`]: a
//! `credential_process` that gave no `Expiration`, which the Go and Java SDKs treat as never
//! expiring, so the command is not run for every AWS call) or not cached at all (static keys:
//! their source is read again on every call, so a rotated key in a file is picked up).

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::{CredentialSource, Credentials};
use crate::aws::error::AwsError;

/// Refresh this long before the expiry.
pub const REFRESH_AHEAD: Duration = Duration::from_secs(5 * 60);
/// Old credentials are still used after a failed refresh if they stay valid this much longer.
const STILL_VALID_MARGIN: Duration = Duration::from_secs(15);
/// When a source hands out credentials that expire within REFRESH_AHEAD, they are reused for
/// at most this long (or half their remaining life) rather than fetched on every call.
const SHORT_LIVED_REUSE: Duration = Duration::from_secs(30);

pub struct Cached<S> {
    inner: S,
    /// The credentials and when to refresh them (None: never).
    slot: Mutex<Option<(Credentials, Option<SystemTime>)>>,
    refresh: Mutex<()>,
}

impl<S: CredentialSource> Cached<S> {
    pub fn new(inner: S) -> Self {
        Cached {
            inner,
            slot: Mutex::new(None),
            refresh: Mutex::new(()),
        }
    }

    fn cached(&self) -> Option<(Credentials, Option<SystemTime>)> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn fresh(&self, now: SystemTime) -> Option<Credentials> {
        self.cached()
            .filter(|(_, refresh_at)| refresh_at.is_none_or(|t| now < t))
            .map(|(c, _)| c)
    }
}

/// When credentials expiring at `expiry` should be refreshed, seen at `now`.
pub fn refresh_time(expiry: SystemTime, now: SystemTime) -> SystemTime {
    match expiry.checked_sub(REFRESH_AHEAD) {
        Some(t) if t > now => t,
        _ => {
            let left = expiry.duration_since(now).unwrap_or_default();
            now + (left / 2).min(SHORT_LIVED_REUSE)
        }
    }
}

impl<S: CredentialSource> CredentialSource for Cached<S> {
    fn credentials(&self) -> Result<Credentials, AwsError> {
        if let Some(c) = self.fresh(SystemTime::now()) {
            return Ok(c);
        }
        let _one_at_a_time = self.refresh.lock().unwrap_or_else(|p| p.into_inner());
        let now = SystemTime::now();
        if let Some(c) = self.fresh(now) {
            return Ok(c);
        }
        match self.inner.credentials() {
            Ok(c) => {
                let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
                match c.expiry {
                    Some(expiry) => {
                        if let Some((old, _)) = slot.as_ref() {
                            log::info!(
                                "refreshed AWS credentials from {} (access key {}, valid until {}s after the epoch; previous key {})",
                                c.provider,
                                c.access_key_id,
                                expiry.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
                                old.access_key_id
                            );
                        }
                        *slot = Some((c.clone(), Some(refresh_time(expiry, now))));
                    }
                    None if c.keep_without_expiry => {
                        log::info!(
                            "AWS credentials from {} (access key {}) have no expiry; they are kept until the plugin restarts",
                            c.provider,
                            c.access_key_id
                        );
                        *slot = Some((c.clone(), None));
                    }
                    None => *slot = None,
                }
                Ok(c)
            }
            Err(e) => {
                if let Some((old, _)) = self.cached() {
                    if old.expiry.is_some_and(|x| x > now + STILL_VALID_MARGIN) {
                        log::warn!(
                            "could not refresh AWS credentials ({e}); still using access key {} from {} until it expires",
                            old.access_key_id,
                            old.provider
                        );
                        return Ok(old);
                    }
                }
                Err(e)
            }
        }
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::error::ErrorKind;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Hands out credentials expiring `life` from now, numbered; fails when `fail` is set.
    struct Counter {
        calls: AtomicUsize,
        life: Option<Duration>,
        fail: Arc<std::sync::atomic::AtomicBool>,
        delay: Duration,
    }

    impl CredentialSource for Counter {
        fn credentials(&self) -> Result<Credentials, AwsError> {
            std::thread::sleep(self.delay);
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if self.fail.load(Ordering::SeqCst) {
                return Err(AwsError::new(ErrorKind::Credentials, "", "X", "down", None));
            }
            Ok(Credentials::new(
                format!("AKID{n}"),
                "s",
                None,
                self.life.map(|l| SystemTime::now() + l),
                "counter",
            ))
        }
        fn describe(&self) -> String {
            "counter".into()
        }
    }

    fn counter(life: Option<Duration>, delay: Duration) -> Cached<Counter> {
        Cached::new(Counter {
            calls: AtomicUsize::new(0),
            life,
            fail: Arc::default(),
            delay,
        })
    }

    #[test]
    fn long_lived_credentials_are_reused() {
        let c = counter(Some(Duration::from_secs(3600)), Duration::ZERO);
        for _ in 0..10 {
            assert_eq!(c.credentials().unwrap().access_key_id, "AKID0");
        }
        assert_eq!(c.inner.calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn static_credentials_are_read_every_time() {
        let c = counter(None, Duration::ZERO);
        c.credentials().unwrap();
        c.credentials().unwrap();
        assert_eq!(c.inner.calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn credentials_kept_without_expiry_are_read_once() {
        struct Kept(AtomicUsize);
        impl CredentialSource for Kept {
            fn credentials(&self) -> Result<Credentials, AwsError> {
                let n = self.0.fetch_add(1, Ordering::SeqCst);
                Ok(Credentials::new(format!("AKID{n}"), "s", None, None, "process").kept_without_expiry())
            }
            fn describe(&self) -> String {
                "kept".into()
            }
        }
        let c = Cached::new(Kept(AtomicUsize::new(0)));
        for _ in 0..10 {
            assert_eq!(c.credentials().unwrap().access_key_id, "AKID0");
        }
        assert_eq!(c.inner.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn refresh_happens_five_minutes_ahead() {
        let now = SystemTime::now();
        let exp = now + Duration::from_secs(3600);
        assert_eq!(refresh_time(exp, now), exp - REFRESH_AHEAD);
        // Already inside the window: reused briefly, not on every call.
        let soon = now + Duration::from_secs(200);
        assert_eq!(refresh_time(soon, now), now + SHORT_LIVED_REUSE);
        let very_soon = now + Duration::from_secs(10);
        assert_eq!(refresh_time(very_soon, now), now + Duration::from_secs(5));
    }

    #[test]
    fn one_refresh_for_many_threads() {
        let c = Arc::new(counter(Some(Duration::from_secs(3600)), Duration::from_millis(100)));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || c.credentials().unwrap().access_key_id)
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), "AKID0");
        }
        assert_eq!(c.inner.calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn failed_refresh_keeps_valid_credentials_and_expired_ones_fail() {
        // Expires in 60 s: inside the refresh window, so a call after the reuse period refreshes.
        let c = counter(Some(Duration::from_secs(60)), Duration::ZERO);
        assert_eq!(c.credentials().unwrap().access_key_id, "AKID0");
        c.inner.fail.store(true, Ordering::SeqCst);
        // Force a refresh attempt now.
        {
            let mut slot = c.slot.lock().unwrap();
            let (creds, _) = slot.take().unwrap();
            *slot = Some((creds, Some(SystemTime::now())));
        }
        assert_eq!(c.credentials().unwrap().access_key_id, "AKID0", "old ones still valid");
        // Now make them expired: the failure comes through.
        {
            let mut slot = c.slot.lock().unwrap();
            let (mut creds, _) = slot.take().unwrap();
            creds.expiry = Some(SystemTime::now() + Duration::from_secs(1));
            *slot = Some((creds, Some(SystemTime::now())));
        }
        assert!(c.credentials().is_err());
    }
}
