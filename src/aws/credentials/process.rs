//! `credential_process` of a shared-config profile: run the command (through `sh -c`, as the
//! Go SDK does), read its JSON (`Version` 1, `AccessKeyId`, `SecretAccessKey`, optional
//! `SessionToken` and `Expiration`) from stdout. The command's stdout is never quoted in an
//! error (it holds the secret); a short excerpt of its stderr is.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{cred_error, parse_timestamp, Credentials};
use crate::aws::error::{truncate_chars, AwsError};

/// How long the command may run.
pub const TIMEOUT: Duration = Duration::from_secs(60);
const MAX_OUTPUT: u64 = 64 * 1024;

pub fn run(command: &str, profile: &str, timeout: Duration) -> Result<Credentials, AwsError> {
    let fail = |what: String| cred_error(format!("credential_process of profile {profile}: {what}"));
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot start it with sh -c: {e}")))?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let out_reader = std::thread::spawn(move || read_capped(stdout));
    let err_reader = std::thread::spawn(move || read_capped(stderr));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!(
                    "did not finish within {} s; it was killed",
                    timeout.as_secs()
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(fail(format!("cannot wait for it: {e}"))),
        }
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    if !status.success() {
        let err = String::from_utf8_lossy(&stderr);
        return Err(fail(format!(
            "exited with {status}: {}",
            truncate_chars(err.trim(), 300)
        )));
    }
    parse_output(&stdout, profile).map_err(fail)
}

fn read_capped(pipe: Option<impl Read>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(p) = pipe {
        let _ = p.take(MAX_OUTPUT).read_to_end(&mut buf);
    }
    buf
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
    Ok(Credentials::new(
        key,
        secret,
        field("SessionToken"),
        expiry,
        format!("credential_process of profile {profile}"),
    ))
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
}
