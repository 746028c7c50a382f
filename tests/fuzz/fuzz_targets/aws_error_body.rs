//! Non-2xx AWS answers: `parse_error_response` on JSON, XML, HTML, text or empty bodies; and
//! STS's XML credentials answers (`sts::parse_credentials`), whose errors must never quote a
//! secret key from the body.
//!
//! Input layout: bytes 0-1 the HTTP status (big-endian), byte 2 selects the
//! `X-Amzn-Errortype` header (even: none; odd: the text up to the first NUL of the rest), the
//! rest is the body, read as the client reads it (lossy UTF-8).
//!
//! Checked besides "never panics": the message keeps to the caps error.rs sets (1000
//! characters of a service message, 200 of an excerpt, plus "..." when cut), the code is never
//! empty and has no surrounding blanks, the kind is the classification of code and status,
//! and the one-line `Display` is built.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nomad_driver_ecs::aws::error::{classify, parse_error_response, ErrorKind};
use nomad_driver_ecs::aws::sts::parse_credentials;

/// error.rs's MAX_MESSAGE_CHARS plus the "..." that marks a cut.
const MESSAGE_CAP: usize = 1000 + 3;

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let status = u16::from_be_bytes([data[0], data[1]]);
    let rest = &data[3..];
    let (header, body) = if data[2] & 1 == 1 {
        let cut = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
        let header = String::from_utf8_lossy(&rest[..cut]).into_owned();
        (Some(header), &rest[(cut + 1).min(rest.len())..])
    } else {
        (None, rest)
    };
    let body = String::from_utf8_lossy(body);

    let e = parse_error_response("DescribeTasks", status, header.as_deref(), &body);
    assert!(
        e.message.chars().count() <= MESSAGE_CAP,
        "message of {} chars",
        e.message.chars().count()
    );
    assert!(!e.message.is_empty());
    assert!(!e.code.is_empty());
    assert_eq!(e.code, e.code.trim());
    assert_eq!(e.status, Some(status));
    assert_eq!(e.kind, classify(&e.code, status));
    if status == 429 {
        assert_eq!(e.kind, ErrorKind::Throttling);
    }
    let shown = e.to_string();
    assert!(shown.starts_with("ECS DescribeTasks: "), "{shown}");
    assert!(shown.ends_with(&format!("(HTTP {status})")), "{shown}");

    // The same body as an STS answer (2xx: credentials XML).
    let sts_status = if status < 600 { 200 } else { status };
    if let Err(e) = parse_credentials("AssumeRole", sts_status, &body, "fuzz") {
        if sts_status == 200 {
            let secret = body
                .split("<SecretAccessKey>")
                .nth(1)
                .and_then(|r| r.split("</SecretAccessKey>").next())
                .filter(|s| s.trim().len() >= 8);
            if let Some(secret) = secret.map(str::trim) {
                // A leak is text taken from the body: blanking the secret out of the body must
                // take it out of the message too. (A "secret" that happens to be an element
                // name, e.g. "Credentials", appears in the fixed message either way.)
                let blanked = body.replace(secret, &"#".repeat(secret.len()));
                let again = parse_credentials("AssumeRole", sts_status, &blanked, "fuzz")
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                assert!(
                    !e.to_string().contains(secret) || again.contains(secret),
                    "STS error quotes the secret: {e}"
                );
            }
        }
    }
});
