//! Conversions between Nomad's proto messages and the driver core's plain values, and the
//! mapping of driver errors to gRPC statuses.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use grpcio::{RpcStatus, RpcStatusCode};
use protobuf::well_known_types::any::Any;
use protobuf::well_known_types::timestamp::Timestamp;
use protobuf::Message;

use crate::driver::config::TaskIdentity;
use crate::driver::events::TaskEvent;
use crate::driver::exit::ExitResult;
use crate::driver::task::{Phase, TaskSnapshot};
use crate::driver::{Attr, DriverError, Fingerprint, Health};
use crate::proto::attribute::Attribute;
use crate::proto::driver as pb;
use crate::proto::recoverable_error::RecoverableError;
use crate::proto::rpc_status;

use super::config::ConfigError;

/// Go's zero `time.Time` as a proto Timestamp: what "not set" looks like to Nomad.
const GO_ZERO_TIME_SECS: i64 = -62_135_596_800;

pub fn timestamp(t: SystemTime) -> Timestamp {
    let mut ts = Timestamp::new();
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => {
            ts.seconds = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            ts.nanos = d.subsec_nanos() as i32;
        }
        Err(e) => {
            let d = e.duration();
            ts.seconds = -i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        }
    }
    ts
}

pub fn zero_timestamp() -> Timestamp {
    let mut ts = Timestamp::new();
    ts.seconds = GO_ZERO_TIME_SECS;
    ts
}

/// A proto Duration (absent → zero).
pub fn duration(d: Option<&protobuf::well_known_types::duration::Duration>) -> Duration {
    match d {
        Some(d) if d.seconds > 0 || (d.seconds == 0 && d.nanos > 0) => {
            Duration::new(d.seconds.max(0) as u64, d.nanos.clamp(0, 999_999_999) as u32)
        }
        _ => Duration::ZERO,
    }
}

/// Who the task is. Nomad before 1.6 sends no job id, namespace or node id fields; the task's
/// environment carries them there.
pub fn identity(cfg: &pb::TaskConfig) -> TaskIdentity {
    let or_env = |field: &str, var: &str| {
        if field.is_empty() {
            cfg.env.get(var).cloned().unwrap_or_default()
        } else {
            field.to_string()
        }
    };
    TaskIdentity {
        id: cfg.id.clone(),
        alloc_id: cfg.alloc_id.clone(),
        name: cfg.name.clone(),
        job_name: cfg.job_name.clone(),
        job_id: or_env(&cfg.job_id, "NOMAD_JOB_ID"),
        namespace: or_env(&cfg.namespace, "NOMAD_NAMESPACE"),
        task_group: or_env(&cfg.task_group_name, "NOMAD_GROUP_NAME"),
        node_id: cfg.node_id.clone(),
        stdout_path: cfg.stdout_path.clone(),
        stderr_path: cfg.stderr_path.clone(),
        alloc_dir: cfg.alloc_dir.clone(),
        alloc_index: cfg.env.get("NOMAD_ALLOC_INDEX").and_then(|i| i.trim().parse().ok()),
        region: cfg
            .env
            .get("NOMAD_REGION")
            .map(|r| r.trim().to_string())
            .unwrap_or_default(),
        config_hash: config_hash(&cfg.msgpack_driver_config),
    }
}

/// The first 16 hex digits of the SHA-256 of the task's driver config as Nomad encoded it.
/// (Empty for a handle's config: RecoverTask gets no driver config.)
pub fn config_hash(msgpack: &[u8]) -> String {
    if msgpack.is_empty() {
        return String::new();
    }
    crate::encoding::sha256_hex(msgpack, 16)
}

pub fn exit_result(e: &ExitResult) -> pb::ExitResult {
    let mut r = pb::ExitResult::new();
    r.exit_code = e.exit_code;
    r.signal = e.signal;
    r.oom_killed = e.oom_killed;
    r
}

pub fn task_event(e: &TaskEvent) -> pb::DriverTaskEvent {
    let mut ev = pb::DriverTaskEvent::new();
    ev.task_id = e.task_id.clone();
    ev.alloc_id = e.alloc_id.clone();
    ev.task_name = e.task_name.clone();
    ev.timestamp = Some(timestamp(e.timestamp)).into();
    ev.message = e.message.clone();
    ev.annotations = e.annotations.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    ev
}

pub fn fingerprint(f: &Fingerprint) -> pb::FingerprintResponse {
    let mut r = pb::FingerprintResponse::new();
    r.health = match f.health {
        Health::Undetected => pb::fingerprint_response::HealthState::UNDETECTED,
        Health::Unhealthy => pb::fingerprint_response::HealthState::UNHEALTHY,
        Health::Healthy => pb::fingerprint_response::HealthState::HEALTHY,
    }
    .into();
    r.health_description = f.description.clone();
    for (k, v) in &f.attributes {
        let mut a = Attribute::new();
        match v {
            Attr::Bool(b) => a.set_bool_val(*b),
            Attr::Str(s) => a.set_string_val(s.clone()),
        }
        r.attributes.insert(k.clone(), a);
    }
    r
}

/// InspectTask's answer: `task`, its times and `result` are always set (Nomad 1.1–1.9
/// dereference them).
pub fn inspect(s: &TaskSnapshot) -> pb::InspectTaskResponse {
    let mut st = pb::TaskStatus::new();
    st.id = s.identity.id.clone();
    st.name = s.identity.name.clone();
    st.state = match s.phase {
        Phase::Running => pb::TaskState::RUNNING,
        Phase::Exited => pb::TaskState::EXITED,
    }
    .into();
    st.started_at = Some(timestamp(s.state.started_at)).into();
    st.completed_at = Some(s.completed_at.map(timestamp).unwrap_or_else(zero_timestamp)).into();
    st.result = Some(exit_result(&s.exit.clone().unwrap_or_default())).into();
    let mut drv = pb::TaskDriverStatus::new();
    let attrs = [
        ("arn", s.state.task_arn.clone()),
        ("cluster", s.state.cluster.clone()),
        ("region", s.state.region.clone()),
        ("task_definition", s.state.task_definition.clone()),
        ("last_status", s.last_status.clone()),
        ("desired_status", s.desired_status.clone()),
        ("detached", s.detached.to_string()),
    ];
    drv.attributes = attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    if let Some(err) = &s.last_error {
        drv.attributes.insert("last_error".into(), err.clone());
    }
    if let Some(err) = s.exit.as_ref().and_then(|e| e.err.clone()) {
        drv.attributes.insert("exit_error".into(), err);
    }
    let mut r = pb::InspectTaskResponse::new();
    r.task = Some(st).into();
    r.driver = Some(drv).into();
    if let Some(net) = &s.network {
        r.network_override = Some(network_override(net)).into();
    }
    r
}

/// The task's address for Nomad services and checks (DriverNetwork): the ENI's IP, the port
/// labels, advertised automatically.
pub fn network_override(net: &crate::driver::state::NetworkInfo) -> pb::NetworkOverride {
    let mut n = pb::NetworkOverride::new();
    n.addr = net.address.clone();
    n.port_map = net.ports.iter().map(|(k, v)| (k.clone(), i32::from(*v))).collect();
    n.auto_advertise = true;
    n
}

/// Zero usage with every message Nomad dereferences present.
pub fn empty_stats(task_id: &str, now: SystemTime) -> pb::TaskStatsResponse {
    let mut usage = pb::TaskResourceUsage::new();
    usage.cpu = Some(pb::CPUUsage::new()).into();
    usage.memory = Some(pb::MemoryUsage::new()).into();
    let mut stats = pb::TaskStats::new();
    stats.id = task_id.to_string();
    stats.timestamp = Some(timestamp(now)).into();
    stats.agg_resource_usage = Some(usage).into();
    let mut r = pb::TaskStatsResponse::new();
    r.stats = Some(stats).into();
    r
}

/// A status carrying Nomad's RecoverableError detail (PROTOCOL.md §8): Nomad restarts the task
/// per its restart policy only when `recoverable` is true.
pub fn status_with_recoverable(code: RpcStatusCode, message: String, recoverable: bool) -> RpcStatus {
    let mut detail = RecoverableError::new();
    detail.recoverable = recoverable;
    let mut any = Any::new();
    any.type_url = "type.googleapis.com/hashicorp.nomad.plugins.shared.structs.RecoverableError".into();
    any.value = detail.write_to_bytes().unwrap_or_default();
    let mut st = rpc_status::Status::new();
    st.code = code.into();
    st.message = message.clone();
    st.details.push(any);
    match st.write_to_bytes() {
        Ok(bytes) => RpcStatus::with_details(code, message, bytes),
        Err(_) => RpcStatus::with_message(code, message),
    }
}

pub fn config_error_status(e: &ConfigError) -> RpcStatus {
    status_with_recoverable(
        RpcStatusCode::INVALID_ARGUMENT,
        format!("invalid ecs driver config {e}"),
        false,
    )
}

pub fn driver_error_status(e: &DriverError) -> RpcStatus {
    let msg = e.to_string();
    match e {
        DriverError::InvalidConfig { .. } => status_with_recoverable(RpcStatusCode::INVALID_ARGUMENT, msg, false),
        DriverError::NotReady(_) => status_with_recoverable(RpcStatusCode::FAILED_PRECONDITION, msg, true),
        DriverError::NotFound(_) => RpcStatus::with_message(RpcStatusCode::NOT_FOUND, msg),
        DriverError::AlreadyExists(_) => RpcStatus::with_message(RpcStatusCode::ALREADY_EXISTS, msg),
        DriverError::StillRunning(_) => RpcStatus::with_message(RpcStatusCode::FAILED_PRECONDITION, msg),
        DriverError::StartFailed { recoverable, .. } => {
            status_with_recoverable(RpcStatusCode::FAILED_PRECONDITION, msg, *recoverable)
        }
        DriverError::BadHandle(_) => RpcStatus::with_message(RpcStatusCode::INVALID_ARGUMENT, msg),
        DriverError::Aws(a) => {
            let code = if a.is_transient() {
                RpcStatusCode::UNAVAILABLE
            } else {
                RpcStatusCode::FAILED_PRECONDITION
            };
            status_with_recoverable(code, msg, a.is_transient())
        }
        DriverError::Internal(_) => RpcStatus::with_message(RpcStatusCode::INTERNAL, msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recoverable_detail_is_a_google_rpc_status() {
        let s = status_with_recoverable(RpcStatusCode::FAILED_PRECONDITION, "RESOURCE:MEMORY".into(), true);
        let decoded = rpc_status::Status::parse_from_bytes(s.details()).unwrap();
        assert_eq!(decoded.code, i32::from(RpcStatusCode::FAILED_PRECONDITION));
        assert_eq!(
            decoded.details[0].type_url,
            "type.googleapis.com/hashicorp.nomad.plugins.shared.structs.RecoverableError"
        );
        let inner = RecoverableError::parse_from_bytes(&decoded.details[0].value).unwrap();
        assert!(inner.recoverable);
    }

    #[test]
    fn timestamps() {
        let t = UNIX_EPOCH + Duration::new(10, 5);
        let ts = timestamp(t);
        assert_eq!((ts.seconds, ts.nanos), (10, 5));
        assert_eq!(zero_timestamp().seconds, GO_ZERO_TIME_SECS);
    }

    #[test]
    fn stats_have_every_required_message() {
        let r = empty_stats("t", UNIX_EPOCH);
        let s = r.stats.as_ref().unwrap();
        assert!(s.timestamp.is_some());
        let u = s.agg_resource_usage.as_ref().unwrap();
        assert!(u.cpu.is_some() && u.memory.is_some());
    }
}
