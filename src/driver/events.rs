//! Task events: what the driver tells Nomad about a task's life (shown in `nomad alloc status`).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use futures_channel::mpsc;

#[derive(Debug, Clone, PartialEq)]
pub struct TaskEvent {
    pub task_id: String,
    pub alloc_id: String,
    pub task_name: String,
    pub timestamp: SystemTime,
    pub message: String,
    pub annotations: BTreeMap<String, String>,
}

/// Fans events out to every open TaskEvents stream. Subscribers whose stream ended are
/// dropped on the next publish. Publishing never blocks.
#[derive(Default)]
pub struct EventBus {
    subscribers: Mutex<Vec<mpsc::UnboundedSender<TaskEvent>>>,
}

impl EventBus {
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<TaskEvent> {
        let (tx, rx) = mpsc::unbounded();
        self.subscribers().push(tx);
        rx
    }

    pub fn publish(&self, event: TaskEvent) {
        log::info!(task_id = event.task_id.as_str(), alloc_id = event.alloc_id.as_str(); "{}", event.message);
        self.subscribers().retain(|tx| tx.unbounded_send(event.clone()).is_ok());
    }

    pub fn subscriber_count(&self) -> usize {
        self.subscribers().len()
    }

    /// The subscriber list, also after a panic elsewhere poisoned the lock (a push or a
    /// retain never leaves it half-changed): a poisoned lock must not silently drop every
    /// later event.
    fn subscribers(&self) -> MutexGuard<'_, Vec<mpsc::UnboundedSender<TaskEvent>>> {
        self.subscribers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(msg: &str) -> TaskEvent {
        TaskEvent {
            task_id: "a/t/1".into(),
            alloc_id: "a".into(),
            task_name: "t".into(),
            timestamp: SystemTime::UNIX_EPOCH,
            message: msg.into(),
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn every_subscriber_gets_every_event_and_closed_ones_are_dropped() {
        let bus = EventBus::default();
        let mut a = bus.subscribe();
        let b = bus.subscribe();
        bus.publish(ev("one"));
        drop(b);
        bus.publish(ev("two"));
        assert_eq!(bus.subscriber_count(), 1);
        assert_eq!(a.try_recv().unwrap().message, "one");
        assert_eq!(a.try_recv().unwrap().message, "two");
    }

    #[test]
    fn a_poisoned_lock_does_not_stop_events() {
        let bus = EventBus::default();
        let mut a = bus.subscribe();
        let poisoned = std::thread::scope(|s| {
            s.spawn(|| {
                let _held = bus.subscribers.lock();
                panic!("poison the lock on purpose");
            })
            .join()
        });
        assert!(poisoned.is_err() && bus.subscribers.is_poisoned());
        bus.publish(ev("after"));
        let mut b = bus.subscribe();
        bus.publish(ev("later"));
        assert_eq!(a.try_recv().unwrap().message, "after");
        assert_eq!(a.try_recv().unwrap().message, "later");
        assert_eq!(b.try_recv().unwrap().message, "later");
        assert_eq!(bus.subscriber_count(), 2);
    }
}
