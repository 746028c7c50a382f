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

/// A FIFO, written without ever blocking, opened only when it is a FIFO
/// ([`alloc_fs::open_fifo_for_write`]). One per FIFO path, shared by every task entry that
/// names that path (a task restarted in place by Nomad gets a new task id and the same FIFOs).
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
    /// The last write found no reader (`EPIPE`): logmon is being restarted, or is gone.
    no_reader: bool,
    /// When to look again whether a held FIFO still has a reader, or its directory is gone.
    next_probe: Instant,
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
        let now = Instant::now();
        Writer {
            which,
            sink,
            file: None,
            pending: Vec::new(),
            next_open: now,
            cap,
            dropped: 0,
            refusal: None,
            last_error: None,
            no_reader: false,
            next_probe: now,
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
                self.no_reader = false;
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

    /// Writes what it can now (never opens). True when nothing is left pending. A write that
    /// finds no reader keeps the FIFO open: what the pipe holds stays there for the next reader
    /// (logmon restarting opens its reader again), and the bytes not written stay pending.
    fn flush(&mut self) -> bool {
        while !self.pending.is_empty() {
            let Some(f) = self.file.as_mut() else { return false };
            match f.write(&self.pending) {
                Ok(0) => return false,
                Ok(n) => {
                    self.pending.drain(..n);
                    self.no_reader = false;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                    self.no_reader = true;
                    return false;
                }
                Err(e) => {
                    log::debug!("writing the task's {} FIFO: {e}; opening it again", self.which.name());
                    self.file = None;
                    self.next_open = Instant::now() + REOPEN_EVERY;
                    return false;
                }
            }
        }
        true
    }

    /// The task instance writing here ended (its exit is about to reach Nomad): writes what it
    /// can and closes the FIFO, so that logmon's copy loop ends now and the next start of the
    /// task, if any, starts it again. A FIFO never opened is opened and closed once, which lets
    /// a logmon still waiting in `open` go (otherwise Nomad waits 2 s per FIFO at the task's
    /// stop, and warns). Bytes not written stay pending.
    fn release(&mut self) {
        self.flush();
        if self.file.take().is_some() {
            return;
        }
        if let Sink::Fifo { path, alloc_dir } = &self.sink {
            match alloc_fs::open_fifo_for_write(path, alloc_dir) {
                Ok(f) => drop(f),
                Err(e) => log::debug!("not releasing the task's {} FIFO: {e}", self.which.name()),
            }
        }
    }

    /// For a FIFO held by no running task: has its reader gone (logmon stopped or closed it),
    /// or its allocation directory? Looked at most every second.
    fn reader_gone(&mut self, now: Instant) -> bool {
        if self.no_reader {
            return true;
        }
        if now < self.next_probe {
            return false;
        }
        self.next_probe = now + REOPEN_EVERY;
        let gone = matches!(&self.sink, Sink::Fifo { alloc_dir, .. } if alloc_fs::is_gone(alloc_dir));
        gone || self
            .file
            .as_ref()
            .is_some_and(|f| matches!(alloc_fs::has_reader(f), Ok(false)))
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

/// One task instance (one Nomad task id) of the tail.
struct Tailed {
    /// The FIFOs it writes (keys of [`Tail::fifos`]); None: nowhere (no path, `/dev/null`).
    stdout: Option<PathBuf>,
    stderr: Option<PathBuf>,
    alloc_dir: PathBuf,
    /// Registered without logs (`stream_logs = false`): nothing written, only its FIFOs held
    /// while it runs and let go when it ends.
    quiet: bool,
    streams: Vec<Stream>,
    positions: Option<PositionStore>,
    saved: BTreeMap<String, Position>,
    /// When it finished: its streams are read until then (CloudWatch ingests with a delay).
    stop_at: Option<Instant>,
    /// When to look again whether its allocation directory is still there.
    next_gone_check: Instant,
    notify: Notify,
}

impl Tailed {
    fn running(&self) -> bool {
        self.stop_at.is_none()
    }

    fn writes(&self, path: &Path) -> bool {
        self.stdout.as_deref() == Some(path) || self.stderr.as_deref() == Some(path)
    }
}

/// What the tail's thread and the RPCs share: the task instances, and the FIFO writers by path.
///
/// How a FIFO is held follows Nomad's logmon (`client/logmon/logmon.go`, the same from v1.9.7
/// to v2.0.x): logmon's copy loop for a FIFO ends when the last writer closes it, and it opens
/// the FIFO again only when Nomad (re)starts the task (its prestart hook) and a loop has ended;
/// at the task's final stop it waits up to 2 s for each loop to end, and warns about a FIFO
/// never opened. So:
/// - a FIFO is open while any task instance writing it runs (a new instance of the same task
///   shares the writer: no close between two instances, the loop goes on);
/// - when an instance ends and no other running one writes its FIFOs, they are closed before
///   its exit reaches Nomad ([`LogTail::finish`]), so the loop ends before any restart's
///   prestart and that restart starts it again (a FIFO never opened is opened and closed once);
/// - lines that come later (the drain window) open it again; once open that way it is closed
///   only when its reader goes (logmon stopped) or its allocation directory does, never while a
///   reader may be a new loop waiting for the next instance;
/// - an instance is forgotten when its drain window is over, or its allocation directory is gone.
#[derive(Default)]
struct Tail {
    tasks: HashMap<String, Tailed>,
    fifos: HashMap<PathBuf, Writer>,
}

/// The key of a FIFO path in [`Tail::fifos`]; None for no path or `/dev/null`.
fn fifo_key(path: &str) -> Option<PathBuf> {
    (!path.is_empty() && path != DEV_NULL).then(|| PathBuf::from(path))
}

impl Tail {
    /// Does a running task instance write `path`?
    fn running_writer(&self, path: &Path) -> bool {
        self.tasks.values().any(|t| t.running() && t.writes(path))
    }

    fn register(&mut self, r: Registration, quiet: bool) {
        let now = Instant::now();
        let stdout = fifo_key(&r.stdout_path);
        let stderr = fifo_key(&r.stderr_path);
        for (path, which, cap) in [
            (&stdout, Which::Stdout, STDOUT_BUFFER),
            (&stderr, Which::Stderr, STDERR_BUFFER),
        ] {
            let Some(p) = path else { continue };
            match self.fifos.get_mut(p) {
                // Shared with an earlier instance of the task: open it now if it is not.
                Some(w) if !w.discards() => w.next_open = now,
                // New, or refused for an earlier instance: looked at afresh.
                _ => {
                    let w = Writer::new(which, &p.to_string_lossy(), &r.alloc_dir, cap);
                    self.fifos.insert(p.clone(), w);
                }
            }
        }
        let mut sources = r.streams;
        if (stdout.is_none() || quiet) && !sources.is_empty() {
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
        self.tasks.insert(
            r.task_id,
            Tailed {
                stdout,
                stderr,
                alloc_dir: PathBuf::from(&r.alloc_dir),
                quiet,
                streams,
                positions,
                saved: saved.into_iter().collect(),
                stop_at: None,
                next_gone_check: now + REOPEN_EVERY,
                notify: r.notify,
            },
        );
    }

    fn finish(&mut self, task_id: &str) {
        let Some(t) = self.tasks.get_mut(task_id) else { return };
        if t.stop_at.is_some() {
            return;
        }
        t.stop_at = Some(Instant::now() + DRAIN_AFTER_STOP);
        let paths: Vec<PathBuf> = [t.stdout.clone(), t.stderr.clone()].into_iter().flatten().collect();
        for p in paths {
            if !self.running_writer(&p) {
                if let Some(w) = self.fifos.get_mut(&p) {
                    w.release();
                }
            }
        }
    }

    /// A lifecycle line for the task's stderr FIFO.
    fn lifecycle(&mut self, ev: &TaskEvent) {
        let Some(t) = self.tasks.get(&ev.task_id) else { return };
        if t.quiet {
            return;
        }
        if let Some(w) = t.stderr.as_ref().and_then(|p| self.fifos.get_mut(p)) {
            w.push(lifecycle_line(ev).as_bytes());
        }
    }

    /// Nothing to do: the thread may sleep longer.
    fn is_idle(&self) -> bool {
        self.tasks.is_empty() && self.fifos.is_empty()
    }

    /// One round without CloudWatch: opens, writes and lets go of FIFOs, saves positions,
    /// forgets ended instances. Returns the refusals to publish as task events.
    fn settle(&mut self, now: Instant) -> Vec<(Notify, String)> {
        let Tail { tasks, fifos } = self;
        let running: Vec<PathBuf> = tasks
            .values()
            .filter(|t| t.running())
            .flat_map(|t| [t.stdout.clone(), t.stderr.clone()])
            .flatten()
            .collect();
        let mut refused: Vec<(Notify, String)> = Vec::new();
        for (path, w) in fifos.iter_mut() {
            let held_by_running = running.contains(path);
            if held_by_running || !w.pending.is_empty() {
                w.open();
            }
            w.flush();
            if !held_by_running && w.file.is_some() && w.reader_gone(now) {
                w.file = None;
            }
            if let Some(why) = w.refusal.take() {
                let writers = tasks.iter().filter(|(_, t)| t.writes(path));
                for (id, t) in writers {
                    if t.quiet {
                        log::debug!(task_id = id.as_str(); "{why}");
                    } else {
                        log::warn!(task_id = id.as_str(); "{why}");
                        refused.push((Arc::clone(&t.notify), why.clone()));
                    }
                }
            }
            if w.dropped > 0 {
                log::warn!("dropped {} lines nobody read from {}", w.dropped, path.display());
                w.dropped = 0;
            }
        }
        let mut done = Vec::new();
        for (id, t) in tasks.iter_mut() {
            let out = t.stdout.as_ref().and_then(|p| fifos.get(p));
            if out.is_none_or(Writer::discards) && !t.streams.is_empty() {
                // The stdout path was refused: the streams have nowhere to go.
                t.streams.clear();
                t.positions = None;
            }
            if out.is_some_and(|w| w.pending.is_empty()) {
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
            if t.stop_at.is_some_and(|at| now >= at) {
                done.push(id.clone());
            } else if now >= t.next_gone_check {
                t.next_gone_check = now + REOPEN_EVERY;
                if alloc_fs::is_gone(&t.alloc_dir) {
                    log::debug!(task_id = id.as_str(); "allocation directory {} is gone: not tailing the task any more", t.alloc_dir.display());
                    done.push(id.clone());
                }
            }
        }
        for id in done {
            tasks.remove(&id);
        }
        // A FIFO no instance writes any more is kept only while it is open and read (see above).
        fifos.retain(|path, w| {
            let keep = tasks.values().any(|t| t.writes(path)) || (w.file.is_some() && !w.reader_gone(now));
            if !keep && !w.pending.is_empty() {
                log::debug!(
                    "{} bytes for {} not written: nobody reads it any more",
                    w.pending.len(),
                    path.display()
                );
            }
            keep
        });
        refused
    }
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
    tasks: Mutex<Tail>,
    interval: Mutex<Duration>,
    started: std::sync::Once,
}

impl LogTail {
    pub fn new() -> Arc<LogTail> {
        Arc::new(LogTail {
            tasks: Mutex::new(Tail::default()),
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Tail> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts tailing a task (again, after a restart: resuming from its position file);
    /// lifecycle lines come from `events`. Its FIFOs are opened at once (shared with an
    /// earlier instance of the same task that writes the same paths).
    pub fn register(self: &Arc<Self>, r: Registration, events: &EventBus) {
        self.ensure_started(events);
        if let Ok(mut i) = self.interval.lock() {
            *i = r.interval;
        }
        self.lock().register(r, false);
    }

    /// A task whose logs are not streamed (`stream_logs = false`): nothing is read or written
    /// for it, but its FIFOs are held while it runs and closed when it finishes, so Nomad's
    /// logmon is never left waiting for a writer that never comes (2 s and a warning per FIFO
    /// at every stop). `/dev/null` paths (logs disabled) are left alone.
    pub fn register_quiet(
        self: &Arc<Self>,
        task_id: &str,
        alloc_dir: &str,
        stdout_path: &str,
        stderr_path: &str,
        events: &EventBus,
    ) {
        if fifo_key(stdout_path).is_none() && fifo_key(stderr_path).is_none() {
            return;
        }
        self.ensure_started(events);
        let r = Registration {
            task_id: task_id.to_string(),
            task_name: String::new(),
            alloc_dir: alloc_dir.to_string(),
            stdout_path: stdout_path.to_string(),
            stderr_path: stderr_path.to_string(),
            streams: Vec::new(),
            interval: Duration::from_secs(2),
            notify: Arc::new(|_| {}),
        };
        self.lock().register(r, true);
    }

    /// The task stopped (call before its exit reaches Nomad): its FIFOs are closed now unless
    /// another running instance writes them, and its streams are read a little longer.
    pub fn finish(&self, task_id: &str) {
        self.lock().finish(task_id);
    }
}

fn run(tail: std::sync::Weak<LogTail>, mut events: futures_channel::mpsc::UnboundedReceiver<TaskEvent>) {
    let mut window_start = Instant::now();
    let mut calls_in_window = 0u32;
    loop {
        let Some(tail) = tail.upgrade() else { return };
        // Lifecycle lines to the stderr FIFOs.
        while let Ok(ev) = events.try_recv() {
            tail.lock().lifecycle(&ev);
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
            let mut guard = tail.lock();
            let Tail { tasks, fifos } = &mut *guard;
            for (id, t) in tasks.iter_mut() {
                if t.stop_at.is_some_and(|at| now >= at) {
                    continue;
                }
                let paused = t
                    .stdout
                    .as_ref()
                    .and_then(|p| fifos.get(p))
                    .is_some_and(|w| w.pending.len() >= STDOUT_BUFFER);
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
            let mut guard = tail.lock();
            let Tail { tasks, fifos } = &mut *guard;
            let Some(t) = tasks.get_mut(&id) else { continue };
            let Some(s) = t.streams.get_mut(i) else { continue };
            match result {
                Ok((lines, next)) => {
                    s.backoff = Duration::ZERO;
                    if !lines.is_empty() {
                        // More may be waiting: come back soon.
                        s.due = Instant::now();
                        if let Some(w) = t.stdout.as_ref().and_then(|p| fifos.get_mut(p)) {
                            w.push(lines.as_bytes());
                        }
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
        // Write, save positions, let ended instances and unread FIFOs go.
        let refused = tail.lock().settle(Instant::now());
        for (notify, why) in refused {
            notify(why);
        }
        let idle = tail.lock().is_idle();
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
        w.open();
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
        w.open();
        assert!(w.flush() && w.refusal.is_none(), "said once");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn dev_null_is_never_opened() {
        let mut w = Writer::new(Which::Stdout, DEV_NULL, "", 1024);
        assert!(w.discards());
        w.push(b"x\n");
        w.open();
        assert!(w.flush() && w.refusal.is_none() && w.file.is_none());
        // Nor by the tail: no FIFO writer, no positions, no streams.
        let mut tail = Tail::default();
        let mut r = registration("t1", Path::new("/tmp/no-such-alloc"));
        r.stdout_path = DEV_NULL.into();
        r.stderr_path = DEV_NULL.into();
        tail.register(r, false);
        assert!(tail.fifos.is_empty());
        let t = &tail.tasks["t1"];
        assert!(t.stdout.is_none() && t.stderr.is_none() && t.positions.is_none() && t.streams.is_empty());
        tail.finish("t1");
        assert!(tail.settle(Instant::now()).is_empty());
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
        w.open();
        assert!(!w.flush(), "no reader: nothing written, nothing lost");
        assert_eq!(w.pending.len(), 10);
        w.push(b"cc\n");
        assert_eq!(w.pending, b"bbbb\ncc\n", "oldest line dropped past the cap");
        assert_eq!(w.dropped, 1);
    }

    /// A registration without streams for the task `web` of the allocation directory `d`.
    fn registration(id: &str, d: &Path) -> Registration {
        Registration {
            task_id: id.into(),
            task_name: "web".into(),
            alloc_dir: d.display().to_string(),
            stdout_path: d.join("alloc/logs/.web.stdout.fifo").display().to_string(),
            stderr_path: d.join("alloc/logs/.web.stderr.fifo").display().to_string(),
            streams: Vec::new(),
            interval: Duration::from_millis(200),
            notify: Arc::new(|_| {}),
        }
    }

    /// The task's two FIFOs in `d`, each with a reader that never blocks.
    fn fifos_with_readers(d: &Path) -> (File, File) {
        let open = |which: &str| {
            let p = d.join(format!("alloc/logs/.web.{which}.fifo"));
            assert!(std::process::Command::new("mkfifo").arg(&p).status().unwrap().success());
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&p)
                .unwrap()
        };
        (open("stdout"), open("stderr"))
    }

    /// What a non-blocking reader finds now: Some(bytes) (empty at end of file, i.e. no writer
    /// left), None when a writer holds the FIFO and nothing is there.
    fn read_now(r: &mut File) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 4096];
        match std::io::Read::read(r, &mut buf) {
            Ok(n) => Some(buf[..n].to_vec()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
            Err(e) => panic!("{e}"),
        }
    }

    use std::os::unix::fs::OpenOptionsExt;

    #[test]
    fn an_ended_instance_closes_its_fifos_unless_a_new_one_writes_them() {
        let d = alloc_dir("handover");
        let (mut out, mut err) = fifos_with_readers(&d);
        let mut tail = Tail::default();
        tail.register(registration("a/web/1", &d), false);
        tail.settle(Instant::now());
        assert_eq!(read_now(&mut out), None, "opened at once, before any line");
        assert_eq!(read_now(&mut err), None);
        // It ends: both FIFOs are closed at once (logmon's copy loops end before Nomad hears).
        tail.finish("a/web/1");
        assert_eq!(read_now(&mut out), Some(vec![]), "end of file");
        assert_eq!(read_now(&mut err), Some(vec![]));
        // Nomad starts the task again in place: new id, same FIFOs, opened at once.
        tail.register(registration("a/web/2", &d), false);
        assert_eq!(tail.fifos.len(), 2, "one writer per FIFO path");
        tail.settle(Instant::now());
        assert_eq!(read_now(&mut out), None);
        // The new instance ends while a third runs: the shared FIFO stays open.
        tail.register(registration("a/web/3", &d), false);
        tail.finish("a/web/2");
        assert_eq!(read_now(&mut out), None, "a running instance still writes it");
        // The old instances' drain windows pass: they are forgotten, the FIFO stays open.
        tail.settle(Instant::now() + DRAIN_AFTER_STOP + Duration::from_secs(1));
        assert_eq!(tail.tasks.keys().collect::<Vec<_>>(), ["a/web/3"]);
        assert_eq!(read_now(&mut out), None);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn finishing_releases_a_reader_waiting_for_a_writer_that_never_came() {
        let d = alloc_dir("release");
        let p = d.join("alloc/logs/.web.stdout.fifo");
        assert!(std::process::Command::new("mkfifo").arg(&p).status().unwrap().success());
        // As logmon does: a blocking open, then a copy until end of file.
        let (tx, rx) = std::sync::mpsc::channel();
        let reader_path = p.clone();
        let reader = std::thread::Builder::new().name("fifo-reader".into());
        reader
            .spawn(move || {
                let mut f = File::open(&reader_path).unwrap();
                let mut all = Vec::new();
                std::io::Read::read_to_end(&mut f, &mut all).unwrap();
                tx.send(all).unwrap();
            })
            .unwrap();
        let mut tail = Tail::default();
        let mut r = registration("a/web/1", &d);
        r.stderr_path = DEV_NULL.into();
        tail.register(r, true);
        // Never opened (no round ran): finishing opens and closes it once.
        wait_until_thread_sleeps("fifo-reader");
        tail.finish("a/web/1");
        let got = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the reader was released");
        assert!(got.is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }

    /// Waits until this process's thread `name` sleeps (the FIFO reader blocked in `open`:
    /// nothing else it does before can sleep).
    fn wait_until_thread_sleeps(name: &str) {
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
                let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
                let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
                let state = stat.rsplit(')').next().unwrap_or("").trim_start().chars().next();
                if comm.trim() == name && state == Some('S') {
                    return;
                }
            }
            std::thread::yield_now();
        }
        panic!("thread {name} never waited");
    }

    #[test]
    fn lines_after_the_end_reopen_the_fifo_which_is_held_until_its_reader_goes() {
        let d = alloc_dir("held");
        let (mut out, err) = fifos_with_readers(&d);
        let mut tail = Tail::default();
        tail.register(registration("a/web/1", &d), false);
        tail.settle(Instant::now());
        tail.finish("a/web/1");
        assert_eq!(read_now(&mut out), Some(vec![]));
        // A late line (the drain window) opens it again.
        tail.fifos
            .get_mut(&d.join("alloc/logs/.web.stdout.fifo"))
            .unwrap()
            .push(b"late\n");
        tail.settle(Instant::now());
        assert_eq!(read_now(&mut out), Some(b"late\n".to_vec()));
        // The drain window passes: the instance goes; the open FIFO stays while it is read ...
        let later = Instant::now() + DRAIN_AFTER_STOP + Duration::from_secs(1);
        tail.settle(later);
        assert!(tail.tasks.is_empty());
        assert_eq!(
            tail.fifos.len(),
            1,
            "stdout, opened again, is held; stderr, closed, is let go"
        );
        assert_eq!(read_now(&mut out), None, "still held");
        // ... and is let go when its reader closes (logmon stopped).
        drop(out);
        tail.settle(later + Duration::from_secs(2));
        assert!(tail.is_idle());
        drop(err);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn an_ended_instance_with_nobody_reading_is_forgotten_after_its_drain() {
        let d = alloc_dir("forget");
        let mut tail = Tail::default();
        tail.register(registration("a/web/1", &d), false);
        let ev = TaskEvent {
            task_id: "a/web/1".into(),
            alloc_id: "a".into(),
            task_name: "web".into(),
            timestamp: UNIX_EPOCH,
            message: "Started".into(),
            annotations: BTreeMap::new(),
        };
        tail.lifecycle(&ev);
        tail.settle(Instant::now());
        tail.finish("a/web/1");
        tail.settle(Instant::now() + DRAIN_AFTER_STOP + Duration::from_secs(1));
        assert!(tail.is_idle(), "no FIFO, no reader: nothing kept, lines or not");
        // A running instance whose allocation directory is removed is forgotten too.
        tail.register(registration("a/web/2", &d), false);
        tail.settle(Instant::now());
        assert!(!tail.is_idle());
        std::fs::remove_dir_all(&d).unwrap();
        tail.settle(Instant::now() + Duration::from_secs(2));
        assert!(tail.is_idle());
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
