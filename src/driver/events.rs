//! Task events: what the driver tells Nomad about a task's life (shown in `nomad alloc status`).

use std::collections::BTreeMap;
use std::sync::Mutex;
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
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.push(tx);
        }
        rx
    }

    pub fn publish(&self, event: TaskEvent) {
        log::info!(task_id = event.task_id.as_str(), alloc_id = event.alloc_id.as_str(); "{}", event.message);
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.retain(|tx| tx.unbounded_send(event.clone()).is_ok());
        }
    }

    pub fn subscriber_count(&self) -> usize {
        self.subscribers.lock().map(|s| s.len()).unwrap_or(0)
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
}
