//! Models of what Nomad's task runner does with a driver plugin around restarts, kills and
//! restores, each following the Nomad source it names. The tests drive the real plugin through
//! these instead of calling RPCs in an order Nomad never uses.

use std::time::Duration;

use grpcio::{RpcStatus, RpcStatusCode};

use super::host::Plugin;
use nomad_driver_ecs::proto::driver as pb;

/// `killFailureLimit`, `killBackoffBaseline` and `killBackoffLimit` of
/// client/allocrunner/taskrunner/task_runner.go (v1.9.7, v1.10.0 and v2.0.5 alike).
pub const KILL_FAILURE_LIMIT: u32 = 5;
pub const KILL_BACKOFF_BASELINE: Duration = Duration::from_secs(5);
pub const KILL_BACKOFF_LIMIT: Duration = Duration::from_secs(120);
/// The client's default `max_kill_timeout` (command/agent/config.go DefaultConfig, v1.10.0).
pub const DEFAULT_MAX_KILL_TIMEOUT: Duration = Duration::from_secs(30);

/// What a kill did: every StopTask answer, in order.
#[derive(Debug)]
pub struct Kill {
    pub attempts: Vec<Result<(), RpcStatus>>,
}

impl Kill {
    /// Nomad logs "failed to kill task. Resources may have been leaked" when this is false.
    pub fn succeeded(&self) -> bool {
        matches!(self.attempts.last(), Some(Ok(())))
    }
}

/// A task's kill as Nomad runs it: the driver handle stops the task with
/// `min(kill_timeout, max_kill_timeout)` (client/allocrunner/taskrunner/driver_handle.go
/// NewDriverHandle and Kill, v1.10.0), and `killTask` (task_runner.go, v1.10.0) retries a
/// failed StopTask up to [`KILL_FAILURE_LIMIT`] times with a backoff of `4^i` ×
/// [`KILL_BACKOFF_BASELINE`] capped at [`KILL_BACKOFF_LIMIT`]; NotFound ends it at once. After a
/// kill that succeeded Nomad waits for the task's exit through WaitTask (`handleKill`).
pub fn kill(plugin: &Plugin, task_id: &str, kill_timeout: Duration, max_kill_timeout: Duration, signal: &str) -> Kill {
    let timeout = kill_timeout.min(max_kill_timeout);
    let mut attempts = Vec::new();
    for i in 0..KILL_FAILURE_LIMIT {
        match plugin.stop_task(task_id, timeout, signal) {
            Ok(()) => {
                attempts.push(Ok(()));
                break;
            }
            Err(e) if e.code() == RpcStatusCode::NOT_FOUND => {
                attempts.push(Err(e));
                break;
            }
            Err(e) => {
                attempts.push(Err(e));
                if i + 1 < KILL_FAILURE_LIMIT {
                    let backoff = KILL_BACKOFF_BASELINE * (1u32 << (2 * i));
                    std::thread::sleep(backoff.min(KILL_BACKOFF_LIMIT));
                }
            }
        }
    }
    Kill { attempts }
}

/// How a task runner got its task going.
#[derive(Debug)]
pub enum Began {
    /// RecoverTask took the handle.
    Recovered,
    /// RecoverTask failed with this error, and StartTask gave this handle.
    Started(RpcStatus, Box<pb::TaskHandle>),
}

/// Nomad 1.1–1.9 with a remote-task driver, at every (re)start of a task: the remote task hook
/// builds a new task config (a new task id: task_runner.go buildTaskConfig) and hands the task
/// state's last handle to RecoverTask with it; when that fails it logs the error and the task
/// runner calls StartTask (client/allocrunner/taskrunner/remotetask_hook.go Prestart and
/// task_runner.go runDriver, v1.9.7). The handle is the one of the allocation's last start,
/// or the previous allocation's for a replacement.
pub fn remote_task_prestart(plugin: &Plugin, last_handle: &pb::TaskHandle, new_config: &pb::TaskConfig) -> Began {
    let mut reused = last_handle.clone();
    reused.config = Some(new_config.clone()).into();
    match plugin.recover_task(&reused) {
        Ok(()) => Began::Recovered,
        Err(e) => {
            let started = plugin
                .start_task(new_config)
                .unwrap_or_else(|s| panic!("StartTask after a failed RecoverTask: {s:?}"));
            let handle = started
                .handle
                .into_option()
                .unwrap_or_else(|| panic!("StartTask gave no handle"));
            Began::Started(e, Box::new(handle))
        }
    }
}

/// What a restore did for one handle.
#[derive(Debug)]
pub struct Restored {
    pub task_id: String,
    pub recover: Result<(), RpcStatus>,
    /// The DestroyTask(force) Nomad sends after a failed RecoverTask.
    pub destroy: Option<Result<(), RpcStatus>>,
}

/// A client agent's restore after a restart: the allocations one after another
/// (client/client.go restoreState), each task runner's handle in turn
/// (client/allocrunner/alloc_runner.go Restore), each through `restoreHandle`
/// (client/allocrunner/taskrunner/task_runner.go, v1.10.0): RecoverTask, and when it fails
/// for a task Nomad believes running, DestroyTask(id, force = true) before starting anew.
pub fn restore(plugin: &Plugin, handles: &[pb::TaskHandle]) -> Vec<Restored> {
    handles
        .iter()
        .map(|h| {
            let task_id = h.config.as_ref().map(|c| c.id.clone()).unwrap_or_default();
            let recover = plugin.recover_task(h);
            let destroy = recover.is_err().then(|| plugin.destroy_task(&task_id, true));
            Restored {
                task_id,
                recover,
                destroy,
            }
        })
        .collect()
}

/// A task's event list as Nomad keeps it: at most 10 (`defaultMaxEvents`), the oldest
/// dropped first (client/allocrunner/taskrunner/task_runner.go appendTaskEvent, v1.10.0).
#[derive(Debug, Default)]
pub struct EventList {
    pub events: Vec<String>,
}

pub const MAX_EVENTS: usize = 10;

impl EventList {
    pub fn push(&mut self, message: impl Into<String>) {
        if self.events.len() == MAX_EVENTS {
            self.events.remove(0);
        }
        self.events.push(message.into());
    }

    pub fn contains(&self, needle: &str) -> bool {
        self.events.iter().any(|e| e.contains(needle))
    }
}
