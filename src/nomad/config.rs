//! Typed, validated configs from Nomad's cty-msgpack values (PROTOCOL.md §4): the plugin
//! stanza (`SetConfig`) and a task's `config { task { ... } }` (`StartTask`).
//!
//! Absent attributes arrive as nil, absent blocks as nil, numbers as int, float or string.
//! Every error names the offending field as written in the job or agent file.

use std::fmt;
use std::time::Duration;

use crate::aws::ecs::MAX_TAGS_PER_RESOURCE;
use crate::driver::config::{
    CapacityProviderStrategyItem, ContainerOverride, DriverConfig, HandoffConfig, LaunchType, NomadApiConfig,
    Placement, TaskSpec, VpcConfig, DEFAULT_ADDRESS_TIMEOUT, DEFAULT_CLUSTER, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_DRAIN_HANDOFF_WINDOW, DEFAULT_LOGS_POLL_INTERVAL, DEFAULT_POLL_INTERVAL, DEFAULT_REAP_GRACE,
    DEFAULT_REAP_INTERVAL, DEFAULT_REAP_MAX_STOP, DEFAULT_REAP_MAX_STOP_PERCENT, DEFAULT_REQUEST_TIMEOUT,
};
use crate::driver::MAX_DRIVER_TAGS;

use super::msgpack::{self, Value};

/// ECS limits on awsvpcConfiguration.
const MAX_SUBNETS: usize = 16;
const MAX_SECURITY_GROUPS: usize = 5;
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Bounds of `connect_timeout` and `request_timeout`.
const MIN_HTTP_TIMEOUT: Duration = Duration::from_millis(100);
const MAX_HTTP_TIMEOUT: Duration = Duration::from_secs(300);

/// A config that cannot be used: which field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.field, self.message)
    }
}

impl std::error::Error for ConfigError {}

type Result<T> = std::result::Result<T, ConfigError>;

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// A map value (object or block); nil → None.
fn object<'a>(v: &'a Value, path: &str) -> Result<Option<&'a Value>> {
    match v {
        Value::Nil => Ok(None),
        Value::Map(_) => Ok(Some(v)),
        other => Err(ConfigError::new(
            path,
            format!("expected a block or object, got a {}", other.kind()),
        )),
    }
}

fn field<'a>(obj: &'a Value, path: &str, key: &str) -> &'a Value {
    let _ = path;
    obj.get(key).unwrap_or(&Value::Nil)
}

pub fn opt_string(obj: &Value, path: &str, key: &str) -> Result<Option<String>> {
    match field(obj, path, key) {
        Value::Nil => Ok(None),
        Value::Str(s) => Ok(Some(s.clone())),
        other => Err(ConfigError::new(
            join(path, key),
            format!("expected a string, got a {}", other.kind()),
        )),
    }
}

pub fn opt_bool(obj: &Value, path: &str, key: &str) -> Result<Option<bool>> {
    match field(obj, path, key) {
        Value::Nil => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        // HCL converts "true"/"false" strings for bool attributes; accept the same.
        Value::Str(s) if s == "true" => Ok(Some(true)),
        Value::Str(s) if s == "false" => Ok(Some(false)),
        other => Err(ConfigError::new(
            join(path, key),
            format!("expected true or false, got a {}", other.kind()),
        )),
    }
}

pub fn opt_string_list(obj: &Value, path: &str, key: &str) -> Result<Option<Vec<String>>> {
    let name = join(path, key);
    match field(obj, path, key) {
        Value::Nil => Ok(None),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Str(s) => Ok(s.clone()),
                other => Err(ConfigError::new(
                    format!("{name}[{i}]"),
                    format!("expected a string, got a {}", other.kind()),
                )),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some),
        other => Err(ConfigError::new(
            name,
            format!("expected a list of strings, got a {}", other.kind()),
        )),
    }
}

/// A cty number: msgpack int, float, or (for values not exact in binary) a decimal string.
pub fn opt_number(obj: &Value, path: &str, key: &str) -> Result<Option<f64>> {
    let name = join(path, key);
    match field(obj, path, key) {
        Value::Nil => Ok(None),
        Value::Int(i) => Ok(Some(*i as f64)),
        Value::UInt(u) => Ok(Some(*u as f64)),
        Value::Float(f) => Ok(Some(*f)),
        Value::Str(s) => s
            .trim()
            .parse::<f64>()
            .map(Some)
            .map_err(|_| ConfigError::new(name, format!("expected a number, got {s:?}"))),
        other => Err(ConfigError::new(
            name,
            format!("expected a number, got a {}", other.kind()),
        )),
    }
}

fn decode_root(bytes: &[u8], what: &str) -> Result<Value> {
    if bytes.is_empty() {
        return Ok(Value::Map(Vec::new()));
    }
    msgpack::decode(bytes).map_err(|e| ConfigError::new(what, format!("cannot decode the config Nomad sent: {e}")))
}

/// Parses a Go-style duration: `500ms`, `5s`, `1m`, `1m30s`, `2h`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_end] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_end..];
        // Checked: parts that fit a Duration one by one can still overflow it together.
        total = total.checked_add(Duration::try_from_secs_f64(n * unit).ok()?)?;
    }
    Some(total)
}

fn validate_endpoint(url: &str) -> Result<()> {
    let ok = (url.starts_with("https://") || url.starts_with("http://"))
        && url
            .split("://")
            .nth(1)
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            "endpoint",
            format!(
                "{:?} is not an http(s) URL; use e.g. \"https://ecs.us-east-1.amazonaws.com\" or a VPC endpoint URL, or leave it unset",
                crate::redact::url(url)
            ),
        ))
    }
}

/// The plugin stanza (SetConfig's `msgpack_config`).
pub fn decode_plugin_config(bytes: &[u8]) -> Result<DriverConfig> {
    let root = decode_root(bytes, "config")?;
    let Some(obj) = object(&root, "config")? else {
        return Ok(DriverConfig::default());
    };
    let enabled = opt_bool(obj, "", "enabled")?.unwrap_or(false);
    let cluster = opt_string(obj, "", "cluster")?
        .filter(|c| !c.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_CLUSTER.into());
    let region = opt_string(obj, "", "region")?
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    if let Some(r) = &region {
        if !r
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(ConfigError::new(
                "region",
                format!("{r:?} is not an AWS region name (like \"us-east-1\")"),
            ));
        }
    }
    let endpoint = opt_string(obj, "", "endpoint")?
        .map(|e| e.trim().trim_end_matches('/').to_string())
        .filter(|e| !e.is_empty());
    if let Some(e) = &endpoint {
        validate_endpoint(e)?;
    }
    let poll_interval = match opt_string(obj, "", "poll_interval")? {
        None => DEFAULT_POLL_INTERVAL,
        Some(s) => match parse_duration(&s) {
            Some(d) if d >= MIN_POLL_INTERVAL => d,
            _ => {
                return Err(ConfigError::new(
                    "poll_interval",
                    format!("{s:?} is not a duration of at least 200ms (write e.g. \"5s\" or \"1m\")"),
                ))
            }
        },
    };
    let connect_timeout = http_timeout(obj, "connect_timeout", DEFAULT_CONNECT_TIMEOUT)?;
    let request_timeout = http_timeout(obj, "request_timeout", DEFAULT_REQUEST_TIMEOUT)?;
    if connect_timeout > request_timeout {
        return Err(ConfigError::new(
            "connect_timeout",
            format!(
                "{connect_timeout:?} is longer than request_timeout ({request_timeout:?}), which includes the connect: \
                 raise request_timeout or lower connect_timeout"
            ),
        ));
    }
    let profile = trimmed(opt_string(obj, "", "profile")?);
    let role_arn = trimmed(opt_string(obj, "", "role_arn")?);
    if let Some(r) = &role_arn {
        let ok = r.starts_with("arn:aws") && r.contains(":iam::") && r.contains(":role/");
        if !ok {
            return Err(ConfigError::new(
                "role_arn",
                format!("{r:?} is not an IAM role ARN (like \"arn:aws:iam::123456789012:role/nomad-ecs\")"),
            ));
        }
    }
    let external_id = trimmed(opt_string(obj, "", "external_id")?);
    if let Some(id) = &external_id {
        let ok =
            (2..=1224).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@:/-_".contains(c));
        if !ok {
            return Err(ConfigError::new(
                "external_id",
                "must be 2 to 1224 characters of letters, digits and +=,.@:/-_ (as the role's trust policy expects it)",
            ));
        }
        if role_arn.is_none() {
            return Err(ConfigError::new(
                "external_id",
                "is only used with role_arn: set role_arn too, or remove it",
            ));
        }
    }
    let role_session_name = trimmed(opt_string(obj, "", "role_session_name")?);
    if let Some(n) = &role_session_name {
        let ok = (2..=64).contains(&n.len()) && n.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@-_".contains(c));
        if !ok {
            return Err(ConfigError::new(
                "role_session_name",
                format!("{n:?} must be 2 to 64 characters of letters, digits and +=,.@-_"),
            ));
        }
    }
    let sts_endpoint = trimmed(opt_string(obj, "", "sts_endpoint")?).map(|e| e.trim_end_matches('/').to_string());
    if let Some(e) = &sts_endpoint {
        validate_endpoint(e).map_err(|err| ConfigError::new("sts_endpoint", err.message))?;
    }
    let ca_file = existing_path(obj, "ca_file", "a PEM file with the CA certificates to trust")?;
    let logs_endpoint = trimmed(opt_string(obj, "", "logs_endpoint")?).map(|e| e.trim_end_matches('/').to_string());
    if let Some(e) = &logs_endpoint {
        validate_endpoint(e).map_err(|err| ConfigError::new("logs_endpoint", err.message))?;
    }
    let logs_poll_interval = match opt_string(obj, "", "logs_poll_interval")? {
        None => DEFAULT_LOGS_POLL_INTERVAL,
        Some(s) => match parse_duration(&s) {
            Some(d) if d >= MIN_POLL_INTERVAL && d <= Duration::from_secs(600) => d,
            _ => {
                return Err(ConfigError::new(
                    "logs_poll_interval",
                    format!("{s:?} is not a duration from 200ms to 10m (write e.g. \"2s\")"),
                ))
            }
        },
    };
    let handoff = decode_handoff(obj)?;
    let family_prefix = trimmed(opt_string(obj, "", "family_prefix")?).unwrap_or_default();
    if family_prefix.len() > 200
        || family_prefix
            .chars()
            .any(|c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    {
        return Err(ConfigError::new(
            "family_prefix",
            format!("{family_prefix:?}: up to 200 letters, digits, hyphens and underscores (ECS's family rules)"),
        ));
    }
    let task_definition_cleanup = bounded_duration(
        obj,
        "task_definition_cleanup",
        Duration::ZERO,
        Duration::from_secs(1)..=Duration::from_secs(90 * 24 * 3600),
        true,
        "24h, or 0 to keep every revision",
    )?;
    if !task_definition_cleanup.is_zero() && handoff.reap_interval.is_zero() {
        return Err(ConfigError::new(
            "task_definition_cleanup",
            "needs the orphan sweep, in whose rounds it runs: set reap_interval above 0, or remove task_definition_cleanup",
        ));
    }
    Ok(DriverConfig {
        handoff,
        family_prefix,
        task_definition_cleanup,
        stream_logs: opt_bool(obj, "", "stream_logs")?.unwrap_or(true),
        logs_poll_interval,
        logs_endpoint,
        enabled,
        cluster,
        region,
        endpoint,
        poll_interval,
        connect_timeout,
        request_timeout,
        ca_file,
        use_fips_endpoint: opt_bool(obj, "", "use_fips_endpoint")?.unwrap_or(false),
        address_timeout: match opt_string(obj, "", "address_timeout")? {
            None => DEFAULT_ADDRESS_TIMEOUT,
            Some(s) => match parse_duration(&s) {
                Some(d) if d <= Duration::from_secs(15 * 60) => d,
                _ => {
                    return Err(ConfigError::new(
                        "address_timeout",
                        format!("{s:?} is not a duration up to 15m (write e.g. \"2m\", or \"0s\" not to wait)"),
                    ))
                }
            },
        },
        profile,
        role_arn,
        external_id,
        role_session_name,
        sts_endpoint,
    })
}

/// The Nomad API options and the adoption, drain-handoff and sweep settings.
fn decode_handoff(obj: &Value) -> Result<HandoffConfig> {
    let address = trimmed(opt_string(obj, "", "nomad_address")?).map(|a| a.trim_end_matches('/').to_string());
    if let Some(a) = &address {
        validate_endpoint(a).map_err(|_| {
            ConfigError::new(
                "nomad_address",
                format!(
                    "{:?} is not an http(s) URL of a Nomad agent; use e.g. \"http://127.0.0.1:4646\", or leave it unset for NOMAD_ADDR",
                    crate::redact::url(a)
                ),
            )
        })?;
    }
    let token = trimmed(opt_string(obj, "", "nomad_token")?);
    let token_file = existing_path(obj, "nomad_token_file", "a file holding the ACL token's secret ID")?;
    if token.is_some() && token_file.is_some() {
        return Err(ConfigError::new(
            "nomad_token_file",
            "is set together with nomad_token: keep one of them",
        ));
    }
    let ca_file = existing_path(obj, "nomad_ca_file", "the PEM CA certificate of the Nomad agent's TLS")?;
    let duration = |key: &str, default: Duration, min: Duration, max: Duration, off: bool, example: &str| {
        bounded_duration(obj, key, default, min..=max, off, example)
    };
    let day = Duration::from_secs(24 * 3600);
    Ok(HandoffConfig {
        api: NomadApiConfig {
            address,
            token,
            token_file,
            ca_file,
        },
        adopt_lost: opt_bool(obj, "", "adopt_lost")?.unwrap_or(true),
        drain_handoff: opt_bool(obj, "", "drain_handoff")?.unwrap_or(true),
        drain_handoff_window: duration(
            "drain_handoff_window",
            DEFAULT_DRAIN_HANDOFF_WINDOW,
            Duration::from_secs(1),
            day,
            false,
            "10m",
        )?,
        reap_interval: duration(
            "reap_interval",
            DEFAULT_REAP_INTERVAL,
            Duration::from_secs(1),
            day,
            true,
            "5m, or 0 to turn the sweep off",
        )?,
        reap_grace: duration("reap_grace", DEFAULT_REAP_GRACE, Duration::ZERO, 7 * day, false, "15m")?,
        reap_dry_run: opt_bool(obj, "", "reap_dry_run")?.unwrap_or(false),
        nomad_cluster: nomad_cluster_name(obj)?,
        reap_clusters: reap_clusters(obj)?,
        reap_max_stop: opt_count(obj, "reap_max_stop", DEFAULT_REAP_MAX_STOP, 1..=10_000)?,
        reap_max_stop_percent: opt_count(obj, "reap_max_stop_percent", DEFAULT_REAP_MAX_STOP_PERCENT, 1..=100)?,
    })
}

/// `nomad_cluster`: a name ECS accepts as a tag value and an operator recognises.
fn nomad_cluster_name(obj: &Value) -> Result<Option<String>> {
    let name = trimmed(opt_string(obj, "", "nomad_cluster")?);
    if let Some(n) = &name {
        let ok = n.len() <= 64 && n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            return Err(ConfigError::new(
                "nomad_cluster",
                "must be 1 to 64 letters, digits, '-', '_' or '.' (a name for this Nomad cluster, the same on every \
                 client of the cluster and different from any other Nomad cluster that shares the ECS clusters)",
            ));
        }
    }
    Ok(name)
}

/// `reap_clusters`: more ECS clusters (names or ARNs) for the sweep.
fn reap_clusters(obj: &Value) -> Result<Vec<String>> {
    let list = opt_string_list(obj, "", "reap_clusters")?.unwrap_or_default();
    let mut out: Vec<String> = Vec::new();
    for (i, c) in list.iter().enumerate() {
        let c = c.trim();
        if c.is_empty() || c.len() > 2048 || c.chars().any(|ch| ch.is_control() || ch.is_whitespace()) {
            return Err(ConfigError::new(
                format!("reap_clusters[{i}]"),
                "must be an ECS cluster name or ARN",
            ));
        }
        if !out.iter().any(|o| o == c) {
            out.push(c.to_string());
        }
    }
    if out.len() > 100 {
        return Err(ConfigError::new("reap_clusters", "at most 100 clusters"));
    }
    Ok(out)
}

/// A whole-number option within `range`.
fn opt_count(obj: &Value, key: &str, default: u32, range: std::ops::RangeInclusive<u32>) -> Result<u32> {
    match opt_number(obj, "", key)? {
        None => Ok(default),
        Some(n) if n.fract() == 0.0 && n >= f64::from(*range.start()) && n <= f64::from(*range.end()) => Ok(n as u32),
        Some(n) => Err(ConfigError::new(
            key,
            format!("{n} is not a whole number from {} to {}", range.start(), range.end()),
        )),
    }
}

/// A duration option within `range` (`off`: zero is allowed too, and turns the feature off).
fn bounded_duration(
    obj: &Value,
    key: &str,
    default: Duration,
    range: std::ops::RangeInclusive<Duration>,
    off: bool,
    example: &str,
) -> Result<Duration> {
    match opt_string(obj, "", key)? {
        None => Ok(default),
        Some(s) => match parse_duration(&s) {
            Some(d) if (off && d.is_zero()) || range.contains(&d) => Ok(d),
            _ => Err(ConfigError::new(
                key,
                format!(
                    "{s:?} is not a duration from {:?} to {:?} (write e.g. {example:?})",
                    range.start(),
                    range.end()
                ),
            )),
        },
    }
}

/// A path option that must name an existing file; `what` says what the file holds.
fn existing_path(obj: &Value, key: &str, what: &str) -> Result<Option<std::path::PathBuf>> {
    let Some(path) = trimmed(opt_string(obj, "", key)?).map(std::path::PathBuf::from) else {
        return Ok(None);
    };
    match std::fs::metadata(&path) {
        Ok(_) => Ok(Some(path)),
        Err(e) => Err(ConfigError::new(
            key,
            format!("cannot read {} ({e}): give the path of {what}", path.display()),
        )),
    }
}

fn trimmed(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// `connect_timeout` / `request_timeout`: a duration between 100ms and 5m.
fn http_timeout(obj: &Value, key: &str, default: Duration) -> Result<Duration> {
    match opt_string(obj, "", key)? {
        None => Ok(default),
        Some(s) => match parse_duration(&s) {
            Some(d) if (MIN_HTTP_TIMEOUT..=MAX_HTTP_TIMEOUT).contains(&d) => Ok(d),
            _ => Err(ConfigError::new(
                key,
                format!("{s:?} is not a duration between 100ms and 5m (write e.g. \"5s\")"),
            )),
        },
    }
}

/// The task stanza (StartTask's `msgpack_driver_config`).
pub fn decode_task_config(bytes: &[u8]) -> Result<TaskSpec> {
    if bytes.is_empty() {
        return Err(ConfigError::new(
            "task",
            "the task has no driver config: add a config { task { task_definition = \"...\" } } block",
        ));
    }
    let root = decode_root(bytes, "config")?;
    let root = object(&root, "config")?.ok_or_else(|| ConfigError::new("task", "the task has no driver config"))?;
    let task = object(field(root, "", "task"), "task")?.ok_or_else(|| {
        ConfigError::new(
            "task",
            "a task block is required: config { task { task_definition = \"family:revision\" } }",
        )
    })?;

    let (task_definition, task_definition_json, task_definition_file) = decode_task_definition(task)?;
    let launch_type = match opt_string(task, "task", "launch_type")? {
        None => None,
        Some(s) if s.is_empty() => None,
        Some(s) => Some(LaunchType::parse(&s).ok_or_else(|| {
            ConfigError::new(
                "task.launch_type",
                format!("{s:?} is not a launch type; use {}", LaunchType::ALLOWED),
            )
        })?),
    };
    let vpc = match object(
        field(task, "task", "network_configuration"),
        "task.network_configuration",
    )? {
        None => None,
        Some(net) => {
            let path = "task.network_configuration.aws_vpc_configuration";
            match object(field(net, "", "aws_vpc_configuration"), path)? {
                None => None,
                Some(v) => Some(decode_vpc(v, path)?),
            }
        }
    };
    let mut spec = TaskSpec {
        task_definition,
        task_definition_json,
        task_definition_file,
        launch_type,
        vpc,
        ..TaskSpec::default()
    };
    decode_run_task_options(task, &mut spec)?;
    Ok(spec)
}

/// Where the task definition comes from: exactly one of `task_definition` (a registered one),
/// `task_definition_json` (checked here, with line and column on a syntax error) and
/// `task_definition_file` (a path inside the task directory, checked here, read at the start).
fn decode_task_definition(task: &Value) -> Result<(String, Option<String>, Option<String>)> {
    let named = trimmed(opt_string(task, "task", "task_definition")?);
    let json = opt_string(task, "task", "task_definition_json")?.filter(|s| !s.trim().is_empty());
    let file = trimmed(opt_string(task, "task", "task_definition_file")?);
    let given: Vec<&str> = [
        named.as_ref().map(|_| "task_definition"),
        json.as_ref().map(|_| "task_definition_json"),
        file.as_ref().map(|_| "task_definition_file"),
    ]
    .into_iter()
    .flatten()
    .collect();
    match given.len() {
        0 => {
            return Err(ConfigError::new(
                "task.task_definition",
                "is required: name a registered task definition as \"family\", \"family:revision\" or its ARN, \
                 or write one with task_definition_json or task_definition_file",
            ))
        }
        1 => {}
        _ => {
            return Err(ConfigError::new(
                format!("task.{}", given[1]),
                format!(
                "give only one of task_definition, task_definition_json and task_definition_file (this task has {})",
                given.join(" and ")
            ),
            ))
        }
    }
    if let Some(text) = &json {
        let field = "task.task_definition_json";
        crate::driver::taskdef::parse(text, field, "").map_err(|e| ConfigError::new(e.field, e.message))?;
    }
    if let Some(path) = &file {
        let field = "task.task_definition_file";
        crate::driver::taskdef::relative_names(path, field).map_err(|e| ConfigError::new(e.field, e.message))?;
    }
    Ok((named.unwrap_or_default(), json, file))
}

/// Identifier-ish option values: trimmed, empty → None, at most `max` characters.
fn opt_text(obj: &Value, path: &str, key: &str, max: usize) -> Result<Option<String>> {
    let v = trimmed(opt_string(obj, path, key)?);
    if let Some(s) = &v {
        if s.chars().count() > max {
            return Err(ConfigError::new(
                join(path, key),
                format!("is {} characters long; ECS allows at most {max}", s.chars().count()),
            ));
        }
    }
    Ok(v)
}

/// A whole number in `range`.
fn opt_u32(obj: &Value, path: &str, key: &str, range: std::ops::RangeInclusive<u32>) -> Result<Option<u32>> {
    match opt_number(obj, path, key)? {
        None => Ok(None),
        Some(n) if n.fract() == 0.0 && n >= f64::from(*range.start()) && n <= f64::from(*range.end()) => {
            Ok(Some(n as u32))
        }
        Some(n) => Err(ConfigError::new(
            join(path, key),
            format!("{n} is not a whole number from {} to {}", range.start(), range.end()),
        )),
    }
}

/// A `map(string)` attribute, in key order.
fn opt_string_map(obj: &Value, path: &str, key: &str) -> Result<Vec<(String, String)>> {
    let name = join(path, key);
    match field(obj, path, key) {
        Value::Nil => Ok(Vec::new()),
        Value::Map(entries) => {
            let mut out: Vec<(String, String)> = entries
                .iter()
                .map(|(k, v)| match (k, v) {
                    (Value::Str(k), Value::Str(v)) => Ok((k.clone(), v.clone())),
                    (Value::Str(k), other) => Err(ConfigError::new(
                        format!("{name}.{k}"),
                        format!("expected a string, got a {}", other.kind()),
                    )),
                    _ => Err(ConfigError::new(name.clone(), "keys must be strings")),
                })
                .collect::<Result<_>>()?;
            out.sort();
            Ok(out)
        }
        other => Err(ConfigError::new(
            name,
            format!("expected a map of strings, got a {}", other.kind()),
        )),
    }
}

/// The items of a repeated block (nil → none).
fn block_list<'a>(obj: &'a Value, path: &str, key: &str, max: usize) -> Result<Vec<(String, &'a Value)>> {
    let name = join(path, key);
    let items = match field(obj, path, key) {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(items) => items,
        other => {
            return Err(ConfigError::new(
                name,
                format!("expected {key} blocks, got a {}", other.kind()),
            ))
        }
    };
    if items.len() > max {
        return Err(ConfigError::new(
            name,
            format!("{} blocks given; ECS allows at most {max}", items.len()),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let p = format!("{name}[{i}]");
            match object(item, &p)? {
                Some(o) => Ok((p, o)),
                None => Err(ConfigError::new(p, "empty block")),
            }
        })
        .collect()
}

fn one_of(v: Option<String>, name: &str, allowed: &[&str]) -> Result<Option<String>> {
    match v {
        Some(s) if !allowed.contains(&s.as_str()) => Err(ConfigError::new(
            name,
            format!("{s:?} is not allowed; use one of {}", allowed.join(", ")),
        )),
        v => Ok(v),
    }
}

fn is_role_arn(s: &str) -> bool {
    s.starts_with("arn:aws") && s.contains(":iam::") && s.contains(":role/")
}

/// The RunTask options of the task block (named as RunTask's fields).
fn decode_run_task_options(task: &Value, spec: &mut TaskSpec) -> Result<()> {
    const P: &str = "task";
    spec.cluster = opt_text(task, P, "cluster", 2048)?;
    for (p, item) in block_list(task, P, "capacity_provider_strategy", 20)? {
        let capacity_provider = opt_text(item, &p, "capacity_provider", 255)?.ok_or_else(|| {
            ConfigError::new(
                join(&p, "capacity_provider"),
                "is required: name a capacity provider of the cluster, e.g. \"FARGATE_SPOT\"",
            )
        })?;
        spec.capacity_provider_strategy.push(CapacityProviderStrategyItem {
            capacity_provider,
            weight: opt_u32(item, &p, "weight", 0..=1000)?,
            base: opt_u32(item, &p, "base", 0..=100_000)?,
        });
    }
    if !spec.capacity_provider_strategy.is_empty() && spec.launch_type.is_some() {
        return Err(ConfigError::new(
            "task.capacity_provider_strategy",
            "cannot be combined with launch_type: ECS takes one or the other; remove launch_type to use the strategy",
        ));
    }
    if spec
        .capacity_provider_strategy
        .iter()
        .filter(|c| c.base.is_some_and(|b| b > 0))
        .count()
        > 1
    {
        return Err(ConfigError::new(
            "task.capacity_provider_strategy",
            "only one capacity provider may have a base above 0",
        ));
    }
    spec.platform_version = opt_text(task, P, "platform_version", 64)?;
    spec.enable_execute_command = opt_bool(task, P, "enable_execute_command")?;
    spec.enable_ecs_managed_tags = opt_bool(task, P, "enable_ecs_managed_tags")?;
    spec.propagate_tags = one_of(
        opt_text(task, P, "propagate_tags", 32)?,
        "task.propagate_tags",
        &["TASK_DEFINITION", "SERVICE", "NONE"],
    )?;
    spec.tags = opt_string_map(task, P, "tags")?;
    for (k, v) in &spec.tags {
        let name = format!("task.tags.{k}");
        if k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 {
            return Err(ConfigError::new(
                name,
                "tag keys are 1 to 128 characters, values at most 256",
            ));
        }
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(ConfigError::new(name, "the aws: prefix is reserved by AWS"));
        }
        if k.starts_with("nomad:") {
            return Err(ConfigError::new(
                name,
                "the nomad: prefix is reserved for the identity tags the driver adds itself",
            ));
        }
    }
    // ECS allows 50 tags per task, and the driver puts up to MAX_DRIVER_TAGS of its own on it
    // (identity at RunTask, more on a drain handoff or an adoption).
    let max_job_tags = MAX_TAGS_PER_RESOURCE - MAX_DRIVER_TAGS;
    if spec.tags.len() > max_job_tags {
        return Err(ConfigError::new(
            "task.tags",
            format!(
                "{} tags given; at most {max_job_tags}: ECS allows {MAX_TAGS_PER_RESOURCE} per task and the driver \
                 keeps {MAX_DRIVER_TAGS} for the nomad: identity tags it adds itself",
                spec.tags.len()
            ),
        ));
    }
    for (p, item) in block_list(task, P, "placement_constraints", 10)? {
        let kind = one_of(
            opt_text(item, &p, "type", 32)?,
            &join(&p, "type"),
            &["distinctInstance", "memberOf"],
        )?
        .ok_or_else(|| ConfigError::new(join(&p, "type"), "is required: distinctInstance or memberOf"))?;
        let value = opt_text(item, &p, "expression", 2000)?;
        if kind == "memberOf" && value.is_none() {
            return Err(ConfigError::new(
                join(&p, "expression"),
                "is required for memberOf (a cluster query language expression)",
            ));
        }
        spec.placement_constraints.push(Placement { kind, value });
    }
    for (p, item) in block_list(task, P, "placement_strategy", 5)? {
        let kind = one_of(
            opt_text(item, &p, "type", 32)?,
            &join(&p, "type"),
            &["random", "spread", "binpack"],
        )?
        .ok_or_else(|| ConfigError::new(join(&p, "type"), "is required: random, spread or binpack"))?;
        let value = opt_text(item, &p, "field", 255)?;
        spec.placement_strategy.push(Placement { kind, value });
    }
    let placement_needs_ec2 = !spec.placement_constraints.is_empty() || !spec.placement_strategy.is_empty();
    if placement_needs_ec2 && spec.launch_type == Some(LaunchType::Fargate) {
        return Err(ConfigError::new(
            "task.placement_constraints",
            "placement constraints and strategies apply to EC2 tasks only; remove them or use launch_type = \"EC2\"",
        ));
    }
    // Fargate's capacity providers run no EC2 instances either: ECS refuses placement for them.
    if let Some(fargate) = spec
        .capacity_provider_strategy
        .iter()
        .find(|c| matches!(c.capacity_provider.as_str(), "FARGATE" | "FARGATE_SPOT"))
        .filter(|_| placement_needs_ec2)
    {
        return Err(ConfigError::new(
            "task.placement_constraints",
            format!(
                "placement constraints and strategies apply to EC2 tasks only, and capacity_provider_strategy names \
                 the Fargate provider {:?}; remove them, or use only capacity providers backed by EC2 Auto Scaling \
                 groups",
                fargate.capacity_provider
            ),
        ));
    }
    spec.group = opt_text(task, P, "group", 255)?;
    spec.started_by = opt_text(task, P, "started_by", 128)?;
    if let Some(s) = &spec.started_by {
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '/')
        {
            return Err(ConfigError::new(
                "task.started_by",
                "may contain only letters, digits, -, _ and /",
            ));
        }
    }
    for key in ["task_role_arn", "execution_role_arn"] {
        let v = opt_text(task, P, key, 2048)?;
        if let Some(r) = &v {
            if !is_role_arn(r) {
                return Err(ConfigError::new(
                    join(P, key),
                    format!("{r:?} is not an IAM role ARN (like \"arn:aws:iam::123456789012:role/app\")"),
                ));
            }
        }
        if key == "task_role_arn" {
            spec.task_role_arn = v;
        } else {
            spec.execution_role_arn = v;
        }
    }
    spec.cpu = opt_text(task, P, "cpu", 32)?;
    spec.memory = opt_text(task, P, "memory", 32)?;
    for (p, item) in block_list(task, P, "container_overrides", 100)? {
        let name = opt_text(item, &p, "name", 255)?.ok_or_else(|| {
            ConfigError::new(
                join(&p, "name"),
                "is required: the name of a container in the task definition",
            )
        })?;
        if spec.container_overrides.iter().any(|c| c.name == name) {
            return Err(ConfigError::new(
                join(&p, "name"),
                format!("container {name:?} has two container_overrides blocks; merge them"),
            ));
        }
        spec.container_overrides.push(ContainerOverride {
            name,
            command: opt_string_list(item, &p, "command")?,
            environment: opt_string_map(item, &p, "environment")?,
            cpu: opt_u32(item, &p, "cpu", 0..=u32::MAX)?,
            memory: opt_u32(item, &p, "memory", 0..=u32::MAX)?,
            memory_reservation: opt_u32(item, &p, "memory_reservation", 0..=u32::MAX)?,
        });
    }
    spec.inject_env = opt_bool(task, P, "inject_env")?.unwrap_or(true);
    spec.env_containers = opt_string_list(task, P, "env_containers")?;
    if spec.env_containers.as_ref().is_some_and(|c| c.is_empty()) && spec.inject_env {
        return Err(ConfigError::new(
            "task.env_containers",
            "is empty: name the containers that get the Nomad environment, or set inject_env = false",
        ));
    }
    Ok(())
}

fn decode_vpc(v: &Value, path: &str) -> Result<VpcConfig> {
    let assign_public_ip = match opt_string(v, path, "assign_public_ip")? {
        None => None,
        Some(s) if s == "ENABLED" || s == "DISABLED" => Some(s),
        Some(s) => {
            return Err(ConfigError::new(
                join(path, "assign_public_ip"),
                format!("{s:?} is not allowed; use \"ENABLED\" or \"DISABLED\""),
            ))
        }
    };
    let subnets = opt_string_list(v, path, "subnets")?.unwrap_or_default();
    let security_groups = opt_string_list(v, path, "security_groups")?.unwrap_or_default();
    if subnets.is_empty() {
        return Err(ConfigError::new(
            join(path, "subnets"),
            "at least one subnet id is required for awsvpc networking",
        ));
    }
    if subnets.len() > MAX_SUBNETS {
        return Err(ConfigError::new(
            join(path, "subnets"),
            format!("ECS accepts at most {MAX_SUBNETS} subnets, got {}", subnets.len()),
        ));
    }
    if security_groups.len() > MAX_SECURITY_GROUPS {
        return Err(ConfigError::new(
            join(path, "security_groups"),
            format!(
                "ECS accepts at most {MAX_SECURITY_GROUPS} security groups, got {}",
                security_groups.len()
            ),
        ));
    }
    for (name, list) in [("subnets", &subnets), ("security_groups", &security_groups)] {
        if let Some(i) = list.iter().position(|s| s.trim().is_empty()) {
            return Err(ConfigError::new(format!("{}[{i}]", join(path, name)), "is empty"));
        }
    }
    Ok(VpcConfig {
        subnets,
        security_groups,
        assign_public_ip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny msgpack writer for the tests, shaped like go-cty's output.
    enum M<'a> {
        Nil,
        B(bool),
        S(&'a str),
        L(Vec<M<'a>>),
        O(Vec<(&'a str, M<'a>)>),
        I(i64),
        F(f64),
    }

    fn enc(m: &M<'_>, out: &mut Vec<u8>) {
        match m {
            M::Nil => out.push(0xc0),
            M::B(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
            M::S(s) => {
                out.push(0xd9);
                out.push(s.len() as u8);
                out.extend_from_slice(s.as_bytes());
            }
            M::L(items) => {
                if items.len() < 16 {
                    out.push(0x90 | items.len() as u8);
                } else {
                    out.push(0xdc);
                    out.extend_from_slice(&(items.len() as u16).to_be_bytes());
                }
                items.iter().for_each(|i| enc(i, out));
            }
            M::O(entries) => {
                let mut sorted: Vec<_> = entries.iter().collect();
                sorted.sort_by_key(|(k, _)| *k);
                if sorted.len() < 16 {
                    out.push(0x80 | sorted.len() as u8);
                } else {
                    out.push(0xde);
                    out.extend_from_slice(&(sorted.len() as u16).to_be_bytes());
                }
                for (k, v) in sorted {
                    enc(&M::S(k), out);
                    enc(v, out);
                }
            }
            M::I(i) => {
                out.push(0xd3);
                out.extend_from_slice(&i.to_be_bytes());
            }
            M::F(f) => {
                out.push(0xcb);
                out.extend_from_slice(&f.to_be_bytes());
            }
        }
    }

    fn bytes(m: M<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        enc(&m, &mut out);
        out
    }

    fn seed_task<'a>(launch: M<'a>, ip: M<'a>, subnets: M<'a>) -> M<'a> {
        M::O(vec![(
            "task",
            M::O(vec![
                ("launch_type", launch),
                ("task_definition", M::S("my-task-definition:1")),
                (
                    "network_configuration",
                    M::O(vec![(
                        "aws_vpc_configuration",
                        M::O(vec![
                            ("assign_public_ip", ip),
                            ("security_groups", M::L(vec![M::S("sg-05f444f6c0dda876d")])),
                            ("subnets", subnets),
                        ]),
                    )]),
                ),
            ]),
        )])
    }

    fn seed_subnets<'a>() -> M<'a> {
        M::L(vec![M::S("subnet-0cd4b2ec21331a144"), M::S("subnet-0da9019dcab8ae2f1")])
    }

    /// A task block with the given extra attributes (no network block, no launch type).
    fn task_with(extra: Vec<(&'static str, M<'static>)>) -> Result<TaskSpec> {
        let mut fields = vec![("task_definition", M::S("web:1"))];
        fields.extend(extra);
        decode_task_config(&bytes(M::O(vec![("task", M::O(fields))])))
    }

    #[test]
    fn run_task_options_decode() {
        let spec = task_with(vec![
            ("cluster", M::S("other")),
            (
                "capacity_provider_strategy",
                M::L(vec![
                    M::O(vec![
                        ("capacity_provider", M::S("FARGATE_SPOT")),
                        ("weight", M::I(3)),
                        ("base", M::Nil),
                    ]),
                    M::O(vec![
                        ("capacity_provider", M::S("FARGATE")),
                        ("weight", M::I(1)),
                        ("base", M::I(1)),
                    ]),
                ]),
            ),
            ("platform_version", M::S("LATEST")),
            ("enable_execute_command", M::B(true)),
            ("propagate_tags", M::S("TASK_DEFINITION")),
            (
                "tags",
                M::O(vec![("team", M::S("payments")), ("cost-center", M::S("42"))]),
            ),
            ("group", M::S("g")),
            ("started_by", M::S("ci/job-1")),
            ("task_role_arn", M::S("arn:aws:iam::123456789012:role/app")),
            ("cpu", M::S("1024")),
            (
                "container_overrides",
                M::L(vec![M::O(vec![
                    ("name", M::S("app")),
                    ("command", M::L(vec![M::S("serve"), M::S("--port=80")])),
                    ("environment", M::O(vec![("MODE", M::S("prod"))])),
                    ("memory", M::F(512.0)),
                ])]),
            ),
            ("inject_env", M::B(false)),
        ])
        .unwrap();
        assert_eq!(spec.cluster.as_deref(), Some("other"));
        assert_eq!(spec.capacity_provider_strategy.len(), 2);
        assert_eq!(spec.capacity_provider_strategy[0].weight, Some(3));
        assert_eq!(spec.capacity_provider_strategy[1].base, Some(1));
        assert_eq!(
            spec.tags,
            vec![("cost-center".into(), "42".into()), ("team".into(), "payments".into())]
        );
        assert_eq!(spec.container_overrides[0].command.as_ref().unwrap().len(), 2);
        assert_eq!(
            spec.container_overrides[0].environment,
            vec![("MODE".into(), "prod".into())]
        );
        assert_eq!(spec.container_overrides[0].memory, Some(512));
        assert!(!spec.inject_env);
        assert!(task_with(vec![]).unwrap().inject_env, "on by default");
    }

    #[test]
    fn bad_urls_are_refused_without_their_password() {
        for key in ["endpoint", "nomad_address", "sts_endpoint", "logs_endpoint"] {
            let e = decode_plugin_config(&bytes(M::O(vec![(key, M::S("ftp://user:hunter2-pw@x"))]))).unwrap_err();
            assert_eq!(e.field, key);
            assert!(!e.message.contains("hunter2-pw"), "{e}");
        }
    }

    #[test]
    fn job_tags_leave_room_for_every_tag_the_driver_adds() {
        let tags = |n: usize| {
            let entries: Vec<(&'static str, M<'static>)> = (0..n)
                .map(|i| (&*Box::leak(format!("k{i:02}").into_boxed_str()), M::S("v")))
                .collect();
            task_with(vec![("tags", M::O(entries))])
        };
        let room = MAX_TAGS_PER_RESOURCE - MAX_DRIVER_TAGS;
        assert_eq!(room, 34);
        assert_eq!(tags(room).unwrap().tags.len(), room);
        // 42 was accepted before, with 8 driver tags assumed; the driver adds up to 16.
        for n in [room + 1, 42] {
            let e = tags(n).unwrap_err();
            assert_eq!(e.field, "task.tags");
            assert!(e.message.contains(&format!("at most {room}")), "{e}");
        }
    }

    #[test]
    fn placement_is_refused_with_fargate_capacity_providers() {
        let with = |provider: &'static str| {
            task_with(vec![
                (
                    "capacity_provider_strategy",
                    M::L(vec![M::O(vec![
                        ("capacity_provider", M::S(provider)),
                        ("weight", M::I(1)),
                    ])]),
                ),
                (
                    "placement_strategy",
                    M::L(vec![M::O(vec![
                        ("type", M::S("spread")),
                        ("field", M::S("attribute:ecs.availability-zone")),
                    ])]),
                ),
            ])
        };
        for fargate in ["FARGATE", "FARGATE_SPOT"] {
            let e = with(fargate).unwrap_err();
            assert_eq!(e.field, "task.placement_constraints");
            assert!(e.message.contains(fargate), "{e}");
        }
        // A capacity provider of an EC2 Auto Scaling group takes placement.
        assert_eq!(with("my-asg-provider").unwrap().placement_strategy.len(), 1);
    }

    #[test]
    fn bad_run_task_options_name_the_field() {
        let field = |extra: Vec<(&'static str, M<'static>)>| task_with(extra).unwrap_err().field;
        let cps = |weight: M<'static>| {
            M::L(vec![M::O(vec![
                ("capacity_provider", M::S("FARGATE_SPOT")),
                ("weight", weight),
            ])])
        };
        assert_eq!(
            field(vec![("capacity_provider_strategy", cps(M::I(5000)))]),
            "task.capacity_provider_strategy[0].weight"
        );
        assert_eq!(
            field(vec![("capacity_provider_strategy", cps(M::F(1.5)))]),
            "task.capacity_provider_strategy[0].weight"
        );
        assert_eq!(
            field(vec![
                ("launch_type", M::S("FARGATE")),
                ("capacity_provider_strategy", cps(M::I(1)))
            ]),
            "task.capacity_provider_strategy"
        );
        assert_eq!(
            field(vec![(
                "capacity_provider_strategy",
                M::L(vec![M::O(vec![("weight", M::I(1))])])
            )]),
            "task.capacity_provider_strategy[0].capacity_provider"
        );
        assert_eq!(field(vec![("propagate_tags", M::S("ALL"))]), "task.propagate_tags");
        assert_eq!(
            field(vec![("tags", M::O(vec![("aws:x", M::S("1"))]))]),
            "task.tags.aws:x"
        );
        assert_eq!(
            field(vec![("tags", M::O(vec![("nomad:alloc-id", M::S("1"))]))]),
            "task.tags.nomad:alloc-id"
        );
        assert_eq!(field(vec![("tags", M::S("x"))]), "task.tags");
        assert_eq!(
            field(vec![(
                "placement_constraints",
                M::L(vec![M::O(vec![("type", M::S("memberOf"))])])
            )]),
            "task.placement_constraints[0].expression"
        );
        assert_eq!(
            field(vec![(
                "placement_strategy",
                M::L(vec![M::O(vec![("type", M::S("pack"))])])
            )]),
            "task.placement_strategy[0].type"
        );
        assert_eq!(field(vec![("started_by", M::S("has space"))]), "task.started_by");
        assert_eq!(field(vec![("task_role_arn", M::S("app-role"))]), "task.task_role_arn");
        assert_eq!(
            field(vec![(
                "container_overrides",
                M::L(vec![M::O(vec![("name", M::S("a"))]), M::O(vec![("name", M::S("a"))])])
            )]),
            "task.container_overrides[1].name"
        );
        assert_eq!(field(vec![("env_containers", M::L(vec![]))]), "task.env_containers");
    }

    #[test]
    fn seed_task_stanza() {
        let spec = decode_task_config(&bytes(seed_task(M::S("FARGATE"), M::S("ENABLED"), seed_subnets()))).unwrap();
        assert_eq!(spec.task_definition, "my-task-definition:1");
        assert_eq!(spec.launch_type, Some(LaunchType::Fargate));
        let vpc = spec.vpc.unwrap();
        assert_eq!(vpc.subnets.len(), 2);
        assert_eq!(vpc.security_groups, vec!["sg-05f444f6c0dda876d"]);
        assert_eq!(vpc.assign_public_ip.as_deref(), Some("ENABLED"));
    }

    #[test]
    fn absent_attributes_are_nil() {
        let spec = decode_task_config(&bytes(M::O(vec![(
            "task",
            M::O(vec![
                ("launch_type", M::Nil),
                ("network_configuration", M::Nil),
                ("task_definition", M::S("td")),
            ]),
        )])))
        .unwrap();
        assert_eq!(spec.launch_type, None);
        assert_eq!(spec.vpc, None);
    }

    #[test]
    fn task_definitions_written_in_the_job() {
        let task =
            |fields: Vec<(&'static str, M<'static>)>| decode_task_config(&bytes(M::O(vec![("task", M::O(fields))])));
        const TD: &str = r#"{"containerDefinitions": [{"name": "web", "image": "nginx", "memory": 512}]}"#;
        let spec = task(vec![("task_definition_json", M::S(TD)), ("task_definition", M::Nil)]).unwrap();
        assert_eq!(spec.task_definition_json.as_deref(), Some(TD));
        assert_eq!(spec.task_definition, "");
        let spec = task(vec![("task_definition_file", M::S(" local/td.json "))]).unwrap();
        assert_eq!(spec.task_definition_file.as_deref(), Some("local/td.json"));
        // Exactly one of the three.
        let e = task(vec![
            ("task_definition", M::S("web:1")),
            ("task_definition_json", M::S(TD)),
        ])
        .unwrap_err();
        assert_eq!(e.field, "task.task_definition_json");
        assert!(e.message.contains("only one of"), "{}", e.message);
        let e = task(vec![
            ("task_definition_file", M::S("a.json")),
            ("task_definition_json", M::S(TD)),
        ])
        .unwrap_err();
        assert!(
            e.message.contains("task_definition_json and task_definition_file"),
            "{}",
            e.message
        );
        let e = task(vec![("task_definition_json", M::S("  "))]).unwrap_err();
        assert_eq!(e.field, "task.task_definition");
        // The JSON is checked here, with its position; the path's rules too.
        let e = task(vec![("task_definition_json", M::S("{\n  \"family\": web\n}"))]).unwrap_err();
        assert_eq!(e.field, "task.task_definition_json");
        assert!(e.message.contains("line 2, column 13"), "{}", e.message);
        let e = task(vec![("task_definition_file", M::S("../../../etc/passwd"))]).unwrap_err();
        assert_eq!(e.field, "task.task_definition_file");
        let e = task(vec![("task_definition_file", M::S("/etc/passwd"))]).unwrap_err();
        assert!(e.message.contains("absolute"), "{}", e.message);
    }

    #[test]
    fn bad_task_inputs_name_the_field() {
        let e = decode_task_config(&bytes(seed_task(M::S("LAMBDA"), M::Nil, seed_subnets()))).unwrap_err();
        assert_eq!(e.field, "task.launch_type");
        assert!(e.message.contains("FARGATE, EC2 or EXTERNAL"));
        let e = decode_task_config(&bytes(seed_task(M::Nil, M::S("YES"), seed_subnets()))).unwrap_err();
        assert_eq!(
            e.field,
            "task.network_configuration.aws_vpc_configuration.assign_public_ip"
        );
        let e = decode_task_config(&bytes(seed_task(M::Nil, M::Nil, M::Nil))).unwrap_err();
        assert_eq!(e.field, "task.network_configuration.aws_vpc_configuration.subnets");
        let e = decode_task_config(&bytes(seed_task(M::Nil, M::Nil, M::L(vec![M::I(3)])))).unwrap_err();
        assert_eq!(e.field, "task.network_configuration.aws_vpc_configuration.subnets[0]");
        let e = decode_task_config(&bytes(M::O(vec![("task", M::O(vec![("task_definition", M::Nil)]))]))).unwrap_err();
        assert_eq!(e.field, "task.task_definition");
        let e = decode_task_config(&bytes(M::O(vec![("task", M::Nil)]))).unwrap_err();
        assert_eq!(e.field, "task");
        let e = decode_task_config(&[]).unwrap_err();
        assert_eq!(e.field, "task");
        let e = decode_task_config(&[0xa5, 1]).unwrap_err();
        assert!(e.message.contains("cannot decode"));
        let too_many: Vec<M<'_>> = (0..17).map(|_| M::S("subnet-1")).collect();
        let e = decode_task_config(&bytes(seed_task(M::Nil, M::Nil, M::L(too_many)))).unwrap_err();
        assert!(e.message.contains("at most 16"));
    }

    #[test]
    fn seed_plugin_stanza() {
        let cfg = decode_plugin_config(&bytes(M::O(vec![
            ("cluster", M::S("nomad-remote-driver-cluster")),
            ("enabled", M::B(true)),
            ("region", M::S("us-east-1")),
            ("endpoint", M::Nil),
            ("poll_interval", M::Nil),
        ])))
        .unwrap();
        assert!(cfg.enabled);
        assert_eq!(cfg.cluster, "nomad-remote-driver-cluster");
        assert_eq!(cfg.region.as_deref(), Some("us-east-1"));
        assert_eq!(cfg.endpoint, None);
        assert_eq!(cfg.poll_interval, DEFAULT_POLL_INTERVAL);
    }

    #[test]
    fn empty_plugin_stanza_gets_defaults() {
        let cfg = decode_plugin_config(&bytes(M::O(vec![
            ("cluster", M::Nil),
            ("enabled", M::Nil),
            ("region", M::Nil),
        ])))
        .unwrap();
        assert_eq!(cfg, DriverConfig::default());
        assert_eq!(decode_plugin_config(&[]).unwrap(), DriverConfig::default());
        assert_eq!(decode_plugin_config(&[0xc0]).unwrap(), DriverConfig::default());
    }

    #[test]
    fn bad_plugin_inputs_name_the_field() {
        let e = decode_plugin_config(&bytes(M::O(vec![("enabled", M::S("maybe"))]))).unwrap_err();
        assert_eq!(e.field, "enabled");
        let e = decode_plugin_config(&bytes(M::O(vec![("endpoint", M::S("localhost:4566"))]))).unwrap_err();
        assert_eq!(e.field, "endpoint");
        let e = decode_plugin_config(&bytes(M::O(vec![("region", M::S("US East"))]))).unwrap_err();
        assert_eq!(e.field, "region");
        let e = decode_plugin_config(&bytes(M::O(vec![("poll_interval", M::S("fast"))]))).unwrap_err();
        assert_eq!(e.field, "poll_interval");
        let e = decode_plugin_config(&bytes(M::O(vec![("request_timeout", M::S("10m"))]))).unwrap_err();
        assert_eq!(e.field, "request_timeout");
        let e = decode_plugin_config(&bytes(M::O(vec![("connect_timeout", M::S("5"))]))).unwrap_err();
        assert_eq!(e.field, "connect_timeout");
        let e = decode_plugin_config(&bytes(M::O(vec![
            ("connect_timeout", M::S("10s")),
            ("request_timeout", M::S("2s")),
        ])))
        .unwrap_err();
        assert_eq!(e.field, "connect_timeout");
        assert!(e.message.contains("request_timeout"), "{e}");
        let e = decode_plugin_config(&bytes(M::L(vec![]))).unwrap_err();
        assert_eq!(e.field, "config");
    }

    #[test]
    fn task_definition_cleanup_is_off_by_default_and_needs_the_sweep() {
        let cfg = decode_plugin_config(&bytes(M::O(vec![("enabled", M::B(true))]))).unwrap();
        assert_eq!(cfg.task_definition_cleanup, Duration::ZERO);
        let cfg = decode_plugin_config(&bytes(M::O(vec![("task_definition_cleanup", M::S("24h"))]))).unwrap();
        assert_eq!(cfg.task_definition_cleanup, Duration::from_secs(24 * 3600));
        let cfg = decode_plugin_config(&bytes(M::O(vec![
            ("task_definition_cleanup", M::S("0s")),
            ("reap_interval", M::S("0s")),
        ])))
        .unwrap();
        assert_eq!(cfg.task_definition_cleanup, Duration::ZERO);
        for opts in [
            vec![("task_definition_cleanup", M::S("1h")), ("reap_interval", M::S("0s"))],
            vec![("task_definition_cleanup", M::S("2161h"))],
            vec![("task_definition_cleanup", M::S("soon"))],
        ] {
            let e = decode_plugin_config(&bytes(M::O(opts))).unwrap_err();
            assert_eq!(e.field, "task_definition_cleanup", "{e}");
        }
    }

    #[test]
    fn nomad_api_and_sweep_options() {
        let cfg = decode_plugin_config(&bytes(M::O(vec![("enabled", M::B(true))]))).unwrap();
        assert_eq!(cfg.handoff, HandoffConfig::default());
        let cfg = decode_plugin_config(&bytes(M::O(vec![
            ("nomad_address", M::S("https://nomad.internal:4646/")),
            ("reap_interval", M::S("0s")),
            ("reap_grace", M::S("0s")),
            ("drain_handoff_window", M::S("90s")),
            ("reap_dry_run", M::B(true)),
        ])))
        .unwrap();
        let h = cfg.handoff;
        assert_eq!(h.api.address.as_deref(), Some("https://nomad.internal:4646"));
        assert_eq!((h.reap_interval, h.reap_grace), (Duration::ZERO, Duration::ZERO));
        assert_eq!(h.drain_handoff_window, Duration::from_secs(90));
        assert!(h.reap_dry_run);
        for (key, value) in [
            ("nomad_address", "nomad:4646"),
            ("reap_interval", "500ms"),
            ("drain_handoff_window", "0s"),
            ("reap_grace", "8d"),
            ("nomad_token_file", "/nonexistent/token"),
            ("nomad_ca_file", "/nonexistent/ca.pem"),
        ] {
            let e = decode_plugin_config(&bytes(M::O(vec![(key, M::S(value))]))).unwrap_err();
            assert_eq!(e.field, key, "{e}");
        }
        let here = file!();
        let e = decode_plugin_config(&bytes(M::O(vec![
            ("nomad_token", M::S("t")),
            ("nomad_token_file", M::S(here)),
        ])))
        .unwrap_err();
        assert_eq!(e.field, "nomad_token_file");
        assert!(format!(
            "{:?}",
            NomadApiConfig {
                token: Some("s3cr3t".into()),
                ..Default::default()
            }
        )
        .contains("<redacted>"));
    }

    #[test]
    fn numbers_arrive_as_int_float_or_string() {
        let obj = msgpack::decode(&bytes(M::O(vec![
            ("a", M::I(256)),
            ("b", M::F(2.5)),
            ("c", M::S("0.1")),
            ("d", M::Nil),
            ("e", M::B(true)),
        ])))
        .unwrap();
        assert_eq!(opt_number(&obj, "", "a").unwrap(), Some(256.0));
        assert_eq!(opt_number(&obj, "", "b").unwrap(), Some(2.5));
        assert_eq!(opt_number(&obj, "", "c").unwrap(), Some(0.1));
        assert_eq!(opt_number(&obj, "", "d").unwrap(), None);
        assert_eq!(opt_number(&obj, "x", "e").unwrap_err().field, "x.e");
        // Big integers come as strings (go-cty ≥ 1.14.4), small ones as fixint.
        let big = msgpack::decode(&bytes(M::O(vec![("n", M::S("100000000000000000000"))]))).unwrap();
        assert_eq!(opt_number(&big, "", "n").unwrap(), Some(1e20));
        assert_eq!(
            opt_number(&msgpack::decode(&[0x81, 0xa1, b'n', 0x07]).unwrap(), "", "n").unwrap(),
            Some(7.0)
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration(""), None);
    }

    /// Found while writing the msgpack_config fuzz target, which confirmed it: two parts that
    /// each fit a Duration but not their sum panicked ("overflow when adding durations").
    #[test]
    fn duration_sum_past_duration_range_is_refused() {
        let huge = "10000000000000000000s10000000000000000000s";
        assert_eq!(parse_duration(huge), None);
        let e = decode_plugin_config(&bytes(M::O(vec![("poll_interval", M::S(huge))]))).unwrap_err();
        assert_eq!(e.field, "poll_interval");
        let e = decode_plugin_config(&bytes(M::O(vec![("request_timeout", M::S(huge))]))).unwrap_err();
        assert_eq!(e.field, "request_timeout");
    }
}
