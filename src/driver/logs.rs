//! The tasks' logs in Nomad: each container that uses the `awslogs` log driver has its
//! CloudWatch Logs stream (`<prefix>/<container>/<task id>`) tailed into the task's stdout FIFO,
//! and the driver's own lifecycle lines go to the stderr FIFO, so `nomad alloc logs` shows both.
//!
//! One thread tails every task (GetLogEvents is limited per account, so calls are spread out:
//! at most [`MAX_CALLS_PER_SEC`], each stream at most every `interval`). FIFOs are opened and
//! written non-blocking from that thread only: a missing or slow reader never blocks a task's
//! thread or an RPC; lines wait in a bounded buffer, and while it is full no more are fetched
//! (nothing is lost, CloudWatch keeps them). The position in each stream is saved in the task's
//! own directory (`<alloc_dir>/<task>/`) once the lines before it are written, so a restarted
//! plugin resumes where the last one stopped, without repeating lines.
//!
//! The FIFOs live in `<alloc_dir>/alloc/logs`, which the allocation's other tasks can write: they
//! are opened with [`alloc_fs`](super::alloc_fs), never through a link and only when they are
//! FIFOs. A path that is anything else is refused once, with a task event, and not written.
//! Region names from task definitions (`awslogs-region`) are checked before they pick a host.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::aws::ecs::TaskDefinition;
use crate::aws::logs::{From, LogsClient};
use crate::aws::region::{is_valid_region, quoted};
use crate::aws::timestamp;
use crate::aws::{AwsError, ErrorKind};

use super::alloc_fs::{self, FsError};
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
/// The file in the task's directory (`<alloc_dir>/<task>/`) that keeps its stream positions.
pub const POSITION_FILE: &str = ".nomad-driver-ecs-logpos.json";
/// A position file larger than this is ignored (read from the start instead).
const POSITION_FILE_CAP: u64 = 1024 * 1024;
/// What Nomad sends as both paths when the task's `logs { disabled = true }`.
const DEV_NULL: &str = "/dev/null";

/// One container's CloudWatch Logs stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSource {
    pub container: String,
    pub group: String,
    pub stream: String,
    /// `awslogs-region`, when the group lives in another region than the task. Written by the
    /// task definition's author: see [`source_region`] before it picks an endpoint.
    pub region: Option<String>,
}

/// The region whose CloudWatch Logs endpoint serves `source`: its `awslogs-region`, else the
/// task's region. Only a well-formed region name may pick the endpoint's host; anything else is
/// an error saying which container and what is wrong (the stream must then not be read).
pub fn source_region(source: &LogSource, task_region: &str) -> Result<String, String> {
    match &source.region {
        Some(r) if is_valid_region(r) => Ok(r.clone()),
        Some(r) => Err(format!(
            "container {} of the task definition: awslogs-region {} is not a valid AWS region name \
             (like \"us-east-1\"); its CloudWatch Logs stream is not tailed, fix awslogs-region in \
             the task definition",
            quoted(&source.container),
            quoted(r)
        )),
        None if is_valid_region(task_region) => Ok(task_region.to_string()),
        None => Err(format!(
            "container {}: the task's region {} is not a valid AWS region name; its CloudWatch \
             Logs stream is not tailed",
            quoted(&source.container),
            quoted(task_region)
        )),
    }
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

/// Where a task's stream positions are kept: [`POSITION_FILE`] in the task's own directory on
/// the host, `<alloc_dir>/<task>/`, which no task of the allocation can write (unlike
/// `alloc/logs`, where the FIFOs are). Reached and written without following links
/// ([`alloc_fs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PositionStore {
    alloc_dir: PathBuf,
    task: String,
    /// After a failed save: the error (warned about once) and when to try again.
    failed: Option<(String, Instant)>,
}

impl PositionStore {
    /// None when Nomad sent no allocation directory or task name: positions are not kept then.
    pub fn new(alloc_dir: &str, task: &str) -> Option<PositionStore> {
        (!alloc_dir.is_empty() && !task.is_empty()).then(|| PositionStore {
            alloc_dir: PathBuf::from(alloc_dir),
            task: task.to_string(),
            failed: None,
        })
    }

    /// `<alloc_dir>/<task>/.nomad-driver-ecs-logpos.json` (for messages and tests).
    pub fn path(&self) -> PathBuf {
        self.alloc_dir.join(&self.task).join(POSITION_FILE)
    }

    /// The saved positions; none when there is no file yet, or it is unusable (a warning says
    /// why: not a regular file, larger than 1 MiB, not the JSON this driver writes).
    pub fn load(&self) -> HashMap<String, Position> {
        let read = alloc_fs::task_dir(&self.alloc_dir, &self.task)
            .and_then(|dir| dir.read_bounded(OsStr::new(POSITION_FILE), POSITION_FILE_CAP));
        match read {
            Ok(bytes) => parse_positions(&bytes).unwrap_or_else(|| {
                log::warn!("ignoring unreadable log position file {}", self.path().display());
                HashMap::new()
            }),
            Err(FsError::Missing { .. }) => HashMap::new(),
            Err(e) => {
                log::warn!(
                    "ignoring log position file {}: {e}; the streams are read from the start",
                    self.path().display()
                );
                HashMap::new()
            }
        }
    }

    fn save(&self, positions: &BTreeMap<String, Position>) -> Result<(), FsError> {
        alloc_fs::task_dir(&self.alloc_dir, &self.task)?
            .replace_file(OsStr::new(POSITION_FILE), &encode_positions(positions))
    }

    /// Saves the positions unless a failed save is retried too soon. True when saved; a failure
    /// is warned about when it differs from the last one.
    fn save_when_due(&mut self, positions: &BTreeMap<String, Position>, task_id: &str) -> bool {
        if self.failed.as_ref().is_some_and(|(_, at)| Instant::now() < *at) {
            return false;
        }
        match self.save(positions) {
            Ok(()) => {
                self.failed = None;
                true
            }
            Err(e) => {
                let msg = e.to_string();
                if self.failed.as_ref().map(|(m, _)| m) != Some(&msg) {
                    log::warn!(task_id = task_id; "cannot save the log position to {}: {msg}", self.path().display());
                }
                self.failed = Some((msg, Instant::now() + REOPEN_EVERY));
                false
            }
        }
    }
}

/// The streams' positions from a position file; None if it is not one.
fn parse_positions(bytes: &[u8]) -> Option<HashMap<String, Position>> {
    let v = serde_json::from_slice::<Value>(bytes).ok()?;
    let streams = v.get("streams")?.as_object()?;
    Some(
        streams
            .iter()
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
            .collect(),
    )
}

fn encode_positions(positions: &BTreeMap<String, Position>) -> Vec<u8> {
    let streams: serde_json::Map<String, Value> = positions
        .iter()
        .map(|(s, p)| {
            (
                s.clone(),
                json!({"token": p.token, "last_ts": p.last_ts, "at_last_ts": p.at_last_ts}),
            )
        })
        .collect();
    json!({"version": 1, "streams": streams}).to_string().into_bytes()
}

/// Which of a task's FIFOs a [`Writer`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Stdout,
    Stderr,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Which::Stdout => "stdout",
            Which::Stderr => "stderr",
        }
    }

    /// What the driver writes there, for messages.
    fn carries(self) -> &'static str {
        match self {
            Which::Stdout => "the task's logs",
            Which::Stderr => "the task's lifecycle lines",
        }
    }
}

/// Where a [`Writer`]'s bytes go.
#[derive(Debug)]
enum Sink {
    /// The task's FIFO, below the allocation directory Nomad named (trusted; may be empty).
    Fifo { path: PathBuf, alloc_dir: PathBuf },
    /// Nowhere: no path, `/dev/null` (logs disabled) or a refused path.
    Discard,
}

/// A task's FIFO, written without ever blocking, opened only when it is a FIFO
/// ([`alloc_fs::open_fifo_for_write`]).
struct Writer {
    which: Which,
    sink: Sink,
    file: Option<File>,
    pending: Vec<u8>,
    next_open: Instant,
    cap: usize,
    dropped: u64,
    /// Why the path was refused, until the tail has published it as a task event.
    refusal: Option<String>,
    /// The last error that may pass (logged when it changes, not every second).
    last_error: Option<String>,
}

impl Writer {
    fn new(which: Which, path: &str, alloc_dir: &str, cap: usize) -> Writer {
        let sink = if path.is_empty() || path == DEV_NULL {
            Sink::Discard
        } else {
            Sink::Fifo {
                path: PathBuf::from(path),
                alloc_dir: PathBuf::from(alloc_dir),
            }
        };
        Writer {
            which,
            sink,
            file: None,
            pending: Vec::new(),
            next_open: Instant::now(),
            cap,
            dropped: 0,
            refusal: None,
            last_error: None,
        }
    }

    /// Nothing will ever be written (no path, logs disabled, or the path was refused).
    fn discards(&self) -> bool {
        matches!(self.sink, Sink::Discard)
    }

    /// Queues bytes; past the cap, the oldest whole lines go (counted in `dropped`).
    fn push(&mut self, bytes: &[u8]) {
        if self.discards() {
            return;
        }
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

    /// Opens the FIFO when it is due (at most every second until it works). A path that is not
    /// a FIFO, or is reached through a link, is refused for good: `refusal` says why.
    fn open(&mut self) {
        let Sink::Fifo { path, alloc_dir } = &self.sink else {
            return;
        };
        if self.file.is_some() || Instant::now() < self.next_open {
            return;
        }
        match alloc_fs::open_fifo_for_write(path, alloc_dir) {
            Ok(f) => {
                self.file = Some(f);
                self.last_error = None;
            }
            // No FIFO yet, or no reader yet (logmon restarts): try again in a second.
            Err(e) if e.is_not_ready() => self.next_open = Instant::now() + REOPEN_EVERY,
            Err(e @ FsError::Io { .. }) => {
                let msg = e.to_string();
                if self.last_error.as_deref() != Some(msg.as_str()) {
                    log::warn!(
                        "cannot open the task's {} FIFO, trying again every second: {msg}",
                        self.which.name()
                    );
                    self.last_error = Some(msg);
                }
                self.next_open = Instant::now() + REOPEN_EVERY;
            }
            Err(e) => {
                self.refusal = Some(refusal(self.which, path, &e));
                self.sink = Sink::Discard;
                self.pending.clear();
            }
        }
    }

    /// Writes what it can now. True when nothing is left pending.
    fn flush(&mut self) -> bool {
        self.open();
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

/// The task event for a refused FIFO path, in the operator's words.
fn refusal(which: Which, path: &Path, e: &FsError) -> String {
    let (name, carries, shown) = (which.name(), which.carries(), path.display());
    match e {
        FsError::WrongKind { at, found, .. } if at == path => {
            format!("{name} path {shown} is not a FIFO (it is {found}); the driver will not write {carries} there")
        }
        FsError::WrongKind { at, found, expected } => format!(
            "{name} path {shown} is refused: {} on the way is {found}, not {expected}; the driver will \
             not write {carries} there",
            at.display()
        ),
        other => format!("{name} path {shown} is refused ({other}); the driver will not write {carries} there"),
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
    positions: Option<PositionStore>,
    saved: BTreeMap<String, Position>,
    stop_at: Option<Instant>,
    notify: Notify,
}

/// Publishes a task event for one task (e.g. "stdout path ... is not a FIFO").
pub type Notify = Arc<dyn Fn(String) + Send + Sync>;

/// Registration of one task with the tail.
pub struct Registration {
    pub task_id: String,
    /// Nomad's task name: the task's directory `<alloc_dir>/<task name>` keeps the positions.
    pub task_name: String,
    /// Nomad's allocation directory (TaskConfig.alloc_dir); empty: positions are not kept.
    pub alloc_dir: String,
    pub stdout_path: String,
    pub stderr_path: String,
    /// Each stream with the client for its region; empty: lifecycle lines only.
    pub streams: Vec<(LogSource, Arc<LogsClient>)>,
    pub interval: Duration,
    /// Tells Nomad about a FIFO path that is refused (once per registration and path).
    pub notify: Notify,
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
        let stdout = Writer::new(Which::Stdout, &r.stdout_path, &r.alloc_dir, STDOUT_BUFFER);
        let stderr = Writer::new(Which::Stderr, &r.stderr_path, &r.alloc_dir, STDERR_BUFFER);
        let mut sources = r.streams;
        if stdout.discards() && !sources.is_empty() {
            // Logs disabled (Nomad's /dev/null) or no path: nothing to read the streams for.
            log::debug!(task_id = r.task_id.as_str(); "stdout path {:?}: not reading the task's CloudWatch Logs streams", r.stdout_path);
            sources.clear();
        }
        let positions = if sources.is_empty() {
            None
        } else {
            PositionStore::new(&r.alloc_dir, &r.task_name)
        };
        let saved: HashMap<String, Position> = positions.as_ref().map(PositionStore::load).unwrap_or_default();
        let now = Instant::now();
        let streams = sources
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
                stdout,
                stderr,
                streams,
                positions,
                saved,
                stop_at: None,
                notify: r.notify,
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
        let mut refused: Vec<(Notify, String)> = Vec::new();
        for (id, t) in tail.lock().iter_mut() {
            t.stderr.flush();
            let stdout_flushed = t.stdout.flush();
            for w in [&mut t.stdout, &mut t.stderr] {
                if let Some(why) = w.refusal.take() {
                    log::warn!(task_id = id.as_str(); "{why}");
                    refused.push((Arc::clone(&t.notify), why));
                }
            }
            if t.stdout.discards() && !t.streams.is_empty() {
                // The stdout path was refused: the streams have nowhere to go.
                t.streams.clear();
                t.positions = None;
            }
            if stdout_flushed {
                for s in &mut t.streams {
                    s.written = s.fetched.clone();
                }
                let current: BTreeMap<String, Position> = t
                    .streams
                    .iter()
                    .map(|s| (s.source.stream.clone(), s.written.clone()))
                    .collect();
                if current != t.saved {
                    if let Some(p) = &mut t.positions {
                        if p.save_when_due(&current, id) {
                            t.saved = current;
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
        for (notify, why) in refused {
            notify(why);
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

    /// A fresh allocation directory: `<d>/alloc/logs` and the task directory `<d>/web`.
    fn alloc_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("logs-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("alloc/logs")).unwrap();
        std::fs::create_dir_all(d.join("web")).unwrap();
        d
    }

    fn some_positions() -> BTreeMap<String, Position> {
        let mut m = BTreeMap::new();
        m.insert(
            "web/app/1".to_string(),
            Position {
                token: Some("f/1".into()),
                last_ts: Some(17),
                at_last_ts: 2,
            },
        );
        m
    }

    #[test]
    fn positions_round_trip_in_the_task_directory() {
        let d = alloc_dir("pos");
        let store = PositionStore::new(d.to_str().unwrap(), "web").unwrap();
        assert_eq!(store.path(), d.join("web").join(POSITION_FILE));
        let m = some_positions();
        store.save(&m).unwrap();
        assert!(d.join("web").join(POSITION_FILE).is_file());
        assert!(
            std::fs::read_dir(d.join("alloc/logs")).unwrap().next().is_none(),
            "nothing is written where tasks can write"
        );
        let back: BTreeMap<String, Position> = store.load().into_iter().collect();
        assert_eq!(back, m);
        std::fs::write(store.path(), "garbage").unwrap();
        assert!(store.load().is_empty());
        assert!(
            PositionStore::new("", "web").is_none(),
            "no allocation directory: no positions"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn unsafe_or_huge_position_files_are_not_read() {
        let d = alloc_dir("pos-unsafe");
        let store = PositionStore::new(d.to_str().unwrap(), "web").unwrap();
        // Linked to /dev/zero: never read (it would never end).
        std::os::unix::fs::symlink("/dev/zero", store.path()).unwrap();
        assert!(store.load().is_empty());
        // Saving replaces the link, and never writes through it.
        store.save(&some_positions()).unwrap();
        assert!(std::fs::symlink_metadata(store.path()).unwrap().is_file());
        assert_eq!(store.load().len(), 1);
        // Larger than the cap: ignored.
        let mut big = encode_positions(&some_positions());
        big.extend(std::iter::repeat_n(b' ', POSITION_FILE_CAP as usize));
        std::fs::write(store.path(), &big).unwrap();
        assert!(store.load().is_empty());
        // The task directory itself replaced by a link: neither read nor written.
        let elsewhere = d.join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::remove_dir_all(d.join("web")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, d.join("web")).unwrap();
        assert!(store.save(&some_positions()).is_err());
        assert!(std::fs::read_dir(&elsewhere).unwrap().next().is_none());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_symlink_at_the_fifo_path_is_refused_once_and_nothing_written() {
        let d = alloc_dir("refuse");
        let victim = d.join("crontab");
        std::fs::write(&victim, "precious\n").unwrap();
        let fifo = d.join("alloc/logs/.web.stdout.fifo");
        std::os::unix::fs::symlink(&victim, &fifo).unwrap();
        let mut w = Writer::new(Which::Stdout, fifo.to_str().unwrap(), d.to_str().unwrap(), 1024);
        w.push(b"* * * * * root evil\n");
        assert!(w.flush(), "refused: nothing left pending");
        let why = w.refusal.take().expect("a refusal");
        assert_eq!(
            why,
            format!(
                "stdout path {} is not a FIFO (it is a symbolic link); the driver will not write the \
                 task's logs there",
                fifo.display()
            )
        );
        assert!(w.discards());
        w.push(b"more\n");
        assert!(w.flush() && w.refusal.is_none(), "said once");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn dev_null_is_never_opened() {
        let mut w = Writer::new(Which::Stdout, DEV_NULL, "", 1024);
        assert!(w.discards());
        w.push(b"x\n");
        assert!(w.flush() && w.refusal.is_none() && w.file.is_none());
    }

    #[test]
    fn only_a_valid_region_picks_the_logs_endpoint() {
        let source = |region: Option<&str>| LogSource {
            container: "app".into(),
            group: "/ecs/web".into(),
            stream: "web/app/1".into(),
            region: region.map(str::to_string),
        };
        let endpoint =
            |s: &LogSource| source_region(s, "us-east-1").map(|r| crate::aws::http::endpoint_for("logs", &r, false));
        assert_eq!(endpoint(&source(None)).unwrap(), "https://logs.us-east-1.amazonaws.com");
        assert_eq!(
            endpoint(&source(Some("eu-west-1"))).unwrap(),
            "https://logs.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            endpoint(&source(Some("cn-north-1"))).unwrap(),
            "https://logs.cn-north-1.amazonaws.com.cn"
        );
        for bad in ["evil.example.com#", "us-east-1.attacker.net", "evil.example.com/", ""] {
            let e = endpoint(&source(Some(bad))).unwrap_err();
            assert!(e.contains("container \"app\""), "{e}");
            assert!(e.contains(&format!("awslogs-region {}", quoted(bad))), "{e}");
            assert!(e.contains("is not a valid AWS region name"), "{e}");
        }
        let e = source_region(&source(Some("x\n\u{1b}[2J")), "us-east-1").unwrap_err();
        assert!(!e.contains('\n') && !e.contains('\u{1b}'), "escaped: {e}");
        assert!(source_region(&source(None), "bad.region/").is_err());
    }

    #[test]
    fn writer_buffers_without_a_reader_and_caps() {
        let mut w = Writer::new(Which::Stdout, "/nonexistent/dir/fifo", "", 10);
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
