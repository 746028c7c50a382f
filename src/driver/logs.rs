//! The tasks' logs in Nomad: each container that uses the `awslogs` log driver has its
//! CloudWatch Logs stream (`<prefix>/<container>/<task id>`) tailed into the task's stdout FIFO,
//! and the driver's own lifecycle lines go to the stderr FIFO, so `nomad alloc logs` shows both.
//!
//! One thread tails every task (GetLogEvents is limited per account, so calls are spread out:
//! at most [`MAX_CALLS_PER_SEC`], each stream at most every `interval`). FIFOs are opened and
//! written non-blocking from that thread only: a missing or slow reader never blocks a task's
//! thread or an RPC; lines wait in a bounded buffer, and while it is full no more are fetched
//! (nothing is lost, CloudWatch keeps them). The position in each stream is saved next to the
//! stdout FIFO once the lines before it are written, so a restarted plugin resumes where the
//! last one stopped, without repeating lines.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::aws::ecs::TaskDefinition;
use crate::aws::logs::{From, LogsClient};
use crate::aws::timestamp;
use crate::aws::{AwsError, ErrorKind};

use super::events::{EventBus, TaskEvent};

/// Upper bound on GetLogEvents calls per second, all streams together (the account limit is 10
/// per second in most regions; leave room for other readers).
pub const MAX_CALLS_PER_SEC: u32 = 5;
/// How long a stopped task's streams are still read (CloudWatch ingests with a delay).
const DRAIN_AFTER_STOP: Duration = Duration::from_secs(15);
/// Buffered stdout bytes per task before fetching pauses.
const STDOUT_BUFFER: usize = 4 * 1024 * 1024;
/// Buffered stderr (lifecycle) bytes per task; older lines are dropped past it.
const STDERR_BUFFER: usize = 256 * 1024;
const REOPEN_EVERY: Duration = Duration::from_secs(1);
const TICK: Duration = Duration::from_millis(100);
/// With no task to tail, the thread only wakes this often.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// One container's CloudWatch Logs stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSource {
    pub container: String,
    pub group: String,
    pub stream: String,
    /// `awslogs-region`, when the group lives in another region than the task.
    pub region: Option<String>,
}

/// The awslogs streams of a task: containers with the `awslogs` driver and a stream prefix
/// (without a prefix the stream is named after the Docker container id, which ECS does not
/// report for Fargate).
pub fn sources(def: &TaskDefinition, task_arn: &str) -> Vec<LogSource> {
    let task_id = task_arn.rsplit('/').next().unwrap_or(task_arn);
    def.containers
        .iter()
        .filter_map(|c| {
            let cfg = c.log_configuration.as_ref().filter(|l| l.log_driver == "awslogs")?;
            let group = cfg.option("awslogs-group")?.to_string();
            let prefix = cfg.option("awslogs-stream-prefix").filter(|p| !p.is_empty())?;
            Some(LogSource {
                container: c.name.clone(),
                group,
                stream: format!("{prefix}/{}/{task_id}", c.name),
                region: cfg.option("awslogs-region").map(str::to_string),
            })
        })
        .collect()
}

/// Where reading a stream resumes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Position {
    pub token: Option<String>,
    /// Timestamp of the last event written, and how many events with that timestamp were
    /// written (to resume by time when the token expired).
    pub last_ts: Option<i64>,
    pub at_last_ts: u64,
}

/// The file that keeps the positions of a task's streams: beside the stdout FIFO.
pub fn position_file(stdout_path: &str) -> PathBuf {
    PathBuf::from(format!("{stdout_path}.nomad-driver-ecs.json"))
}

pub fn load_positions(path: &Path) -> HashMap<String, Position> {
    let Ok(bytes) = std::fs::read(path) else {
        return HashMap::new();
    };
    let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
        log::warn!("ignoring unreadable log position file {}", path.display());
        return HashMap::new();
    };
    v.get("streams")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(stream, p)| {
                    (
                        stream.clone(),
                        Position {
                            token: p.get("token").and_then(Value::as_str).map(str::to_string),
                            last_ts: p.get("last_ts").and_then(Value::as_i64),
                            at_last_ts: p.get("at_last_ts").and_then(Value::as_u64).unwrap_or(0),
                        },
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn save_positions(path: &Path, positions: &BTreeMap<String, Position>) -> std::io::Result<()> {
    let streams: serde_json::Map<String, Value> = positions
        .iter()
        .map(|(s, p)| {
            (
                s.clone(),
                json!({"token": p.token, "last_ts": p.last_ts, "at_last_ts": p.at_last_ts}),
            )
        })
        .collect();
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, json!({"version": 1, "streams": streams}).to_string())?;
    std::fs::rename(&tmp, path)
}

/// A FIFO (or file) written without ever blocking.
struct Writer {
    path: PathBuf,
    file: Option<File>,
    pending: Vec<u8>,
    next_open: Instant,
    cap: usize,
    dropped: u64,
}

impl Writer {
    fn new(path: &str, cap: usize) -> Writer {
        Writer {
            path: PathBuf::from(path),
            file: None,
            pending: Vec::new(),
            next_open: Instant::now(),
            cap,
            dropped: 0,
        }
    }

    /// Queues bytes; past the cap, the oldest whole lines go (counted in `dropped`).
    fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        if self.pending.len() > self.cap {
            let excess = self.pending.len() - self.cap;
            let cut = self.pending[excess..]
                .iter()
                .position(|b| *b == b'\n')
                .map_or(self.pending.len(), |i| excess + i + 1);
            self.dropped += self.pending[..cut].iter().filter(|b| **b == b'\n').count() as u64;
            self.pending.drain(..cut);
        }
    }

    /// Writes what it can now. True when nothing is left pending.
    fn flush(&mut self) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        if self.file.is_none() {
            if Instant::now() < self.next_open || self.path.as_os_str().is_empty() {
                return false;
            }
            // O_NONBLOCK: opening a FIFO without a reader fails (ENXIO) instead of waiting.
            match std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&self.path)
            {
                Ok(f) => self.file = Some(f),
                Err(_) => {
                    self.next_open = Instant::now() + REOPEN_EVERY;
                    return false;
                }
            }
        }
        while !self.pending.is_empty() {
            let Some(f) = self.file.as_mut() else { return false };
            match f.write(&self.pending) {
                Ok(0) => return false,
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    // The reader went away (EPIPE): reopen later, keep the bytes.
                    self.file = None;
                    self.next_open = Instant::now() + REOPEN_EVERY;
                    return false;
                }
            }
        }
        true
    }
}

struct Stream {
    source: LogSource,
    client: Arc<LogsClient>,
    /// Position after the last fetched event (what the next call starts from).
    fetched: Position,
    /// Position after the last event written to the FIFO.
    written: Position,
    due: Instant,
    backoff: Duration,
}

struct Tailed {
    stdout: Writer,
    stderr: Writer,
    streams: Vec<Stream>,
    position_path: Option<PathBuf>,
    saved: BTreeMap<String, Position>,
    stop_at: Option<Instant>,
}

/// Registration of one task with the tail.
pub struct Registration {
    pub task_id: String,
    pub stdout_path: String,
    pub stderr_path: String,
    /// Each stream with the client for its region; empty: lifecycle lines only.
    pub streams: Vec<(LogSource, Arc<LogsClient>)>,
    pub interval: Duration,
}

/// The tail: one thread for all tasks, started with the first task that needs it.
pub struct LogTail {
    tasks: Mutex<HashMap<String, Tailed>>,
    interval: Mutex<Duration>,
    started: std::sync::Once,
}

impl LogTail {
    pub fn new() -> Arc<LogTail> {
        Arc::new(LogTail {
            tasks: Mutex::new(HashMap::new()),
            interval: Mutex::new(Duration::from_secs(2)),
            started: std::sync::Once::new(),
        })
    }

    /// Starts the tail's thread unless it runs already; it reads lifecycle lines from `events`.
    fn ensure_started(self: &Arc<Self>, events: &EventBus) {
        self.started.call_once(|| {
            let weak = Arc::downgrade(self);
            let rx = events.subscribe();
            let spawned = std::thread::Builder::new()
                .name("log-tail".into())
                .stack_size(256 * 1024)
                .spawn(move || run(weak, rx));
            if let Err(e) = spawned {
                log::error!("cannot start the log tail thread ({e}); task logs will not reach Nomad");
            }
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Tailed>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts tailing a task (again, after a restart: resuming from its position file);
    /// lifecycle lines come from `events`.
    pub fn register(self: &Arc<Self>, r: Registration, events: &EventBus) {
        self.ensure_started(events);
        if let Ok(mut i) = self.interval.lock() {
            *i = r.interval;
        }
        let position_path = (!r.stdout_path.is_empty() && !r.streams.is_empty()).then(|| position_file(&r.stdout_path));
        let saved: HashMap<String, Position> = position_path.as_deref().map(load_positions).unwrap_or_default();
        let now = Instant::now();
        let streams = r
            .streams
            .into_iter()
            .map(|(source, client)| {
                let pos = saved.get(&source.stream).cloned().unwrap_or_default();
                Stream {
                    source,
                    client,
                    fetched: pos.clone(),
                    written: pos,
                    due: now,
                    backoff: Duration::ZERO,
                }
            })
            .collect();
        let saved = saved.into_iter().collect();
        self.lock().insert(
            r.task_id,
            Tailed {
                stdout: Writer::new(&r.stdout_path, STDOUT_BUFFER),
                stderr: Writer::new(&r.stderr_path, STDERR_BUFFER),
                streams,
                position_path,
                saved,
                stop_at: None,
            },
        );
    }

    /// The task stopped: read its streams a little longer, then let it go.
    pub fn finish(&self, task_id: &str) {
        if let Some(t) = self.lock().get_mut(task_id) {
            t.stop_at.get_or_insert(Instant::now() + DRAIN_AFTER_STOP);
        }
    }

    /// Forget the task now, writing what can be written.
    fn remove(&self, task_id: &str) {
        if let Some(mut t) = self.lock().remove(task_id) {
            t.stdout.flush();
            t.stderr.flush();
        }
    }
}

fn run(tail: std::sync::Weak<LogTail>, mut events: futures_channel::mpsc::UnboundedReceiver<TaskEvent>) {
    let mut window_start = Instant::now();
    let mut calls_in_window = 0u32;
    loop {
        let Some(tail) = tail.upgrade() else { return };
        // Lifecycle lines to the stderr FIFOs.
        while let Ok(ev) = events.try_recv() {
            if let Some(t) = tail.lock().get_mut(&ev.task_id) {
                t.stderr.push(lifecycle_line(&ev).as_bytes());
            }
        }
        let interval = tail.interval.lock().map(|i| *i).unwrap_or(Duration::from_secs(2));
        // Pick the due streams without holding the lock across HTTP calls.
        let now = Instant::now();
        if now.duration_since(window_start) >= Duration::from_secs(1) {
            window_start = now;
            calls_in_window = 0;
        }
        let mut work: Vec<(String, usize, Arc<LogsClient>, LogSource, Position)> = Vec::new();
        {
            let mut tasks = tail.lock();
            for (id, t) in tasks.iter_mut() {
                let paused = t.stdout.pending.len() >= STDOUT_BUFFER;
                for (i, s) in t.streams.iter_mut().enumerate() {
                    if !paused && s.due <= now && calls_in_window + (work.len() as u32) < MAX_CALLS_PER_SEC {
                        s.due = now + interval.max(s.backoff);
                        work.push((
                            id.clone(),
                            i,
                            Arc::clone(&s.client),
                            s.source.clone(),
                            s.fetched.clone(),
                        ));
                    }
                }
            }
        }
        calls_in_window += work.len() as u32;
        for (id, i, client, source, from) in work {
            let result = fetch(&client, &source, &from);
            let mut tasks = tail.lock();
            let Some(t) = tasks.get_mut(&id) else { continue };
            let Some(s) = t.streams.get_mut(i) else { continue };
            match result {
                Ok((lines, next)) => {
                    s.backoff = Duration::ZERO;
                    if !lines.is_empty() {
                        // More may be waiting: come back soon.
                        s.due = Instant::now();
                        t.stdout.push(lines.as_bytes());
                    }
                    s.fetched = next;
                }
                Err(e) => {
                    s.backoff = match e.kind {
                        ErrorKind::NotFound => Duration::from_secs(5),
                        ErrorKind::Throttling => (s.backoff * 2).clamp(Duration::from_secs(2), Duration::from_secs(60)),
                        _ => (s.backoff * 2).clamp(Duration::from_secs(1), Duration::from_secs(30)),
                    };
                    s.due = Instant::now() + s.backoff;
                    if e.code == "InvalidParameterException" && from.token.is_some() {
                        // An expired token: resume by time instead.
                        s.fetched.token = None;
                    }
                    log::debug!(task_id = id.as_str(); "reading CloudWatch Logs stream {} of group {}: {e}", source.stream, source.group);
                }
            }
        }
        // Write, save positions, let finished tasks go.
        let now = Instant::now();
        let mut done = Vec::new();
        for (id, t) in tail.lock().iter_mut() {
            t.stderr.flush();
            if t.stdout.flush() {
                for s in &mut t.streams {
                    s.written = s.fetched.clone();
                }
                let current: BTreeMap<String, Position> = t
                    .streams
                    .iter()
                    .map(|s| (s.source.stream.clone(), s.written.clone()))
                    .collect();
                if current != t.saved {
                    if let Some(p) = &t.position_path {
                        match save_positions(p, &current) {
                            Ok(()) => t.saved = current,
                            Err(e) => {
                                log::warn!(task_id = id.as_str(); "cannot save the log position to {}: {e}", p.display())
                            }
                        }
                    }
                }
            }
            if t.stop_at.is_some_and(|at| now >= at) && t.stdout.pending.is_empty() && t.stderr.pending.is_empty() {
                done.push(id.clone());
            }
            if t.stdout.dropped + t.stderr.dropped > 0 {
                log::warn!(task_id = id.as_str(); "dropped {} lifecycle lines nobody read", t.stdout.dropped + t.stderr.dropped);
                t.stdout.dropped = 0;
                t.stderr.dropped = 0;
            }
        }
        for id in done {
            tail.remove(&id);
        }
        let idle = tail.lock().is_empty();
        drop(tail);
        std::thread::sleep(if idle { IDLE_TICK } else { TICK });
    }
}

/// One GetLogEvents round: the new lines (newline-terminated) and the position after them.
fn fetch(client: &LogsClient, source: &LogSource, pos: &Position) -> Result<(String, Position), AwsError> {
    let from = match (&pos.token, pos.last_ts) {
        (Some(t), _) => From::Token(t.clone()),
        (None, Some(ts)) => From::Time(ts),
        (None, None) => From::Head,
    };
    let answer = client.get_log_events(&source.group, &source.stream, &from)?;
    let mut next = pos.clone();
    let mut out = String::new();
    // Resuming by time repeats the events at `last_ts` already written: skip those.
    let mut skip = if matches!(from, From::Time(_)) {
        pos.at_last_ts
    } else {
        0
    };
    for ev in &answer.events {
        if skip > 0 && Some(ev.timestamp) == pos.last_ts {
            skip -= 1;
            continue;
        }
        skip = 0;
        out.push_str(&ev.message);
        if !ev.message.ends_with('\n') {
            out.push('\n');
        }
        if next.last_ts == Some(ev.timestamp) {
            next.at_last_ts += 1;
        } else {
            next.last_ts = Some(ev.timestamp);
            next.at_last_ts = 1;
        }
    }
    if let Some(t) = answer.next_forward_token {
        next.token = Some(t);
    }
    Ok((out, next))
}

/// `2026-11-24T13:20:00Z <message>`.
pub fn lifecycle_line(ev: &TaskEvent) -> String {
    format!(
        "{} {}\n",
        timestamp::format(ev.timestamp),
        ev.message.replace('\n', " ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::ecs::{ContainerDefinition, LogConfiguration};
    use std::time::UNIX_EPOCH;

    #[test]
    fn awslogs_containers_with_a_prefix_are_sources() {
        let awslogs = |prefix: Option<&str>| LogConfiguration {
            log_driver: "awslogs".into(),
            options: [
                ("awslogs-group", Some("/ecs/web")),
                ("awslogs-stream-prefix", prefix),
                ("awslogs-region", Some("eu-west-1")),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_string(), v.to_string())))
            .collect(),
        };
        let def = TaskDefinition {
            containers: vec![
                ContainerDefinition {
                    name: "app".into(),
                    log_configuration: Some(awslogs(Some("web"))),
                    ..Default::default()
                },
                ContainerDefinition {
                    name: "noprefix".into(),
                    log_configuration: Some(awslogs(None)),
                    ..Default::default()
                },
                ContainerDefinition {
                    name: "splunk".into(),
                    log_configuration: Some(LogConfiguration {
                        log_driver: "splunk".into(),
                        options: vec![],
                    }),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let s = sources(&def, "arn:aws:ecs:us-east-1:1:task/c/abc123");
        assert_eq!(
            s,
            vec![LogSource {
                container: "app".into(),
                group: "/ecs/web".into(),
                stream: "web/app/abc123".into(),
                region: Some("eu-west-1".into()),
            }]
        );
    }

    #[test]
    fn positions_round_trip() {
        let dir = std::env::temp_dir().join(format!("logpos-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("pos.json");
        let mut m = BTreeMap::new();
        m.insert(
            "web/app/1".to_string(),
            Position {
                token: Some("f/1".into()),
                last_ts: Some(17),
                at_last_ts: 2,
            },
        );
        save_positions(&p, &m).unwrap();
        let back: BTreeMap<String, Position> = load_positions(&p).into_iter().collect();
        assert_eq!(back, m);
        std::fs::write(&p, "garbage").unwrap();
        assert!(load_positions(&p).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn writer_buffers_without_a_reader_and_caps() {
        let mut w = Writer::new("/nonexistent/dir/fifo", 10);
        w.push(b"aaaa\nbbbb\n");
        assert!(!w.flush(), "no reader: nothing written, nothing lost");
        assert_eq!(w.pending.len(), 10);
        w.push(b"cc\n");
        assert_eq!(w.pending, b"bbbb\ncc\n", "oldest line dropped past the cap");
        assert_eq!(w.dropped, 1);
    }

    #[test]
    fn lifecycle_lines_are_timestamped() {
        let ev = TaskEvent {
            task_id: "t".into(),
            alloc_id: "a".into(),
            task_name: "n".into(),
            timestamp: UNIX_EPOCH + Duration::from_secs(1_795_524_624),
            message: "Started ECS task x".into(),
            annotations: BTreeMap::new(),
        };
        assert_eq!(lifecycle_line(&ev), "2026-11-24T12:50:24Z Started ECS task x\n");
    }
}
