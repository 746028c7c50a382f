//! The shared status poller: one thread reads the status of every watched task with
//! DescribeTasks, at most 100 ARNs per call, per cluster and endpoint, once per interval, and
//! feeds each task's thread from that read. Per-task threads never call ECS for status.

use std::collections::HashMap;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::aws::ecs::EcsClient;
use crate::aws::ErrorKind;

use super::task::TaskMsg;

/// ECS's limit of tasks per DescribeTasks call.
pub const DESCRIBE_BATCH: usize = 100;
/// Longest interval the poller slows down to while throttled.
const MAX_BACKOFF_INTERVAL: Duration = Duration::from_secs(60);

/// One watched task.
#[derive(Clone)]
pub struct Watch {
    pub arn: String,
    pub cluster: String,
    pub client: Arc<EcsClient>,
    pub tx: Sender<TaskMsg>,
}

struct Inner {
    watched: HashMap<String, Watch>,
    interval: Duration,
    poke: bool,
}

pub struct Poller {
    inner: Mutex<Inner>,
    cond: Condvar,
}

impl Poller {
    /// Creates the poller and starts its thread.
    pub fn start(interval: Duration) -> Arc<Poller> {
        let p = Arc::new(Poller {
            inner: Mutex::new(Inner {
                watched: HashMap::new(),
                interval,
                poke: false,
            }),
            cond: Condvar::new(),
        });
        let weak = Arc::downgrade(&p);
        let spawned = std::thread::Builder::new()
            .name("ecs-poller".into())
            .spawn(move || run(weak));
        if let Err(e) = spawned {
            log::error!("cannot start the ECS status poller thread: {e}");
        }
        p
    }

    pub fn set_interval(&self, interval: Duration) {
        self.lock().interval = interval;
        self.cond.notify_all();
    }

    pub fn watch(&self, task_id: &str, w: Watch) {
        self.lock().watched.insert(task_id.to_string(), w);
    }

    pub fn unwatch(&self, task_id: &str) {
        self.lock().watched.remove(task_id);
    }

    /// Asks for a poll now instead of at the end of the interval.
    pub fn poke(&self) {
        self.lock().poke = true;
        self.cond.notify_all();
    }

    pub fn watched_count(&self) -> usize {
        self.lock().watched.len()
    }

    /// The state, also after a panic elsewhere poisoned the lock: every update of it is a
    /// single assignment or map operation, so it is never left half-changed, and a poisoned
    /// lock must not stop the polling every task's status depends on.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn run(weak: std::sync::Weak<Poller>) {
    let mut slow_down: u32 = 0;
    let mut last_poll = Instant::now();
    loop {
        let Some(p) = weak.upgrade() else { return };
        let snapshot: Vec<(String, Watch)> = {
            let mut g = p.lock();
            // Recompute the deadline after every wake-up: the interval may have changed.
            loop {
                let due = last_poll + backoff_interval(g.interval, slow_down);
                let now = Instant::now();
                if g.poke || now >= due {
                    break;
                }
                g = match p.cond.wait_timeout(g, due - now) {
                    Ok((g, _)) => g,
                    Err(poisoned) => poisoned.into_inner().0,
                };
            }
            g.poke = false;
            g.watched.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        drop(p);
        last_poll = Instant::now();
        if snapshot.is_empty() {
            continue;
        }
        let throttled = poll_once(&snapshot);
        slow_down = if throttled { (slow_down + 1).min(8) } else { 0 };
    }
}

/// The interval, doubled per consecutive throttled poll, capped.
fn backoff_interval(interval: Duration, slow_down: u32) -> Duration {
    if slow_down == 0 {
        return interval;
    }
    interval
        .saturating_mul(1 << slow_down.min(8))
        .min(MAX_BACKOFF_INTERVAL.max(interval))
}

/// Groups the watches per (endpoint client, cluster) and reads them in batches. Returns true
/// when ECS throttled any call.
pub fn poll_once(watches: &[(String, Watch)]) -> bool {
    let mut groups: HashMap<(usize, String), Vec<&Watch>> = HashMap::new();
    for (_, w) in watches {
        groups
            .entry((Arc::as_ptr(&w.client) as usize, w.cluster.clone()))
            .or_default()
            .push(w);
    }
    let mut throttled = false;
    for ((_, cluster), group) in groups {
        let mut arns: Vec<String> = group.iter().map(|w| w.arn.clone()).collect();
        arns.sort();
        arns.dedup();
        let client = &group[0].client;
        for chunk in arns.chunks(DESCRIBE_BATCH) {
            match client.describe_tasks(&cluster, chunk) {
                Ok(out) => {
                    for w in group.iter().filter(|w| chunk.contains(&w.arn)) {
                        let msg = match out.tasks.iter().find(|t| t.task_arn == w.arn) {
                            Some(t) => TaskMsg::Observed(Box::new(t.clone())),
                            None => TaskMsg::Missing,
                        };
                        let _ = w.tx.send(msg);
                    }
                }
                Err(e) => {
                    if e.kind == ErrorKind::Throttling {
                        throttled = true;
                    }
                    log::warn!(cluster = cluster.as_str(), tasks = chunk.len(); "reading task status from ECS failed; will retry: {e}");
                    for w in group.iter().filter(|w| chunk.contains(&w.arn)) {
                        let _ = w.tx.send(TaskMsg::PollFailed(e.to_string()));
                    }
                }
            }
        }
    }
    throttled
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_slows_the_interval_down_with_a_cap() {
        let i = Duration::from_secs(5);
        assert_eq!(backoff_interval(i, 0), i);
        assert_eq!(backoff_interval(i, 1), Duration::from_secs(10));
        assert_eq!(backoff_interval(i, 8), MAX_BACKOFF_INTERVAL);
        let long = Duration::from_secs(120);
        assert_eq!(backoff_interval(long, 3), long);
    }

    #[test]
    fn a_poisoned_lock_does_not_stop_the_poller() {
        let p = Poller::start(Duration::from_secs(3600));
        let poisoned = std::thread::scope(|s| {
            s.spawn(|| {
                let _held = p.inner.lock();
                panic!("poison the lock on purpose");
            })
            .join()
        });
        assert!(poisoned.is_err() && p.inner.is_poisoned());
        p.set_interval(Duration::from_secs(7));
        p.poke();
        p.unwatch("nothing");
        assert_eq!(p.watched_count(), 0);
        assert_eq!(p.lock().interval, Duration::from_secs(7));
    }
}
