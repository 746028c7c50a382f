//! Keeping secrets out of messages: every error, log line, task event and fingerprint
//! attribute the plugin writes may be read by people who must not see credentials.
//!
//! - [`url`] / [`text`] hide the user info (`user:password@`) of URLs: proxy settings, Nomad's
//!   address, or a URL an HTTP library quotes;
//! - [`text`] also hides the values of the headers that carry credentials when a message quotes
//!   them by shape (`x-amz-security-token:…`, `Authorization: …`, `X-Nomad-Token: …`, and the
//!   `X-Amz-Security-Token=` query parameter), e.g. the canonical request AWS quotes in an
//!   `InvalidSignatureException`;
//! - [`values`] hides known secrets wherever they appear;
//! - [`header_value_ok`] tells whether a value can be sent as an HTTP header at all, so that the
//!   HTTP library never gets to refuse it (its error quotes the whole header line).

/// What a hidden value is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Header (and query parameter) names whose value is a credential, lower case. A name counts
/// only when `:` or `=` follows it (after optional spaces or a quote), so a list of signed
/// header names (`host;x-amz-security-token;x-amz-target`) stays as it is.
const SECRET_FIELDS: &[(&str, ValueEnd)] = &[
    ("x-amz-security-token", ValueEnd::Token),
    // Also matches `proxy-authorization`.
    ("authorization", ValueEnd::Line),
    ("x-nomad-token", ValueEnd::Token),
    ("x-aws-ec2-metadata-token", ValueEnd::Token),
];

#[derive(Clone, Copy)]
enum ValueEnd {
    /// A single word (a token: base64, a UUID, a JWT).
    Token,
    /// The rest of the line or of the quoted string (`AWS4-HMAC-SHA256 Credential=…, …`).
    Line,
}

/// `url` with its user info hidden: `http://user:pw@proxy:3128` → `http://<redacted>@proxy:3128`;
/// also without a scheme (`user:pw@proxy:3128`, as proxy variables allow). Anything else is
/// returned as is.
pub fn url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    match userinfo_end(rest) {
        Some(at) => format!("{scheme}{REDACTED}{}", &rest[at..]),
        None => url.to_string(),
    }
}

/// Where the user info of an authority-first string ends (the index of its last `@` before
/// any query or fragment). A `@` later in a path hides the host too: better too much than a
/// password (a password may hold an unescaped `/`).
fn userinfo_end(rest: &str) -> Option<usize> {
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    rest[..end].rfind('@')
}

/// `text` with the user info of every URL in it hidden (see [`url`]), and the values of the
/// credential headers it quotes by shape (see the module doc).
pub fn text(text: &str) -> String {
    headers(&urls(text))
}

/// Every `scheme://user:pw@host` in free text, user info hidden.
fn urls(text: &str) -> String {
    if !text.contains("://") {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // A URL ends at white space, a quote, or where the next one starts.
        let word_end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>'))
            .unwrap_or(tail.len());
        let word_end = tail[..word_end].find("://").unwrap_or(word_end);
        let word = &tail[..word_end];
        match userinfo_end(word) {
            Some(at) => {
                out.push_str(REDACTED);
                out.push_str(&word[at..]);
            }
            None => out.push_str(word),
        }
        rest = &tail[word_end..];
    }
    out.push_str(rest);
    out
}

/// The values of the credential headers (and query parameters) that `text` quotes, hidden.
fn headers(text: &str) -> String {
    // ASCII lower-casing keeps every byte offset.
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut hidden: Vec<(usize, usize)> = Vec::new();
    for (name, end) in SECRET_FIELDS {
        let mut from = 0;
        while let Some(i) = lower[from..].find(name) {
            let mut p = from + i + name.len();
            from = p;
            // name, an optional closing quote, spaces, `:` or `=`, spaces, an optional quote
            if bytes.get(p).is_some_and(|b| matches!(b, b'"' | b'\'')) {
                p += 1;
            }
            while bytes.get(p).is_some_and(|b| matches!(b, b' ' | b'\t')) {
                p += 1;
            }
            if !bytes.get(p).is_some_and(|b| matches!(b, b':' | b'=')) {
                continue;
            }
            p += 1;
            while bytes.get(p).is_some_and(|b| matches!(b, b' ' | b'\t' | b'"' | b'\'')) {
                p += 1;
            }
            let value_end = bytes[p..]
                .iter()
                .position(|b| match end {
                    ValueEnd::Token => {
                        b.is_ascii_whitespace()
                            || matches!(b, b'"' | b'\'' | b'&' | b'\\' | b'<' | b'>' | b',' | b';' | b')')
                    }
                    ValueEnd::Line => matches!(b, b'\n' | b'\r' | b'"' | b'\'' | b'\\' | b'<'),
                })
                .map_or(bytes.len(), |n| p + n);
            if value_end > p {
                hidden.push((p, value_end));
            }
        }
    }
    if hidden.is_empty() {
        return text.to_string();
    }
    hidden.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    for (start, end) in hidden {
        if end <= pos {
            continue;
        }
        // Every bound is next to an ASCII byte, so on a character boundary.
        out.push_str(&text[pos..start.max(pos)]);
        out.push_str(REDACTED);
        pos = end;
    }
    out.push_str(&text[pos..]);
    out
}

/// `text` with each of `secrets` (the empty ones ignored) hidden wherever it appears.
pub fn values(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    // Longest first: a secret that holds another is hidden whole.
    let mut secrets: Vec<&str> = secrets.iter().copied().filter(|s| !s.is_empty()).collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for secret in secrets {
        if out.contains(secret) {
            out = out.replace(secret, REDACTED);
        }
    }
    out
}

/// Can `value` be sent as an HTTP header value? Visible ASCII, spaces and tabs only (what
/// RFC 9110 allows, without the obsolete non-ASCII bytes, which HTTP libraries refuse).
pub fn header_value_ok(value: &str) -> bool {
    value.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_user_info() {
        assert_eq!(url("http://user:pw@proxy:3128"), "http://<redacted>@proxy:3128");
        assert_eq!(url("socks5://u:p@ss@h:1080/x"), "socks5://<redacted>@h:1080/x");
        assert_eq!(url("user:pw@proxy:3128"), "<redacted>@proxy:3128");
        assert_eq!(url("http://u:pa/ss@h"), "http://<redacted>@h");
        assert_eq!(url("https://nomad:4646/v1?x=a@b"), "https://nomad:4646/v1?x=a@b");
        assert_eq!(url("http://proxy:3128"), "http://proxy:3128");
        assert_eq!(url(""), "");
    }

    #[test]
    fn urls_in_text() {
        assert_eq!(
            text("proxy \"http://u:pw@p:1\" and 'https://a:b@c/d' or http://h/x, user@example.com"),
            "proxy \"http://<redacted>@p:1\" and 'https://<redacted>@c/d' or http://h/x, user@example.com"
        );
        assert_eq!(
            text("GET http://n:s@127.0.0.1:4646/v1/x: no"),
            "GET http://<redacted>@127.0.0.1:4646/v1/x: no"
        );
        assert_eq!(text("a://b:c@d://e@f"), "a://<redacted>@d://<redacted>@f");
        assert_eq!(text("no url é"), "no url é");
    }

    #[test]
    fn credential_headers_by_shape() {
        let canonical =
            "'POST\n/\n\nhost:h\nx-amz-security-token:IQoJb3+/=\nx-amz-target:X\n\nhost;x-amz-security-token;x-amz-target\nabc'";
        assert_eq!(
            text(canonical),
            "'POST\n/\n\nhost:h\nx-amz-security-token:<redacted>\nx-amz-target:X\n\nhost;x-amz-security-token;x-amz-target\nabc'"
        );
        assert_eq!(
            text("X-Amz-Security-Token: tok x-amz-target:X"),
            "X-Amz-Security-Token: <redacted> x-amz-target:X"
        );
        assert_eq!(
            text("?X-Amz-Security-Token=tok%2B&X-Amz-Date=1"),
            "?X-Amz-Security-Token=<redacted>&X-Amz-Date=1"
        );
        assert_eq!(
            text("invalid header 'authorization: AWS4-HMAC-SHA256 Credential=A/b, Signature=c'"),
            "invalid header 'authorization: <redacted>'"
        );
        assert_eq!(
            text("Proxy-Authorization: Basic dXNlcjpwdw==\nnext"),
            "Proxy-Authorization: <redacted>\nnext"
        );
        assert_eq!(
            text(r#"{"X-Nomad-Token": "abc-123"}"#),
            r#"{"X-Nomad-Token": "<redacted>"}"#
        );
        assert_eq!(
            text("x-amz-security-token:a\\nx-amz-target"),
            "x-amz-security-token:<redacted>\\nx-amz-target"
        );
        // Names without a value are left alone.
        assert_eq!(
            text("no authorization, x-amz-security-token;"),
            "no authorization, x-amz-security-token;"
        );
        assert_eq!(text("x-amz-security-token:"), "x-amz-security-token:");
    }

    #[test]
    fn known_values() {
        assert_eq!(
            values("a tok and tokens", &["tok", ""]),
            "a <redacted> and <redacted>ens"
        );
        assert_eq!(values("secret-long", &["secret", "secret-long"]), "<redacted>");
        assert_eq!(values("x", &[]), "x");
    }

    #[test]
    fn header_values() {
        assert!(header_value_ok("IQoJb3+/= abc\tdef"));
        assert!(header_value_ok(""));
        for bad in ["a\nb", "a\rb", "a\u{1}b", "a\u{7f}b", "é"] {
            assert!(!header_value_ok(bad), "{bad:?}");
        }
    }
}
