//! The AWS JSON 1.1 transport: one signed `POST` per call, errors mapped to
//! [`AwsError`]. No retries here: the caller decides with
//! [`AwsError::is_transient`].

use std::error::Error as _;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::credentials::{CredentialSource, Credentials};
use super::error::{parse_error_response_hiding, truncate_chars, AwsError, ErrorKind};
use super::sign::{host_header, sign_request, split_url};
use super::transport::{ProxySettings, Transport};
use crate::redact;

/// How the HTTP client reaches AWS: timeouts, extra trusted CAs, proxies.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpConfig {
    /// Time to open the TCP connection.
    pub connect_timeout: Duration,
    /// Time for the whole request, connect included.
    pub request_timeout: Duration,
    /// Extra CA certificates (PEM) trusted besides the system store.
    pub ca_file: Option<std::path::PathBuf>,
    pub proxy: ProxySettings,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            ca_file: None,
            proxy: ProxySettings::default(),
        }
    }
}

/// The public endpoint of `service` in `region`, e.g.
/// `https://ecs.us-east-1.amazonaws.com` (`.amazonaws.com.cn` in China regions).
pub fn default_endpoint(service: &str, region: &str) -> String {
    endpoint_for(service, region, false)
}

/// The DNS suffix of the partition `region` belongs to (aws, aws-cn, aws-us-gov, the ISO ones).
pub fn dns_suffix(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else if region.starts_with("us-isob-") {
        "sc2s.sgov.gov"
    } else if region.starts_with("us-isof-") {
        "csp.hci.ic.gov"
    } else if region.starts_with("us-iso-") {
        "c2s.ic.gov"
    } else if region.starts_with("eu-isoe-") {
        "cloud.adc-e.uk"
    } else {
        // aws and aws-us-gov
        "amazonaws.com"
    }
}

/// An endpoint set for `service` outside the regional default: the client's own option, else
/// the SDK conventions `AWS_ENDPOINT_URL_<SERVICE>` (`env_suffix`, e.g. `ECS`), then
/// `AWS_ENDPOINT_URL`, read through `env`. Trailing slashes are dropped.
pub fn endpoint_override(
    option: Option<&str>,
    env_suffix: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    option
        .map(str::to_string)
        .or_else(|| env(&format!("AWS_ENDPOINT_URL_{env_suffix}")))
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .map(|e| e.trim().trim_end_matches('/').to_string())
        .filter(|e| !e.is_empty())
}

/// The regional endpoint of `service`, the FIPS one (`<service>-fips.<region>...`) if `fips`.
pub fn endpoint_for(service: &str, region: &str, fips: bool) -> String {
    let host = if fips {
        format!("{service}-fips")
    } else {
        service.to_string()
    };
    format!("https://{host}.{region}.{}", dns_suffix(region))
}

const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// Largest response body we read (ureq's own cap is 10 MB too).
const MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;

/// A client for one AWS JSON 1.1 service at one endpoint. Holds one
/// `ureq::Agent`, so connections are pooled across calls; cheap to share
/// behind an `Arc`, usable from several threads.
pub struct JsonClient {
    agent: ureq::Agent,
    endpoint: String,
    url: String,
    host: String,
    region: String,
    service: String,
    target_prefix: String,
    creds: Arc<dyn CredentialSource>,
    cfg: HttpConfig,
}

impl std::fmt::Debug for JsonClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonClient")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("service", &self.service)
            .field("target_prefix", &self.target_prefix)
            .field("credentials", &self.creds.describe())
            .finish_non_exhaustive()
    }
}

impl JsonClient {
    /// `endpoint` is an absolute `http://` or `https://` URL (no user info);
    /// `service` is the SigV4 signing name (`"ecs"`); `target_prefix` the
    /// `X-Amz-Target` prefix (`"AmazonEC2ContainerServiceV20141113"`).
    /// Errors (kind [`ErrorKind::Client`], code `InvalidConfiguration`) on a bad
    /// endpoint or an empty region/service/prefix.
    pub fn new(
        endpoint: &str,
        region: &str,
        service: &str,
        target_prefix: &str,
        creds: Arc<dyn CredentialSource>,
        cfg: &HttpConfig,
    ) -> Result<Self, AwsError> {
        let endpoint = endpoint.trim().trim_end_matches('/').to_string();
        let config_error = |msg: String| AwsError::new(ErrorKind::Client, "", "InvalidConfiguration", msg, None);
        // As messages show it: never a user name or password.
        let shown = redact::url(&endpoint);
        let Some((_, _, path)) = split_url(&endpoint) else {
            return Err(config_error(format!(
                "invalid endpoint {shown:?}: expected an absolute http:// or https:// URL \
                 such as {} (no user name or password)",
                default_endpoint(if service.is_empty() { "ecs" } else { service }, "us-east-1")
            )));
        };
        if path.contains(['?', '#']) {
            return Err(config_error(format!(
                "invalid endpoint {shown:?}: no query string or fragment allowed"
            )));
        }
        let Some(host) = host_header(&endpoint) else {
            return Err(config_error(format!(
                "invalid endpoint {shown:?}: cannot tell its host and port"
            )));
        };
        for (what, value) in [
            ("region", region),
            ("service", service),
            ("target prefix", target_prefix),
        ] {
            if value.trim().is_empty() {
                return Err(config_error(format!("the AWS {what} must not be empty")));
            }
        }
        let url = if path == "/" {
            format!("{endpoint}/")
        } else {
            endpoint.clone()
        };
        let agent = agent_for(cfg, &url)?;
        Ok(JsonClient {
            agent,
            endpoint,
            url,
            host,
            region: region.trim().to_string(),
            service: service.trim().to_string(),
            target_prefix: target_prefix.trim().to_string(),
            creds,
            cfg: cfg.clone(),
        })
    }

    /// The endpoint, without a trailing slash.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// What the credential source looks at, for messages.
    pub fn credentials_description(&self) -> String {
        self.creds.describe()
    }

    /// Calls `operation` with a JSON `body` and returns the JSON response
    /// (an empty 2xx body gives `{}`).
    pub fn call(&self, operation: &str, body: &serde_json::Value) -> Result<serde_json::Value, AwsError> {
        let started = Instant::now();
        let result = self.call_inner(operation, body);
        let elapsed_ms = started.elapsed().as_millis();
        match &result {
            Ok((status, _)) => {
                log::trace!("{} {operation}: HTTP {status} in {elapsed_ms} ms", self.service);
            }
            Err(e) => {
                let status = e
                    .status
                    .map_or_else(|| "no response".to_string(), |s| format!("HTTP {s}"));
                log::trace!("{} {operation}: {status} in {elapsed_ms} ms: {}", self.service, e.code);
            }
        }
        result.map(|(_, v)| v)
    }

    fn call_inner(&self, operation: &str, body: &serde_json::Value) -> Result<(u16, serde_json::Value), AwsError> {
        let payload = serde_json::to_vec(body).map_err(|e| {
            AwsError::new(
                ErrorKind::Client,
                operation,
                "SerializationError",
                format!("cannot encode the request: {e}"),
                None,
            )
        })?;
        let creds = self.creds.credentials().map_err(|e| e.with_operation(operation))?;
        check_sendable(&creds).map_err(|e| e.with_operation(operation))?;
        // What a service message may quote back (a bad signature's canonical request).
        let secrets = [creds.secret_access_key(), creds.session_token().unwrap_or_default()];
        let target = format!("{}.{operation}", self.target_prefix);
        let mut headers = vec![
            ("host".to_string(), self.host.clone()),
            ("content-type".to_string(), CONTENT_TYPE.to_string()),
            ("x-amz-target".to_string(), target),
        ];
        let signed = sign_request(
            "POST",
            &self.url,
            &headers,
            &payload,
            &self.service,
            &self.region,
            &creds,
            SystemTime::now(),
        )
        .map_err(|e| e.with_operation(operation))?;
        headers.extend(signed);
        if let Some((name, _)) = headers.iter().find(|(_, v)| !redact::header_value_ok(v)) {
            return Err(header_error(operation, &self.endpoint, name));
        }

        let mut request = self.agent.post(&self.url);
        for (name, value) in &headers {
            request = request.set(name, value);
        }
        match request.send_bytes(&payload) {
            Ok(response) => {
                let status = response.status();
                let request_id = request_id(&response);
                let text =
                    read_body(response).map_err(|e| self.io_error(operation, &e, "reading the response from"))?;
                if !(200..300).contains(&status) {
                    // Only reachable for 1xx/3xx: ureq reports 4xx/5xx as Status errors.
                    return Err(parse_error_response_hiding(operation, status, None, &text, &secrets));
                }
                if text.trim().is_empty() {
                    return Ok((status, serde_json::Value::Object(Default::default())));
                }
                serde_json::from_str(&text).map(|v| (status, v)).map_err(|e| {
                    AwsError::new(
                        ErrorKind::Decode,
                        operation,
                        "InvalidResponse",
                        format!(
                            "the response from {} is not valid JSON ({e}){}: {}",
                            self.endpoint,
                            request_id.map(|id| format!(", request id {id}")).unwrap_or_default(),
                            truncate_chars(&redact::values(text.trim(), &secrets), 200)
                        ),
                        Some(status),
                    )
                })
            }
            Err(ureq::Error::Status(status, response)) => {
                let error_type = response.header("x-amzn-errortype").map(str::to_string);
                let request_id = request_id(&response);
                let text = read_body(response).unwrap_or_default();
                let mut err = parse_error_response_hiding(operation, status, error_type.as_deref(), &text, &secrets);
                if let Some(id) = request_id {
                    log::debug!(
                        "{} {operation} failed with {} (HTTP {status}), request id {id}",
                        self.service,
                        err.code
                    );
                }
                if err.kind == ErrorKind::Auth {
                    err.message = format!(
                        "{} [credentials: access key {} from {}]",
                        err.message, creds.access_key_id, creds.provider
                    );
                }
                Err(err)
            }
            Err(ureq::Error::Transport(t)) => Err(self.transport_error(operation, &t)),
        }
    }

    fn transport_error(&self, operation: &str, t: &ureq::Transport) -> AwsError {
        transport_error(operation, &self.endpoint, &self.host, &self.cfg, t)
    }

    fn io_error(&self, operation: &str, e: &io::Error, doing: &str) -> AwsError {
        io_error_kind(
            operation,
            &self.endpoint,
            &self.cfg,
            Some(e.kind()),
            &e.to_string(),
            doing,
        )
    }
}

/// The shared agent for requests to `url` under `cfg` (proxy, CA file, timeouts).
pub fn agent_for(cfg: &HttpConfig, url: &str) -> Result<ureq::Agent, AwsError> {
    Ok(Transport::shared(cfg)?.agent(url))
}

/// An agent for the local credential endpoints (instance metadata, container credentials):
/// the timeouts of `cfg`, never a proxy, no redirects.
pub fn local_agent(cfg: &HttpConfig) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(cfg.connect_timeout)
        .timeout(cfg.request_timeout)
        .redirects(0)
        .user_agent(concat!("nomad-driver-ecs/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// One HTTP exchange for the non-JSON AWS endpoints (STS query API, instance metadata,
/// container credentials): any HTTP status comes back as `Ok((status, body))`; only transport
/// failures are errors, mapped like the JSON client's. `endpoint` names the server in messages.
pub fn exchange(
    request: ureq::Request,
    body: Option<&[u8]>,
    operation: &str,
    endpoint: &str,
    cfg: &HttpConfig,
) -> Result<(u16, String), AwsError> {
    let host = host_header(endpoint).unwrap_or_else(|| endpoint.to_string());
    // ureq lists every header name but only the values it can send: a name with fewer values
    // than headers has one it would refuse (with a message quoting it).
    let names = request.header_names();
    if let Some(name) = names
        .iter()
        .find(|n| request.all(n).len() < names.iter().filter(|m| m == n).count())
    {
        return Err(header_error(operation, endpoint, name));
    }
    let result = match body {
        Some(b) => request.send_bytes(b),
        None => request.call(),
    };
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(ureq::Error::Transport(t)) => return Err(transport_error(operation, endpoint, &host, cfg, &t)),
    };
    let status = response.status();
    let text = read_body(response).map_err(|e| {
        io_error_kind(
            operation,
            endpoint,
            cfg,
            Some(e.kind()),
            &e.to_string(),
            "reading the response from",
        )
    })?;
    Ok((status, text))
}

/// What cannot go into an HTTP header, for messages.
const NOT_A_HEADER: &str =
    "contains a character that cannot be sent in an HTTP header (a control character, a line break or a non-ASCII character)";

/// The credentials' session token and access key id can be sent as headers; an error names
/// the provider they came from, never the value (the HTTP library's own error would quote it).
pub(crate) fn check_sendable(creds: &Credentials) -> Result<(), AwsError> {
    let bad = |what: &str| {
        Err(AwsError::new(
            ErrorKind::Credentials,
            "",
            "InvalidCredentials",
            format!(
                "the {what} from {} {NOT_A_HEADER}: fix the credentials that provider hands out",
                creds.provider
            ),
            None,
        ))
    };
    if creds.session_token().is_some_and(|t| !redact::header_value_ok(t)) {
        return bad("session token");
    }
    if !redact::header_value_ok(&creds.access_key_id) {
        return bad("access key id");
    }
    Ok(())
}

/// The error for header `name`, whose value cannot be sent: the header and where its value
/// comes from, never the value.
fn header_error(operation: &str, endpoint: &str, name: &str) -> AwsError {
    let source = match name.to_ascii_lowercase().as_str() {
        "x-amz-security-token" => "the session token of the credentials that sign the request",
        "authorization" => {
            "the container authorization token (AWS_CONTAINER_AUTHORIZATION_TOKEN or \
                 AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE), or the access key id of the credentials that sign the request"
        }
        "x-aws-ec2-metadata-token" => "the session token instance metadata handed out",
        _ => "its value",
    };
    AwsError::new(
        ErrorKind::Credentials,
        operation,
        "InvalidHeaderValue",
        format!("the {name} header of the request to {endpoint} {NOT_A_HEADER}; it comes from {source}"),
        None,
    )
}

/// ureq's message for a header it refuses quotes the whole header line: keep the name only.
fn without_header_value(detail: String) -> String {
    match detail.split_once("invalid header '") {
        Some((before, line)) => {
            let name = line.split(':').next().unwrap_or_default();
            format!("{before}invalid header {name} (value not shown)")
        }
        None => detail,
    }
}

fn transport_error(operation: &str, endpoint: &str, host: &str, cfg: &HttpConfig, t: &ureq::Transport) -> AwsError {
    let io_kind = t
        .source()
        .and_then(|s| s.downcast_ref::<io::Error>())
        .map(io::Error::kind);
    let detail = without_header_value(
        t.source()
            .map(|s| s.to_string())
            .or_else(|| t.message().map(str::to_string))
            .unwrap_or_else(|| t.to_string()),
    );
    let (kind, code, what) = match t.kind() {
        ureq::ErrorKind::Dns => (
            ErrorKind::Network,
            "Dns",
            format!("DNS lookup of {host} failed ({detail})"),
        ),
        ureq::ErrorKind::ConnectionFailed => match io_kind {
            Some(io::ErrorKind::ConnectionRefused) => (
                ErrorKind::Network,
                "ConnectionRefused",
                "connection refused".to_string(),
            ),
            Some(io::ErrorKind::TimedOut) | Some(io::ErrorKind::WouldBlock) => (
                ErrorKind::Network,
                "Timeout",
                format!("connection timed out after {} s", cfg.connect_timeout.as_secs_f64()),
            ),
            _ if detail.to_ascii_lowercase().contains("tls") || detail.to_ascii_lowercase().contains("certificate") => {
                (ErrorKind::Network, "Tls", format!("TLS failed: {detail}"))
            }
            _ => (
                ErrorKind::Network,
                "ConnectionFailed",
                format!("connection failed: {detail}"),
            ),
        },
        ureq::ErrorKind::Io => {
            return io_error_kind(operation, endpoint, cfg, io_kind, &detail, "talking to");
        }
        ureq::ErrorKind::InvalidUrl | ureq::ErrorKind::UnknownScheme => (
            ErrorKind::Client,
            "InvalidConfiguration",
            format!("invalid URL: {detail}"),
        ),
        ureq::ErrorKind::BadStatus | ureq::ErrorKind::BadHeader => (
            ErrorKind::Network,
            "Protocol",
            format!("invalid HTTP response: {detail}"),
        ),
        _ => (ErrorKind::Network, "Io", detail),
    };
    AwsError::new(kind, operation, code, format!("cannot reach {endpoint}: {what}"), None)
}

fn io_error_kind(
    operation: &str,
    endpoint: &str,
    cfg: &HttpConfig,
    kind: Option<io::ErrorKind>,
    detail: &str,
    doing: &str,
) -> AwsError {
    let (code, what) = match kind {
        Some(io::ErrorKind::TimedOut) | Some(io::ErrorKind::WouldBlock) => (
            "Timeout",
            format!("no complete response within {} s", cfg.request_timeout.as_secs_f64()),
        ),
        Some(io::ErrorKind::ConnectionReset)
        | Some(io::ErrorKind::ConnectionAborted)
        | Some(io::ErrorKind::BrokenPipe)
        | Some(io::ErrorKind::UnexpectedEof) => ("ConnectionReset", format!("connection closed: {detail}")),
        Some(io::ErrorKind::ConnectionRefused) => ("ConnectionRefused", "connection refused".to_string()),
        _ => ("Io", detail.to_string()),
    };
    AwsError::new(
        ErrorKind::Network,
        operation,
        code,
        format!("error {doing} {endpoint}: {what}"),
        None,
    )
}

fn request_id(response: &ureq::Response) -> Option<String> {
    response
        .header("x-amzn-requestid")
        .or_else(|| response.header("x-amz-request-id"))
        .map(str::to_string)
}

fn read_body(response: ureq::Response) -> io::Result<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    response.into_reader().take(MAX_BODY_BYTES).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::credentials::{Credentials, StaticCredentials};
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn creds() -> Arc<dyn CredentialSource> {
        Arc::new(StaticCredentials(Credentials::new(
            "AKIDEXAMPLE",
            SECRET,
            Some("SESSIONTOKEN".into()),
            None,
            "test",
        )))
    }

    /// A one-shot HTTP server: answers one request with `response` and sends
    /// the raw request (head + body) back over the channel.
    fn one_shot(status_and_headers: &str, body: &str) -> (String, mpsc::Receiver<String>) {
        let response = format!(
            "{status_and_headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut content_length = 0usize;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    content_length = v.trim().parse().unwrap();
                }
                head.push_str(&line);
                if line == "\r\n" || line.is_empty() {
                    break;
                }
            }
            let mut body = vec![0u8; content_length];
            reader.read_exact(&mut body).unwrap();
            let mut stream = stream;
            stream.write_all(response.as_bytes()).unwrap();
            stream.flush().unwrap();
            tx.send(format!("{head}{}", String::from_utf8_lossy(&body))).unwrap();
        });
        (format!("http://127.0.0.1:{port}"), rx)
    }

    fn client(endpoint: &str) -> JsonClient {
        JsonClient::new(
            endpoint,
            "us-east-1",
            "ecs",
            "AmazonEC2ContainerServiceV20141113",
            creds(),
            &HttpConfig::default(),
        )
        .unwrap()
    }

    #[test]
    fn default_endpoints() {
        assert_eq!(
            default_endpoint("ecs", "us-east-1"),
            "https://ecs.us-east-1.amazonaws.com"
        );
        assert_eq!(
            default_endpoint("ecs", "cn-north-1"),
            "https://ecs.cn-north-1.amazonaws.com.cn"
        );
        let cfg = HttpConfig::default();
        assert_eq!(cfg.connect_timeout, Duration::from_secs(5));
        assert_eq!(cfg.request_timeout, Duration::from_secs(30));
    }

    #[test]
    fn endpoint_override_order() {
        let env = |n: &str| match n {
            "AWS_ENDPOINT_URL_ECS" => Some("http://ecs.local/".to_string()),
            "AWS_ENDPOINT_URL" => Some("http://all.local".to_string()),
            _ => None,
        };
        assert_eq!(
            endpoint_override(Some("http://opt/"), "ECS", &env).as_deref(),
            Some("http://opt")
        );
        assert_eq!(
            endpoint_override(None, "ECS", &env).as_deref(),
            Some("http://ecs.local")
        );
        assert_eq!(
            endpoint_override(None, "LOGS", &env).as_deref(),
            Some("http://all.local")
        );
        assert_eq!(endpoint_override(None, "STS", &|_| None), None);
    }

    #[test]
    fn partitions_and_fips() {
        assert_eq!(
            endpoint_for("ecs", "us-east-1", true),
            "https://ecs-fips.us-east-1.amazonaws.com"
        );
        assert_eq!(
            endpoint_for("sts", "us-gov-west-1", true),
            "https://sts-fips.us-gov-west-1.amazonaws.com"
        );
        assert_eq!(
            endpoint_for("ecs", "cn-northwest-1", false),
            "https://ecs.cn-northwest-1.amazonaws.com.cn"
        );
        assert_eq!(
            endpoint_for("ecs", "us-iso-east-1", false),
            "https://ecs.us-iso-east-1.c2s.ic.gov"
        );
        assert_eq!(
            endpoint_for("ecs", "us-isob-east-1", false),
            "https://ecs.us-isob-east-1.sc2s.sgov.gov"
        );
        assert_eq!(
            endpoint_for("ecs", "eu-isoe-west-1", false),
            "https://ecs.eu-isoe-west-1.cloud.adc-e.uk"
        );
        assert_eq!(
            endpoint_for("ecs", "us-isof-south-1", false),
            "https://ecs.us-isof-south-1.csp.hci.ic.gov"
        );
    }

    #[test]
    fn rejects_bad_configuration() {
        for ep in [
            "",
            "ecs.us-east-1.amazonaws.com",
            "ftp://x",
            "http://u:p@h",
            "http://h/?a=1",
        ] {
            let e = JsonClient::new(ep, "us-east-1", "ecs", "P", creds(), &HttpConfig::default()).unwrap_err();
            assert_eq!(e.code, "InvalidConfiguration", "{ep}");
            assert_eq!(e.kind, ErrorKind::Client);
        }
        let e = JsonClient::new("http://h", "", "ecs", "P", creds(), &HttpConfig::default()).unwrap_err();
        assert!(e.message.contains("region"));
        let c = client("https://ecs.us-east-1.amazonaws.com/");
        assert_eq!(c.endpoint(), "https://ecs.us-east-1.amazonaws.com");
        assert!(!format!("{c:?}").contains(SECRET));
    }

    #[test]
    fn posts_signed_json_and_parses_response() {
        let (ep, rx) = one_shot(
            "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\n",
            "{\"clusters\": []}",
        );
        let c = client(&ep);
        let v = c
            .call("DescribeClusters", &serde_json::json!({"clusters": ["a"]}))
            .unwrap();
        assert_eq!(v, serde_json::json!({"clusters": []}));
        let raw = rx.recv().unwrap();
        let lower = raw.to_ascii_lowercase();
        assert!(raw.starts_with("POST / HTTP/1.1\r\n"), "{raw}");
        let port = ep.rsplit(':').next().unwrap();
        assert!(lower.contains(&format!("\r\nhost: 127.0.0.1:{port}\r\n")), "{raw}");
        assert_eq!(lower.matches("\r\nhost:").count(), 1, "{raw}");
        assert!(lower.contains("\r\ncontent-type: application/x-amz-json-1.1\r\n"));
        assert!(lower.contains("\r\nx-amz-target: amazonec2containerservicev20141113.describeclusters\r\n"));
        assert!(lower.contains("\r\nx-amz-security-token: sessiontoken\r\n"));
        assert!(
            lower.contains("signedheaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target"),
            "{raw}"
        );
        assert!(raw.ends_with("{\"clusters\":[\"a\"]}"));
        assert!(!raw.contains(SECRET));
    }

    #[test]
    fn error_status_is_parsed() {
        let (ep, _rx) = one_shot(
            "HTTP/1.1 400 Bad Request\r\nX-Amzn-Errortype: ClusterNotFoundException:http://internal.amazon.com/\r\n",
            "{\"message\":\"Cluster not found.\"}\n",
        );
        let e = client(&ep).call("DescribeTasks", &serde_json::json!({})).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert_eq!(e.code, "ClusterNotFoundException");
        assert_eq!(e.message, "Cluster not found.");
        assert_eq!(e.status, Some(400));
        assert_eq!(e.operation, "DescribeTasks");
    }

    #[test]
    fn auth_error_names_the_credentials_not_the_secret() {
        let (ep, _rx) = one_shot(
            "HTTP/1.1 403 Forbidden\r\nContent-Type: text/html\r\n",
            "<ErrorResponse><Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match</Message></Error></ErrorResponse>",
        );
        let e = client(&ep).call("RunTask", &serde_json::json!({})).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Auth);
        assert_eq!(e.code, "SignatureDoesNotMatch");
        let shown = e.to_string();
        assert!(shown.contains("access key AKIDEXAMPLE from test"), "{shown}");
        assert!(!shown.contains(SECRET));
        assert!(!shown.contains("SESSIONTOKEN"));
    }

    #[test]
    fn the_request_token_and_secret_are_redacted_from_service_messages() {
        // The token and the secret where no header name announces them: only their values
        // tell them apart.
        let body =
            format!("{{\"__type\":\"InvalidSignatureException\",\"message\":\"token SESSIONTOKEN, key {SECRET}\"}}");
        let (ep, _rx) = one_shot("HTTP/1.1 400 Bad Request\r\n", &body);
        let e = client(&ep).call("RunTask", &serde_json::json!({})).unwrap_err();
        assert_eq!(e.code, "InvalidSignatureException");
        let shown = e.to_string();
        assert!(!shown.contains("SESSIONTOKEN") && !shown.contains(SECRET), "{shown}");
        assert!(shown.contains("access key AKIDEXAMPLE from test"), "{shown}");
    }

    #[test]
    fn a_token_that_cannot_be_a_header_is_named_never_quoted() {
        for token in [
            "SESSION\u{1}TOKEN-TAIL",
            "SESSION\u{e9}TOKEN-TAIL",
            "SESSION\nX-Evil: TOKEN-TAIL",
        ] {
            let creds: Arc<dyn CredentialSource> = Arc::new(StaticCredentials(Credentials::new(
                "AKIDEXAMPLE",
                SECRET,
                Some(token.into()),
                None,
                "environment",
            )));
            let (ep, _rx) = one_shot("HTTP/1.1 200 OK\r\n", "{}");
            let c = JsonClient::new(&ep, "us-east-1", "ecs", "P", creds, &HttpConfig::default()).unwrap();
            let e = c.call("DescribeClusters", &serde_json::json!({})).unwrap_err();
            let shown = e.to_string();
            assert!(!shown.contains("TOKEN-TAIL") && !shown.contains("SESSION"), "{shown}");
            assert!(
                shown.contains("session token from environment") && shown.contains("HTTP header"),
                "{shown}"
            );
            assert!(!e.is_transient(), "{shown}");
        }
    }

    #[test]
    fn exchange_refuses_header_values_it_cannot_send() {
        let agent = local_agent(&HttpConfig::default());
        let req = agent
            .get("http://127.0.0.1:9/creds")
            .set("authorization", "container-token\u{1}-TAIL");
        let e = exchange(
            req,
            None,
            "container credentials",
            "http://127.0.0.1:9/creds",
            &HttpConfig::default(),
        )
        .unwrap_err();
        let shown = e.to_string();
        assert!(!shown.contains("container-token") && !shown.contains("TAIL"), "{shown}");
        assert!(shown.to_ascii_lowercase().contains("authorization"), "{shown}");
    }

    #[test]
    fn endpoint_user_info_is_never_quoted() {
        let e = JsonClient::new(
            "http://user:pa55word@h",
            "us-east-1",
            "ecs",
            "P",
            creds(),
            &HttpConfig::default(),
        )
        .unwrap_err();
        assert!(!e.to_string().contains("pa55word"), "{e}");
    }

    #[test]
    fn invalid_json_2xx_is_decode() {
        let (ep, _rx) = one_shot("HTTP/1.1 200 OK\r\n", "not json!");
        let e = client(&ep).call("RunTask", &serde_json::json!({})).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Decode);
        assert!(e.message.contains("not json!"));
    }

    #[test]
    fn connection_refused_is_network() {
        // Bind then drop to get a port that (very likely) refuses.
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let ep = format!("http://127.0.0.1:{port}");
        let e = client(&ep)
            .call("DescribeClusters", &serde_json::json!({}))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Network);
        assert_eq!(e.code, "ConnectionRefused");
        assert!(e.is_transient());
        assert_eq!(
            e.to_string(),
            format!("ECS DescribeClusters: cannot reach {ep}: connection refused")
        );
    }

    #[test]
    fn read_timeout_is_network_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            std::thread::sleep(Duration::from_millis(1500));
            drop(s);
        });
        let c = JsonClient::new(
            &format!("http://127.0.0.1:{port}"),
            "us-east-1",
            "ecs",
            "P",
            creds(),
            &HttpConfig {
                connect_timeout: Duration::from_secs(1),
                request_timeout: Duration::from_millis(300),
                ..HttpConfig::default()
            },
        )
        .unwrap();
        let e = c.call("DescribeClusters", &serde_json::json!({})).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Network);
        assert_eq!(e.code, "Timeout", "{e}");
        handle.join().unwrap();
    }

    #[test]
    fn credential_failure_is_attributed_to_the_operation() {
        struct NoCreds;
        impl CredentialSource for NoCreds {
            fn credentials(&self) -> Result<Credentials, AwsError> {
                Err(AwsError::new(
                    ErrorKind::Credentials,
                    "",
                    "NoCredentials",
                    "no AWS credentials found",
                    None,
                ))
            }
            fn describe(&self) -> String {
                "nothing".into()
            }
        }
        let c = JsonClient::new(
            "http://127.0.0.1:9",
            "us-east-1",
            "ecs",
            "P",
            Arc::new(NoCreds),
            &HttpConfig::default(),
        )
        .unwrap();
        let e = c.call("RunTask", &serde_json::json!({})).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Credentials);
        assert_eq!(e.to_string(), "ECS RunTask: no AWS credentials found");
    }
}
