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
use crate::nomad_api::{AgentSelf, Allocation, ApiError, Node, NomadApi};

use super::config::{NomadApiConfig, TaskIdentity};

/// Tag keys (besides `nomad:managed-by` and the identity tags of `driver::identity_tags`).
pub const TAG_SLOT: &str = "nomad:slot";
pub const TAG_ALLOC_ID: &str = "nomad:alloc-id";
pub const TAG_ALLOC_INDEX: &str = "nomad:alloc-index";
/// Nomad's task id (new for each start): finds the ECS task of a StartTask Nomad repeats.
pub const TAG_TASK_ID: &str = "nomad:task-id";
pub const TAG_CONFIG_HASH: &str = "nomad:config-hash";
/// The Nomad region that started the task (NOMAD_REGION).
pub const TAG_REGION: &str = "nomad:region";
/// The operator's name for the Nomad cluster that started the task (`nomad_cluster`).
pub const TAG_CLUSTER: &str = "nomad:cluster";
/// Set on a drained allocation's task: unix seconds until which a replacement may adopt it.
pub const TAG_HANDOFF_UNTIL: &str = "nomad:handoff-until";
/// Set on an adopted task: the allocation it came from.
pub const TAG_ADOPTED_FROM: &str = "nomad:adopted-from";
/// Set by the sweep on a task whose allocation it found over: unix seconds of that first
/// sighting, so that whichever client sweeps next measures the grace time from it.
pub const TAG_ORPHAN_SINCE: &str = "nomad:orphan-since";

/// The Nomad cluster and region a task belongs to: what its `nomad:cluster` and
/// `nomad:region` tags say, or what this plugin is part of. Sweep and adoption only ever
/// consider tasks of their own identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NomadIdentity {
    /// The operator's `nomad_cluster`; None when it is not set (then no `nomad:cluster` tag).
    pub cluster: Option<String>,
    pub region: String,
}

impl NomadIdentity {
    /// The identity a task's tags name; None for a task without a `nomad:region` tag (one
    /// started by an older version of the driver, or by something else): such a task is
    /// never adopted or stopped by the sweep.
    pub fn of_task(task: &Task) -> Option<NomadIdentity> {
        let region = task.tag(TAG_REGION).filter(|r| !r.is_empty())?;
        Some(NomadIdentity {
            cluster: task.tag(TAG_CLUSTER).filter(|c| !c.is_empty()).map(str::to_string),
            region: region.to_string(),
        })
    }
}

impl std::fmt::Display for NomadIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.cluster {
            Some(c) => write!(f, "Nomad cluster {c:?}, region {:?}", self.region),
            None => write!(f, "unnamed Nomad cluster, region {:?}", self.region),
        }
    }
}

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
    /// The Nomad cluster and region the replacement belongs to.
    pub nomad: &'a NomadIdentity,
    /// What Nomad says this allocation replaces (`PreviousAllocation`); None when Nomad was not
    /// asked or names none. Only that allocation's task is ever adopted.
    pub previous_allocation: Option<&'a str>,
    /// The task definition ARN the new allocation would run.
    pub task_definition_arn: &'a str,
    pub adopt_lost: bool,
    /// Adopt from an allocation Nomad is draining (desired transition migrate) even when the
    /// old allocation's StopTask has not marked the task yet.
    pub adopt_drained: bool,
}

/// May `new` adopt `task`? `alloc` and `node` are this plugin's Nomad's answers about the
/// allocation and node the task's tags name (`None` when not asked).
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
    match NomadIdentity::of_task(task) {
        None => return Verdict::Leave("it carries no Nomad cluster identity (nomad:region tag)".into()),
        Some(theirs) if theirs != *new.nomad => {
            return Verdict::Leave(format!("it belongs to {theirs}, not {}", new.nomad))
        }
        Some(_) => {}
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
    match new.previous_allocation {
        None => {
            return Verdict::Leave(format!(
                "Nomad does not say that allocation {} replaces {old_alloc}",
                new.identity.alloc_id
            ))
        }
        Some(p) if p != old_alloc => {
            return Verdict::Leave(format!(
                "allocation {} replaces {p} in Nomad, not {old_alloc}",
                new.identity.alloc_id
            ))
        }
        Some(_) => {}
    }
    let a = match alloc {
        None => return Verdict::Leave("Nomad was not asked".into()),
        Some(Err(e)) => return Verdict::Leave(format!("Nomad cannot tell its allocation's state ({e})")),
        Some(Ok(None)) => return Verdict::Leave(format!("allocation {old_alloc} no longer exists in Nomad")),
        Some(Ok(Some(a))) => a,
    };
    if is_per_node_job(&a.job_type) {
        return Verdict::Leave(format!(
            "allocation {old_alloc} belongs to a {} job, whose tasks never move between allocations",
            a.job_type
        ));
    }
    if !same_slot(a, new.identity) {
        return Verdict::Leave(format!(
            "Nomad says allocation {old_alloc} is {} of job {:?} in namespace {:?}, not this task's slot",
            a.name, a.job_id, a.namespace
        ));
    }
    let handed_over = handoff_until(task).is_some_and(|u| u > now);
    // `nomad alloc stop` sets the same migrate flag as a drain: only a draining node's
    // allocation is adopted before its own StopTask handed the task over.
    let node_draining = matches!(node, Some(Ok(Some(n))) if n.draining);
    if a.migrate && (handed_over || (new.adopt_drained && node_draining)) {
        return Verdict::Adopt(if handed_over {
            format!("allocation {old_alloc} was drained and handed it over")
        } else {
            format!("allocation {old_alloc} is being drained")
        });
    }
    if !new.adopt_lost {
        return Verdict::Leave("adopt_lost is off".into());
    }
    match a.client_status.as_str() {
        "lost" => Verdict::Adopt(format!("allocation {old_alloc} is lost")),
        "unknown" => Verdict::Leave(format!("allocation {old_alloc} is unknown (its node is disconnected)")),
        _ if a.is_client_terminal() => Verdict::Leave(format!("allocation {old_alloc} is {}", a.client_status)),
        _ => match node {
            Some(Ok(Some(n))) if n.status == "down" => {
                Verdict::Adopt(format!("allocation {old_alloc} is on node {} which is down", n.id))
            }
            _ => Verdict::Leave(format!("allocation {old_alloc} is {}", a.client_status)),
        },
    }
}

/// System and sysbatch jobs run one allocation per node, all at index 0 (so their tasks share
/// a slot): such a task never moves to another allocation, by adoption or by drain handoff.
pub fn is_per_node_job(job_type: &str) -> bool {
    matches!(job_type, "system" | "sysbatch")
}

/// Does Nomad's allocation `a` sit in the slot of `identity` (namespace, job, group, index)?
fn same_slot(a: &Allocation, identity: &TaskIdentity) -> bool {
    a.namespace == identity.namespace
        && a.job_id == identity.job_id
        && a.task_group == identity.task_group
        && a.index() == identity.alloc_index
}

/// The drain handoff deadline a task carries, if any.
pub fn handoff_until(task: &Task) -> Option<SystemTime> {
    unix_tag(task, TAG_HANDOFF_UNTIL)
}

/// When the sweep first found the task's allocation over, if it did.
pub fn orphan_since(task: &Task) -> Option<SystemTime> {
    unix_tag(task, TAG_ORPHAN_SINCE)
}

fn unix_tag(task: &Task, key: &str) -> Option<SystemTime> {
    parse_unix_time(task.tag(key)?)
}

/// A tag value written by [`unix_time_tag`], read back.
pub fn parse_unix_time(value: &str) -> Option<SystemTime> {
    UNIX_EPOCH.checked_add(Duration::from_secs(value.parse().ok()?))
}

/// A tag whose value is `at` in unix seconds.
pub fn unix_time_tag(key: &str, at: SystemTime) -> (String, String) {
    let secs = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    (key.to_string(), secs.to_string())
}

/// The tag value for a drain handoff deadline.
pub fn handoff_tag(until: SystemTime) -> (String, String) {
    unix_time_tag(TAG_HANDOFF_UNTIL, until)
}

/// What the sweep does with one running ECS task of its own identity that no local task
/// watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sweep {
    /// Its allocation is live: leave it (and clear an orphan mark it carries).
    Keep,
    /// Leave it for now (a handoff window still open).
    Wait,
    /// Its allocation is over (or gone); stop it once that has lasted the grace time (counted
    /// from its `nomad:orphan-since` tag). The text names the allocation and its state.
    Orphan(String),
    /// Stop it now, without grace (a drain handoff window that expired).
    Expired(String),
    /// Nomad could not be asked, or its answer proves nothing: decide nothing.
    Unknown,
}

/// `trust_gone`: whether Nomad's 404 for the allocation means "gone" — only when the operator
/// named the Nomad cluster (`nomad_cluster`), so that tasks of another Nomad cluster sharing
/// the ECS cluster cannot carry this cluster's identity by default. Without it only an
/// allocation this Nomad shows as over makes an orphan.
pub fn sweep_verdict(
    task: &Task,
    alloc: &Result<Option<Allocation>, ApiError>,
    trust_gone: bool,
    now: SystemTime,
) -> Sweep {
    let Some(alloc_id) = task.tag(TAG_ALLOC_ID) else {
        return Sweep::Unknown;
    };
    let state = match alloc {
        Err(_) => return Sweep::Unknown,
        Ok(Some(a)) if !a.is_client_terminal() => return Sweep::Keep,
        Ok(None) if !trust_gone => return Sweep::Unknown,
        Ok(Some(a)) => format!("allocation {alloc_id} is {} in Nomad", a.client_status),
        Ok(None) => format!("allocation {alloc_id} no longer exists in Nomad"),
    };
    match handoff_until(task) {
        Some(u) if u > now => Sweep::Wait,
        Some(_) => Sweep::Expired(format!(
            "{state}, and no allocation adopted the task within the drain handoff window"
        )),
        None => Sweep::Orphan(state),
    }
}

/// The client that sweeps round `round` among the `candidates` (node ids): the one with the
/// highest hash of round and id (rendezvous hashing), so every client that sees the same
/// candidates picks the same one, and the choice moves from round to round.
pub fn elected<'a>(round: u64, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .max_by_key(|id| sha256_hex(format!("{round}\n{id}").as_bytes(), 32))
}

/// Why a round that would stop `stopping` of the `seen` running tasks must stop none, if it
/// must: more than `max` tasks, or (more than 2 tasks and) more than `percent` of those seen.
pub fn brake(stopping: usize, seen: usize, max: u32, percent: u32) -> Option<String> {
    if stopping > max as usize {
        return Some(format!(
            "it would stop {stopping} of the {seen} ECS tasks it looked at, more than reap_max_stop = {max}"
        ));
    }
    if stopping > 2 && stopping * 100 > seen * percent as usize {
        return Some(format!(
            "it would stop {stopping} of the {seen} ECS tasks it looked at, more than reap_max_stop_percent = \
             {percent}%"
        ));
    }
    None
}

/// What every client of one sweep shares, as a node attribute: the Nomad identity, the ECS
/// region and the clusters swept. Clients elect a sweeper among the nodes with the same value.
pub fn sweep_scope(nomad: &NomadIdentity, ecs_region: &str, clusters: &[String]) -> String {
    let mut clusters: Vec<&str> = clusters.iter().map(String::as_str).collect();
    clusters.sort_unstable();
    clusters.dedup();
    format!(
        "{}@{} ecs:{ecs_region}:{}",
        nomad.cluster.as_deref().unwrap_or("-"),
        nomad.region,
        clusters.join(",")
    )
}

/// How long a Nomad API check stays good before it is made again.
const RECHECK: Duration = Duration::from_secs(30);
/// Time allowed for one Nomad API request.
pub const API_TIMEOUT: Duration = Duration::from_secs(5);

/// The Nomad API client for the plugin's settings, and what its agent said at the last check.
#[derive(Default)]
pub struct NomadLink {
    inner: Mutex<Option<Link>>,
}

struct Link {
    config: NomadApiConfig,
    api: std::sync::Arc<NomadApi>,
    checked: Option<(Instant, Result<AgentSelf, String>)>,
}

/// The link as the driver uses it.
pub struct LinkState {
    /// The client, when Nomad answered its last check.
    pub api: Option<std::sync::Arc<NomadApi>>,
    /// What the fingerprint shows: `available (Nomad <version>)` or `unavailable: <why>`.
    pub status: String,
    /// The agent's version, region and node id (empty when it could not be read).
    pub agent: AgentSelf,
}

impl NomadLink {
    /// The API client when Nomad answered its last check (made again when older than 30 s).
    pub fn get(&self, config: &NomadApiConfig) -> LinkState {
        let unavailable = |why: String| LinkState {
            api: None,
            status: format!("unavailable: {why}"),
            agent: AgentSelf::default(),
        };
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
                    return unavailable(e.to_string());
                }
            }
        }
        let Some(link) = g.as_mut() else {
            return unavailable("not configured".into());
        };
        let fresh = link.checked.as_ref().is_some_and(|(at, _)| at.elapsed() < RECHECK);
        if !fresh {
            let result = link.api.agent_self().map_err(|e| e.to_string());
            match &result {
                Ok(_) => log::debug!("Nomad API at {} answers", link.api.address()),
                Err(e) => log::debug!("Nomad API unavailable: {e}"),
            }
            link.checked = Some((Instant::now(), result));
        }
        match link.checked.as_ref().map(|(_, r)| r) {
            Some(Ok(agent)) => LinkState {
                api: Some(std::sync::Arc::clone(&link.api)),
                status: match &agent.version {
                    Some(v) => format!("available (Nomad {v})"),
                    None => "available".into(),
                },
                agent: agent.clone(),
            },
            Some(Err(e)) => unavailable(e.clone()),
            None => unavailable("not checked".into()),
        }
    }
}

/// The next sweep round for `interval`: its number (rounds are the `interval`-long slices of
/// unix time, the same on every client) and how long to wait for it — until it starts, plus a
/// random spread of up to a tenth of the interval (at most 30 s), so the clients' requests to
/// Nomad do not all arrive at once.
pub fn next_round(interval: Duration, now: SystemTime) -> (u64, Duration) {
    let len = interval.as_millis().max(1);
    let now_ms = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    let round = now_ms / len + 1;
    let starts_in = Duration::from_millis(u64::try_from(round * len - now_ms).unwrap_or(u64::MAX));
    let spread = (interval / 10).min(Duration::from_secs(30)).mul_f64(random_unit());
    (u64::try_from(round).unwrap_or(u64::MAX), starts_in + spread)
}

/// A random number in [0, 1].
fn random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    (h.finish() % 10_001) as f64 / 10_000.0
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
            region: "global".into(),
            ..Default::default()
        }
    }

    fn ours() -> NomadIdentity {
        NomadIdentity {
            cluster: Some("prod".into()),
            region: "global".into(),
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
                (TAG_CLUSTER.into(), "prod".into()),
                (TAG_REGION.into(), "global".into()),
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
            previous_allocation: String::new(),
            job_type: "service".into(),
        }))
    }

    fn migrating(id: &str, status: &str) -> Result<Option<Allocation>, ApiError> {
        let mut a = alloc(id, status);
        if let Ok(Some(a)) = a.as_mut() {
            a.migrate = true;
        }
        a
    }

    const TD: &str = "arn:aws:ecs:us-east-1:1:task-definition/web:3";

    fn replacement<'a>(me: &'a TaskIdentity, nomad: &'a NomadIdentity, previous: Option<&'a str>) -> Replacement<'a> {
        Replacement {
            identity: me,
            nomad,
            previous_allocation: previous,
            task_definition_arn: TD,
            adopt_lost: true,
            adopt_drained: false,
        }
    }

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
        let nomad = ours();
        let new = replacement(&me, &nomad, Some("old"));
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
            draining: false,
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
            ..replacement(&me, &nomad, Some("old"))
        };
        assert!(matches!(
            adoption_verdict(&t, &off, Some(&alloc("old", "lost")), None, now),
            Verdict::Leave(_)
        ));
    }

    #[test]
    fn only_the_allocation_nomad_says_is_replaced_is_adopted() {
        let me = identity("new", 0);
        let nomad = ours();
        let now = SystemTime::now();
        let t = task("old", "h1", TD);
        for previous in [None, Some("other")] {
            let v = adoption_verdict(
                &t,
                &replacement(&me, &nomad, previous),
                Some(&alloc("old", "lost")),
                None,
                now,
            );
            assert!(matches!(v, Verdict::Leave(_)), "{previous:?}: {v:?}");
        }
        // Nomad's allocation must sit in the task's slot: tags alone prove nothing.
        let mut elsewhere = alloc("old", "lost");
        if let Ok(Some(a)) = elsewhere.as_mut() {
            a.name = "shop.g[3]".into();
        }
        let v = adoption_verdict(&t, &replacement(&me, &nomad, Some("old")), Some(&elsewhere), None, now);
        assert!(matches!(&v, Verdict::Leave(m) if m.contains("slot")), "{v:?}");
    }

    #[test]
    fn another_nomad_clusters_task_is_never_adopted() {
        let me = identity("new", 0);
        let nomad = ours();
        let new = replacement(&me, &nomad, Some("old"));
        let now = SystemTime::now();
        let lost = alloc("old", "lost");
        let mut theirs = task("old", "h1", TD);
        theirs.tags.retain(|(k, _)| k != TAG_CLUSTER);
        theirs.tags.push((TAG_CLUSTER.into(), "staging".into()));
        let v = adoption_verdict(&theirs, &new, Some(&lost), None, now);
        assert!(matches!(&v, Verdict::Leave(m) if m.contains("staging")), "{v:?}");
        let mut other_region = task("old", "h1", TD);
        other_region.tags.retain(|(k, _)| k != TAG_REGION);
        other_region.tags.push((TAG_REGION.into(), "eu".into()));
        assert!(matches!(
            adoption_verdict(&other_region, &new, Some(&lost), None, now),
            Verdict::Leave(_)
        ));
        let mut legacy = task("old", "h1", TD);
        legacy.tags.retain(|(k, _)| k != TAG_REGION && k != TAG_CLUSTER);
        assert!(matches!(
            adoption_verdict(&legacy, &new, Some(&lost), None, now),
            Verdict::Leave(_)
        ));
    }

    #[test]
    fn a_drained_task_is_adopted_only_when_nomad_says_its_allocation_migrates() {
        let me = identity("new", 0);
        let nomad = ours();
        let new = Replacement {
            adopt_lost: false,
            ..replacement(&me, &nomad, Some("old"))
        };
        let now = SystemTime::now();
        let mut t = task("old", "h1", TD);
        t.tags.push(handoff_tag(now + Duration::from_secs(60)));
        assert!(matches!(
            adoption_verdict(&t, &new, Some(&migrating("old", "complete")), None, now),
            Verdict::Adopt(_)
        ));
        // The mark alone is not enough: Nomad must say the allocation was migrated.
        assert!(matches!(adoption_verdict(&t, &new, None, None, now), Verdict::Leave(_)));
        assert!(matches!(
            adoption_verdict(&t, &new, Some(&alloc("old", "complete")), None, now),
            Verdict::Leave(_)
        ));
        assert!(matches!(
            adoption_verdict(
                &t,
                &new,
                Some(&migrating("old", "complete")),
                None,
                now + Duration::from_secs(120)
            ),
            Verdict::Leave(_)
        ));
        // The replacement may start before the old allocation's StopTask: Nomad says migrate.
        let untagged = task("old", "h1", TD);
        assert!(matches!(
            adoption_verdict(&untagged, &new, Some(&migrating("old", "running")), None, now),
            Verdict::Leave(_)
        ));
        let drains = Replacement {
            adopt_drained: true,
            ..new
        };
        let node = |draining: bool| -> Result<Option<Node>, ApiError> {
            Ok(Some(Node {
                id: "n1".into(),
                status: "ready".into(),
                draining,
            }))
        };
        assert!(matches!(
            adoption_verdict(
                &untagged,
                &drains,
                Some(&migrating("old", "running")),
                Some(&node(true)),
                now
            ),
            Verdict::Adopt(_)
        ));
        // `nomad alloc stop` sets the same flag on a node that is not draining: replaced.
        assert!(matches!(
            adoption_verdict(
                &untagged,
                &drains,
                Some(&migrating("old", "running")),
                Some(&node(false)),
                now
            ),
            Verdict::Leave(_)
        ));
        assert!(matches!(
            adoption_verdict(&untagged, &drains, Some(&migrating("old", "running")), None, now),
            Verdict::Leave(_)
        ));
        // A system job's allocation never hands its task to another.
        let mut system = migrating("old", "running");
        if let Ok(Some(a)) = system.as_mut() {
            a.job_type = "system".into();
        }
        assert!(matches!(
            adoption_verdict(&t, &drains, Some(&system), Some(&node(true)), now),
            Verdict::Leave(m) if m.contains("system")
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
        assert_eq!(sweep_verdict(&t, &alloc("old", "running"), true, now), Sweep::Keep);
        assert_eq!(sweep_verdict(&t, &alloc("old", "unknown"), true, now), Sweep::Keep);
        assert!(
            matches!(sweep_verdict(&t, &alloc("old", "complete"), false, now), Sweep::Orphan(m) if m.contains("complete"))
        );
        assert!(matches!(sweep_verdict(&t, &Ok(None), true, now), Sweep::Orphan(m) if m.contains("no longer exists")));
        assert_eq!(
            sweep_verdict(&t, &Ok(None), false, now),
            Sweep::Unknown,
            "a 404 proves nothing when the cluster is not named"
        );
        let err = Err(ApiError {
            kind: ApiErrorKind::Unreachable,
            message: "x".into(),
        });
        assert_eq!(sweep_verdict(&t, &err, true, now), Sweep::Unknown);
        let mut drained = t.clone();
        drained.tags.push(handoff_tag(now + Duration::from_secs(60)));
        assert_eq!(
            sweep_verdict(&drained, &alloc("old", "complete"), true, now),
            Sweep::Wait
        );
        assert!(matches!(
            sweep_verdict(&drained, &alloc("old", "complete"), true, now + Duration::from_secs(61)),
            Sweep::Expired(_)
        ));
    }

    #[test]
    fn the_orphan_mark_is_read_back() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut t = task("old", "h1", TD);
        assert_eq!(orphan_since(&t), None);
        t.tags.push(unix_time_tag(TAG_ORPHAN_SINCE, now));
        assert_eq!(orphan_since(&t), Some(now));
    }

    #[test]
    fn one_client_is_elected_per_round_and_the_choice_moves() {
        let nodes = ["n1", "n2", "n3", "n4", "n5"];
        let mut winners = std::collections::BTreeSet::new();
        for round in 0..50u64 {
            let w = elected(round, nodes.iter().copied()).unwrap();
            // The order the candidates come in does not matter.
            assert_eq!(elected(round, nodes.iter().rev().copied()), Some(w));
            winners.insert(w);
        }
        assert!(winners.len() >= 3, "{winners:?}");
        assert_eq!(elected(1, std::iter::empty()), None);
    }

    #[test]
    fn the_brake_holds_mass_stops() {
        assert_eq!(brake(0, 0, 10, 20), None);
        assert_eq!(brake(1, 1, 10, 20), None, "a small fleet's single orphan goes");
        assert_eq!(brake(2, 2, 10, 20), None);
        assert!(brake(3, 3, 10, 20).unwrap().contains("reap_max_stop_percent"));
        assert_eq!(brake(10, 100, 10, 20), None);
        assert!(brake(11, 1000, 10, 20).unwrap().contains("reap_max_stop = 10"));
        assert!(brake(21, 100, 50, 20).is_some());
    }

    #[test]
    fn scope_is_order_free() {
        let a = sweep_scope(&ours(), "us-east-1", &["b".into(), "a".into(), "a".into()]);
        assert_eq!(a, sweep_scope(&ours(), "us-east-1", &["a".into(), "b".into()]));
        assert_eq!(a, "prod@global ecs:us-east-1:a,b");
    }

    #[test]
    fn rounds_are_slices_of_unix_time() {
        let i = Duration::from_secs(300);
        let now = UNIX_EPOCH + Duration::from_secs(3_000_010);
        let (round, wait) = next_round(i, now);
        assert_eq!(round, 10_001);
        assert!(
            wait >= Duration::from_secs(290) && wait <= Duration::from_secs(320),
            "{wait:?}"
        );
    }
}
