//! One watched ECS task: its record (shared with the RPC handlers) and the thread that writes
//! its life down. The thread reads status from the poller's messages, publishes events, and
//! sets the exit result that WaitTask, InspectTask and StopTask read.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_channel::oneshot;

use crate::aws::ecs::{EcsClient, Task, TaskDefinition};

use super::config::TaskIdentity;
use super::events::{EventBus, TaskEvent};
use super::exit::{exit_result, ExitResult};
use super::poller::Poller;
use super::state::{NetworkInfo, TaskState};

/// Consecutive polls that must miss a task, and the least time since its start, before the
/// driver concludes ECS no longer knows it (ECS reads are eventually consistent right after
/// RunTask).
const MISSING_POLLS: u32 = 3;
const MISSING_GRACE: Duration = Duration::from_secs(10);
/// Stack of a task's thread. The default (2 MiB) would reserve 2 GiB of address space for a
/// thousand tasks. The deepest path here is a DescribeTaskDefinition over HTTPS (TLS handshake,
/// certificate checks, maybe a credentials refresh); the fleet benchmark measured at most
/// 32 KiB touched by any plugin thread in a release build and 100 KiB in a debug build.
const TASK_STACK_SIZE: usize = 256 * 1024;

/// What a task's thread is told.
#[derive(Debug)]
pub enum TaskMsg {
    /// The task as ECS described it.
    Observed(Box<Task>),
    /// ECS did not return the task.
    Missing,
    /// Reading the status failed (transient or not); the task keeps running in our eyes.
    PollFailed(String),
    /// Stop watching; the ECS task keeps running (StopTask with signal DETACH).
    Detach,
    /// Nomad forgot the task (DestroyTask): the thread ends.
    Forget,
}

/// Nomad-visible state of the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Running,
    Exited,
}

struct Inner {
    last_status: String,
    desired_status: String,
    exit: Option<ExitResult>,
    completed_at: Option<SystemTime>,
    detached: bool,
    waiters: Vec<oneshot::Sender<ExitResult>>,
    last_error: Option<String>,
    /// The ENI's private IPv4 address, once ECS reported it (awsvpc tasks).
    address: Option<String>,
    /// Port labels → container ports (from the task definition's portMappings).
    ports: Vec<(String, u16)>,
    /// The task definition ARN ECS reports for the running task (known after the first
    /// observation; a family-only reference in the handle may have moved on since).
    task_definition_arn: Option<String>,
    /// ECS described the task at least once since the entry was made.
    observed: bool,
    /// The task reached RUNNING (the event for it is published once).
    was_running: bool,
}

/// A snapshot for InspectTask.
#[derive(Debug, Clone)]
pub struct TaskSnapshot {
    pub identity: TaskIdentity,
    pub state: TaskState,
    pub phase: Phase,
    pub last_status: String,
    pub desired_status: String,
    pub exit: Option<ExitResult>,
    pub completed_at: Option<SystemTime>,
    pub detached: bool,
    pub last_error: Option<String>,
    /// The task's address and ports, once known (awsvpc tasks).
    pub network: Option<NetworkInfo>,
}

/// Things every task thread uses.
pub struct Shared {
    pub events: EventBus,
    /// Tails the tasks' CloudWatch Logs streams into their FIFOs.
    pub logs: Arc<super::logs::LogTail>,
    pub poller: Arc<Poller>,
    /// Task definitions by ARN or `family:revision` (both immutable).
    pub task_definitions: Mutex<HashMap<String, Arc<TaskDefinition>>>,
}

pub struct TaskEntry {
    pub identity: TaskIdentity,
    pub state: TaskState,
    pub client: Arc<EcsClient>,
    /// Nomad asked for the stop (StopTask / DestroyTask): a `UserInitiated` stop is then ours.
    pub stop_requested: std::sync::atomic::AtomicBool,
    inner: Mutex<Inner>,
    cond: Condvar,
    tx: Sender<TaskMsg>,
}

impl TaskEntry {
    /// Registers the task with the poller and starts its thread.
    pub fn spawn(
        identity: TaskIdentity,
        state: TaskState,
        client: Arc<EcsClient>,
        initial_status: &str,
        shared: Arc<Shared>,
    ) -> std::io::Result<Arc<TaskEntry>> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (address, ports) = match &state.network {
            Some(n) => (Some(n.address.clone()), n.ports.clone()),
            None => (None, Vec::new()),
        };
        let entry = Arc::new(TaskEntry {
            identity,
            state,
            client,
            stop_requested: std::sync::atomic::AtomicBool::new(false),
            inner: Mutex::new(Inner {
                last_status: initial_status.to_string(),
                desired_status: "RUNNING".into(),
                exit: None,
                completed_at: None,
                detached: false,
                waiters: Vec::new(),
                last_error: None,
                address,
                ports,
                task_definition_arn: None,
                observed: false,
                // A recovered task ("UNKNOWN") was seen running before: no second event. A new
                // one gets its event from the first read that shows it RUNNING.
                was_running: initial_status == "UNKNOWN",
            }),
            cond: Condvar::new(),
            tx: tx.clone(),
        });
        let id = entry.identity.id.clone();
        let thread_entry = Arc::clone(&entry);
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name(format!("task-{}", short_id(&id)))
            .stack_size(TASK_STACK_SIZE)
            .spawn(move || watch(thread_entry, rx, thread_shared))?;
        shared.poller.watch(
            &id,
            super::poller::Watch {
                arn: entry.state.task_arn.clone(),
                cluster: entry.state.cluster.clone(),
                client: Arc::clone(&entry.client),
                tx,
            },
        );
        Ok(entry)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock means a thread panicked mid-update; the data is still the best we have.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn send(&self, msg: TaskMsg) {
        let _ = self.tx.send(msg);
    }

    pub fn exit(&self) -> Option<ExitResult> {
        self.lock().exit.clone()
    }

    pub fn is_detached(&self) -> bool {
        self.lock().detached
    }

    /// A receiver that yields the exit result (at once if the task already exited).
    pub fn wait(&self) -> oneshot::Receiver<ExitResult> {
        let (tx, rx) = oneshot::channel();
        let mut g = self.lock();
        match &g.exit {
            Some(exit) => {
                let _ = tx.send(exit.clone());
            }
            None => g.waiters.push(tx),
        }
        rx
    }

    /// Blocks until the task exited or `timeout` passed; true if it exited.
    pub fn wait_exit(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut g = self.lock();
        while g.exit.is_none() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            g = match self.cond.wait_timeout(g, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        true
    }

    /// Blocks until ECS described the task once (or it ended, or `timeout` passed); then the
    /// task definition ARN ECS reported, if any.
    pub fn wait_observed(&self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut g = self.lock();
        while !g.observed && g.exit.is_none() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            g = match self.cond.wait_timeout(g, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        g.task_definition_arn.clone()
    }

    /// The ENI address seen so far.
    pub fn address(&self) -> Option<String> {
        self.lock().address.clone()
    }

    /// Records the task's port labels (from its task definition).
    pub fn set_ports(&self, ports: Vec<(String, u16)>) {
        self.lock().ports = ports;
    }

    pub fn snapshot(&self) -> TaskSnapshot {
        let g = self.lock();
        TaskSnapshot {
            identity: self.identity.clone(),
            state: self.state.clone(),
            phase: if g.exit.is_some() {
                Phase::Exited
            } else {
                Phase::Running
            },
            last_status: g.last_status.clone(),
            desired_status: g.desired_status.clone(),
            exit: g.exit.clone(),
            completed_at: g.completed_at,
            detached: g.detached,
            last_error: g.last_error.clone(),
            network: g.address.clone().map(|address| NetworkInfo {
                address,
                ports: g.ports.clone(),
            }),
        }
    }

    pub fn event(&self, message: impl Into<String>, annotations: BTreeMap<String, String>) -> TaskEvent {
        TaskEvent {
            task_id: self.identity.id.clone(),
            alloc_id: self.identity.alloc_id.clone(),
            task_name: self.identity.name.clone(),
            timestamp: SystemTime::now(),
            message: message.into(),
            annotations,
        }
    }

    /// Records the exit (once) and wakes every waiter.
    fn finish(&self, exit: ExitResult, completed_at: SystemTime, detached: bool) -> bool {
        let waiters = {
            let mut g = self.lock();
            if g.exit.is_some() {
                return false;
            }
            g.exit = Some(exit.clone());
            g.completed_at = Some(completed_at);
            g.detached = detached;
            std::mem::take(&mut g.waiters)
        };
        self.cond.notify_all();
        for w in waiters {
            let _ = w.send(exit.clone());
        }
        true
    }
}

fn short_id(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

fn annotations(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// The task's thread.
fn watch(entry: Arc<TaskEntry>, rx: Receiver<TaskMsg>, shared: Arc<Shared>) {
    let mut missing = 0u32;
    let started = Instant::now();
    while let Ok(msg) = rx.recv() {
        match msg {
            TaskMsg::Observed(task) => {
                missing = 0;
                if observe(&entry, &task, &shared) {
                    break;
                }
            }
            TaskMsg::Missing => {
                missing += 1;
                if missing >= MISSING_POLLS && started.elapsed() >= MISSING_GRACE {
                    let msg = format!(
                        "ECS no longer knows task {} in cluster {} (stopped long ago and expired, or never existed there); its exit status is unknown",
                        entry.state.task_arn, entry.state.cluster
                    );
                    let exit = ExitResult::failed(1, msg.clone());
                    if entry.finish(exit, SystemTime::now(), false) {
                        shared
                            .events
                            .publish(entry.event(msg, annotations(&[("task_arn", entry.state.task_arn.clone())])));
                    }
                    break;
                }
            }
            TaskMsg::PollFailed(err) => {
                entry.lock().last_error = Some(err);
            }
            TaskMsg::Detach => {
                if entry.finish(ExitResult::code(0), SystemTime::now(), true) {
                    shared.events.publish(entry.event(
                        format!("Detached from ECS task {}; it keeps running", entry.state.task_arn),
                        annotations(&[("task_arn", entry.state.task_arn.clone())]),
                    ));
                }
                break;
            }
            TaskMsg::Forget => break,
        }
    }
    shared.poller.unwatch(&entry.identity.id);
    log::debug!(task_id = entry.identity.id.as_str(); "stopped watching ECS task {}", entry.state.task_arn);
}

/// Applies one observation. Returns true when the task has ended.
fn observe(entry: &TaskEntry, task: &Task, shared: &Shared) -> bool {
    let (changed, first_running) = {
        let mut g = entry.lock();
        g.last_error = None;
        if let Some(addr) = task.private_ipv4() {
            g.address = Some(addr.to_string());
        }
        if let Some(td) = &task.task_definition_arn {
            g.task_definition_arn = Some(td.clone());
        }
        g.observed = true;
        let changed = g.last_status != task.last_status || g.desired_status != task.desired_status;
        let first_running = task.last_status == "RUNNING" && !g.was_running;
        g.was_running |= task.last_status == "RUNNING";
        g.last_status = task.last_status.clone();
        g.desired_status = task.desired_status.clone();
        (changed, first_running)
    };
    entry.cond.notify_all();
    if task.last_status != "STOPPED" {
        // Nomad keeps only the last 10 events of a task (task_runner.go appendTaskEvent), so
        // ECS's intermediate statuses are log lines; reaching RUNNING is the one event.
        if changed {
            log::debug!(task_id = entry.identity.id.as_str(); "ECS task {} is {} (desired {})", task.task_arn, task.last_status, task.desired_status);
        }
        if first_running {
            shared.events.publish(entry.event(
                "ECS task is RUNNING",
                annotations(&[
                    ("last_status", task.last_status.clone()),
                    ("desired_status", task.desired_status.clone()),
                ]),
            ));
        }
        return false;
    }
    shared.logs.finish(&entry.identity.id);
    let essential = essential_containers(entry, task, shared);
    let stopped_by_nomad = entry.stop_requested.load(std::sync::atomic::Ordering::SeqCst);
    let exit = exit_result(task, essential.as_deref(), stopped_by_nomad);
    let completed_at = task.stopped_at.and_then(epoch_secs).unwrap_or_else(SystemTime::now);
    if entry.finish(exit.clone(), completed_at, false) {
        let codes: Vec<String> = task
            .containers
            .iter()
            .map(|c| {
                format!(
                    "{}={}",
                    c.name,
                    c.exit_code.map_or_else(|| "none".to_string(), |c| c.to_string())
                )
            })
            .collect();
        let container_reasons: Vec<String> = task
            .containers
            .iter()
            .filter_map(|c| {
                c.reason
                    .as_deref()
                    .filter(|r| !r.is_empty())
                    .map(|r| format!("{}: {r}", c.name))
            })
            .collect();
        let reason = task.stopped_reason.clone().unwrap_or_default();
        let cause = super::exit::ecs_stop_cause(task, stopped_by_nomad);
        let message = match &cause {
            Some(cause) => format!("{cause} (exit code {})", exit.exit_code),
            None if reason.is_empty() => format!("ECS task stopped (exit code {})", exit.exit_code),
            None => format!("ECS task stopped: {reason} (exit code {})", exit.exit_code),
        };
        let mut notes = vec![
            ("task_arn", task.task_arn.clone()),
            ("stop_code", task.stop_code.clone().unwrap_or_default()),
            ("stopped_reason", reason),
            ("exit_code", exit.exit_code.to_string()),
            ("container_exit_codes", codes.join(",")),
            (
                "ended_by",
                if cause.is_some() {
                    "ecs"
                } else if stopped_by_nomad {
                    "nomad"
                } else {
                    "container"
                }
                .to_string(),
            ),
        ];
        if !container_reasons.is_empty() {
            notes.push(("container_reasons", container_reasons.join("; ")));
        }
        shared.events.publish(entry.event(message, annotations(&notes)));
    }
    true
}

/// Essential container names of the task's definition, cached; `None` if unknown (then every
/// container counts).
fn essential_containers(entry: &TaskEntry, task: &Task, shared: &Shared) -> Option<Vec<String>> {
    let td = task
        .task_definition_arn
        .clone()
        .unwrap_or_else(|| entry.state.task_definition.clone());
    match task_definition(&entry.client, &td, shared) {
        Ok(def) => Some(def.essential_containers()),
        Err(e) => {
            log::warn!(task_id = entry.identity.id.as_str(); "cannot read task definition {td} to find its essential containers; using every container's exit code: {e}");
            None
        }
    }
}

/// A task definition, from the cache when the reference is pinned to a revision (`family:rev`
/// or an ARN); a bare family is read each time (its latest revision may change). Every read is
/// cached under its ARN and, when pinned, the reference itself.
pub fn task_definition(
    client: &EcsClient,
    reference: &str,
    shared: &Shared,
) -> Result<Arc<TaskDefinition>, crate::aws::AwsError> {
    let pinned = reference.contains(':');
    if pinned {
        if let Some(hit) = shared
            .task_definitions
            .lock()
            .ok()
            .and_then(|c| c.get(reference).cloned())
        {
            return Ok(hit);
        }
    }
    let def = Arc::new(client.describe_task_definition(reference)?);
    if let Ok(mut cache) = shared.task_definitions.lock() {
        cache.insert(def.arn.clone(), Arc::clone(&def));
        if pinned {
            cache.insert(reference.to_string(), Arc::clone(&def));
        }
    }
    Ok(def)
}

fn epoch_secs(secs: f64) -> Option<SystemTime> {
    if secs.is_finite() && secs > 0.0 {
        Some(UNIX_EPOCH + Duration::from_secs_f64(secs))
    } else {
        None
    }
}
