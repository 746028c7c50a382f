//! `driver_state`: what Nomad persists for us in the TaskHandle and hands back to RecoverTask.
//!
//! It must be enough to re-attach after the plugin or the agent restarted (Nomad then sends
//! no task config). Encoded as a JSON object with a `version` field; unknown fields are
//! ignored so that newer plugins can add some, and a newer `version` is refused.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// Current driver_state format. The TaskHandle's own `version` is kept equal to it.
pub const STATE_VERSION: i64 = 1;

/// Where an awsvpc task can be reached: its ENI's private IPv4 address and its ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInfo {
    pub address: String,
    /// Port label → container port.
    pub ports: Vec<(String, u16)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaskState {
    pub task_arn: String,
    pub cluster: String,
    pub region: String,
    /// The ECS endpoint the task was started through (`None`: the region's default).
    pub endpoint: Option<String>,
    pub task_definition: String,
    pub started_at: SystemTime,
    pub stdout_path: String,
    pub stderr_path: String,
    /// Known at StartTask for awsvpc tasks (absent in older handles).
    pub network: Option<NetworkInfo>,
    /// The allocation that started (or adopted) the task; a RecoverTask from another allocation
    /// is Nomad 1.1–1.9's handoff of a lost or drained allocation. Absent in older handles.
    pub alloc_id: Option<String>,
    /// The Nomad task id the ECS task was started (or last recovered) for. A RecoverTask with
    /// another id is Nomad 1.1–1.9's remote-task hook re-using an old handle (at a restart or a
    /// handoff), not a plugin restart. Absent in older handles.
    pub task_id: Option<String>,
}

/// Where a handle's ECS task lives, read leniently from a driver_state that cannot be fully
/// decoded (a newer version, a damaged field): enough to stop the task rather than leak it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Salvaged {
    pub task_arn: String,
    pub cluster: String,
    pub region: String,
    pub endpoint: Option<String>,
}

impl Salvaged {
    pub fn of(state: &TaskState) -> Salvaged {
        Salvaged {
            task_arn: state.task_arn.clone(),
            cluster: state.cluster.clone(),
            region: state.region.clone(),
            endpoint: state.endpoint.clone(),
        }
    }

    /// The task's location from any JSON object with non-empty `task_arn`, `cluster` and
    /// `region` strings (and an optional `endpoint` string), whatever its version.
    pub fn read(bytes: &[u8]) -> Option<Salvaged> {
        let v: Value = serde_json::from_slice(bytes).ok()?;
        let text = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        Some(Salvaged {
            task_arn: text("task_arn")?,
            cluster: text("cluster")?,
            region: text("region")?,
            endpoint: text("endpoint"),
        })
    }
}

impl TaskState {
    pub fn encode(&self) -> Vec<u8> {
        let started = self.started_at.duration_since(UNIX_EPOCH).unwrap_or_default();
        json!({
            "version": STATE_VERSION,
            "task_arn": self.task_arn,
            "cluster": self.cluster,
            "region": self.region,
            "endpoint": self.endpoint,
            "task_definition": self.task_definition,
            "started_at_unix_nanos": started.as_nanos().to_string(),
            "stdout_path": self.stdout_path,
            "stderr_path": self.stderr_path,
            "address": self.network.as_ref().map(|n| n.address.clone()),
            "ports": self.network.as_ref().map(|n| {
                n.ports.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>()
            }),
            "alloc_id": self.alloc_id,
            "task_id": self.task_id,
        })
        .to_string()
        .into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<TaskState, String> {
        if bytes.is_empty() {
            return Err("driver_state is empty: this handle was not created by nomad-driver-ecs".into());
        }
        let v: Value = serde_json::from_slice(bytes).map_err(|e| {
            format!("driver_state is not valid JSON ({e}); was the task started by another driver version?")
        })?;
        let version = v
            .get("version")
            .and_then(Value::as_i64)
            .ok_or("driver_state has no numeric `version`")?;
        if version != STATE_VERSION {
            return Err(format!(
                "driver_state version {version} is not supported (this plugin reads version {STATE_VERSION}); upgrade the plugin"
            ));
        }
        let text = |key: &str| -> Result<String, String> {
            match v.get(key) {
                Some(Value::String(s)) => Ok(s.clone()),
                _ => Err(format!("driver_state field `{key}` is missing or not a string")),
            }
        };
        let task_arn = text("task_arn")?;
        if task_arn.is_empty() {
            return Err("driver_state field `task_arn` is empty".into());
        }
        let nanos: u128 = text("started_at_unix_nanos")?
            .parse()
            .map_err(|_| "driver_state field `started_at_unix_nanos` is not a number".to_string())?;
        // Checked: a SystemTime holds far fewer seconds than a u64, and `+` panics past its end.
        let started_at = u64::try_from(nanos / 1_000_000_000)
            .ok()
            .and_then(|secs| UNIX_EPOCH.checked_add(Duration::new(secs, (nanos % 1_000_000_000) as u32)))
            .ok_or_else(|| "driver_state start time out of range".to_string())?;
        Ok(TaskState {
            task_arn,
            cluster: text("cluster")?,
            region: text("region")?,
            endpoint: match v.get("endpoint") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => return Err("driver_state field `endpoint` is not a string".into()),
            },
            task_definition: text("task_definition")?,
            started_at,
            stdout_path: text("stdout_path")?,
            stderr_path: text("stderr_path")?,
            network: decode_network(&v)?,
            alloc_id: match v.get("alloc_id") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(_) => return Err("driver_state field `alloc_id` is not a non-empty string".into()),
            },
            task_id: match v.get("task_id") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(_) => return Err("driver_state field `task_id` is not a non-empty string".into()),
            },
        })
    }
}

/// `address` (string) and `ports` ({label: port}); both optional.
fn decode_network(v: &Value) -> Result<Option<NetworkInfo>, String> {
    let address = match v.get("address") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => return Err("driver_state field `address` is not a string".into()),
    };
    let ports = match v.get("ports") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, p)| {
                p.as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .map(|p| (k.clone(), p))
                    .ok_or_else(|| format!("driver_state port `{k}` is not a port number"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("driver_state field `ports` is not an object".into()),
    };
    Ok(Some(NetworkInfo { address, ports }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TaskState {
        TaskState {
            task_arn: "arn:aws:ecs:us-east-1:123456789012:task/c/0123".into(),
            cluster: "c".into(),
            region: "us-east-1".into(),
            endpoint: Some("http://127.0.0.1:5000".into()),
            task_definition: "my-task-definition:1".into(),
            started_at: UNIX_EPOCH + Duration::new(1_795_000_000, 987_654_321),
            stdout_path: "/alloc/logs/.web.stdout.fifo".into(),
            stderr_path: "/alloc/logs/.web.stderr.fifo".into(),
            network: Some(NetworkInfo {
                address: "10.0.1.23".into(),
                ports: vec![("http".into(), 8080), ("metrics".into(), 9100)],
            }),
            alloc_id: Some("0a1b2c3d-1111-2222-3333-444455556666".into()),
            task_id: Some("0a1b2c3d-1111-2222-3333-444455556666/web/9f8e7d6c".into()),
        }
    }

    #[test]
    fn round_trip() {
        let s = sample();
        assert_eq!(TaskState::decode(&s.encode()).unwrap(), s);
        let mut no_endpoint = sample();
        no_endpoint.endpoint = None;
        no_endpoint.network = None;
        no_endpoint.alloc_id = None;
        no_endpoint.task_id = None;
        assert_eq!(TaskState::decode(&no_endpoint.encode()).unwrap(), no_endpoint);
    }

    #[test]
    fn garbage_and_other_versions_are_refused() {
        assert!(TaskState::decode(b"").is_err());
        assert!(TaskState::decode(b"\x82\xa3ARN").is_err());
        assert!(TaskState::decode(b"{}").is_err());
        let newer = String::from_utf8(sample().encode())
            .unwrap()
            .replace("\"version\":1", "\"version\":2");
        assert!(TaskState::decode(newer.as_bytes()).unwrap_err().contains("version 2"));
        let no_arn = String::from_utf8(sample().encode()).unwrap().replace("task_arn", "x");
        assert!(TaskState::decode(no_arn.as_bytes()).unwrap_err().contains("task_arn"));
    }

    /// Found by the driver_state fuzz target: a start time past what SystemTime can hold
    /// panicked ("overflow when adding duration to instant") instead of being refused.
    #[test]
    fn start_time_past_system_time_range_is_refused() {
        let input = br#"{"version":1,"task_arn":"s","started_at_unix_nanos":"10000000006980251523226356984"}"#;
        assert_eq!(
            TaskState::decode(input).unwrap_err(),
            "driver_state start time out of range"
        );
        let mut v: Value = serde_json::from_slice(&sample().encode()).unwrap();
        for nanos in [
            u128::MAX.to_string(),
            format!("{}", u128::from(u64::MAX) * 1_000_000_000),
        ] {
            v["started_at_unix_nanos"] = json!(nanos);
            assert!(TaskState::decode(v.to_string().as_bytes()).is_err(), "{nanos}");
        }
    }

    #[test]
    fn a_newer_handle_still_names_its_task() {
        let newer = String::from_utf8(sample().encode())
            .unwrap()
            .replace("\"version\":1", "\"version\":7");
        assert!(TaskState::decode(newer.as_bytes()).is_err());
        assert_eq!(Salvaged::read(newer.as_bytes()), Some(Salvaged::of(&sample())));
        assert_eq!(
            Salvaged::read(b"{\"task_arn\":\"a\",\"cluster\":\"\",\"region\":\"r\"}"),
            None
        );
        assert_eq!(Salvaged::read(b"not json"), None);
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let mut v: Value = serde_json::from_slice(&sample().encode()).unwrap();
        v["added_later"] = json!({"x": 1});
        assert_eq!(TaskState::decode(v.to_string().as_bytes()).unwrap(), sample());
    }
}
