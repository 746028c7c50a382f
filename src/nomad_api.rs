//! Nomad's HTTP API as the plugin reads it: allocations, nodes and the agent, for the adoption
//! and reaping of ECS tasks. This module knows nothing about ECS; it hands back plain values.
//!
//! Nomad's API is usually local (the client agent on the same machine), so requests never go
//! through a proxy: `HTTP_PROXY` / `HTTPS_PROXY` are ignored here. Redirects are not followed
//! (a redirect could carry the token to another host).
//!
//! The ACL token never appears in a log line, an error message or a `Debug` output.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::encoding::percent_encode;

/// Nomad's default HTTP address, as for the `nomad` CLI.
pub const DEFAULT_ADDRESS: &str = "http://127.0.0.1:4646";

/// The longest connect timeout, whatever the whole-request timeout.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where and how to reach Nomad's HTTP API.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiSettings {
    /// `http://host:port` or `https://host:port`, without a trailing `/`.
    pub address: String,
    /// The ACL token; wins over `token_file` when both are set.
    pub token: Option<String>,
    /// A file holding the ACL token, read (trimmed) at each request so a rotated token is
    /// picked up.
    pub token_file: Option<PathBuf>,
    /// PEM CA certificates to trust for `https://` addresses, in addition to the system roots.
    pub ca_file: Option<PathBuf>,
    /// Whole-request timeout; the connect timeout is the smaller of this and 2 s.
    pub timeout: Duration,
}

impl fmt::Debug for ApiSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiSettings")
            .field("address", &crate::redact::url(&self.address))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_file", &self.token_file)
            .field("ca_file", &self.ca_file)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl ApiSettings {
    /// The plugin options win; unset (or empty) ones fall back to `NOMAD_ADDR`, `NOMAD_TOKEN`,
    /// `NOMAD_CACERT` read through `env`, then [`DEFAULT_ADDRESS`]. A `token_file` option
    /// counts as a set token: `NOMAD_TOKEN` is then not read (it would otherwise win over it).
    pub fn resolve(
        address: Option<String>,
        token: Option<String>,
        token_file: Option<PathBuf>,
        ca_file: Option<PathBuf>,
        timeout: Duration,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> ApiSettings {
        let set = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        let set_path = |p: Option<PathBuf>| p.filter(|p| !p.as_os_str().is_empty());
        let address = set(address)
            .or_else(|| set(env("NOMAD_ADDR")))
            .unwrap_or_else(|| DEFAULT_ADDRESS.to_string());
        let token_file = set_path(token_file);
        let token = set(token).or_else(|| {
            if token_file.is_none() {
                set(env("NOMAD_TOKEN"))
            } else {
                None
            }
        });
        let ca_file = set_path(ca_file).or_else(|| set(env("NOMAD_CACERT")).map(PathBuf::from));
        ApiSettings {
            address: address.trim_end_matches('/').to_string(),
            token,
            token_file,
            ca_file,
            timeout,
        }
    }
}

/// An allocation as the plugin needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub id: String,
    pub namespace: String,
    pub job_id: String,
    pub task_group: String,
    /// `<job>.<group>[<index>]`.
    pub name: String,
    pub node_id: String,
    /// pending, running, complete, failed, lost, unknown.
    pub client_status: String,
    /// run, stop, evict.
    pub desired_status: String,
    /// `DesiredTransition.Migrate` is true. Nomad omits empty structures, so a missing
    /// `DesiredTransition` (or a null or missing `Migrate`) means false.
    pub migrate: bool,
    /// `PreviousAllocation`: the allocation this one replaces (Nomad's scheduler sets it for
    /// the replacement of a lost, drained or rescheduled allocation); empty when none.
    pub previous_allocation: String,
    /// `Job.Type`: service, batch, system or sysbatch ("" when the answer has no job).
    pub job_type: String,
}

impl Allocation {
    /// complete, failed or lost (Nomad's client-terminal statuses).
    pub fn is_client_terminal(&self) -> bool {
        matches!(self.client_status.as_str(), "complete" | "failed" | "lost")
    }

    /// The index in `Name` (`<job>.<group>[<index>]`), as NOMAD_ALLOC_INDEX gives it.
    pub fn index(&self) -> Option<u32> {
        let inner = self.name.strip_suffix(']')?;
        let open = inner.rfind('[')?;
        inner[open + 1..].parse().ok()
    }
}

/// What `GET /v1/agent/self` says about the agent the plugin talks to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentSelf {
    /// `config.Version` (e.g. "1.10.3").
    pub version: Option<String>,
    /// `config.Region`: the Nomad region of the agent.
    pub region: Option<String>,
    /// `stats.client.node_id`: set when the agent is a client (the plugin's own node).
    pub node_id: Option<String>,
}

/// A node of `GET /v1/nodes`, with one driver's fingerprint as Nomad stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStub {
    pub id: String,
    /// initializing, ready, down, disconnected.
    pub status: String,
    /// `Drivers.<name>`: None when the node has no such driver.
    pub driver: Option<DriverInfo>,
}

/// A driver's fingerprint on a node (`DriverInfo`): attributes are the fingerprint's,
/// as strings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DriverInfo {
    pub detected: bool,
    pub healthy: bool,
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// A Nomad client node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: String,
    /// initializing, ready, down, disconnected.
    pub status: String,
    /// A drain is under way: `DrainStrategy` is set (Nomad 0.8+), or the older `Drain` flag.
    pub draining: bool,
}

/// What kind of failure an [`ApiError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiErrorKind {
    /// Bad settings (unparsable address, unreadable CA file or token file).
    Config,
    /// No HTTP answer: connection refused, DNS, TLS, timeout.
    Unreachable,
    /// 403: the token is missing, unknown ("ACL token not found") or lacks a policy
    /// ("Permission denied").
    Denied,
    /// Any other non-2xx answer (5xx included: a 500 from the allocation endpoint means
    /// "cannot tell", never "gone").
    Server,
    /// 2xx with a body that is not the documented JSON shape.
    Decode,
}

/// An error from Nomad's API. `Display` gives one actionable line, never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub kind: ApiErrorKind,
    pub message: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

fn config_error(message: String) -> ApiError {
    ApiError {
        kind: ApiErrorKind::Config,
        message: format!("Nomad API settings: {message}"),
    }
}

/// A client of Nomad's HTTP API; one connection pool, shared by all calls.
pub struct NomadApi {
    settings: ApiSettings,
    agent: ureq::Agent,
    /// `settings.address` without its user info, for messages.
    shown_address: String,
}

impl fmt::Debug for NomadApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NomadApi")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// What a 404 means for an endpoint: "gone" only when Nomad itself says so (`alloc not
/// found`, `node not found`); any other 404 (a path Nomad does not serve: a wrong address,
/// a reverse proxy) is an error, so it can never be read as "the allocation is gone".
#[derive(Clone, Copy)]
enum Resource {
    Allocation,
    Node,
    Nodes,
    Agent,
}

impl Resource {
    fn not_found_body(self) -> Option<&'static str> {
        match self {
            Resource::Allocation => Some("alloc not found"),
            Resource::Node => Some("node not found"),
            Resource::Nodes | Resource::Agent => None,
        }
    }

    fn policy_hint(self) -> &'static str {
        match self {
            Resource::Allocation => "the token needs read access to the namespace (see README, Nomad ACL policy)",
            Resource::Node | Resource::Nodes => "the token needs node read access (see README, Nomad ACL policy)",
            Resource::Agent => "the token needs agent read access (see README, Nomad ACL policy)",
        }
    }
}

/// An HTTP answer: status and body.
struct Answer {
    status: u16,
    body: String,
}

/// One request's context, for its error messages.
struct Call<'a> {
    address: &'a str,
    path: String,
    token: Option<String>,
}

impl Call<'_> {
    /// Never the token, nor the user info of the address (or of any URL the detail quotes).
    fn error(&self, kind: ApiErrorKind, detail: impl fmt::Display) -> ApiError {
        let message = format!(
            "Nomad API {}: GET {}: {detail}",
            crate::redact::url(self.address),
            self.path
        );
        let token = self.token.as_deref().unwrap_or_default();
        ApiError {
            kind,
            message: crate::redact::text(&crate::redact::values(&message, &[token])),
        }
    }

    /// The error for a non-2xx answer (404s already handled by the caller).
    fn status_error(&self, resource: Resource, answer: &Answer) -> ApiError {
        let body = one_line(&answer.body, 200);
        let status = answer.status;
        if status == 403 {
            let detail = if is_unknown_token(&answer.body) {
                "ACL token not found (HTTP 403): the token (nomad_token, nomad_token_file or NOMAD_TOKEN) is not a valid Nomad ACL token".to_string()
            } else if self.token.is_none() {
                "permission denied (HTTP 403): no token was sent; set nomad_token, nomad_token_file or NOMAD_TOKEN (see README, Nomad ACL policy)".to_string()
            } else {
                format!("permission denied (HTTP 403): {}", resource.policy_hint())
            };
            return self.error(ApiErrorKind::Denied, detail);
        }
        let hint = if status == 500 && answer.body.contains("Unknown allocation") {
            if self.token.is_none() {
                "; with ACLs on, Nomad answers this for an allocation it will not show without a token: set nomad_token, nomad_token_file or NOMAD_TOKEN"
            } else {
                "; with ACLs on, Nomad answers this for an allocation the token cannot read: the token needs read access to the namespace"
            }
        } else {
            ""
        };
        let body = if body.is_empty() {
            "(empty body)".to_string()
        } else {
            body
        };
        self.error(ApiErrorKind::Server, format!("HTTP {status}: {body}{hint}"))
    }
}

fn is_unknown_token(body: &str) -> bool {
    body.to_ascii_lowercase().contains("acl token not found")
}

/// `s` trimmed, on one line, at most `max` characters.
fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.trim().chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if flat.chars().count() > max {
        let cut: String = flat.chars().take(max).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

impl NomadApi {
    /// Builds the HTTP agent once (rustls; with `ca_file`, the system roots plus that file's
    /// certificates). The address must start with `http://` or `https://`.
    pub fn new(settings: ApiSettings) -> Result<NomadApi, ApiError> {
        let mut settings = settings;
        settings.address = settings.address.trim().trim_end_matches('/').to_string();
        let lower = settings.address.to_ascii_lowercase();
        let rest = lower.strip_prefix("http://").or_else(|| lower.strip_prefix("https://"));
        // As messages show it: never a user name or password.
        let shown = crate::redact::url(&settings.address);
        if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
            return Err(config_error(format!(
                "nomad_address (or NOMAD_ADDR) {shown:?} is not an http:// or https:// URL with a host, e.g. {DEFAULT_ADDRESS}"
            )));
        }
        if settings.address.contains(['?', '#']) {
            return Err(config_error(format!(
                "nomad_address (or NOMAD_ADDR) {shown:?} must not hold a query or fragment"
            )));
        }
        if settings.timeout.is_zero() {
            return Err(config_error("the Nomad API timeout must be more than 0".to_string()));
        }
        let mut builder = ureq::AgentBuilder::new()
            .timeout_connect(settings.timeout.min(MAX_CONNECT_TIMEOUT))
            .timeout(settings.timeout)
            .redirects(0)
            .try_proxy_from_env(false)
            .user_agent(concat!("nomad-driver-ecs/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &settings.ca_file {
            let tls = crate::aws::transport::tls_config_with(path).map_err(|e| {
                config_error(e.message.replace(
                    "(ca_file option or AWS_CA_BUNDLE)",
                    "(nomad_ca_file option or NOMAD_CACERT)",
                ))
            })?;
            builder = builder.tls_config(Arc::new(tls));
        }
        let agent = builder.build();
        // Let ureq parse the address once, so a bad one fails here and not at each call.
        agent
            .get(&format!("{}/v1/agent/self", settings.address))
            .request_url()
            .map_err(|e| {
                config_error(format!(
                    "nomad_address (or NOMAD_ADDR) {shown:?} is not a valid URL: {}",
                    crate::redact::text(&e.to_string())
                ))
            })?;
        Ok(NomadApi {
            shown_address: shown,
            settings,
            agent,
        })
    }

    /// The address as messages show it: without a user name or password.
    pub fn address(&self) -> &str {
        &self.shown_address
    }

    /// GET /v1/allocation/<id>. `Ok(None)` on Nomad's 404 (garbage-collected or never
    /// existed). With ACLs on, an allocation the token cannot read gives `Err(Server)` (Nomad
    /// answers 500 `Unknown allocation`): "cannot tell", never "gone".
    pub fn allocation(&self, id: &str) -> Result<Option<Allocation>, ApiError> {
        let (call, answer) = self.get_resource("allocation", id)?;
        match self.check(&call, Resource::Allocation, answer)? {
            None => Ok(None),
            Some(body) => {
                let alloc = decode_allocation(&body).map_err(|e| call.error(ApiErrorKind::Decode, e))?;
                if alloc.id != id {
                    return Err(call.error(
                        ApiErrorKind::Decode,
                        format!("the answer is allocation {:?}, not the one asked for", alloc.id),
                    ));
                }
                Ok(Some(alloc))
            }
        }
    }

    /// GET /v1/node/<id>. `Ok(None)` on Nomad's 404.
    pub fn node(&self, id: &str) -> Result<Option<Node>, ApiError> {
        let (call, answer) = self.get_resource("node", id)?;
        match self.check(&call, Resource::Node, answer)? {
            None => Ok(None),
            Some(body) => decode_node(&body)
                .map(Some)
                .map_err(|e| call.error(ApiErrorKind::Decode, e)),
        }
    }

    /// GET /v1/agent/self: version, region and (for a client agent) its node id. A 403
    /// "Permission denied" (the token lacks agent:read) gives everything `None`; a wrong token
    /// is `Err(Denied)`.
    pub fn agent_self(&self) -> Result<AgentSelf, ApiError> {
        let (call, answer) = self.get("/v1/agent/self".to_string())?;
        if answer.status == 403 && !is_unknown_token(&answer.body) {
            return Ok(AgentSelf::default());
        }
        match self.check(&call, Resource::Agent, answer)? {
            None => Ok(AgentSelf::default()),
            Some(body) => decode_agent_self(&body).map_err(|e| call.error(ApiErrorKind::Decode, e)),
        }
    }

    /// GET /v1/nodes with the nodes whose driver `driver` is detected (Nomad's server-side
    /// filter, so that the answer stays small; a Nomad that refuses the filter is asked again
    /// without it, and the answer is filtered here either way). One request per call.
    pub fn nodes_with_driver(&self, driver: &str) -> Result<Vec<NodeStub>, ApiError> {
        let filter = format!("Drivers.{driver}.Detected == true");
        let (call, answer) = self.get(format!("/v1/nodes?filter={}", percent_encode(&filter)))?;
        let (call, answer) = if matches!(answer.status, 400 | 500) {
            log::debug!(
                "Nomad API refused the node filter (HTTP {}); listing all nodes",
                answer.status
            );
            self.get("/v1/nodes".to_string())?
        } else {
            (call, answer)
        };
        match self.check(&call, Resource::Nodes, answer)? {
            None => Ok(Vec::new()),
            Some(body) => decode_nodes(&body, driver).map_err(|e| call.error(ApiErrorKind::Decode, e)),
        }
    }

    fn get_resource(&self, endpoint: &str, id: &str) -> Result<(Call<'_>, Answer), ApiError> {
        if id.is_empty() {
            return Err(ApiError {
                kind: ApiErrorKind::Config,
                message: format!("Nomad API {}: GET /v1/{endpoint}/: empty {endpoint} id", self.address()),
            });
        }
        self.get(format!("/v1/{endpoint}/{}", percent_encode(id)))
    }

    /// `Ok(Some(body))` for 2xx, `Ok(None)` for Nomad's own 404, an error otherwise.
    fn check(&self, call: &Call<'_>, resource: Resource, answer: Answer) -> Result<Option<String>, ApiError> {
        match answer.status {
            200..=299 => Ok(Some(answer.body)),
            404 if resource
                .not_found_body()
                .is_some_and(|nf| answer.body.to_ascii_lowercase().contains(nf)) =>
            {
                Ok(None)
            }
            _ => Err(call.status_error(resource, &answer)),
        }
    }

    /// The token to send: `token`, else the token file's content; `None` when empty.
    fn current_token(&self) -> Result<Option<String>, ApiError> {
        let token = match (&self.settings.token, &self.settings.token_file) {
            (Some(t), _) => t.trim().to_string(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| {
                    config_error(format!(
                        "cannot read the Nomad token file {} (nomad_token_file): {e}",
                        path.display()
                    ))
                })?
                .trim()
                .to_string(),
            (None, None) => String::new(),
        };
        if token.is_empty() {
            return Ok(None);
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            // ureq's error for a bad header value would quote it: never let it.
            return Err(config_error(
                "the Nomad token (nomad_token, nomad_token_file or NOMAD_TOKEN) holds spaces, control or non-ASCII characters"
                    .to_string(),
            ));
        }
        Ok(Some(token))
    }

    /// One GET; any HTTP answer is `Ok`, only local and transport failures are errors.
    fn get(&self, path: String) -> Result<(Call<'_>, Answer), ApiError> {
        let token = self.current_token()?;
        let call = Call {
            address: &self.settings.address,
            path,
            token,
        };
        let mut request = self.agent.get(&format!("{}{}", call.address, call.path));
        if let Some(t) = &call.token {
            request = request.set("X-Nomad-Token", t);
        }
        let response = match request.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(t)) => {
                let kind = match t.kind() {
                    ureq::ErrorKind::InvalidUrl | ureq::ErrorKind::UnknownScheme => ApiErrorKind::Config,
                    _ => ApiErrorKind::Unreachable,
                };
                let hint = if kind == ApiErrorKind::Unreachable {
                    "; is the Nomad agent running, and is nomad_address / NOMAD_ADDR right?"
                } else {
                    ""
                };
                let mut detail = t.kind().to_string();
                if let Some(m) = t.message() {
                    detail = format!("{detail}: {m}");
                }
                if let Some(source) = std::error::Error::source(&t) {
                    detail = format!("{detail}: {source}");
                }
                return Err(call.error(kind, format!("no answer ({detail}){hint}")));
            }
        };
        let status = response.status();
        let body = response.into_string().map_err(|e| {
            call.error(
                ApiErrorKind::Unreachable,
                format!("reading the answer (HTTP {status}) failed: {e}"),
            )
        })?;
        log::debug!("Nomad API GET {}: HTTP {status}", call.path);
        Ok((call, Answer { status, body }))
    }
}

fn parse_object(body: &str) -> Result<serde_json::Map<String, Value>, String> {
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(format!("the answer is not a JSON object: {}", one_line(body, 200))),
        Err(e) => Err(format!("the answer is not valid JSON ({e}): {}", one_line(body, 200))),
    }
}

/// A string field: missing or null is `None`, another type an error.
fn opt_str(m: &serde_json::Map<String, Value>, field: &str) -> Result<Option<String>, String> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("field {field} is not a string: {other}")),
    }
}

fn req_str(m: &serde_json::Map<String, Value>, field: &str) -> Result<String, String> {
    opt_str(m, field)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("field {field} is missing"))
}

fn decode_allocation(body: &str) -> Result<Allocation, String> {
    let m = parse_object(body)?;
    let s = |f: &str| opt_str(&m, f).map(Option::unwrap_or_default);
    let migrate = match m.get("DesiredTransition") {
        None | Some(Value::Null) => false,
        Some(Value::Object(t)) => match t.get("Migrate") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => return Err(format!("field DesiredTransition.Migrate is not a boolean: {other}")),
        },
        Some(other) => return Err(format!("field DesiredTransition is not an object: {other}")),
    };
    Ok(Allocation {
        id: req_str(&m, "ID")?,
        namespace: s("Namespace")?,
        job_id: s("JobID")?,
        task_group: s("TaskGroup")?,
        name: s("Name")?,
        node_id: s("NodeID")?,
        client_status: req_str(&m, "ClientStatus")?,
        desired_status: s("DesiredStatus")?,
        migrate,
        previous_allocation: s("PreviousAllocation")?,
        job_type: match m.get("Job") {
            None | Some(Value::Null) => String::new(),
            Some(Value::Object(j)) => match j.get("Type") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(t)) => t.clone(),
                Some(other) => return Err(format!("field Job.Type is not a string: {other}")),
            },
            Some(other) => return Err(format!("field Job is not an object: {other}")),
        },
    })
}

/// `GET /v1/agent/self`: `config.Version` (see [`decode_version`]), `config.Region`,
/// `stats.client.node_id`.
fn decode_agent_self(body: &str) -> Result<AgentSelf, String> {
    let m = parse_object(body)?;
    let config = match m.get("config") {
        Some(Value::Object(c)) => c,
        _ => return Err("field config is missing".to_string()),
    };
    let node_id = match m
        .get("stats")
        .and_then(|s| s.get("client"))
        .and_then(|c| c.get("node_id"))
    {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()).filter(|s| !s.is_empty()),
        Some(other) => return Err(format!("field stats.client.node_id is not a string: {other}")),
    };
    Ok(AgentSelf {
        version: Some(decode_version(body)?),
        region: opt_str(config, "Region")
            .map_err(|e| format!("config: {e}"))?
            .filter(|r| !r.is_empty()),
        node_id,
    })
}

/// `GET /v1/nodes`: an array of node stubs, each with `Drivers.<driver>` when it has it.
fn decode_nodes(body: &str, driver: &str) -> Result<Vec<NodeStub>, String> {
    let list = match serde_json::from_str::<Value>(body) {
        Ok(Value::Array(a)) => a,
        Ok(_) => return Err(format!("the answer is not a JSON array: {}", one_line(body, 200))),
        Err(e) => return Err(format!("the answer is not valid JSON ({e}): {}", one_line(body, 200))),
    };
    let mut nodes = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let Value::Object(n) = item else {
            return Err(format!("node {i} is not a JSON object"));
        };
        let info = match n.get("Drivers").and_then(|d| d.get(driver)) {
            None | Some(Value::Null) => None,
            Some(Value::Object(d)) => {
                let flag = |k: &str| d.get(k).and_then(Value::as_bool).unwrap_or(false);
                let attributes = match d.get("Attributes") {
                    Some(Value::Object(a)) => a
                        .iter()
                        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                        .collect(),
                    _ => Default::default(),
                };
                Some(DriverInfo {
                    detected: flag("Detected"),
                    healthy: flag("Healthy"),
                    attributes,
                })
            }
            Some(other) => return Err(format!("node {i}: Drivers.{driver} is not an object: {other}")),
        };
        nodes.push(NodeStub {
            id: req_str(n, "ID").map_err(|e| format!("node {i}: {e}"))?,
            status: req_str(n, "Status").map_err(|e| format!("node {i}: {e}"))?,
            driver: info,
        });
    }
    Ok(nodes)
}

fn decode_node(body: &str) -> Result<Node, String> {
    let m = parse_object(body)?;
    let drain_strategy = !matches!(m.get("DrainStrategy"), None | Some(Value::Null));
    let drain_flag = m.get("Drain").and_then(Value::as_bool).unwrap_or(false);
    Ok(Node {
        id: req_str(&m, "ID")?,
        status: req_str(&m, "Status")?,
        draining: drain_strategy || drain_flag,
    })
}

/// `config.Version`: a string, or Nomad's object `{Version, VersionPrerelease, ...}`
/// (`Prerelease` accepted too); a non-empty prerelease is appended as `-<pre>`.
fn decode_version(body: &str) -> Result<String, String> {
    let m = parse_object(body)?;
    let config = match m.get("config") {
        Some(Value::Object(c)) => c,
        _ => return Err("field config is missing".to_string()),
    };
    match config.get("Version") {
        Some(Value::String(v)) if !v.is_empty() => Ok(v.clone()),
        Some(Value::Object(v)) => {
            let version = req_str(v, "Version").map_err(|e| format!("config.Version: {e}"))?;
            let mut pre = String::new();
            for field in ["VersionPrerelease", "Prerelease"] {
                if let Some(p) = opt_str(v, field).map_err(|e| format!("config.Version: {e}"))? {
                    if !p.is_empty() {
                        pre = p;
                        break;
                    }
                }
            }
            if pre.is_empty() {
                Ok(version)
            } else {
                Ok(format!("{version}-{pre}"))
            }
        }
        _ => Err("field config.Version is missing".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const ALLOC: &str = r#"{
        "ID": "5456bd7a-9fc0-c0dd-6131-cbee77f57577",
        "Namespace": "default",
        "EvalID": "5456bd7a",
        "Name": "example.cache[0]",
        "NodeID": "fb2170a8-257d-3c64-b14d-bc06cc94e34c",
        "JobID": "example",
        "TaskGroup": "cache",
        "DesiredStatus": "run",
        "ClientStatus": "running",
        "CreateIndex": 9,
        "TaskStates": {}
    }"#;

    fn with_transition(t: &str) -> String {
        ALLOC.replacen(
            "\"CreateIndex\"",
            &format!("\"DesiredTransition\": {t}, \"CreateIndex\""),
            1,
        )
    }

    #[test]
    fn decodes_an_allocation_without_transition() {
        let a = decode_allocation(ALLOC).unwrap();
        assert_eq!(
            a,
            Allocation {
                id: "5456bd7a-9fc0-c0dd-6131-cbee77f57577".into(),
                namespace: "default".into(),
                job_id: "example".into(),
                task_group: "cache".into(),
                name: "example.cache[0]".into(),
                node_id: "fb2170a8-257d-3c64-b14d-bc06cc94e34c".into(),
                client_status: "running".into(),
                desired_status: "run".into(),
                migrate: false,
                previous_allocation: String::new(),
                job_type: String::new(),
            }
        );
        assert!(!a.is_client_terminal());
        assert_eq!(a.index(), Some(0));
    }

    #[test]
    fn decodes_desired_transition() {
        assert!(
            decode_allocation(&with_transition(r#"{"Migrate": true, "Reschedule": null}"#))
                .unwrap()
                .migrate
        );
        assert!(
            !decode_allocation(&with_transition(r#"{"Migrate": null}"#))
                .unwrap()
                .migrate
        );
        assert!(
            !decode_allocation(&with_transition(r#"{"Reschedule": true}"#))
                .unwrap()
                .migrate
        );
        assert!(
            !decode_allocation(&with_transition(r#"{"Migrate": false}"#))
                .unwrap()
                .migrate
        );
        assert!(!decode_allocation(&with_transition("null")).unwrap().migrate);
        assert!(decode_allocation(&with_transition(r#"{"Migrate": "yes"}"#)).is_err());
    }

    #[test]
    fn missing_required_fields_are_named() {
        let no_id = ALLOC.replace("\"ID\":", "\"Other\":");
        assert!(decode_allocation(&no_id).unwrap_err().contains("ID"));
        let no_status = ALLOC.replace("\"ClientStatus\"", "\"Other\"");
        assert!(decode_allocation(&no_status).unwrap_err().contains("ClientStatus"));
        assert!(decode_allocation("[]").is_err());
        assert!(decode_allocation("<html>").is_err());
        assert!(decode_node(r#"{"ID": "n1"}"#).unwrap_err().contains("Status"));
        assert_eq!(
            decode_node(r#"{"ID": "n1", "Status": "ready", "Drain": false}"#).unwrap(),
            Node {
                id: "n1".into(),
                status: "ready".into(),
                draining: false,
            }
        );
        assert!(
            decode_node(r#"{"ID": "n1", "Status": "ready", "Drain": true}"#)
                .unwrap()
                .draining
        );
        let draining = r#"{"ID": "n1", "Status": "ready", "DrainStrategy": {"Deadline": 3600000000000}}"#;
        assert!(decode_node(draining).unwrap().draining);
        assert!(
            !decode_node(r#"{"ID": "n1", "Status": "ready", "DrainStrategy": null}"#)
                .unwrap()
                .draining
        );
        let system = ALLOC.replacen("\"JobID\"", "\"Job\": {\"Type\": \"system\"}, \"JobID\"", 1);
        assert_eq!(decode_allocation(&system).unwrap().job_type, "system");
    }

    #[test]
    fn terminal_statuses() {
        let mut a = decode_allocation(ALLOC).unwrap();
        for (s, t) in [
            ("pending", false),
            ("running", false),
            ("unknown", false),
            ("complete", true),
            ("failed", true),
            ("lost", true),
        ] {
            a.client_status = s.into();
            assert_eq!(a.is_client_terminal(), t, "{s}");
        }
    }

    #[test]
    fn version_string_and_object_forms() {
        assert_eq!(
            decode_version(r#"{"config": {"Version": "1.10.3"}}"#).unwrap(),
            "1.10.3"
        );
        assert_eq!(
            decode_version(r#"{"config": {"Version": {"Version": "1.10.3", "Prerelease": "", "Metadata": ""}}}"#)
                .unwrap(),
            "1.10.3"
        );
        assert_eq!(
            decode_version(r#"{"config": {"Version": {"Version": "1.11.0", "Prerelease": "beta.1"}}}"#).unwrap(),
            "1.11.0-beta.1"
        );
        assert_eq!(
            decode_version(
                r#"{"config": {"Version": {"Revision": "abc", "Version": "1.10.3", "VersionPrerelease": "rc1", "VersionMetadata": ""}}, "member": {}}"#
            )
            .unwrap(),
            "1.10.3-rc1"
        );
        assert!(decode_version(r#"{"config": {}}"#)
            .unwrap_err()
            .contains("config.Version"));
        assert!(decode_version(r#"{"member": {}}"#).is_err());
        assert!(decode_version(r#"{"config": {"Version": {"Prerelease": "x"}}}"#).is_err());
    }

    #[test]
    fn percent_encodes_path_segments() {
        assert_eq!(percent_encode("5456bd7a-9fc0-c0dd"), "5456bd7a-9fc0-c0dd");
        assert_eq!(percent_encode("a/b?c=d#e"), "a%2Fb%3Fc%3Dd%23e");
        assert_eq!(percent_encode("../x y"), "..%2Fx%20y");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    #[test]
    fn debug_hides_the_token() {
        let s = ApiSettings::resolve(
            None,
            Some("s3cr3t-token".into()),
            None,
            None,
            Duration::from_secs(5),
            &|_| None,
        );
        let shown = format!("{s:?}");
        assert!(!shown.contains("s3cr3t-token"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        let api = NomadApi::new(s).unwrap();
        assert!(!format!("{api:?}").contains("s3cr3t-token"));
        let none = ApiSettings::resolve(None, None, None, None, Duration::from_secs(5), &|_| None);
        assert!(format!("{none:?}").contains("token: None"));
    }

    #[test]
    fn resolve_precedence() {
        let env: HashMap<&str, &str> = [
            ("NOMAD_ADDR", "https://nomad.example:4646/"),
            ("NOMAD_TOKEN", "env-token"),
            ("NOMAD_CACERT", "/etc/nomad/ca.pem"),
        ]
        .into_iter()
        .collect();
        let env = |k: &str| env.get(k).map(|v| v.to_string());
        let t = Duration::from_secs(3);

        let s = ApiSettings::resolve(None, None, None, None, t, &env);
        assert_eq!(s.address, "https://nomad.example:4646");
        assert_eq!(s.token.as_deref(), Some("env-token"));
        assert_eq!(s.ca_file, Some(PathBuf::from("/etc/nomad/ca.pem")));
        assert_eq!(s.timeout, t);

        let s = ApiSettings::resolve(
            Some("http://10.0.0.1:4646".into()),
            Some("opt-token".into()),
            None,
            Some("/opt/ca.pem".into()),
            t,
            &env,
        );
        assert_eq!(s.address, "http://10.0.0.1:4646");
        assert_eq!(s.token.as_deref(), Some("opt-token"));
        assert_eq!(s.ca_file, Some(PathBuf::from("/opt/ca.pem")));

        // A token file option beats NOMAD_TOKEN; a token option beats both.
        let s = ApiSettings::resolve(None, None, Some("/run/token".into()), None, t, &env);
        assert_eq!(s.token, None);
        assert_eq!(s.token_file, Some(PathBuf::from("/run/token")));
        let s = ApiSettings::resolve(None, Some("opt".into()), Some("/run/token".into()), None, t, &env);
        assert_eq!(s.token.as_deref(), Some("opt"));

        // Nothing set anywhere (empty values count as unset).
        let empty = |_: &str| Some(String::new());
        let s = ApiSettings::resolve(Some(" ".into()), Some(String::new()), None, None, t, &empty);
        assert_eq!(s.address, DEFAULT_ADDRESS);
        assert_eq!(s.token, None);
        assert_eq!(s.ca_file, None);
    }

    #[test]
    fn bad_addresses_are_config_errors() {
        for address in [
            "127.0.0.1:4646",
            "ftp://x",
            "http://",
            "unix:///var/run/nomad.sock",
            "http://h:4646/?x",
        ] {
            let s = ApiSettings::resolve(Some(address.into()), None, None, None, Duration::from_secs(1), &|_| {
                None
            });
            let e = NomadApi::new(s).unwrap_err();
            assert_eq!(e.kind, ApiErrorKind::Config, "{address}");
            assert!(e.to_string().contains("nomad_address"), "{e}");
        }
        let s = ApiSettings::resolve(
            None,
            None,
            None,
            Some("/nonexistent/ca.pem".into()),
            Duration::from_secs(1),
            &|_| None,
        );
        let e = NomadApi::new(s).unwrap_err();
        assert_eq!(e.kind, ApiErrorKind::Config);
        assert!(e.to_string().contains("NOMAD_CACERT"), "{e}");
    }

    #[test]
    fn bad_token_is_never_quoted() {
        let s = ApiSettings::resolve(
            None,
            Some("abc\u{7f}def".into()),
            None,
            None,
            Duration::from_secs(1),
            &|_| None,
        );
        let e = NomadApi::new(s).unwrap().allocation("x").unwrap_err();
        assert_eq!(e.kind, ApiErrorKind::Config);
        assert!(!e.to_string().contains("abc"), "{e}");
    }

    #[test]
    fn the_address_user_info_is_never_quoted() {
        let settings = |address: &str| {
            ApiSettings::resolve(Some(address.into()), None, None, None, Duration::from_secs(1), &|_| {
                None
            })
        };
        for bad in ["ftp://nomaduser:n0mad-pa55@x", "http://nomaduser:n0mad-pa55@h:4646/?x"] {
            let e = NomadApi::new(settings(bad)).unwrap_err();
            assert!(!e.to_string().contains("n0mad-pa55"), "{e}");
            assert!(e.to_string().contains("nomad_address"), "{e}");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let s = settings(&format!("http://nomaduser:n0mad-pa55@127.0.0.1:{port}"));
        assert!(!format!("{s:?}").contains("n0mad-pa55"), "{s:?}");
        let api = NomadApi::new(s).unwrap();
        assert!(!format!("{api:?}").contains("n0mad-pa55"));
        assert!(!api.address().contains("n0mad-pa55"), "{}", api.address());
        for e in [api.allocation("x").unwrap_err(), api.allocation("").unwrap_err()] {
            assert!(!e.to_string().contains("n0mad-pa55"), "{e}");
            assert!(e.to_string().contains("127.0.0.1"), "{e}");
        }
    }

    #[test]
    fn error_messages_redact_the_token() {
        let call = Call {
            address: "http://127.0.0.1:4646",
            path: "/v1/allocation/x".into(),
            token: Some("tok-123".into()),
        };
        let e = call.status_error(
            Resource::Allocation,
            &Answer {
                status: 500,
                body: "echo tok-123\nsecond line".into(),
            },
        );
        assert_eq!(e.kind, ApiErrorKind::Server);
        assert!(!e.to_string().contains("tok-123"), "{e}");
        assert!(!e.to_string().contains('\n'), "{e}");
        let e = call.status_error(
            Resource::Allocation,
            &Answer {
                status: 403,
                body: "Permission denied".into(),
            },
        );
        assert_eq!(e.kind, ApiErrorKind::Denied);
        assert_eq!(
            e.to_string(),
            "Nomad API http://127.0.0.1:4646: GET /v1/allocation/x: permission denied (HTTP 403): the token needs read access to the namespace (see README, Nomad ACL policy)"
        );
    }
}
