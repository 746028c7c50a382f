//! Task definitions written in the job (`task_definition_json`, `task_definition_file`): the
//! RegisterTaskDefinition input as `aws ecs register-task-definition --cli-input-json` takes it.
//!
//! The pure part: parsing with line/column errors, the checks ECS would make late (or not at
//! all) made early and naming the option, the family (the JSON's own, or one derived from the
//! Nomad task), the canonical form and its hash, and the rules for a path inside the task's
//! directory. Then the one part that talks to ECS, [`resolve`]: the latest ACTIVE revision of
//! the family tagged with the same hash is reused, else one revision is registered.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

use super::alloc_fs::{self, FsError, Kind};
use super::config::TaskIdentity;
use crate::aws::ecs::{EcsClient, MAX_TAGS_PER_RESOURCE, MAX_TAG_KEY_CHARS, MAX_TAG_VALUE_CHARS};
use crate::aws::retry::{with_retries, RetryPolicy};
use crate::aws::AwsError;
use crate::encoding::sha256_hex;

/// Largest task definition accepted, in bytes of JSON: ECS's own quota on a task definition's
/// size (64 KiB), so a larger one is refused before any call.
pub const MAX_DEFINITION_BYTES: usize = 64 * 1024;
/// Longest family ECS accepts.
pub const MAX_FAMILY_CHARS: usize = 255;
/// Tag on every revision the driver registers: the hash of its canonical definition.
pub const TAG_DEFINITION_HASH: &str = "nomad:taskdef-hash";
/// Tag on every revision the driver registers (value [`super::MANAGED_BY`]).
pub const TAG_MANAGED_BY: &str = super::TAG_MANAGED_BY;
/// How many tags the driver may put on a revision it registers: managed-by, the hash, the
/// Nomad region and cluster, and the clean-up's two ([`super::cleanup`]).
pub const DRIVER_DEFINITION_TAGS: usize = 6;
/// Hex digits of the definition hash (128 bits).
pub const HASH_DIGITS: usize = 32;
/// How many of a family's newest ACTIVE revisions are read to find one with the same hash.
pub const MAX_REVISIONS_SCANNED: usize = 20;
/// How long each ECS call of [`resolve`] is retried on transient errors.
const CALL_DEADLINE: Duration = Duration::from_secs(30);

/// RegisterTaskDefinition's input members (botocore `ecs/2014-11-13/service-2.json`,
/// `RegisterTaskDefinitionRequest`).
pub const REGISTER_INPUT_KEYS: [&str; 19] = [
    "family",
    "taskRoleArn",
    "executionRoleArn",
    "networkMode",
    "containerDefinitions",
    "volumes",
    "placementConstraints",
    "requiresCompatibilities",
    "cpu",
    "memory",
    "tags",
    "pidMode",
    "ipcMode",
    "proxyConfiguration",
    "inferenceAccelerators",
    "ephemeralStorage",
    "runtimePlatform",
    "enableFaultInjection",
    "trustedExecutionConfiguration",
];

/// Fields of DescribeTaskDefinition's output that ECS sets itself (a copied `describe` output).
const OUTPUT_ONLY_KEYS: [&str; 9] = [
    "taskDefinitionArn",
    "revision",
    "status",
    "requiresAttributes",
    "compatibilities",
    "registeredAt",
    "registeredBy",
    "deregisteredAt",
    "taskDefinition",
];

/// A task definition the job wrote that cannot be used; `field` names the option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskDefError {
    pub field: String,
    pub message: String,
}

impl TaskDefError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        TaskDefError {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// Parses and checks a task definition. `field` is the option (for errors), `origin` is
/// prefixed to the position of a syntax error (e.g. the file's path; empty for the option
/// itself).
pub fn parse(text: &str, field: &str, origin: &str) -> Result<Map<String, Value>, TaskDefError> {
    let at = |rest: String| {
        if origin.is_empty() {
            rest
        } else {
            format!("{origin}: {rest}")
        }
    };
    if text.len() > MAX_DEFINITION_BYTES {
        return Err(TaskDefError::new(
            field,
            at(format!(
                "is {} bytes long; a task definition may have at most {MAX_DEFINITION_BYTES} bytes of JSON (ECS's limit)",
                text.len()
            )),
        ));
    }
    let value: Value = serde_json::from_str(text).map_err(|e| {
        let full = e.to_string();
        // serde_json ends its message with " at line L column C": say it our way.
        let what = match full.rfind(" at line ") {
            Some(i) => &full[..i],
            None => full.as_str(),
        };
        TaskDefError::new(
            field,
            at(format!(
                "invalid JSON at line {}, column {}: {what}",
                e.line(),
                e.column()
            )),
        )
    })?;
    let Value::Object(doc) = value else {
        return Err(TaskDefError::new(
            field,
            at("must be a JSON object (RegisterTaskDefinition's input: {\"family\": ..., \"containerDefinitions\": [...]})".into()),
        ));
    };
    check(&doc, field).map_err(|m| TaskDefError::new(field, at(m)))?;
    Ok(doc)
}

/// The checks of a parsed definition; the message says what to change.
fn check(doc: &Map<String, Value>, field: &str) -> Result<(), String> {
    let _ = field;
    for key in doc.keys() {
        if REGISTER_INPUT_KEYS.contains(&key.as_str()) {
            continue;
        }
        if OUTPUT_ONLY_KEYS.contains(&key.as_str()) {
            return Err(format!(
                "`{key}` is set by ECS, not part of RegisterTaskDefinition's input (copied from \
                 describe-task-definition's output? give the object inside `taskDefinition`, without \
                 {})",
                OUTPUT_ONLY_KEYS[..8].join(", ")
            ));
        }
        return Err(format!(
            "unknown key `{key}`; RegisterTaskDefinition takes {}",
            REGISTER_INPUT_KEYS.join(", ")
        ));
    }
    match doc.get("family") {
        None | Some(Value::Null) => {}
        Some(Value::String(f)) => check_family(f)?,
        Some(_) => return Err("`family` must be a string".into()),
    }
    let containers = match doc.get("containerDefinitions") {
        Some(Value::Array(c)) if !c.is_empty() => c,
        Some(Value::Array(_)) | None | Some(Value::Null) => {
            return Err("`containerDefinitions` is required: a list of at least one container".into())
        }
        Some(_) => return Err("`containerDefinitions` must be a list of containers".into()),
    };
    let mut names: Vec<&str> = Vec::new();
    for (i, c) in containers.iter().enumerate() {
        let Value::Object(c) = c else {
            return Err(format!("`containerDefinitions[{i}]` must be an object"));
        };
        let name = match c.get("name") {
            Some(Value::String(n)) if !n.trim().is_empty() => n.as_str(),
            _ => return Err(format!("`containerDefinitions[{i}].name` is required (a string)")),
        };
        if names.contains(&name) {
            return Err(format!(
                "container name {name:?} is used twice in `containerDefinitions`"
            ));
        }
        names.push(name);
        match c.get("image") {
            Some(Value::String(img)) if !img.trim().is_empty() => {}
            _ => {
                return Err(format!(
                    "`containerDefinitions[{i}].image` is required (container {name:?})"
                ))
            }
        }
    }
    user_tags(doc)?;
    Ok(())
}

/// ECS's family rules: 1–255 letters, digits, hyphens and underscores.
pub fn check_family(f: &str) -> Result<(), String> {
    if f.is_empty() || f.chars().count() > MAX_FAMILY_CHARS {
        return Err(format!("family {f:?} must have 1 to {MAX_FAMILY_CHARS} characters"));
    }
    if let Some(c) = f
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "family {f:?} has {c:?}; ECS allows letters, digits, hyphens and underscores"
        ));
    }
    Ok(())
}

/// The job's own `tags` of the definition, checked: `{key, value}` strings, no `aws:` or
/// `nomad:` key, and room left for the driver's two.
fn user_tags(doc: &Map<String, Value>) -> Result<Vec<(String, String)>, String> {
    let list = match doc.get("tags") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(l)) => l,
        Some(_) => return Err("`tags` must be a list of {\"key\": ..., \"value\": ...}".into()),
    };
    let max = MAX_TAGS_PER_RESOURCE - DRIVER_DEFINITION_TAGS;
    if list.len() > max {
        return Err(format!(
            "`tags` has {} tags; at most {max} (ECS allows {MAX_TAGS_PER_RESOURCE} and the driver keeps {DRIVER_DEFINITION_TAGS})",
            list.len()
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, t)| {
            let key = t.get("key").and_then(Value::as_str);
            let value = match t.get("value") {
                None | Some(Value::Null) => Some(""),
                Some(v) => v.as_str(),
            };
            let (Some(key), Some(value)) = (key, value) else {
                return Err(format!("`tags[{i}]` must be {{\"key\": \"...\", \"value\": \"...\"}}"));
            };
            let lower = key.to_ascii_lowercase();
            if lower.starts_with("aws:") || lower.starts_with("nomad:") {
                return Err(format!("tag key {key:?}: the prefixes aws: and nomad: are reserved"));
            }
            if key.is_empty() || key.chars().count() > MAX_TAG_KEY_CHARS || value.chars().count() > MAX_TAG_VALUE_CHARS
            {
                return Err(format!(
                    "`tags[{i}]`: keys have 1 to {MAX_TAG_KEY_CHARS} characters, values at most {MAX_TAG_VALUE_CHARS}"
                ));
            }
            Ok((key.to_string(), value.to_string()))
        })
        .collect()
}

/// A family for a job whose definition names none: `<prefix><namespace>-<job>-<group>-<task>`,
/// with every character ECS does not allow replaced by `_`; when that is too long, it is cut
/// and ends with 8 hex digits of a hash of the four names (so distinct tasks stay distinct).
pub fn derived_family(prefix: &str, identity: &TaskIdentity) -> String {
    let parts = [
        identity.namespace.as_str(),
        identity.job_id.as_str(),
        identity.task_group.as_str(),
        identity.name.as_str(),
    ];
    let clean: String = parts
        .iter()
        .map(|p| {
            p.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("-");
    let name = format!("{prefix}{clean}");
    if name.len() <= MAX_FAMILY_CHARS {
        return name;
    }
    let hash = sha256_hex(parts.join("\n").as_bytes(), 8);
    // Every character is ASCII here, so any byte index is a character boundary.
    format!("{}-{hash}", &name[..MAX_FAMILY_CHARS - 9])
}

/// What the driver registers for a job-written definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub family: String,
    /// The hash of the canonical definition (family included, the driver's tags not).
    pub hash: String,
    /// The whole RegisterTaskDefinition body, the driver's tags added.
    pub body: Value,
}

/// The registration of `doc` (already [`parse`]d): the family (the JSON's own, else derived;
/// `family_prefix` before either), nulls dropped, the hash, and the driver's tags.
pub fn prepare(
    mut doc: Map<String, Value>,
    family_prefix: &str,
    identity: &TaskIdentity,
    field: &str,
) -> Result<Prepared, TaskDefError> {
    let family = match doc.get("family").and_then(Value::as_str).filter(|f| !f.is_empty()) {
        Some(f) => format!("{family_prefix}{f}"),
        None => derived_family(family_prefix, identity),
    };
    check_family(&family).map_err(|m| TaskDefError::new(field, m))?;
    doc.insert("family".into(), Value::String(family.clone()));
    let mut body = without_nulls(Value::Object(doc));
    let hash = definition_hash(&body);
    if let Value::Object(o) = &mut body {
        let mut tags = match o.remove("tags") {
            Some(Value::Array(t)) => t,
            _ => Vec::new(),
        };
        tags.push(serde_json::json!({ "key": TAG_MANAGED_BY, "value": super::MANAGED_BY }));
        tags.push(serde_json::json!({ "key": TAG_DEFINITION_HASH, "value": hash }));
        o.insert("tags".into(), Value::Array(tags));
    }
    Ok(Prepared { family, hash, body })
}

impl Prepared {
    /// Adds a driver tag to the registration (not part of the hash); an empty value is left out.
    pub fn tag(&mut self, key: &str, value: &str) {
        if value.is_empty() {
            return;
        }
        if let Some(Value::Array(tags)) = self.body.get_mut("tags") {
            tags.push(serde_json::json!({ "key": key, "value": value }));
        }
    }
}

/// `null` members dropped everywhere (AWS reads a null member as an absent one).
pub fn without_nulls(v: Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

/// Canonical JSON: no whitespace, object members sorted by key (byte order) at every level,
/// arrays in their order, strings and numbers as serde_json writes them.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(v) = o.get(k) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The hash the driver tags a registered definition with: SHA-256 of its canonical JSON
/// (without null members), first [`HASH_DIGITS`] hex digits.
pub fn definition_hash(v: &Value) -> String {
    sha256_hex(canonical_json(&without_nulls(v.clone())).as_bytes(), HASH_DIGITS)
}

/// The names of `path`, a path inside the task directory: relative, made of plain names
/// (`.` is skipped), never `..`.
pub fn relative_names<'a>(path: &'a str, field: &str) -> Result<Vec<&'a str>, TaskDefError> {
    let bad = |why: &str| TaskDefError::new(field, format!("{path:?} {why}"));
    if path.trim().is_empty() {
        return Err(bad(
            "is empty: give a path inside the task directory, e.g. \"local/taskdef.json\"",
        ));
    }
    if path.starts_with('/') {
        return Err(bad(
            "is absolute: give a path inside the task directory, e.g. \"local/taskdef.json\" (host files cannot be read)",
        ));
    }
    if path.contains('\0') {
        return Err(bad("contains a NUL character"));
    }
    let names: Vec<&str> = path.split('/').filter(|n| !n.is_empty() && *n != ".").collect();
    if names.contains(&"..") {
        return Err(bad("leaves the task directory (`..` is not allowed)"));
    }
    if names.is_empty() {
        return Err(bad("names the task directory itself, not a file"));
    }
    Ok(names)
}

/// Reads `path` (see [`relative_names`]) below the task directory `<alloc_dir>/<task>` without
/// following any symbolic link (a link, even one pointing inside, is refused), at most
/// [`MAX_DEFINITION_BYTES`] bytes, as UTF-8.
pub fn read_task_file(alloc_dir: &str, task: &str, path: &str, field: &str) -> Result<String, TaskDefError> {
    let names = relative_names(path, field)?;
    if alloc_dir.is_empty() {
        return Err(TaskDefError::new(
            field,
            "Nomad sent no allocation directory, so there is no task directory to read it from",
        ));
    }
    let fs_err = |e: FsError| {
        let hint = match &e {
            FsError::WrongKind {
                found: Kind::Symlink, ..
            } => "; symbolic links are not followed: the file must be inside the task directory",
            FsError::Missing { .. } => {
                " (render it with a template block, or fetch it with an artifact block, into the task directory)"
            }
            _ => "",
        };
        TaskDefError::new(field, format!("cannot read {path:?}: {e}{hint}"))
    };
    let mut dir = alloc_fs::task_dir(Path::new(alloc_dir), task).map_err(fs_err)?;
    let (last, parents) = names
        .split_last()
        .ok_or_else(|| TaskDefError::new(field, "no file named"))?;
    for name in parents {
        dir = dir.subdir(OsStr::new(name)).map_err(fs_err)?;
    }
    let bytes = dir
        .read_bounded(OsStr::new(last), MAX_DEFINITION_BYTES as u64)
        .map_err(|e| match e {
            FsError::TooLarge { .. } => TaskDefError::new(
                field,
                format!(
                    "{path}: larger than {MAX_DEFINITION_BYTES} bytes; a task definition may have at most \
                     {MAX_DEFINITION_BYTES} bytes of JSON (ECS's limit)"
                ),
            ),
            other => fs_err(other),
        })?;
    String::from_utf8(bytes).map_err(|e| {
        TaskDefError::new(
            field,
            format!(
                "{path}: not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// How [`resolve`] found the revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// This process resolved the same definition before.
    Cached,
    /// An ACTIVE revision with the same hash was found in ECS.
    Reused,
    /// A new revision was registered.
    Registered,
}

/// The per-process memory of resolved definitions: (endpoint, family, hash) → ARN, the hash
/// tag of every revision read (ARN → hash), and one lock per definition so that concurrent
/// starts of one definition register it once.
#[derive(Debug, Default)]
pub struct Registry {
    state: Mutex<RegistryState>,
}

#[derive(Debug, Default)]
struct RegistryState {
    /// (endpoint, family, hash) → (ARN, when it was found or registered).
    resolved: HashMap<String, (String, SystemTime)>,
    hashes: HashMap<String, Option<String>>,
    locks: HashMap<String, Arc<Mutex<()>>>,
    /// The clean-up's memory (see [`super::cleanup`]): ARN → whether the revision is one of
    /// the driver's of this Nomad identity (its tags saying so do not change).
    cleanup_known: HashMap<String, bool>,
    /// ARN → when this process last wrote its `nomad:last-used` tag.
    use_marks: HashMap<String, SystemTime>,
}

impl Registry {
    fn state(&self) -> MutexGuard<'_, RegistryState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn key(endpoint: &str, p: &Prepared) -> String {
        format!("{endpoint}\n{}\n{}", p.family, p.hash)
    }

    /// Forgets an ARN (deregistered): the next resolution looks in ECS again.
    pub fn forget(&self, arn: &str) {
        let mut s = self.state();
        s.resolved.retain(|_, (v, _)| v != arn);
        s.hashes.remove(arn);
        s.cleanup_known.remove(arn);
        s.use_marks.remove(arn);
    }

    /// Whether the clean-up found `arn` to be one of the driver's revisions (None: not read yet).
    pub fn cleanup_known(&self, arn: &str) -> Option<bool> {
        self.state().cleanup_known.get(arn).copied()
    }

    pub fn set_cleanup_known(&self, arn: &str, ours: bool) {
        self.state().cleanup_known.insert(arn.to_string(), ours);
    }

    /// True (and noted as done at `now`) when this process has not written `arn`'s last-used
    /// tag within `every`.
    pub fn due_use_mark(&self, arn: &str, now: SystemTime, every: Duration) -> bool {
        let mut s = self.state();
        let due = s
            .use_marks
            .get(arn)
            .is_none_or(|t| now.duration_since(*t).unwrap_or_default() >= every);
        if due {
            s.use_marks.insert(arn.to_string(), now);
        }
        due
    }

    /// A last-used tag that could not be written: the next start tries again.
    pub fn forget_use_mark(&self, arn: &str) {
        self.state().use_marks.remove(arn);
    }
}

/// The ARN of a revision of `p.family` with `p`'s hash: this process's earlier answer; else
/// the newest of the family's ACTIVE revisions (at most [`MAX_REVISIONS_SCANNED`] read) tagged
/// with the hash; else a new registration. Transient errors are retried.
///
/// `max_age`: with the clean-up on, an answer of this process older than that is looked up in
/// ECS again (the revision may have been deregistered since).
pub fn resolve(
    client: &EcsClient,
    registry: &Registry,
    p: &Prepared,
    max_age: Option<Duration>,
) -> Result<(String, Resolution), AwsError> {
    let key = Registry::key(client.endpoint(), p);
    let cached = |registry: &Registry| {
        let now = SystemTime::now();
        registry
            .state()
            .resolved
            .get(&key)
            .filter(|(_, at)| max_age.is_none_or(|m| now.duration_since(*at).unwrap_or_default() < m))
            .map(|(arn, _)| arn.clone())
    };
    if let Some(arn) = cached(registry) {
        return Ok((arn, Resolution::Cached));
    }
    let lock = Arc::clone(registry.state().locks.entry(key.clone()).or_default());
    let _held = lock.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(arn) = cached(registry) {
        return Ok((arn, Resolution::Cached));
    }
    let policy = || RetryPolicy::within(CALL_DEADLINE);
    let (mut arns, _) = with_retries(policy(), || {
        client.list_task_definitions(Some(&p.family), "ACTIVE", None)
    })?;
    // Newest first, whatever order the endpoint answered in.
    arns.sort_by_key(|a| std::cmp::Reverse(revision_of(a)));
    for arn in arns.iter().take(MAX_REVISIONS_SCANNED) {
        let known = registry.state().hashes.get(arn).cloned();
        let hash = match known {
            Some(h) => h,
            None => {
                let (_, tags) = with_retries(policy(), || client.describe_task_definition_with_tags(arn))?;
                let h = tags.into_iter().find(|(k, _)| k == TAG_DEFINITION_HASH).map(|(_, v)| v);
                registry.state().hashes.insert(arn.clone(), h.clone());
                h
            }
        };
        if hash.as_deref() == Some(p.hash.as_str()) {
            registry.state().resolved.insert(key, (arn.clone(), SystemTime::now()));
            return Ok((arn.clone(), Resolution::Reused));
        }
    }
    // Not retried: a registration that timed out may have happened, and a second one would be
    // a second revision. The next start finds the first by its hash.
    let (def, _) = client.register_task_definition(&p.body)?;
    let mut s = registry.state();
    s.hashes.insert(def.arn.clone(), Some(p.hash.clone()));
    s.resolved.insert(key, (def.arn.clone(), SystemTime::now()));
    Ok((def.arn, Resolution::Registered))
}

/// The revision number at the end of a task definition ARN (`…:task-definition/web:7` → 7).
pub fn revision_of(arn: &str) -> u64 {
    arn.rsplit(':').next().and_then(|r| r.parse().ok()).unwrap_or(0)
}

/// The identity's config hash with the definition's hash folded in, so that adoption and the
/// "own task" check compare the definition too (a file's content is not in the driver config).
pub fn fold_config_hash(config_hash: &str, definition_hash: &str) -> String {
    if config_hash.is_empty() {
        return String::new();
    }
    sha256_hex(format!("{config_hash}\n{definition_hash}").as_bytes(), 16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const F: &str = "task.task_definition_json";

    fn identity() -> TaskIdentity {
        TaskIdentity {
            namespace: "default".into(),
            job_id: "web".into(),
            task_group: "front".into(),
            name: "server".into(),
            ..TaskIdentity::default()
        }
    }

    const MINIMAL: &str = r#"{"containerDefinitions": [{"name": "web", "image": "nginx", "memory": 512}]}"#;

    #[test]
    fn syntax_errors_name_line_and_column() {
        let text = "{\n  \"family\": \"web\",\n  \"containerDefinitions\": [\n    {\"name\": \"web\" \"image\": \"x\"}\n  ]\n}";
        let e = parse(text, F, "").unwrap_err();
        assert_eq!(e.field, F);
        assert!(
            e.message.starts_with("invalid JSON at line 4, column 20: "),
            "{}",
            e.message
        );
        assert!(
            !e.message.contains(" at line 4 column"),
            "serde's own position is not repeated: {}",
            e.message
        );
        let e = parse("{\"a\": 1,", "task.task_definition_file", "local/td.json").unwrap_err();
        assert!(
            e.message.starts_with("local/td.json: invalid JSON at line 1, column 8"),
            "{}",
            e.message
        );
    }

    #[test]
    fn content_errors_say_what_to_change() {
        let msg = |t: &str| parse(t, F, "").unwrap_err().message;
        assert!(msg("[1]").contains("must be a JSON object"));
        assert!(msg(r#"{"family": "web"}"#).contains("`containerDefinitions` is required"));
        assert!(msg(r#"{"containerDefinitions": []}"#).contains("at least one container"));
        assert!(msg(r#"{"containerDefinitions": [{"image": "x"}]}"#).contains("containerDefinitions[0].name"));
        assert!(msg(r#"{"containerDefinitions": [{"name": "a"}]}"#).contains("containerDefinitions[0].image"));
        assert!(
            msg(r#"{"containerDefinitions": [{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]}"#)
                .contains("used twice")
        );
        assert!(
            msg(r#"{"family": "a b", "containerDefinitions": [{"name": "a", "image": "x"}]}"#)
                .contains("letters, digits, hyphens and underscores")
        );
        let m = msg(r#"{"containerDefinition": [], "family": "x"}"#);
        assert!(
            m.contains("unknown key `containerDefinition`") && m.contains("containerDefinitions"),
            "{m}"
        );
        let m = msg(r#"{"taskDefinition": {"family": "x"}}"#);
        assert!(m.contains("describe-task-definition"), "{m}");
        let m = msg(r#"{"revision": 3, "containerDefinitions": [{"name": "a", "image": "x"}]}"#);
        assert!(m.contains("`revision` is set by ECS"), "{m}");
        let m = msg(
            r#"{"containerDefinitions": [{"name": "a", "image": "x"}], "tags": [{"key": "nomad:x", "value": "1"}]}"#,
        );
        assert!(m.contains("reserved"), "{m}");
        let m =
            msg(r#"{"containerDefinitions": [{"name": "a", "image": "x"}], "tags": [{"key": "AWS:x", "value": "1"}]}"#);
        assert!(m.contains("reserved"), "{m}");
        let big = format!(
            r#"{{"containerDefinitions": [{{"name": "a", "image": "x", "command": ["{}"]}}]}}"#,
            "x".repeat(MAX_DEFINITION_BYTES)
        );
        assert!(msg(&big).contains("at most 65536 bytes"));
        assert!(parse(MINIMAL, F, "").is_ok());
    }

    #[test]
    fn canonical_form_ignores_order_whitespace_and_nulls() {
        let a = json!({"b": [1, {"y": 2, "x": "é\""}], "a": null, "c": {"k": 1}});
        let b: Value = serde_json::from_str("{ \"c\" : {\"k\":1}, \"b\":[1,{\"x\":\"é\\\"\",\"y\":2}] }").unwrap();
        assert_eq!(
            canonical_json(&without_nulls(a.clone())),
            r#"{"b":[1,{"x":"é\"","y":2}],"c":{"k":1}}"#
        );
        assert_eq!(definition_hash(&a), definition_hash(&b));
        assert_eq!(definition_hash(&a).len(), HASH_DIGITS);
        // Array order matters (container order, command arguments).
        assert_ne!(
            definition_hash(&json!({"b": [1, 2]})),
            definition_hash(&json!({"b": [2, 1]}))
        );
    }

    #[test]
    fn prepare_sets_family_and_tags_and_hashes_the_rest() {
        let doc = parse(MINIMAL, F, "").unwrap();
        let p = prepare(doc.clone(), "", &identity(), F).unwrap();
        assert_eq!(p.family, "default-web-front-server");
        assert_eq!(p.body["family"], "default-web-front-server");
        assert_eq!(
            p.body["tags"],
            json!([{"key": "nomad:managed-by", "value": "nomad-driver-ecs"}, {"key": TAG_DEFINITION_HASH, "value": p.hash}])
        );
        let q = prepare(doc.clone(), "prod_", &identity(), F).unwrap();
        assert_eq!(q.family, "prod_default-web-front-server");
        assert_ne!(p.hash, q.hash, "the family is part of the definition");
        // Same content written differently: same hash. A changed image: another.
        let same = parse(
            r#"{ "containerDefinitions" : [ { "memory": 512, "image": "nginx", "name": "web" } ], "cpu": null }"#,
            F,
            "",
        )
        .unwrap();
        assert_eq!(prepare(same, "", &identity(), F).unwrap().hash, p.hash);
        let other = parse(
            r#"{"containerDefinitions": [{"name": "web", "image": "nginx:2", "memory": 512}]}"#,
            F,
            "",
        )
        .unwrap();
        assert_ne!(prepare(other, "", &identity(), F).unwrap().hash, p.hash);
        // The JSON's own family wins over the derived one; the user's tags are kept first.
        let own = parse(
            r#"{"family": "web", "containerDefinitions": [{"name": "web", "image": "nginx"}], "tags": [{"key": "team", "value": "a"}]}"#,
            F,
            "",
        )
        .unwrap();
        let p = prepare(own, "nomad-", &identity(), F).unwrap();
        assert_eq!(p.family, "nomad-web");
        assert_eq!(p.body["tags"][0], json!({"key": "team", "value": "a"}));
        assert_eq!(p.body["tags"].as_array().unwrap().len(), 3);
        // A prefix that makes the JSON's family too long is refused naming the option (a
        // derived family is cut to fit instead).
        let doc = parse(
            r#"{"family": "web", "containerDefinitions": [{"name": "web", "image": "nginx"}]}"#,
            F,
            "",
        )
        .unwrap();
        let long = prepare(doc, &"p".repeat(253), &identity(), F).unwrap_err();
        assert_eq!(long.field, F);
    }

    #[test]
    fn derived_families_follow_ecs_rules() {
        let mut id = identity();
        id.job_id = "my.job/v2".into();
        id.namespace = "team a".into();
        let f = derived_family("", &id);
        assert_eq!(f, "team_a-my_job_v2-front-server");
        assert!(check_family(&f).is_ok());
        id.job_id = "j".repeat(300);
        let f = derived_family("x-", &id);
        assert_eq!(f.len(), MAX_FAMILY_CHARS);
        assert!(check_family(&f).is_ok());
        let mut id2 = id.clone();
        id2.name = "other".into();
        assert_ne!(derived_family("x-", &id2), f, "cut names keep distinct tasks distinct");
    }

    #[test]
    fn paths_stay_inside_the_task_directory() {
        let f = "task.task_definition_file";
        assert_eq!(relative_names("local/td.json", f).unwrap(), ["local", "td.json"]);
        assert_eq!(relative_names("./local//td.json", f).unwrap(), ["local", "td.json"]);
        for bad in [
            "",
            "/etc/passwd",
            "../other/local/x.json",
            "local/../../x",
            "local/..",
            ".",
            "a\0b",
        ] {
            let e = relative_names(bad, f).unwrap_err();
            assert_eq!(e.field, f, "{bad:?}");
        }
        assert!(relative_names("/etc/passwd", f)
            .unwrap_err()
            .message
            .contains("absolute"));
        assert!(relative_names("../x", f).unwrap_err().message.contains("`..`"));
    }

    #[test]
    fn task_files_are_read_without_following_links() {
        let alloc = std::env::temp_dir().join(format!("taskdef-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&alloc);
        std::fs::create_dir_all(alloc.join("web/local")).unwrap();
        std::fs::create_dir_all(alloc.join("alloc")).unwrap();
        std::fs::write(alloc.join("web/local/td.json"), MINIMAL).unwrap();
        std::fs::write(alloc.join("alloc/shared.json"), MINIMAL).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", alloc.join("web/local/passwd.json")).unwrap();
        std::os::unix::fs::symlink("td.json", alloc.join("web/local/inside.json")).unwrap();
        std::os::unix::fs::symlink(alloc.join("alloc"), alloc.join("web/shared")).unwrap();
        std::fs::write(alloc.join("web/local/big.json"), vec![b' '; MAX_DEFINITION_BYTES + 1]).unwrap();
        let d = alloc.to_str().unwrap();
        let f = "task.task_definition_file";
        assert_eq!(read_task_file(d, "web", "local/td.json", f).unwrap(), MINIMAL);
        for link in ["local/passwd.json", "local/inside.json", "shared/shared.json"] {
            let e = read_task_file(d, "web", link, f).unwrap_err();
            assert!(e.message.contains("symbolic link"), "{link}: {}", e.message);
        }
        assert!(read_task_file(d, "web", "local/big.json", f)
            .unwrap_err()
            .message
            .contains("larger than"));
        assert!(read_task_file(d, "web", "local/none.json", f)
            .unwrap_err()
            .message
            .contains("does not exist"));
        assert!(read_task_file(d, "web", "../alloc/shared.json", f).is_err());
        assert!(read_task_file("", "web", "local/td.json", f).is_err());
        let _ = std::fs::remove_dir_all(&alloc);
    }

    #[test]
    fn revisions_and_folded_hashes() {
        assert_eq!(revision_of("arn:aws:ecs:us-east-1:1:task-definition/web:12"), 12);
        assert_eq!(revision_of("garbage"), 0);
        assert_eq!(fold_config_hash("", "h"), "");
        assert_ne!(fold_config_hash("c", "h1"), fold_config_hash("c", "h2"));
        assert_eq!(fold_config_hash("c", "h1").len(), 16);
    }
}
