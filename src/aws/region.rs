//! AWS region names, checked before one of them picks an endpoint's host name.
//!
//! A region name taken from a task definition (`awslogs-region`) is written by a job author,
//! not by the operator: it must never be able to name a host of its choosing
//! (`https://logs.<region>.amazonaws.com` with `evil.example.com#` or `x.attacker.net/` in it).
//! Only names shaped like AWS's own are accepted: a two-letter area, one or more lower-case
//! words, a number (`us-east-1`, `us-gov-west-1`, `cn-north-1`, `eu-isoe-west-1`,
//! `ap-southeast-5`).

/// Longest region name accepted (AWS's own are about 15 characters).
const MAX_LEN: usize = 32;
/// How much of an untrusted string [`quoted`] shows.
const QUOTE_MAX_CHARS: usize = 64;

/// True for a well-formed AWS region name: `<2 letters>(-<letters>)+-<1 or 2 digits>`, all
/// lower-case ASCII, at most 32 characters. Nothing that could end a host name component
/// (`.`, `/`, `#`, `:`, `@`, `?`, spaces, upper case, non-ASCII) gets through.
pub fn is_valid_region(name: &str) -> bool {
    if name.is_empty() || name.len() > MAX_LEN {
        return false;
    }
    let parts: Vec<&str> = name.split('-').collect();
    let [area, words @ .., number] = parts.as_slice() else {
        return false;
    };
    area.len() == 2
        && area.bytes().all(|b| b.is_ascii_lowercase())
        && !words.is_empty()
        && words
            .iter()
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
        && (1..=2).contains(&number.len())
        && number.bytes().all(|b| b.is_ascii_digit())
}

/// An untrusted string made safe to show in a log line or a task event: in double quotes,
/// anything but printable ASCII escaped (`\n`, `\u{202e}`, ...), quotes and backslashes
/// escaped, at most 64 characters of it (then `...`).
pub fn quoted(untrusted: &str) -> String {
    let mut out = String::from("\"");
    let mut chars = untrusted.chars();
    for c in chars.by_ref().take(QUOTE_MAX_CHARS) {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            _ => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    out.push('"');
    if chars.next().is_some() {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_region_names_are_valid() {
        for r in [
            "us-east-1",
            "us-west-2",
            "us-gov-west-1",
            "us-gov-east-1",
            "cn-north-1",
            "cn-northwest-1",
            "eu-isoe-west-1",
            "us-iso-east-1",
            "us-isob-east-1",
            "us-isof-south-1",
            "ap-southeast-5",
            "ap-northeast-3",
            "me-central-1",
            "il-central-1",
            "mx-central-1",
            "ca-west-1",
        ] {
            assert!(is_valid_region(r), "{r}");
        }
    }

    #[test]
    fn anything_else_is_not_a_region() {
        for r in [
            "",
            "evil.example.com#",
            "us-east-1.attacker.net",
            "us-east-1/",
            "us-east-1#",
            "us-east-1:443",
            "user@us-east-1",
            "us-east-1?x=1",
            "US-EAST-1",
            "us_east_1",
            "us-east-",
            "-us-east-1",
            "us--east-1",
            "us-east-123",
            "us-1",
            "use-east-1",
            "us-east",
            "us-east-1 ",
            " us-east-1",
            "us-east-1\n",
            "us-eäst-1",
            "localhost",
            "127.0.0.1",
            "us-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-1",
        ] {
            assert!(!is_valid_region(r), "{r:?}");
        }
    }

    #[test]
    fn quoted_escapes_and_caps() {
        assert_eq!(quoted("us-east-1"), "\"us-east-1\"");
        assert_eq!(quoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(quoted("x\ny\u{1b}[31m\u{202e}"), "\"x\\ny\\u{1b}[31m\\u{202e}\"");
        let long = "a".repeat(200);
        let q = quoted(&long);
        assert_eq!(q, format!("\"{}\"...", "a".repeat(64)));
    }
}
