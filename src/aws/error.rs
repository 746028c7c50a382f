//! The one error type of the AWS layer, and the parser that turns an AWS error
//! response (JSON, XML, HTML or empty) into it.

use std::fmt;

use crate::redact;

/// What kind of failure an [`AwsError`] is; drives retry decisions and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The service asked us to slow down (ThrottlingException, HTTP 429, ...). Transient.
    Throttling,
    /// The request was not authenticated or not authorized (bad key, bad signature,
    /// expired token, missing IAM permission).
    Auth,
    /// The named resource does not exist (ClusterNotFoundException, ...).
    NotFound,
    /// Any other 4xx: the request itself is wrong.
    Client,
    /// 5xx: the service failed. Transient.
    Server,
    /// The service could not be reached or the connection broke. Transient.
    Network,
    /// No usable credentials could be found locally.
    Credentials,
    /// The service answered 2xx but the body was not what the API model promises.
    Decode,
}

/// An error from an AWS call. `Display` gives one actionable line and never
/// contains secrets.
#[derive(Debug, Clone)]
pub struct AwsError {
    pub kind: ErrorKind,
    /// The API operation, e.g. `"RunTask"`. A value containing a space (e.g.
    /// `"CloudWatchLogs GetLogEvents"`) is shown as is; a bare name is shown as
    /// `"ECS <operation>"`.
    pub operation: String,
    /// The AWS error code (e.g. `"ThrottlingException"`, `"SignatureDoesNotMatch"`),
    /// or ours for local failures (e.g. `"ConnectionRefused"`, `"NoCredentials"`).
    pub code: String,
    pub message: String,
    /// The HTTP status, when the service answered.
    pub status: Option<u16>,
}

impl AwsError {
    /// A new error; a convenience over the struct literal. The user info of any URL in
    /// `message`, and any credential header value it quotes, are hidden ([`redact::text`]).
    pub fn new(
        kind: ErrorKind,
        operation: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
        status: Option<u16>,
    ) -> Self {
        AwsError {
            kind,
            operation: operation.into(),
            code: code.into(),
            message: redact::text(&message.into()),
            status,
        }
    }

    /// Worth retrying with backoff: throttling, a server error or a network failure.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Throttling | ErrorKind::Server | ErrorKind::Network
        )
    }

    /// The same error, attributed to `operation`.
    pub fn with_operation(mut self, operation: &str) -> Self {
        self.operation = operation.to_string();
        self
    }

    fn prefix(&self) -> String {
        let op = self.operation.trim();
        if op.is_empty() {
            "ECS".to_string()
        } else if op.contains(' ') {
            op.to_string()
        } else {
            format!("ECS {op}")
        }
    }
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = self.prefix();
        match self.kind {
            // These messages are sentences of ours that already say what happened.
            ErrorKind::Network | ErrorKind::Credentials => {
                write!(f, "{prefix}: {}", self.message)?;
            }
            _ => {
                write!(f, "{prefix}: {}", self.code)?;
                if !self.message.is_empty() {
                    write!(f, ": {}", self.message)?;
                }
            }
        }
        if let Some(status) = self.status {
            write!(f, " (HTTP {status})")?;
        }
        Ok(())
    }
}

impl std::error::Error for AwsError {}

/// Error codes that mean "slow down".
const THROTTLING_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestThrottled",
    "RequestThrottledException",
    "ProvisionedThroughputExceededException",
    "SlowDown",
    "PriorRequestNotComplete",
    "BandwidthLimitExceeded",
];

/// Error codes that mean "who are you" or "you may not".
const AUTH_CODES: &[&str] = &[
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "IncompleteSignatureException",
    "InvalidSignatureException",
    "AccessDeniedException",
    "AccessDenied",
    "ExpiredToken",
    "ExpiredTokenException",
    "MissingAuthenticationToken",
    "MissingAuthenticationTokenException",
    "InvalidAccessKeyId",
    "AuthFailure",
    "UnauthorizedOperation",
    "RequestExpired",
    "RequestTimeTooSkewed",
    "InvalidToken",
    "NotAuthorized",
];

/// Error codes that mean the service itself failed, whatever the status says.
const SERVER_CODES: &[&str] = &[
    "ServerException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalFailure",
    "InternalError",
    "InternalServerError",
    "InternalServerException",
    "InternalServiceError",
    "ServiceFailure",
    "ServiceException",
];

/// Longest message kept from a service body.
const MAX_MESSAGE_CHARS: usize = 1000;
/// Longest excerpt kept from a body that is not a structured error (HTML, text).
const MAX_EXCERPT_CHARS: usize = 200;

/// The [`ErrorKind`] for an error code (already stripped) and HTTP status.
pub fn classify(code: &str, status: u16) -> ErrorKind {
    if THROTTLING_CODES.contains(&code) || status == 429 {
        ErrorKind::Throttling
    } else if AUTH_CODES.contains(&code) {
        ErrorKind::Auth
    } else if code.ends_with("NotFoundException") || code == "ResourceNotFound" || code == "NotFound" {
        ErrorKind::NotFound
    } else if SERVER_CODES.contains(&code) || (500..600).contains(&status) {
        ErrorKind::Server
    } else if status == 401 || status == 403 {
        ErrorKind::Auth
    } else if (400..500).contains(&status) {
        ErrorKind::Client
    } else if status >= 600 {
        ErrorKind::Server
    } else {
        // A non-2xx status outside 4xx/5xx (e.g. a 3xx we do not follow).
        ErrorKind::Client
    }
}

/// Strips an AWS error type to its bare name:
/// `com.amazonaws.ecs#ClusterNotFoundException` → `ClusterNotFoundException`,
/// `FooError:http://internal.amazon.com/coral/...` → `FooError`.
pub fn strip_error_type(raw: &str) -> &str {
    let raw = raw.trim();
    let before_colon = raw.split(':').next().unwrap_or(raw);
    let bare = match before_colon.rfind('#') {
        Some(i) => &before_colon[i + 1..],
        None => before_colon,
    };
    bare.trim()
}

/// Turns a non-2xx AWS response into an [`AwsError`].
///
/// `headers_error_type` is the `X-Amzn-Errortype` header, if any; it is used
/// when the body carries no type. Handles JSON (`__type`/`code` + `message`/`Message`),
/// XML (`<ErrorResponse><Error><Code>` and `<Response><Errors><Error><Code>`),
/// and HTML/text/empty bodies (code `HTTP<status>`, message an excerpt).
///
/// The message never keeps a credential: AWS answers a bad signature with the canonical
/// request it expected, session token included; header values of that shape are hidden
/// before the message is cut to length (see [`parse_error_response_hiding`]).
pub fn parse_error_response(operation: &str, status: u16, headers_error_type: Option<&str>, body: &str) -> AwsError {
    parse_error_response_hiding(operation, status, headers_error_type, body, &[])
}

/// As [`parse_error_response`], with the request's own secrets (`secrets`: its session token,
/// its secret key) hidden wherever the message quotes them.
pub fn parse_error_response_hiding(
    operation: &str,
    status: u16,
    headers_error_type: Option<&str>,
    body: &str,
    secrets: &[&str],
) -> AwsError {
    // Before anything is cut: a cut token is no longer found by its value.
    let hide = |s: &str| redact::text(&redact::values(s, secrets));
    let trimmed = body.trim_start_matches('\u{feff}').trim();
    let (body_code, body_message) = if trimmed.starts_with('{') {
        parse_json_error(trimmed)
    } else if trimmed.starts_with('<') {
        parse_xml_error(trimmed)
    } else {
        (None, None)
    };

    let code = body_code
        .map(|c| strip_error_type(&c).to_string())
        .filter(|c| !c.is_empty())
        .or_else(|| {
            headers_error_type
                .map(strip_error_type)
                .filter(|c| !c.is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| format!("HTTP{status}"));

    let message = match body_message.filter(|m| !m.trim().is_empty()) {
        Some(m) => truncate_chars(collapse_whitespace(&hide(&m)).as_str(), MAX_MESSAGE_CHARS),
        None => {
            let excerpt = truncate_chars(&hide(&strip_tags(&hide(trimmed))), MAX_EXCERPT_CHARS);
            if excerpt.is_empty() {
                format!("{} (empty response body)", status_reason(status))
            } else {
                excerpt
            }
        }
    };

    AwsError {
        kind: classify(&code, status),
        operation: operation.to_string(),
        code,
        message,
        status: Some(status),
    }
}

fn parse_json_error(body: &str) -> (Option<String>, Option<String>) {
    let value: serde_json::Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(_) => return (None, None),
    };
    let field = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| value.get(*n).and_then(|v| v.as_str()))
            .map(str::to_string)
    };
    let code = field(&["__type", "code", "Code"]);
    let message = field(&["message", "Message", "errorMessage"]);
    (code, message)
}

fn parse_xml_error(body: &str) -> (Option<String>, Option<String>) {
    // Both `<ErrorResponse><Error><Code>` (query protocol) and
    // `<Response><Errors><Error><Code>` (EC2) carry the first Code/Message pair
    // inside the first <Error> element; fall back to the whole document.
    let scope = xml_tag(body, "Error").unwrap_or(body);
    let code = xml_tag(scope, "Code").map(|c| xml_unescape(c.trim()));
    let message = xml_tag(scope, "Message").map(|m| xml_unescape(m.trim()));
    (code, message)
}

/// The inner text of the first `<tag>...</tag>` (or `<tag attr="...">`) in `text`.
pub(crate) fn xml_tag<'a>(text: &'a str, tag: &str) -> Option<&'a str> {
    let open_plain = format!("<{tag}>");
    let open_attr = format!("<{tag} ");
    let close = format!("</{tag}>");
    let (content_start, search_from) = match (text.find(&open_plain), text.find(&open_attr)) {
        (Some(a), Some(b)) if b < a => attr_open_end(text, b)?,
        (Some(a), _) => (a + open_plain.len(), a + open_plain.len()),
        (None, Some(b)) => attr_open_end(text, b)?,
        (None, None) => return None,
    };
    let end = text[search_from..].find(&close)? + search_from;
    Some(&text[content_start..end])
}

fn attr_open_end(text: &str, start: usize) -> Option<(usize, usize)> {
    let gt = text[start..].find('>')? + start + 1;
    Some((gt, gt))
}

pub(crate) fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// Removes `<...>` tags, `<script>`/`<style>` bodies, decodes the common
/// entities and collapses whitespace. Linear in the body: the body is lower-cased once, and
/// the walk stops once it has far more text than a message keeps.
fn strip_tags(text: &str) -> String {
    const ENOUGH: usize = 8 * 1024;
    // ASCII lower-casing keeps every byte offset, so positions found in `lower` hold in `text`.
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len().min(ENOUGH));
    let mut pos = 0;
    while let Some(lt) = text[pos..].find('<').map(|i| pos + i) {
        out.push_str(&text[pos..lt]);
        out.push(' ');
        if out.len() >= ENOUGH {
            pos = text.len();
            break;
        }
        let after = &lower[lt..];
        let end_of = |close: &str| after.find(close).map(|i| lt + i + close.len());
        let skip_to = if after.starts_with("<script") {
            end_of("</script>")
        } else if after.starts_with("<style") {
            end_of("</style>")
        } else {
            after.find('>').map(|i| lt + i + 1)
        };
        pos = skip_to.unwrap_or(text.len());
    }
    if pos < text.len() {
        out.push_str(&text[pos..]);
    }
    collapse_whitespace(&xml_unescape(&out.replace("&nbsp;", " ")))
}

fn collapse_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// At most `max` characters of `s`, with `...` when cut.
pub(crate) fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

fn status_reason(status: u16) -> String {
    let reason = match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    };
    if reason.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status} {reason}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_body_with_prefixed_type() {
        let body = r#"{"__type":"com.amazonaws.ecs#ClusterNotFoundException","message":"Cluster not found."}"#;
        let e = parse_error_response("DescribeTasks", 400, None, body);
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert_eq!(e.code, "ClusterNotFoundException");
        assert_eq!(e.message, "Cluster not found.");
        assert_eq!(e.status, Some(400));
        assert_eq!(e.operation, "DescribeTasks");
        assert!(!e.is_transient());
        assert_eq!(
            e.to_string(),
            "ECS DescribeTasks: ClusterNotFoundException: Cluster not found. (HTTP 400)"
        );
    }

    #[test]
    fn json_body_with_capital_message_and_colon_suffix() {
        let body = r#"{"__type":"ThrottlingException:http://internal.amazon.com/coral/com.amazon.coral.availability/","Message":"Rate exceeded"}"#;
        let e = parse_error_response("RunTask", 400, None, body);
        assert_eq!(e.kind, ErrorKind::Throttling);
        assert_eq!(e.code, "ThrottlingException");
        assert_eq!(e.message, "Rate exceeded");
        assert!(e.is_transient());
    }

    #[test]
    fn json_body_moto_shape_both_messages() {
        let body = r#"{"__type": "ClientException", "message": "unknown task definition", "Message": "unknown task definition"}"#;
        let e = parse_error_response("RunTask", 400, Some("ClientException"), body);
        assert_eq!(e.kind, ErrorKind::Client);
        assert_eq!(e.code, "ClientException");
        assert_eq!(e.message, "unknown task definition");
    }

    #[test]
    fn header_type_used_when_body_has_none() {
        let body = r#"{"message":"The security token included in the request is invalid."}"#;
        let e = parse_error_response(
            "DescribeClusters",
            400,
            Some("UnrecognizedClientException:http://internal.amazon.com/coral/com.amazon.coral.service/"),
            body,
        );
        assert_eq!(e.kind, ErrorKind::Auth);
        assert_eq!(e.code, "UnrecognizedClientException");
        assert_eq!(e.message, "The security token included in the request is invalid.");
    }

    #[test]
    fn header_type_with_hash_prefix_and_empty_body() {
        let e = parse_error_response("StopTask", 400, Some("com.amazonaws.ecs#InvalidParameterException"), "");
        assert_eq!(e.kind, ErrorKind::Client);
        assert_eq!(e.code, "InvalidParameterException");
        assert_eq!(e.message, "HTTP 400 Bad Request (empty response body)");
    }

    #[test]
    fn body_type_wins_over_header() {
        let body = r#"{"__type":"AccessDeniedException","message":"no"}"#;
        let e = parse_error_response("RunTask", 400, Some("ClientException"), body);
        assert_eq!(e.code, "AccessDeniedException");
        assert_eq!(e.kind, ErrorKind::Auth);
    }

    #[test]
    fn xml_error_response_shape() {
        let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<ErrorResponse>
  <Error>
    <Type>Sender</Type>
    <Code>SignatureDoesNotMatch</Code>
    <Message>The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.</Message>
  </Error>
  <RequestId>7a62c49f-347e-4fc4-9331-6e8eEXAMPLE</RequestId>
</ErrorResponse>"#;
        let e = parse_error_response("RunTask", 403, None, body);
        assert_eq!(e.kind, ErrorKind::Auth);
        assert_eq!(e.code, "SignatureDoesNotMatch");
        assert!(e
            .message
            .starts_with("The request signature we calculated does not match"));
        let shown = e.to_string();
        assert!(shown.starts_with("ECS RunTask: SignatureDoesNotMatch: The request signature"));
        assert!(shown.ends_with("(HTTP 403)"));
    }

    #[test]
    fn xml_response_errors_shape() {
        let body = "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>abc</RequestID></Response>";
        let e = parse_error_response("DescribeSubnets", 503, None, body);
        assert_eq!(e.kind, ErrorKind::Throttling);
        assert_eq!(e.code, "RequestLimitExceeded");
        assert_eq!(e.message, "Request limit exceeded.");
    }

    #[test]
    fn xml_with_entities_and_attributes() {
        let body = r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>InvalidClientTokenId</Code><Message>The security token &amp; &quot;stuff&quot; is invalid.</Message></Error></ErrorResponse>"#;
        let e = parse_error_response("AssumeRole", 403, None, body);
        assert_eq!(e.code, "InvalidClientTokenId");
        assert_eq!(e.message, "The security token & \"stuff\" is invalid.");
        assert_eq!(e.kind, ErrorKind::Auth);
    }

    #[test]
    fn xml_access_denied_moto() {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse>\n  <Errors>\n    <Error>\n      <Code>AccessDenied</Code>\n      <Message>User: arn:aws:iam::123456789012:user/x is not authorized to perform: ecs:RunTask</Message>\n    </Error>\n  </Errors>\n</ErrorResponse>";
        let e = parse_error_response("RunTask", 403, None, body);
        assert_eq!(e.kind, ErrorKind::Auth);
        assert_eq!(e.code, "AccessDenied");
        assert!(e.message.contains("not authorized to perform: ecs:RunTask"));
    }

    #[test]
    fn html_with_many_scripts_is_stripped() {
        // Found by reading the fuzz target: each <script> used to lower-case the whole rest of the
        // body again (2.5 s for 1 MB).
        let body = "<script>x</script>".repeat(60_000) + "<p>Service Unavailable</p>";
        let e = parse_error_response("DescribeTasks", 503, None, &body);
        assert_eq!(e.status, Some(503));
        assert_eq!(strip_tags("<html><SCRIPT>a<b</SCRIPT><p>Hi &amp; bye</p>"), "Hi & bye");
    }

    #[test]
    fn html_500_body() {
        let body = r#"<!doctype html>
<html lang=en>
<head><title>500 Internal Server Error</title><style>body { color: red; }</style></head>
<body><h1>Internal Server Error</h1>
<p>The server encountered an internal error and was unable to complete your request. Either the server is overloaded or there is an error in the application.</p>
<script>var x = "<b>";</script>
</body></html>"#;
        let e = parse_error_response("StopTask", 500, None, body);
        assert_eq!(e.kind, ErrorKind::Server);
        assert_eq!(e.code, "HTTP500");
        assert!(e
            .message
            .starts_with("500 Internal Server Error Internal Server Error The server encountered"));
        assert!(!e.message.contains('<'));
        assert!(!e.message.contains("color"));
        assert!(!e.message.contains("var x"));
        assert!(e.message.chars().count() <= MAX_EXCERPT_CHARS + 3);
        assert!(e.is_transient());
    }

    #[test]
    fn long_text_body_is_truncated() {
        let body = "x".repeat(5000);
        let e = parse_error_response("RunTask", 502, None, &body);
        assert_eq!(e.code, "HTTP502");
        assert_eq!(e.kind, ErrorKind::Server);
        assert_eq!(e.message.chars().count(), MAX_EXCERPT_CHARS + 3);
        assert!(e.message.ends_with("..."));
    }

    #[test]
    fn multibyte_truncation_is_safe() {
        let body = "é".repeat(300);
        let e = parse_error_response("RunTask", 500, None, &body);
        assert_eq!(e.message.chars().count(), MAX_EXCERPT_CHARS + 3);
    }

    #[test]
    fn empty_bodies_by_status() {
        let cases = [
            (429, ErrorKind::Throttling),
            (401, ErrorKind::Auth),
            (403, ErrorKind::Auth),
            (404, ErrorKind::Client),
            (400, ErrorKind::Client),
            (500, ErrorKind::Server),
            (503, ErrorKind::Server),
            (504, ErrorKind::Server),
        ];
        for (status, kind) in cases {
            let e = parse_error_response("DescribeClusters", status, None, "  \n");
            assert_eq!(e.kind, kind, "status {status}");
            assert_eq!(e.code, format!("HTTP{status}"));
            assert!(e.message.contains(&status.to_string()));
        }
    }

    #[test]
    fn invalid_json_falls_back_to_excerpt() {
        let e = parse_error_response("RunTask", 400, Some("ClientException"), "{not json");
        assert_eq!(e.code, "ClientException");
        assert_eq!(e.message, "{not json");
    }

    #[test]
    fn classification_table() {
        for code in [
            "ThrottlingException",
            "Throttling",
            "RequestLimitExceeded",
            "TooManyRequestsException",
            "RequestThrottled",
            "ProvisionedThroughputExceededException",
        ] {
            assert_eq!(classify(code, 400), ErrorKind::Throttling, "{code}");
        }
        for code in [
            "UnrecognizedClientException",
            "InvalidClientTokenId",
            "SignatureDoesNotMatch",
            "IncompleteSignature",
            "InvalidSignatureException",
            "AccessDeniedException",
            "AccessDenied",
            "ExpiredToken",
            "ExpiredTokenException",
            "MissingAuthenticationToken",
        ] {
            assert_eq!(classify(code, 400), ErrorKind::Auth, "{code}");
        }
        for code in [
            "ClusterNotFoundException",
            "ResourceNotFoundException",
            "ServiceNotFoundException",
            "TargetNotFoundException",
        ] {
            assert_eq!(classify(code, 400), ErrorKind::NotFound, "{code}");
        }
        for code in ["ServerException", "ServiceUnavailableException", "InternalFailure"] {
            assert_eq!(classify(code, 500), ErrorKind::Server, "{code}");
            assert_eq!(classify(code, 400), ErrorKind::Server, "{code}");
        }
        assert_eq!(classify("ClientException", 400), ErrorKind::Client);
        assert_eq!(classify("InvalidParameterException", 400), ErrorKind::Client);
        assert_eq!(classify("Whatever", 503), ErrorKind::Server);
        assert_eq!(classify("Whatever", 429), ErrorKind::Throttling);
        // A specific code beats the generic 403 → Auth rule.
        assert_eq!(classify("ThrottlingException", 403), ErrorKind::Throttling);
        assert_eq!(classify("HTTP403", 403), ErrorKind::Auth);
        assert_eq!(classify("HTTP401", 401), ErrorKind::Auth);
    }

    #[test]
    fn strip_error_type_forms() {
        assert_eq!(
            strip_error_type("com.amazonaws.ecs#ClusterNotFoundException"),
            "ClusterNotFoundException"
        );
        assert_eq!(
            strip_error_type(
                "aws.protocoltests.restjson#FooError:http://internal.amazon.com/coral/com.amazon.coral.validate/"
            ),
            "FooError"
        );
        assert_eq!(strip_error_type(" ServerException "), "ServerException");
        assert_eq!(strip_error_type(""), "");
    }

    /// AWS's answer to a bad signature quotes the canonical request it expected, session
    /// token included; the token sits past the middle of a long message, so the 1000-character
    /// cut goes through it.
    #[test]
    fn the_canonical_request_in_an_invalid_signature_answer_loses_its_token() {
        let token = format!(
            "IQoJb3JpZ2luX2VjE{}",
            "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789+/".repeat(25)
        );
        let message = format!(
            "The request signature we calculated does not match the signature you provided.\n\nThe Canonical \
             String for this request should have been\n'POST\n/\n\ncontent-type:application/x-amz-json-1.1\n\
             host:ecs.us-east-1.amazonaws.com\nx-amz-date:20250101T000000Z\nX-Amz-Security-Token: {token}\n\
             x-amz-target:AmazonEC2ContainerServiceV20141113.RunTask\n\ncontent-type;host;x-amz-date;\
             x-amz-security-token;x-amz-target\nabc'\n\nauthorization:AWS4-HMAC-SHA256 Credential=AKID/x, \
             Signature=0123abcd\n(query X-Amz-Security-Token={token}&X-Amz-Date=1)"
        );
        for body in [
            serde_json::json!({"__type": "InvalidSignatureException", "message": message}).to_string(),
            format!(
                "<ErrorResponse><Error><Code>SignatureDoesNotMatch</Code><Message>{}</Message></Error></ErrorResponse>",
                message.replace('\'', "&apos;")
            ),
            format!("<html><body><p>{message}</p></body></html>"),
        ] {
            let e = parse_error_response("RunTask", 400, None, &body);
            let shown = e.to_string();
            for window in token.as_bytes().windows(16) {
                let piece = std::str::from_utf8(window).unwrap();
                assert!(!shown.contains(piece), "{shown}");
            }
            assert!(!shown.contains("Signature=0123abcd"), "{shown}");
            if !body.starts_with("<html>") {
                assert!(
                    shown.contains("x-amz-security-token;x-amz-target"),
                    "the signed headers stay: {shown}"
                );
            }
        }
    }

    #[test]
    fn display_network_credentials_and_transience() {
        let e = AwsError::new(
            ErrorKind::Network,
            "DescribeClusters",
            "ConnectionRefused",
            "cannot reach https://ecs.us-east-1.amazonaws.com: connection refused",
            None,
        );
        assert_eq!(
            e.to_string(),
            "ECS DescribeClusters: cannot reach https://ecs.us-east-1.amazonaws.com: connection refused"
        );
        assert!(e.is_transient());
        let c = AwsError::new(
            ErrorKind::Credentials,
            "RunTask",
            "NoCredentials",
            "no AWS credentials found",
            None,
        );
        assert_eq!(c.to_string(), "ECS RunTask: no AWS credentials found");
        assert!(!c.is_transient());
        let d = AwsError::new(ErrorKind::Decode, "", "InvalidResponse", "bad", Some(200));
        assert_eq!(d.to_string(), "ECS: InvalidResponse: bad (HTTP 200)");
        let l = AwsError::new(ErrorKind::Client, "CloudWatchLogs GetLogEvents", "X", "", Some(400));
        assert_eq!(l.to_string(), "CloudWatchLogs GetLogEvents: X (HTTP 400)");
        for kind in [
            ErrorKind::Auth,
            ErrorKind::NotFound,
            ErrorKind::Client,
            ErrorKind::Decode,
        ] {
            assert!(!AwsError::new(kind, "x", "y", "z", None).is_transient());
        }
        for kind in [ErrorKind::Throttling, ErrorKind::Server, ErrorKind::Network] {
            assert!(AwsError::new(kind, "x", "y", "z", None).is_transient());
        }
    }
}
