//! `credential_process` of a shared-config profile: run the command (through `sh -c`, as the
//! Go SDK does), read its JSON (`Version` 1, `AccessKeyId`, `SecretAccessKey`, optional
//! `SessionToken` and `Expiration`) from stdout. The command's stdout is never quoted in an
//! error (it holds the secret); a short excerpt of its stderr is.
//!
//! The timeout covers the whole run: the command exiting *and* its stdout and stderr reaching
//! end-of-file. The command runs in a process group of its own, so that whatever it starts can
//! be killed with it. Once it has exited, anything it left running that still holds its output
//! open gets [`LINGER`] to close it and is then killed, and the output written so far is used:
//! a helper that starts a background process without redirecting its output does not make
//! every AWS call wait. No lock is held while waiting: two threads read the pipes into shared
//! buffers and report end-of-file over a channel. (A process that leaves the group — `setsid`,
//! as daemons do — is out of reach: if it keeps the output open, the call still returns on
//! time and one reader thread waits until that process closes it.)

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{cred_error, parse_timestamp, Credentials};
use crate::aws::error::{truncate_chars, AwsError};

/// How long the command may take, output included.
pub const TIMEOUT: Duration = Duration::from_secs(60);
/// Once the command has exited, how long what it left running may keep its output open.
pub const LINGER: Duration = Duration::from_secs(1);
/// The most of stdout (and of stderr) that is read.
const MAX_OUTPUT: usize = 64 * 1024;
/// How often the command is checked for having exited.
const POLL: Duration = Duration::from_millis(20);

pub fn run(command: &str, profile: &str, timeout: Duration) -> Result<Credentials, AwsError> {
    let fail = |what: String| cred_error(format!("credential_process of profile {profile}: {what}"));
    let deadline = Instant::now() + timeout;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| fail(format!("cannot start it with sh -c: {e}")))?;
    let mut output = Output::new();
    let stdout = output.capture(child.stdout.take());
    let stderr = output.capture(child.stderr.take());
    let (stdout, stderr) = match (stdout, stderr) {
        (Ok(out), Ok(err)) => (out, err),
        (Err(e), _) | (_, Err(e)) => {
            kill(&mut child);
            return Err(fail(format!("cannot start a thread to read its output: {e}")));
        }
    };
    let excerpt = |buf: &Buffer| {
        let err = take(buf);
        truncate_chars(String::from_utf8_lossy(&err).trim(), 300)
    };

    // 1. The command exits, or is killed at the deadline.
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => {
                kill(&mut child);
                return Err(fail(format!("cannot wait for it: {e}")));
            }
        }
        let now = Instant::now();
        if now >= deadline {
            kill(&mut child);
            let err = excerpt(&stderr);
            let said = if err.is_empty() {
                String::new()
            } else {
                format!(" (stderr: {err})")
            };
            return Err(fail(format!(
                "did not finish within {} s; it was killed{said}",
                timeout.as_secs_f64()
            )));
        }
        let next = (now + POLL).min(deadline);
        if output.wait_closed(next) {
            // Its output is closed but it still runs: nothing to wait for but the time.
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    };

    // 2. Its output reaches end-of-file. What it left running and still holding the output
    //    is killed after LINGER; the output written until then is what counts.
    if !output.wait_closed((Instant::now() + LINGER).min(deadline)) {
        // The command is reaped, but its group lives on while a member does (and its id is not
        // given to another process meanwhile).
        kill_group(child.id());
        log::warn!(
            "credential_process of profile {profile}: it exited but processes it left running kept its output open; its process group was killed"
        );
        output.wait_closed((Instant::now() + LINGER).min(deadline));
    }

    let stdout = take(&stdout);
    if stdout.len() > MAX_OUTPUT {
        return Err(fail(format!("its output is longer than {} KiB", MAX_OUTPUT / 1024)));
    }
    if !status.success() {
        return Err(fail(format!("exited with {status}: {}", excerpt(&stderr))));
    }
    parse_output(&stdout, profile).map_err(fail)
}

/// Kills the command and everything in its process group, and reaps it.
fn kill(child: &mut Child) {
    kill_group(child.id());
    let _ = child.kill();
    let _ = child.wait();
}

/// SIGKILL to process group `pgid`, through the shell's `kill` builtin: std has no `killpg`
/// and this crate has no `unsafe`.
fn kill_group(pgid: u32) {
    let _ = Command::new("sh")
        .args(["-c", "kill -s KILL -- \"-$1\" 2>/dev/null", "sh"])
        .arg(pgid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

type Buffer = Arc<Mutex<Vec<u8>>>;

fn take(buf: &Buffer) -> Vec<u8> {
    std::mem::take(&mut *buf.lock().unwrap_or_else(|p| p.into_inner()))
}

/// The command's pipes, each read by a thread of its own into a [`Buffer`] (at most
/// `MAX_OUTPUT` + 1 bytes, so that too much shows); each thread says on `closed` when its pipe
/// reached end-of-file (or failed, or gave too much).
struct Output {
    closed: Receiver<()>,
    tx: Sender<()>,
    open: usize,
}

impl Output {
    fn new() -> Self {
        let (tx, closed) = mpsc::channel();
        Output { closed, tx, open: 0 }
    }

    fn capture(&mut self, pipe: Option<impl Read + Send + 'static>) -> std::io::Result<Buffer> {
        let buf = Buffer::default();
        let Some(mut pipe) = pipe else { return Ok(buf) };
        let (into, done) = (Arc::clone(&buf), self.tx.clone());
        std::thread::Builder::new()
            .name("credential_process output".into())
            .spawn(move || {
                let mut chunk = [0u8; 8192];
                loop {
                    match pipe.read(&mut chunk) {
                        Ok(0) => break,
                        Ok(n) => {
                            let mut b = into.lock().unwrap_or_else(|p| p.into_inner());
                            let room = (MAX_OUTPUT + 1).saturating_sub(b.len());
                            b.extend_from_slice(&chunk[..n.min(room)]);
                            if b.len() > MAX_OUTPUT {
                                break;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
                let _ = done.send(());
            })?;
        self.open += 1;
        Ok(buf)
    }

    /// Waits until both pipes are closed or `until` passes; true when they are closed.
    fn wait_closed(&mut self, until: Instant) -> bool {
        while self.open > 0 {
            let now = Instant::now();
            if now >= until {
                return false;
            }
            match self.closed.recv_timeout(until - now) {
                Ok(()) => self.open -= 1,
                Err(RecvTimeoutError::Timeout) => return false,
                // Cannot happen (`tx` is ours); treat it as closed.
                Err(RecvTimeoutError::Disconnected) => self.open = 0,
            }
        }
        true
    }
}

/// The command's JSON. Err says what is wrong without quoting it.
pub fn parse_output(stdout: &[u8], profile: &str) -> Result<Credentials, String> {
    let v: serde_json::Value = serde_json::from_slice(stdout).map_err(|e| format!("its output is not JSON ({e})"))?;
    match v.get("Version").and_then(|x| x.as_i64()) {
        Some(1) => {}
        Some(n) => return Err(format!("its output has Version {n}; only 1 is supported")),
        None => return Err("its output lacks \"Version\": 1".into()),
    }
    let field = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let key = field("AccessKeyId").ok_or("its output lacks AccessKeyId")?;
    let secret = field("SecretAccessKey").ok_or("its output lacks SecretAccessKey")?;
    let expiry = match field("Expiration") {
        Some(e) => Some(parse_timestamp(&e).ok_or("its output's Expiration is not an ISO 8601 time")?),
        None => None,
    };
    let creds = Credentials::new(
        key,
        secret,
        field("SessionToken"),
        expiry,
        format!("credential_process of profile {profile}"),
    );
    // No Expiration: long-lived keys, as the Go and Java SDKs take them; the command is not
    // run again for each AWS call.
    Ok(if expiry.is_none() {
        creds.kept_without_expiry()
    } else {
        creds
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_parses() {
        let c = run(
            r#"printf '{"Version": 1, "AccessKeyId": "AKIDPROC", "SecretAccessKey": "s3cr3t", "SessionToken": "tok", "Expiration": "2030-01-01T00:00:00Z"}'"#,
            "p",
            TIMEOUT,
        )
        .unwrap();
        assert_eq!(c.access_key_id, "AKIDPROC");
        assert_eq!(c.session_token(), Some("tok"));
        assert!(c.expiry.is_some());
    }

    #[test]
    fn failures_never_quote_stdout() {
        let e = run(
            "echo '{\"Version\": 2, \"SecretAccessKey\": \"s3cr3t\"}'; echo oops >&2",
            "p",
            TIMEOUT,
        )
        .unwrap_err();
        assert!(e.message.contains("Version 2"), "{e}");
        assert!(!e.message.contains("s3cr3t"), "{e}");
        let e = run("echo broken >&2; exit 3", "p", TIMEOUT).unwrap_err();
        assert!(
            e.message.contains("broken") && e.message.contains("exit status: 3"),
            "{e}"
        );
        let e = run(
            "echo '{\"Version\":1,\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s3cr3t\"' ",
            "p",
            TIMEOUT,
        )
        .unwrap_err();
        assert!(!e.message.contains("s3cr3t"), "{e}");
    }

    #[test]
    fn a_hanging_command_is_killed() {
        let e = run("sleep 30", "p", Duration::from_millis(200)).unwrap_err();
        assert!(e.message.contains("killed"), "{e}");
    }

    /// Runs `command` on a thread of its own; its result, or a panic if it takes longer than
    /// `limit` (so that a regression fails instead of hanging the test run).
    fn run_within(command: String, timeout: Duration, limit: Duration) -> (Result<Credentials, AwsError>, Duration) {
        let (tx, rx) = std::sync::mpsc::channel();
        let started = Instant::now();
        std::thread::spawn(move || {
            let _ = tx.send(run(&command, "p", timeout));
        });
        let result = rx
            .recv_timeout(limit)
            .unwrap_or_else(|_| panic!("credential_process still running after {limit:?}"));
        (result, started.elapsed())
    }

    /// A file for the command to write the pid of its background child to.
    fn pid_file(tag: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("credential-process-{tag}-{}.pid", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    /// Waits until the process whose pid is in `file` is gone (or a zombie nobody reaps).
    fn assert_killed(file: &std::path::Path) {
        let pid = std::fs::read_to_string(file).unwrap().trim().to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Err(_) => break,
                Ok(stat) if stat.rsplit(") ").next().is_some_and(|s| s.starts_with('Z')) => break,
                Ok(_) => {}
            }
            assert!(Instant::now() < deadline, "process {pid} still runs");
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_file(file);
    }

    #[test]
    fn a_background_child_holding_stdout_does_not_hang_it() {
        let pids = pid_file("linger");
        let command = format!(
            r#"printf '{{"Version": 1, "AccessKeyId": "AKIDLINGER", "SecretAccessKey": "s3cr3t"}}'; sleep 1000 & echo $! > {}"#,
            pids.display()
        );
        let (result, took) = run_within(command, TIMEOUT, Duration::from_secs(20));
        assert_eq!(result.unwrap().access_key_id, "AKIDLINGER");
        assert!(took < LINGER + Duration::from_secs(5), "took {took:?}");
        assert_killed(&pids);
    }

    #[test]
    fn a_command_that_never_exits_nor_closes_stdout_fails_on_time() {
        let pids = pid_file("hang");
        let command = format!(
            r#"printf '{{"Version": 1, "SecretAccessKey": "s3cr3t"'; echo waiting for MFA >&2; sleep 1000 & echo $! > {}; wait"#,
            pids.display()
        );
        let (result, took) = run_within(command, Duration::from_millis(500), Duration::from_secs(20));
        assert!(took < Duration::from_secs(5), "took {took:?}");
        assert_killed(&pids);
        let e = result.unwrap_err();
        assert!(e.message.contains("did not finish within 0.5 s; it was killed"), "{e}");
        assert!(e.message.contains("waiting for MFA"), "{e}");
        assert!(!e.message.contains("s3cr3t"), "{e}");
    }

    #[test]
    fn too_much_output_is_refused() {
        let e = run("head -c 100000 /dev/zero | tr '\\0' x", "p", TIMEOUT).unwrap_err();
        assert!(e.message.contains("longer than 64 KiB"), "{e}");
    }

    #[test]
    fn no_expiration_means_kept_for_good() {
        let c = parse_output(br#"{"Version": 1, "AccessKeyId": "A", "SecretAccessKey": "s"}"#, "p").unwrap();
        assert!(c.expiry.is_none() && c.keep_without_expiry);
        let c = parse_output(
            br#"{"Version": 1, "AccessKeyId": "A", "SecretAccessKey": "s", "Expiration": "2030-01-01T00:00:00Z"}"#,
            "p",
        )
        .unwrap();
        assert!(c.expiry.is_some());
    }
}
