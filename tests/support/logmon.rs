//! A model of Nomad's logmon, the reader side of a task's stdout and stderr FIFOs, written from
//! these Nomad files (the logic is the same at v1.9.7, v1.10.0 and v2.0.5):
//! `client/logmon/logmon.go` (Start, TaskLogger.IsRunning, logRotatorWrapper start/Close),
//! `client/lib/fifo/fifo_unix.go` (CreateAndRead, OpenReader) and
//! `client/allocrunner/taskrunner/logmon_hook.go` (which calls Start in the task's prestart hook,
//! on every start and restart of the task and again after an agent restart, and Stop in its stop
//! hook, once the task is done for good).
//!
//! The rules it follows:
//! - [`Logmon::start`] (prestart): the first time, or when *either* copy loop has ended, the old
//!   loops are closed (as in `stop`) and new ones started; while both loops run, nothing happens.
//! - A loop creates the FIFO (mode 0600) if it is missing, opens it for reading with a blocking
//!   open (which waits for a writer), then copies into the task's log until end of file, that is
//!   until every writer has closed it. After that the read side stays open and nobody reads.
//! - [`Logmon::stop`] (stop hook), both FIFOs at once: waits up to 2 s for the copy to end, then
//!   up to 2 s for the open to have completed (warning "timed out waiting for read-side of process
//!   output pipe to close" if it never did), then closes the read side.
//!
//! The model reads with a non-blocking descriptor after the blocking open (so that closing it is
//! possible while a writer stays); what it copies is kept per stream across restarts, like the
//! rotated log files.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `processOutputCloseTolerance` in logmon.go.
pub const CLOSE_TOLERANCE: Duration = Duration::from_secs(2);

/// One FIFO's copy loop (`logRotatorWrapper`).
struct Loop {
    path: PathBuf,
    /// The copy ended (`hasFinishedCopied`).
    finished: Arc<AtomicBool>,
    /// The open returned (`openCompleted`).
    opened: Arc<AtomicBool>,
    /// Told to close its read side; `closed` once it has.
    closing: Arc<AtomicBool>,
    closed: Arc<AtomicBool>,
    /// The read side once open (non-blocking), and the log it copies into.
    reader: Arc<Mutex<Option<File>>>,
    log: Arc<Mutex<Vec<u8>>>,
}

/// Copies what the FIFO holds now; true at end of file (no writer left). Logmon's blocking read
/// wakes as soon as the last writer closes; calling this before looking at a loop's state gives
/// the model the same promptness.
fn pump(reader: &Mutex<Option<File>>, log: &Mutex<Vec<u8>>, finished: &AtomicBool) {
    let mut guard = reader.lock().unwrap();
    let Some(r) = guard.as_mut() else { return };
    if finished.load(Ordering::SeqCst) {
        return;
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => {
                finished.store(true, Ordering::SeqCst);
                return;
            }
            Ok(n) => log.lock().unwrap().extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(_) => {
                finished.store(true, Ordering::SeqCst);
                return;
            }
        }
    }
}

impl Loop {
    fn start(path: &Path, log: Arc<Mutex<Vec<u8>>>) -> Loop {
        if !path.exists() {
            let ok = Command::new("mkfifo")
                .args(["-m", "600"])
                .arg(path)
                .status()
                .expect("mkfifo")
                .success();
            assert!(ok, "mkfifo {}", path.display());
        }
        let l = Loop {
            path: path.to_path_buf(),
            finished: Arc::new(AtomicBool::new(false)),
            opened: Arc::new(AtomicBool::new(false)),
            closing: Arc::new(AtomicBool::new(false)),
            closed: Arc::new(AtomicBool::new(false)),
            reader: Arc::default(),
            log,
        };
        let (shared, log) = (Arc::clone(&l.reader), Arc::clone(&l.log));
        let (p, finished, opened, closing, closed) = (
            l.path.clone(),
            Arc::clone(&l.finished),
            Arc::clone(&l.opened),
            Arc::clone(&l.closing),
            Arc::clone(&l.closed),
        );
        std::thread::spawn(move || {
            let copy = || -> Option<()> {
                // Blocks until a writer opens the FIFO.
                let blocking = File::open(&p).ok()?;
                let reader = OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(format!("/proc/self/fd/{}", blocking.as_raw_fd()))
                    .ok()?;
                drop(blocking);
                *shared.lock().unwrap() = Some(reader);
                opened.store(true, Ordering::SeqCst);
                // Copies until end of file; the read side then stays open, unread, until closed.
                while !closing.load(Ordering::SeqCst) {
                    pump(&shared, &log, &finished);
                    std::thread::sleep(Duration::from_millis(5));
                }
                shared.lock().unwrap().take();
                Some(())
            };
            copy();
            finished.store(true, Ordering::SeqCst);
            closed.store(true, Ordering::SeqCst);
        });
        l
    }

    fn running(&self) -> bool {
        pump(&self.reader, &self.log, &self.finished);
        !self.finished.load(Ordering::SeqCst)
    }

    /// `logRotatorWrapper.Close`; returns the warning logged, if any.
    fn close(&self) -> Option<String> {
        wait_until(CLOSE_TOLERANCE, || !self.running());
        if !wait_until(CLOSE_TOLERANCE, || self.opened.load(Ordering::SeqCst)) {
            // The open goes on blocking; should it ever return, nothing is copied any more.
            self.closing.store(true, Ordering::SeqCst);
            return Some(format!(
                "timed out waiting for read-side of process output pipe to close: {}",
                self.path.display()
            ));
        }
        self.closing.store(true, Ordering::SeqCst);
        wait_until(Duration::from_secs(5), || self.closed.load(Ordering::SeqCst));
        None
    }

    /// Ends a loop still blocked in its open (only when the model goes away).
    fn abandon(&self) {
        self.closing.store(true, Ordering::SeqCst);
        if !self.opened.load(Ordering::SeqCst) {
            let _ = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&self.path);
        }
    }
}

fn wait_until(limit: Duration, f: impl Fn() -> bool) -> bool {
    let until = Instant::now() + limit;
    while !f() {
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// A task's logmon: its two loops and what they copied.
pub struct Logmon {
    stdout: PathBuf,
    stderr: PathBuf,
    loops: Option<(Loop, Loop)>,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
    warnings: Vec<String>,
    /// Every loop ever started (to end those still blocked when the model goes).
    old: Vec<Loop>,
}

impl Logmon {
    pub fn new(stdout_fifo: &str, stderr_fifo: &str) -> Logmon {
        Logmon {
            stdout: PathBuf::from(stdout_fifo),
            stderr: PathBuf::from(stderr_fifo),
            loops: None,
            out: Arc::default(),
            err: Arc::default(),
            warnings: Vec::new(),
            old: Vec::new(),
        }
    }

    /// Both loops copy (`TaskLogger.IsRunning`).
    pub fn is_running(&self) -> bool {
        self.loops.as_ref().is_some_and(|(o, e)| o.running() && e.running())
    }

    /// The prestart hook's `Start`. True when it (re)started the loops.
    pub fn start(&mut self) -> bool {
        if self.loops.is_some() {
            if self.is_running() {
                return false;
            }
            self.close_loops();
        }
        let o = Loop::start(&self.stdout, Arc::clone(&self.out));
        let e = Loop::start(&self.stderr, Arc::clone(&self.err));
        self.loops = Some((o, e));
        true
    }

    /// The stop hook's `Stop`: how long it took.
    pub fn stop(&mut self) -> Duration {
        let t0 = Instant::now();
        self.close_loops();
        t0.elapsed()
    }

    fn close_loops(&mut self) {
        if let Some((o, e)) = self.loops.take() {
            let (wo, we) = std::thread::scope(|s| {
                let a = s.spawn(|| o.close());
                let b = s.spawn(|| e.close());
                (a.join().unwrap(), b.join().unwrap())
            });
            self.warnings.extend(wo.into_iter().chain(we));
            self.old.push(o);
            self.old.push(e);
        }
    }

    pub fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        lines(&self.out)
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        lines(&self.err)
    }
}

fn lines(log: &Mutex<Vec<u8>>) -> Vec<String> {
    String::from_utf8_lossy(&log.lock().unwrap())
        .lines()
        .map(str::to_string)
        .collect()
}

impl Drop for Logmon {
    fn drop(&mut self) {
        for l in self.old.iter().chain(self.loops.iter().flat_map(|(o, e)| [o, e])) {
            l.abandon();
        }
    }
}
