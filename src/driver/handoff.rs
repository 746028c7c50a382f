//! Never leak an ECS task on Nomad 1.10+: the rules of adoption, drain handoff and the orphan
//! sweep, as pure functions over what ECS (tasks and their tags) and Nomad's API (allocations,
//! nodes) say. The driver (`driver/mod.rs`) makes the calls and acts on the verdicts.
//!
//! Every ECS task the driver starts names its *slot* — namespace, job, task group, allocation
//! index and task: what stays the same when Nomad replaces an allocation — in its `startedBy`
//! (hashed) and its tags, so the replacement finds its predecessor with one ListTasks call.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::aws::ecs::Task;
use crate::encoding::sha256_hex;
use crate::nomad_api::{Allocation, ApiError, Node, NomadApi};

use super::config::{NomadApiConfig, TaskIdentity};

/// Tag keys (besides `nomad:managed-by` and the identity tags of `driver::identity_tags`).
pub const TAG_SLOT: &str = "nomad:slot";
pub const TAG_ALLOC_ID: &str = "nomad:alloc-id";
pub const TAG_ALLOC_INDEX: &str = "nomad:alloc-index";
/// Nomad's task id (new for each start): finds the ECS task of a StartTask Nomad repeats.
pub const TAG_TASK_ID: &str = "nomad:task-id";
pub const TAG_CONFIG_HASH: &str = "nomad:config-hash";
/// Set on a drained allocation's task: unix seconds until which a replacement may adopt it.
pub const TAG_HANDOFF_UNTIL: &str = "nomad:handoff-until";
/// Set on an adopted task: the allocation it came from.
pub const TAG_ADOPTED_FROM: &str = "nomad:adopted-from";

/// The slot of a task: 32 hex digits of SHA-256 over namespace, job, group, index and task.
/// Without an allocation index (never the case under Nomad) the allocation id stands in for
/// it, so such a task has a slot of its own and is never adopted.
pub fn slot(identity: &TaskIdentity) -> String {
    let index = identity
        .alloc_index
        .map(|i| i.to_string())
        .unwrap_or_else(|| format!("alloc:{}", identity.alloc_id));
    let key = [
        identity.namespace.as_str(),
        identity.job_id.as_str(),
        identity.task_group.as_str(),
        index.as_str(),
        identity.name.as_str(),
    ]
    .join("\n");
    sha256_hex(key.as_bytes(), 32)
}

/// ECS `startedBy` (≤ 128 of `[A-Za-z0-9_/-]`): `nomad/<slot>`.
pub fn started_by(identity: &TaskIdentity) -> String {
    format!("nomad/{}", slot(identity))
}

/// Why an ECS task is (or is not) taken over by a new allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Adopt(String),
    Leave(String),
}

/// What the replacement allocation knows about itself when it looks at a running ECS task of
/// its slot.
pub struct Replacement<'a> {
    pub identity: &'a TaskIdentity,
    /// The task definition ARN the new allocation would run.
    pub task_definition_arn: &'a str,
    pub adopt_lost: bool,
    /// Adopt from an allocation Nomad is draining (desired transition migrate), when the
    /// replacement starts before the old allocation's StopTask has marked the task.
    pub adopt_drained: bool,
}

/// May `new` adopt `task`? `alloc` and `node` are Nomad's answers about the allocation and node
/// the task's tags name (`None` when not asked).
pub fn adoption_verdict(
    task: &Task,
    new: &Replacement<'_>,
    alloc: Option<&Result<Option<Allocation>, ApiError>>,
    node: Option<&Result<Option<Node>, ApiError>>,
    now: SystemTime,
) -> Verdict {
    let Some(old_alloc) = task.tag(TAG_ALLOC_ID) else {
        return Verdict::Leave("no allocation tag".into());
    };
    if old_alloc == new.identity.alloc_id {
        return Verdict::Leave("started by this allocation".into());
    }
    if task.desired_status != "RUNNING"
        || matches!(task.last_status.as_str(), "STOPPED" | "DEPROVISIONING" | "STOPPING")
    {
        return Verdict::Leave(format!("it is {}", task.last_status));
    }
    if task.tag(TAG_CONFIG_HASH) != Some(new.identity.config_hash.as_str()) || new.identity.config_hash.is_empty() {
        return Verdict::Leave("its task config differs (a new job version?)".into());
    }
    if task.task_definition_arn.as_deref() != Some(new.task_definition_arn) {
        return Verdict::Leave(format!(
            "it runs task definition {}, not {}",
            task.task_definition_arn.as_deref().unwrap_or("?"),
            new.task_definition_arn
        ));
    }
    if let Some(until) = handoff_until(task) {
        if until > now {
            return Verdict::Adopt(format!("allocation {old_alloc} was drained and handed it over"));
        }
    }
    if new.adopt_drained {
        if let Some(Ok(Some(a))) = alloc {
            if a.migrate {
                return Verdict::Adopt(format!("allocation {old_alloc} is being drained"));
            }
        }
    }
    if !new.adopt_lost {
        return Verdict::Leave("adopt_lost is off".into());
    }
    match alloc {
        None => Verdict::Leave("Nomad was not asked".into()),
        Some(Err(e)) => Verdict::Leave(format!("Nomad cannot tell its allocation's state ({e})")),
        Some(Ok(None)) => Verdict::Leave(format!("allocation {old_alloc} no longer exists in Nomad")),
        Some(Ok(Some(a))) if a.client_status == "lost" => Verdict::Adopt(format!("allocation {old_alloc} is lost")),
        Some(Ok(Some(a))) if a.client_status == "unknown" => {
            Verdict::Leave(format!("allocation {old_alloc} is unknown (its node is disconnected)"))
        }
        Some(Ok(Some(a))) if a.is_client_terminal() => {
            Verdict::Leave(format!("allocation {old_alloc} is {}", a.client_status))
        }
        Some(Ok(Some(a))) => match node {
            Some(Ok(Some(n))) if n.status == "down" => {
                Verdict::Adopt(format!("allocation {old_alloc} is on node {} which is down", n.id))
            }
            _ => Verdict::Leave(format!("allocation {old_alloc} is {}", a.client_status)),
        },
    }
}

/// The drain handoff deadline a task carries, if any.
pub fn handoff_until(task: &Task) -> Option<SystemTime> {
    let secs: u64 = task.tag(TAG_HANDOFF_UNTIL)?.parse().ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// The tag value for a drain handoff deadline.
pub fn handoff_tag(until: SystemTime) -> (String, String) {
    let secs = until.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    (TAG_HANDOFF_UNTIL.to_string(), secs.to_string())
}

/// What the sweep does with one running ECS task that carries the driver's marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sweep {
    /// Its allocation is live (or Nomad cannot tell): leave it, and forget any earlier sighting.
    Keep,
    /// Leave it for now without forgetting (a handoff window still open).
    Wait,
    /// Its allocation is over (or gone); stop it once that has lasted the grace time. The text
    /// names the allocation and its state.
    Orphan(String),
    /// Stop it now, without grace (a drain handoff window that expired).
    Expired(String),
    /// Nomad could not be asked: keep what was seen before, decide nothing.
    Unknown,
}

pub fn sweep_verdict(task: &Task, alloc: &Result<Option<Allocation>, ApiError>, now: SystemTime) -> Sweep {
    let Some(alloc_id) = task.tag(TAG_ALLOC_ID) else {
        return Sweep::Keep;
    };
    let live = |a: &Allocation| !a.is_client_terminal();
    match alloc {
        Err(_) => Sweep::Unknown,
        Ok(Some(a)) if live(a) => Sweep::Keep,
        _ if handoff_until(task).is_some_and(|u| u > now) => Sweep::Wait,
        Ok(found) => {
            let state = match found {
                Some(a) => format!("allocation {alloc_id} is {} in Nomad", a.client_status),
                None => format!("allocation {alloc_id} no longer exists in Nomad"),
            };
            if handoff_until(task).is_some() {
                Sweep::Expired(format!(
                    "{state}, and no allocation adopted the task within the drain handoff window"
                ))
            } else {
                Sweep::Orphan(state)
            }
        }
    }
}

/// Sightings of orphans across sweeps: an ECS task is stopped once its allocation has been over
/// for the grace time.
#[derive(Default)]
pub struct Sightings {
    first_seen: Mutex<std::collections::HashMap<String, Instant>>,
}

impl Sightings {
    /// Records that `arn` is an orphan now; true when it has been one for `grace`.
    pub fn orphan_for(&self, arn: &str, grace: Duration, now: Instant) -> bool {
        let mut seen = self.first_seen.lock().unwrap_or_else(|p| p.into_inner());
        let first = *seen.entry(arn.to_string()).or_insert(now);
        now.duration_since(first) >= grace
    }

    pub fn forget(&self, arn: &str) {
        self.first_seen.lock().unwrap_or_else(|p| p.into_inner()).remove(arn);
    }

    /// Drops every sighting of a task not in `present` (stopped, or no longer listed).
    pub fn retain(&self, present: &std::collections::HashSet<String>) {
        self.first_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|arn, _| present.contains(arn));
    }
}

/// How long a Nomad API check stays good before it is made again.
const RECHECK: Duration = Duration::from_secs(30);
/// Time allowed for one Nomad API request.
pub const API_TIMEOUT: Duration = Duration::from_secs(5);

/// The Nomad API client for the plugin's settings, and whether it answered lately.
#[derive(Default)]
pub struct NomadLink {
    inner: Mutex<Option<Link>>,
}

struct Link {
    config: NomadApiConfig,
    api: std::sync::Arc<NomadApi>,
    checked: Option<(Instant, Result<Option<String>, String>)>,
}

impl NomadLink {
    /// The API client when Nomad answered its last check (made again when older than 30 s),
    /// with the text the fingerprint shows; `None` and the reason otherwise.
    pub fn get(&self, config: &NomadApiConfig) -> (Option<std::sync::Arc<NomadApi>>, String) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.as_ref().is_none_or(|l| l.config != *config) {
            let env = |n: &str| {
                std::env::var(n)
                    .ok()
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
            };
            let settings = crate::nomad_api::ApiSettings::resolve(
                config.address.clone(),
                config.token.clone(),
                config.token_file.clone(),
                config.ca_file.clone(),
                API_TIMEOUT,
                &env,
            );
            match NomadApi::new(settings) {
                Ok(api) => {
                    *g = Some(Link {
                        config: config.clone(),
                        api: std::sync::Arc::new(api),
                        checked: None,
                    })
                }
                Err(e) => {
                    *g = None;
                    return (None, format!("unavailable: {e}"));
                }
            }
        }
        let Some(link) = g.as_mut() else {
            return (None, "unavailable".into());
        };
        let fresh = link.checked.as_ref().is_some_and(|(at, _)| at.elapsed() < RECHECK);
        if !fresh {
            let result = link.api.agent_version().map_err(|e| e.to_string());
            match &result {
                Ok(_) => log::debug!("Nomad API at {} answers", link.api.address()),
                Err(e) => log::debug!("Nomad API unavailable: {e}"),
            }
            link.checked = Some((Instant::now(), result));
        }
        match link.checked.as_ref().map(|(_, r)| r) {
            Some(Ok(Some(v))) => (Some(std::sync::Arc::clone(&link.api)), format!("available (Nomad {v})")),
            Some(Ok(None)) => (Some(std::sync::Arc::clone(&link.api)), "available".into()),
            Some(Err(e)) => (None, format!("unavailable: {e}")),
            None => (None, "unavailable".into()),
        }
    }
}

/// A random fraction in [-0.2, 0.2] of `d`, added to `d` (the sweep's jitter).
pub fn jittered(d: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    let unit = (h.finish() % 10_001) as f64 / 10_000.0; // 0..=1
    d.mul_f64(0.8 + 0.4 * unit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nomad_api::ApiErrorKind;

    fn identity(alloc: &str, index: u32) -> TaskIdentity {
        TaskIdentity {
            id: format!("{alloc}/web/1"),
            alloc_id: alloc.into(),
            name: "web".into(),
            job_id: "shop".into(),
            namespace: "default".into(),
            task_group: "g".into(),
            alloc_index: Some(index),
            config_hash: "h1".into(),
            ..Default::default()
        }
    }

    fn task(alloc: &str, hash: &str, td: &str) -> Task {
        Task {
            task_arn: "arn:aws:ecs:us-east-1:1:task/c/t1".into(),
            task_definition_arn: Some(td.into()),
            last_status: "RUNNING".into(),
            desired_status: "RUNNING".into(),
            tags: vec![
                (TAG_ALLOC_ID.into(), alloc.into()),
                (TAG_CONFIG_HASH.into(), hash.into()),
            ],
            ..Default::default()
        }
    }

    fn alloc(id: &str, status: &str) -> Result<Option<Allocation>, ApiError> {
        Ok(Some(Allocation {
            id: id.into(),
            namespace: "default".into(),
            job_id: "shop".into(),
            task_group: "g".into(),
            name: "shop.g[0]".into(),
            node_id: "n1".into(),
            client_status: status.into(),
            desired_status: "run".into(),
            migrate: false,
        }))
    }

    const TD: &str = "arn:aws:ecs:us-east-1:1:task-definition/web:3";

    #[test]
    fn slot_names_namespace_job_group_index_and_task() {
        let a = identity("a1", 0);
        let b = identity("a2", 0);
        assert_eq!(slot(&a), slot(&b), "a replacement has its predecessor's slot");
        assert_ne!(slot(&a), slot(&identity("a1", 1)));
        let sb = started_by(&a);
        assert!(sb.len() <= 128 && sb.starts_with("nomad/"), "{sb}");
        assert!(sb.chars().all(|c| c.is_ascii_alphanumeric() || c == '/'));
        let no_index = TaskIdentity {
            alloc_index: None,
            ..a.clone()
        };
        assert_ne!(
            slot(&no_index),
            slot(&TaskIdentity {
                alloc_id: "x".into(),
                ..no_index.clone()
            })
        );
    }

    #[test]
    fn a_lost_allocation_is_adopted_and_nothing_else() {
        let me = identity("new", 0);
        let new = Replacement {
            identity: &me,
            task_definition_arn: TD,
            adopt_lost: true,
            adopt_drained: false,
        };
        let now = SystemTime::now();
        let t = task("old", "h1", TD);
        assert!(matches!(
            adoption_verdict(&t, &new, Some(&alloc("old", "lost")), None, now),
            Verdict::Adopt(_)
        ));
        for status in ["running", "pending", "unknown", "complete", "failed"] {
            let v = adoption_verdict(&t, &new, Some(&alloc("old", status)), None, now);
            assert!(matches!(v, Verdict::Leave(_)), "{status}: {v:?}");
        }
        assert!(matches!(
            adoption_verdict(&t, &new, Some(&Ok(None)), None, now),
            Verdict::Leave(_)
        ));
        let err = Err(ApiError {
            kind: ApiErrorKind::Server,
            message: "500".into(),
        });
        assert!(matches!(
            adoption_verdict(&t, &new, Some(&err), None, now),
            Verdict::Leave(_)
        ));
        // Its node is down: adopted even before Nomad marks the allocation lost.
        let down: Result<Option<Node>, ApiError> = Ok(Some(Node {
            id: "n1".into(),
            status: "down".into(),
        }));
        assert!(matches!(
            adoption_verdict(&t, &new, Some(&alloc("old", "running")), Some(&down), now),
            Verdict::Adopt(_)
        ));
        // A rolling update: another task definition, or another config.
        let other_td = task("old", "h1", "arn:aws:ecs:us-east-1:1:task-definition/web:4");
        assert!(matches!(
            adoption_verdict(&other_td, &new, Some(&alloc("old", "lost")), None, now),
            Verdict::Leave(_)
        ));
        let other_cfg = task("old", "h2", TD);
        assert!(matches!(
            adoption_verdict(&other_cfg, &new, Some(&alloc("old", "lost")), None, now),
            Verdict::Leave(_)
        ));
        // adopt_lost off.
        let off = Replacement {
            adopt_lost: false,
            ..new
        };
        assert!(matches!(
            adoption_verdict(&t, &off, Some(&alloc("old", "lost")), None, now),
            Verdict::Leave(_)
        ));
    }

    #[test]
    fn a_drained_task_is_adopted_within_its_window_only() {
        let me = identity("new", 0);
        let new = Replacement {
            identity: &me,
            task_definition_arn: TD,
            adopt_lost: false,
            adopt_drained: false,
        };
        let now = SystemTime::now();
        let mut t = task("old", "h1", TD);
        t.tags.push(handoff_tag(now + Duration::from_secs(60)));
        assert!(matches!(adoption_verdict(&t, &new, None, None, now), Verdict::Adopt(_)));
        assert!(matches!(
            adoption_verdict(&t, &new, None, None, now + Duration::from_secs(120)),
            Verdict::Leave(_)
        ));
        // The replacement may start before the old allocation's StopTask: Nomad says migrate.
        let untagged = task("old", "h1", TD);
        let mut draining = alloc("old", "running");
        if let Ok(Some(a)) = draining.as_mut() {
            a.migrate = true;
        }
        assert!(matches!(
            adoption_verdict(&untagged, &new, Some(&draining), None, now),
            Verdict::Leave(_)
        ));
        let drains = Replacement {
            adopt_drained: true,
            ..new
        };
        assert!(matches!(
            adoption_verdict(&untagged, &drains, Some(&draining), None, now),
            Verdict::Adopt(_)
        ));
        assert!(matches!(
            adoption_verdict(&untagged, &drains, Some(&alloc("old", "running")), None, now),
            Verdict::Leave(_)
        ));
    }

    #[test]
    fn sweep_verdicts() {
        let now = SystemTime::now();
        let t = task("old", "h1", TD);
        assert_eq!(sweep_verdict(&t, &alloc("old", "running"), now), Sweep::Keep);
        assert_eq!(sweep_verdict(&t, &alloc("old", "unknown"), now), Sweep::Keep);
        assert!(
            matches!(sweep_verdict(&t, &alloc("old", "complete"), now), Sweep::Orphan(m) if m.contains("complete"))
        );
        assert!(matches!(sweep_verdict(&t, &Ok(None), now), Sweep::Orphan(m) if m.contains("no longer exists")));
        let err = Err(ApiError {
            kind: ApiErrorKind::Unreachable,
            message: "x".into(),
        });
        assert_eq!(sweep_verdict(&t, &err, now), Sweep::Unknown);
        let mut drained = t.clone();
        drained.tags.push(handoff_tag(now + Duration::from_secs(60)));
        assert_eq!(sweep_verdict(&drained, &alloc("old", "complete"), now), Sweep::Wait);
        assert!(matches!(
            sweep_verdict(&drained, &alloc("old", "complete"), now + Duration::from_secs(61)),
            Sweep::Expired(_)
        ));
    }

    #[test]
    fn sightings_wait_for_the_grace_time() {
        let s = Sightings::default();
        let t0 = Instant::now();
        let g = Duration::from_secs(10);
        assert!(!s.orphan_for("a", g, t0));
        assert!(!s.orphan_for("a", g, t0 + Duration::from_secs(5)));
        assert!(s.orphan_for("a", g, t0 + Duration::from_secs(10)));
        s.forget("a");
        assert!(!s.orphan_for("a", g, t0 + Duration::from_secs(11)));
        assert!(s.orphan_for("a", Duration::ZERO, t0));
    }

    #[test]
    fn jitter_stays_within_a_fifth() {
        for _ in 0..100 {
            let j = jittered(Duration::from_secs(100));
            assert!(j >= Duration::from_secs(80) && j <= Duration::from_secs(120), "{j:?}");
        }
    }
}
