//! The driver core: the task store, one thread per task, events, the shared status poller,
//! and the rules of each driver operation. Plain Rust values in and out: no gRPC or HTTP types.

pub mod alloc_fs;
pub mod cleanup;
pub mod config;
pub mod events;
pub mod exit;
pub mod handoff;
pub mod logs;
pub mod overrides;
pub mod poller;
pub mod state;
pub mod task;
pub mod taskdef;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant, SystemTime};

use crate::encoding::sha256_hex;
use futures_channel::{mpsc, oneshot};

use crate::aws::credentials::{self as creds, imds, region_from_env, ChainSettings, CredentialSource};
use crate::aws::ecs::{AwsVpcConfiguration, EcsClient, ListTasksInput, RunTaskInput, Task};
use crate::aws::http::{endpoint_for, endpoint_override, HttpConfig};
use crate::aws::logs::LogsClient;
use crate::aws::retry::{with_retries, RetryPolicy};
use crate::aws::sts::RoleRequest;
use crate::aws::transport::ProxySettings;
use crate::aws::{AwsError, ErrorKind};
use crate::nomad_api::AgentSelf;

use config::{DriverConfig, TaskIdentity, TaskSpec};
use events::{EventBus, TaskEvent};
use exit::ExitResult;
use poller::Poller;
use state::TaskState;
use task::{Phase, Shared, TaskEntry, TaskMsg, TaskSnapshot};

/// How long a RunTask is retried (with the same clientToken) on transient errors.
const RUN_TASK_DEADLINE: Duration = Duration::from_secs(60);
/// How long StopTask calls are retried on transient errors when Nomad gave no longer timeout.
const MIN_STOP_DEADLINE: Duration = Duration::from_secs(5);
/// How long DestroyTask(force) tries to stop a task before it gives up and logs the leak.
const DESTROY_STOP_DEADLINE: Duration = Duration::from_secs(15);
/// While a StopTask waits, the poller is asked for a fresh read this often.
const STOP_WAIT_POLL: Duration = Duration::from_secs(1);
/// How long RecoverTask retries reading the ECS task of a handle Nomad re-uses for another
/// task id (Nomad 1.1–1.9's restarts and handoffs).
const REUSED_HANDLE_CHECK_DEADLINE: Duration = Duration::from_secs(10);
/// How long a recovered task's follow-up waits for ECS to describe it once (for the task
/// definition ARN its log tail reads) before it falls back to the handle's reference.
const FIRST_OBSERVATION_WAIT: Duration = Duration::from_secs(60);
/// Stack of RecoverTask's follow-up thread (HTTPS calls; see task.rs TASK_STACK_SIZE).
const FOLLOW_UP_STACK: usize = 256 * 1024;
/// How long a fingerprint retries transient errors before it reports what it saw.
const FINGERPRINT_RETRY: Duration = Duration::from_secs(3);
/// How long the adoption lookup at StartTask retries ECS before it gives up (and starts a
/// new task).
const ADOPTION_LOOKUP_DEADLINE: Duration = Duration::from_secs(15);
/// How long one sweep retries an ECS call before it leaves the rest for the next sweep.
const SWEEP_CALL_DEADLINE: Duration = Duration::from_secs(20);

/// Why a driver operation failed. The Nomad side maps each to a gRPC status.
#[derive(Debug, Clone)]
pub enum DriverError {
    /// The task or plugin stanza is wrong: `field` names it, `message` says what is allowed.
    InvalidConfig {
        field: String,
        message: String,
    },
    /// The plugin cannot act yet (no config, disabled, no region).
    NotReady(String),
    NotFound(String),
    AlreadyExists(String),
    /// DestroyTask without force on a running task.
    StillRunning(String),
    /// RunTask did not start the task. `recoverable`: Nomad may retry (capacity, throttling).
    StartFailed {
        message: String,
        recoverable: bool,
    },
    /// A handle Nomad gave back cannot be used.
    BadHandle(String),
    Aws(AwsError),
    Internal(String),
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriverError::InvalidConfig { field, message } => write!(f, "invalid task config `{field}`: {message}"),
            DriverError::NotReady(m)
            | DriverError::NotFound(m)
            | DriverError::AlreadyExists(m)
            | DriverError::StillRunning(m)
            | DriverError::BadHandle(m)
            | DriverError::Internal(m) => f.write_str(m),
            DriverError::StartFailed { message, .. } => f.write_str(message),
            DriverError::Aws(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for DriverError {}

/// Health as the fingerprint reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Undetected,
    Unhealthy,
    Healthy,
}

/// A typed node attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    Bool(bool),
    Str(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fingerprint {
    pub health: Health,
    pub description: String,
    pub attributes: BTreeMap<String, Attr>,
}

/// What StartTask returns.
#[derive(Debug, Clone)]
pub struct Started {
    pub task_arn: String,
    pub driver_state: Vec<u8>,
    /// The task's address for Nomad services (awsvpc tasks whose address ECS reported in time).
    pub network: Option<state::NetworkInfo>,
}

/// InspectTask's answer.
pub type TaskStatus = TaskSnapshot;

/// ECS clients are shared per (region, endpoint override, timeouts).
type ClientKey = (String, Option<String>, HttpConfig);

enum Slot {
    /// RunTask in flight for this task id.
    Starting,
    Tracked(Arc<TaskEntry>),
}

/// The driver: one per plugin process.
pub struct Driver {
    config: RwLock<Option<DriverConfig>>,
    /// Fixed credentials (tests); None: built from the plugin stanza.
    fixed_credentials: Option<Arc<dyn CredentialSource>>,
    /// The credential source built for the settings it was built from.
    credentials: Mutex<Option<(CredentialKey, Arc<dyn CredentialSource>)>>,
    /// The region read from instance metadata, once found.
    imds_region: Mutex<Option<String>>,
    clients: Mutex<HashMap<ClientKey, Arc<EcsClient>>>,
    logs_clients: Mutex<HashMap<ClientKey, Arc<LogsClient>>>,
    tasks: Mutex<HashMap<String, Slot>>,
    shared: Arc<Shared>,
    /// Nomad's HTTP API (adoption, drains, the sweep).
    nomad: handoff::NomadLink,
    /// What the sweep did last (the fingerprint's `driver.ecs.sweep`).
    sweep_status: Mutex<String>,
    /// Set when a sweep round would have stopped too many tasks: no round runs again in this
    /// process.
    brake: Mutex<Option<Brake>>,
    /// The Nomad node this plugin runs on, as the last task Nomad started or recovered says.
    node_id: Mutex<Option<String>>,
    /// The sweep thread, started with the first SetConfig that asks for it.
    sweeper: std::sync::Once,
    /// Tasks whose RecoverTask failed, by Nomad task id: Nomad then calls DestroyTask(force)
    /// for the id (task_runner.go restoreHandle), which must stop the ECS task.
    unrecovered: Mutex<HashMap<String, state::Salvaged>>,
    /// Task definitions written in jobs, as resolved to registered revisions by this process.
    definitions: taskdef::Registry,
}

/// A held sweep: since when, and why. It holds for the life of the process: Nomad configures a
/// plugin once per launch, so the operator releases it by restarting the Nomad agent (with
/// new settings, or after stopping the orphans by hand).
#[derive(Debug, Clone)]
struct Brake {
    since: SystemTime,
    why: String,
}

/// What the credential source depends on in the plugin stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CredentialKey {
    settings: ChainSettings,
    role: Option<RoleRequest>,
}

impl Default for Driver {
    fn default() -> Self {
        Driver::with_credentials(None)
    }
}

impl Driver {
    /// A driver that always signs with `credentials` (whatever the plugin stanza says).
    pub fn new(credentials: Arc<dyn CredentialSource>) -> Driver {
        Driver::with_credentials(Some(credentials))
    }

    fn with_credentials(fixed_credentials: Option<Arc<dyn CredentialSource>>) -> Driver {
        Driver {
            config: RwLock::new(None),
            fixed_credentials,
            credentials: Mutex::new(None),
            imds_region: Mutex::new(None),
            clients: Mutex::new(HashMap::new()),
            logs_clients: Mutex::new(HashMap::new()),
            tasks: Mutex::new(HashMap::new()),
            shared: Arc::new(Shared {
                logs: logs::LogTail::new(),
                events: EventBus::default(),
                poller: Poller::start(config::DEFAULT_POLL_INTERVAL),
                task_definitions: Mutex::new(HashMap::new()),
            }),
            nomad: handoff::NomadLink::default(),
            sweep_status: Mutex::new("not run yet".into()),
            brake: Mutex::new(None),
            node_id: Mutex::new(None),
            sweeper: std::sync::Once::new(),
            unrecovered: Mutex::new(HashMap::new()),
            definitions: taskdef::Registry::default(),
        }
    }

    fn tasks(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn config(&self) -> Option<DriverConfig> {
        self.config.read().ok().and_then(|c| c.clone())
    }

    /// Applies the plugin stanza (already validated). Starts the orphan sweep when the stanza
    /// turns it on (`self` must then be shared: the sweep holds a weak reference).
    pub fn set_config(&self, cfg: DriverConfig) {
        self.shared.poller.set_interval(cfg.poll_interval);

        if let Ok(mut c) = self.config.write() {
            *c = Some(cfg);
        }
    }

    /// Starts the sweep thread once; it reads the current config at each round (an interval of
    /// zero or a disabled plugin skips the round).
    pub fn start_sweeper(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        self.sweeper.call_once(|| {
            let spawned = std::thread::Builder::new()
                .name("ecs-sweep".into())
                .stack_size(256 * 1024)
                .spawn(move || sweep_loop(weak));
            if let Err(e) = spawned {
                log::error!(
                    "cannot start the orphan sweep thread: {e}; ECS tasks of lost allocations will not be reaped"
                );
            }
        });
    }

    /// The region in force: the plugin stanza's, else `AWS_REGION`, `AWS_DEFAULT_REGION`, the
    /// profile's `region`, and last the instance's region from EC2 instance metadata.
    pub fn region(&self, cfg: &DriverConfig) -> Option<String> {
        if let Some(r) = cfg
            .region
            .clone()
            .filter(|r| !r.is_empty())
            .or_else(|| region_from_env(cfg.profile.as_deref()))
        {
            return Some(r);
        }
        let mut cached = self.imds_region.lock().unwrap_or_else(|p| p.into_inner());
        if cached.is_none() {
            let env: creds::EnvLookup = Arc::new(|n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty()));
            if !imds::disabled(&env) {
                let service = imds::Imds::new(&imds::endpoint_from_env(&env));
                match service.region() {
                    Ok(r) => {
                        log::info!("AWS region {r} from EC2 instance metadata");
                        *cached = Some(r);
                    }
                    Err(e) => log::debug!("no region from EC2 instance metadata: {e}"),
                }
            }
        }
        cached.clone()
    }

    /// The credential source for the plugin stanza `cfg` (rebuilt when its settings change;
    /// the ECS clients made with the old one are dropped then).
    pub fn credentials(&self, cfg: &DriverConfig) -> Arc<dyn CredentialSource> {
        if let Some(c) = &self.fixed_credentials {
            return Arc::clone(c);
        }
        let key = CredentialKey {
            settings: ChainSettings {
                profile: cfg.profile.clone(),
                region: cfg.region.clone(),
                sts_endpoint: cfg.sts_endpoint.clone(),
                use_fips: use_fips(cfg),
                http: http_config(cfg),
            },
            role: cfg.role_arn.as_ref().map(|role| RoleRequest {
                role_arn: role.clone(),
                session_name: cfg
                    .role_session_name
                    .clone()
                    .unwrap_or_else(|| "nomad-driver-ecs".to_string()),
                external_id: cfg.external_id.clone(),
                duration: crate::aws::sts::DEFAULT_DURATION,
            }),
        };
        let mut slot = self.credentials.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((k, c)) = slot.as_ref() {
            if *k == key {
                return Arc::clone(c);
            }
        }
        let source = creds::build(key.settings.clone(), key.role.clone());
        log::debug!("AWS credentials from: {}", source.describe());
        *slot = Some((key, Arc::clone(&source)));
        self.clients.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.logs_clients.lock().unwrap_or_else(|p| p.into_inner()).clear();
        source
    }

    fn client(&self, region: &str, endpoint: Option<&str>) -> Result<Arc<EcsClient>, AwsError> {
        let cfg = self.config().unwrap_or_default();
        let http = http_config(&cfg);
        let credentials = self.credentials(&cfg);
        let key = (region.to_string(), endpoint.map(str::to_string), http.clone());
        cached(&self.clients, key, || {
            EcsClient::new(endpoint, region, credentials, &http)
        })
    }

    pub fn subscribe_events(&self) -> mpsc::UnboundedReceiver<TaskEvent> {
        self.shared.events.subscribe()
    }

    /// Checks the plugin can reach its cluster.
    pub fn fingerprint(&self) -> Fingerprint {
        let mut attributes = BTreeMap::new();
        let Some(cfg) = self.config() else {
            return Fingerprint {
                health: Health::Undetected,
                description: "plugin not configured yet".into(),
                attributes,
            };
        };
        if !cfg.enabled {
            return Fingerprint {
                health: Health::Undetected,
                description: "disabled: set enabled = true in the plugin \"nomad-driver-ecs\" config block".into(),
                attributes,
            };
        }
        let unhealthy = |d: String, a| Fingerprint {
            health: Health::Unhealthy,
            description: d,
            attributes: a,
        };
        let Some(region) = self.region(&cfg) else {
            return unhealthy(
                "no AWS region: set region in the plugin \"nomad-driver-ecs\" config block, or AWS_REGION in the Nomad agent's environment".into(),
                attributes,
            );
        };
        attributes.insert("driver.ecs.cluster".into(), Attr::Str(cfg.cluster.clone()));
        attributes.insert("driver.ecs.region".into(), Attr::Str(region.clone()));
        attributes.insert("driver.ecs.version".into(), Attr::Str(env!("CARGO_PKG_VERSION").into()));
        let h = &cfg.handoff;
        let nomad_api = if h.adopt_lost || h.drain_handoff || !h.reap_interval.is_zero() {
            let link = self.nomad.get(&h.api);
            if let Some(scope) = self.sweep_scope(&cfg, &region, &link.agent) {
                attributes.insert("driver.ecs.sweep_scope".into(), Attr::Str(scope));
            }
            link.status
        } else {
            "not used (adopt_lost, drain_handoff and the sweep are off)".into()
        };
        attributes.insert("driver.ecs.nomad_api".into(), Attr::Str(nomad_api));
        attributes.insert("driver.ecs.sweep".into(), Attr::Str(self.sweep_attribute(&cfg)));
        match self.credentials(&cfg).credentials() {
            // Where the credentials come from (never the key itself), so an operator can see
            // which provider of the chain won.
            Ok(c) => {
                attributes.insert("driver.ecs.credentials".into(), Attr::Str(c.provider.clone()));
            }
            Err(e) => return unhealthy(describe_aws_problem(&e, "AWS"), attributes),
        }
        let client = match self.client(&region, ecs_endpoint(&cfg, &region).as_deref()) {
            Ok(c) => c,
            Err(e) => return unhealthy(format!("cannot set up the ECS client: {e}"), attributes),
        };
        let result = with_retries(RetryPolicy::within(FINGERPRINT_RETRY), || {
            client.describe_clusters(&[cfg.cluster.as_str()])
        });
        match result {
            Ok(out) => match out.clusters.iter().find(|c| c.name == cfg.cluster || c.arn == cfg.cluster) {
                Some(c) if c.status == "ACTIVE" => {
                    attributes.insert("driver.ecs".into(), Attr::Bool(true));
                    Fingerprint { health: Health::Healthy, description: "Healthy".into(), attributes }
                }
                Some(c) => unhealthy(
                    format!("ECS cluster {:?} in {region} is {}, not ACTIVE: recreate it or point `cluster` at an active one", cfg.cluster, c.status),
                    attributes,
                ),
                None => {
                    let reason = out.failures.first().and_then(|f| f.reason.clone()).unwrap_or_else(|| "MISSING".into());
                    unhealthy(
                        format!("ECS cluster {:?} not found in {region} ({reason}): create it, or fix `cluster`/`region` in the plugin config", cfg.cluster),
                        attributes,
                    )
                }
            },
            Err(e) => unhealthy(describe_aws_problem(&e, client.endpoint()), attributes),
        }
    }

    /// StartTask: one ECS task for one Nomad task id. `env` is the Nomad task's environment
    /// (TaskConfig.env), passed to containers per the spec's `inject_env`.
    pub fn start_task(
        &self,
        identity: TaskIdentity,
        spec: TaskSpec,
        env: &BTreeMap<String, String>,
    ) -> Result<Started, DriverError> {
        let cfg = self
            .config()
            .ok_or_else(|| DriverError::NotReady("the plugin has not been configured (SetConfig) yet".into()))?;
        if !cfg.enabled {
            return Err(DriverError::NotReady(
                "the ecs driver is disabled (enabled = false in the plugin config)".into(),
            ));
        }
        let region = self.region(&cfg).ok_or_else(|| {
            DriverError::NotReady(
                "no AWS region: set region in the plugin config or AWS_REGION in the agent's environment".into(),
            )
        })?;
        self.note_node(&identity);
        {
            let mut tasks = self.tasks();
            if tasks.contains_key(&identity.id) {
                return Err(DriverError::AlreadyExists(format!(
                    "task {} is already running",
                    identity.id
                )));
            }
            tasks.insert(identity.id.clone(), Slot::Starting);
        }
        let result = self.run_and_track(&cfg, &region, identity.clone(), &spec, env);
        if result.is_err() {
            self.tasks().remove(&identity.id);
        }
        result
    }

    fn run_and_track(
        &self,
        cfg: &DriverConfig,
        region: &str,
        identity: TaskIdentity,
        spec: &TaskSpec,
        env: &BTreeMap<String, String>,
    ) -> Result<Started, DriverError> {
        let endpoint = ecs_endpoint(cfg, region);
        let client = self.client(region, endpoint.as_deref()).map_err(DriverError::Aws)?;
        // A definition the job wrote becomes the ARN of a registered revision here, before
        // anything else looks at it; from then on the task is like one naming that revision.
        let resolved;
        let (spec, identity) = match self.resolve_definition(cfg, &client, &identity, spec)? {
            Some((s, i)) => {
                resolved = s;
                (&resolved, i)
            }
            None => (spec, identity),
        };
        let cluster = spec.cluster.clone().unwrap_or_else(|| cfg.cluster.clone());
        let started_by = spec
            .started_by
            .clone()
            .unwrap_or_else(|| handoff::started_by(&identity));
        let (task, adopted) = match self.find_adoptable(cfg, &client, &cluster, &identity, spec, &started_by) {
            Some((task, why)) => (task, Some(why)),
            None => (
                self.run_new_task(&client, &cluster, &identity, cfg, spec, env, started_by)?,
                None,
            ),
        };
        self.track_started(cfg, region, endpoint, client, cluster, identity, spec, task, adopted)
    }

    /// For a task whose job writes its task definition (`task_definition_json`,
    /// `task_definition_file`): the spec naming the ARN of the revision registered for it (an
    /// existing one with the same hash, or a new one), and the identity whose config hash
    /// includes the definition's hash. None for a task naming a registered definition.
    fn resolve_definition(
        &self,
        cfg: &DriverConfig,
        client: &EcsClient,
        identity: &TaskIdentity,
        spec: &TaskSpec,
    ) -> Result<Option<(TaskSpec, TaskIdentity)>, DriverError> {
        let invalid = |e: taskdef::TaskDefError| DriverError::InvalidConfig {
            field: e.field,
            message: e.message,
        };
        let (field, text, origin) = match (&spec.task_definition_json, &spec.task_definition_file) {
            (Some(json), _) => ("task.task_definition_json", json.clone(), String::new()),
            (None, Some(path)) => {
                let field = "task.task_definition_file";
                let text =
                    taskdef::read_task_file(&identity.alloc_dir, &identity.name, path, field).map_err(invalid)?;
                (field, text, path.clone())
            }
            (None, None) => return Ok(None),
        };
        let doc = taskdef::parse(&text, field, &origin).map_err(invalid)?;
        let mut prepared = taskdef::prepare(doc, &cfg.family_prefix, identity, field).map_err(invalid)?;
        // The Nomad identity, so that only this Nomad cluster's clean-up ever deregisters it.
        for (key, value) in identity_tags(identity, cfg.handoff.nomad_cluster.as_deref()) {
            if key == handoff::TAG_REGION || key == handoff::TAG_CLUSTER {
                prepared.tag(&key, &value);
            }
        }
        let cleanup = Some(cfg.task_definition_cleanup).filter(|g| !g.is_zero());
        let max_age = cleanup.map(cleanup::last_used_every);
        let (arn, how) =
            taskdef::resolve(client, &self.definitions, &prepared, max_age).map_err(|e| DriverError::StartFailed {
                recoverable: e.is_transient(),
                message: format!(
                    "cannot register the task definition of {field} (family {}): {}",
                    prepared.family,
                    describe_aws_problem(&e, client.endpoint())
                ),
            })?;
        match how {
            taskdef::Resolution::Registered => {
                log::info!(task_id = identity.id.as_str(); "registered task definition {arn} for {field} (hash {})", prepared.hash)
            }
            taskdef::Resolution::Reused => {
                log::info!(task_id = identity.id.as_str(); "using task definition {arn}, registered before with the same definition (hash {})", prepared.hash)
            }
            taskdef::Resolution::Cached => {
                log::debug!(task_id = identity.id.as_str(); "using task definition {arn} (hash {})", prepared.hash)
            }
        }
        if let Some(grace) = cleanup {
            cleanup::note_use(client, &self.definitions, &arn, grace);
        }
        let spec = TaskSpec {
            task_definition: arn,
            task_definition_json: None,
            task_definition_file: None,
            ..spec.clone()
        };
        let mut identity = identity.clone();
        identity.config_hash = taskdef::fold_config_hash(&identity.config_hash, &prepared.hash);
        Ok(Some((spec, identity)))
    }

    /// RunTask for a new ECS task of `identity`.
    #[allow(clippy::too_many_arguments)]
    fn run_new_task(
        &self,
        client: &EcsClient,
        cluster: &str,
        identity: &TaskIdentity,
        cfg: &DriverConfig,
        spec: &TaskSpec,
        env: &BTreeMap<String, String>,
        started_by: String,
    ) -> Result<Task, DriverError> {
        let cluster = cluster.to_string();
        let essential = if overrides::needs_essential_containers(spec, env) {
            self.essential_containers(client, &spec.task_definition)?
        } else {
            Vec::new()
        };
        let task_overrides = overrides::build(spec, env, &essential).map_err(|e| DriverError::InvalidConfig {
            field: e.field.to_string(),
            message: e.message,
        })?;
        let mut tags = identity_tags(identity, cfg.handoff.nomad_cluster.as_deref());
        tags.extend(spec.tags.iter().cloned());
        let input = RunTaskInput {
            cluster: cluster.clone(),
            task_definition: spec.task_definition.clone(),
            launch_type: spec.launch_type.map(|l| l.as_str().to_string()),
            capacity_provider_strategy: spec.capacity_provider_strategy.clone(),
            platform_version: spec.platform_version.clone(),
            network: spec.vpc.as_ref().map(|v| AwsVpcConfiguration {
                subnets: v.subnets.clone(),
                security_groups: v.security_groups.clone(),
                assign_public_ip: v.assign_public_ip.clone(),
            }),
            started_by: Some(started_by),
            client_token: Some(client_token(&identity.id)),
            tags,
            enable_execute_command: spec.enable_execute_command,
            enable_ecs_managed_tags: spec.enable_ecs_managed_tags,
            propagate_tags: spec.propagate_tags.clone(),
            placement_constraints: spec.placement_constraints.clone(),
            placement_strategy: spec.placement_strategy.clone(),
            group: spec.group.clone(),
            overrides: task_overrides,
            count: 1,
        };
        let out = with_retries(RetryPolicy::within(RUN_TASK_DEADLINE), || client.run_task(&input)).map_err(|e| {
            let inactive = is_inactive_definition(&e);
            if inactive {
                // A revision this process resolved for a job-written definition may have been
                // deregistered since (the clean-up): forget it, so the retry registers it again.
                self.definitions.forget(&spec.task_definition);
            }
            DriverError::StartFailed {
                recoverable: e.is_transient() || inactive,
                message: format!(
                    "could not start the ECS task: {}",
                    describe_aws_problem(&e, client.endpoint())
                ),
            }
        })?;
        let Some(task) = out.tasks.into_iter().next() else {
            let reasons: Vec<String> = out
                .failures
                .iter()
                .map(|f| match (&f.reason, &f.detail) {
                    (Some(r), Some(d)) => format!("{r} ({d})"),
                    (Some(r), None) => r.clone(),
                    (None, Some(d)) => d.clone(),
                    (None, None) => "no reason given".into(),
                })
                .collect();
            let recoverable = out
                .failures
                .iter()
                .any(|f| f.reason.as_deref().is_some_and(is_capacity_reason));
            return Err(DriverError::StartFailed {
                recoverable,
                message: format!(
                    "ECS did not start task definition {} in cluster {}: {}",
                    spec.task_definition,
                    cluster,
                    if reasons.is_empty() {
                        "no task and no failure returned".to_string()
                    } else {
                        reasons.join("; ")
                    }
                ),
            });
        };
        Ok(task)
    }

    /// Watches a task StartTask started or adopted, and answers StartTask.
    #[allow(clippy::too_many_arguments)]
    fn track_started(
        &self,
        cfg: &DriverConfig,
        region: &str,
        endpoint: Option<String>,
        client: Arc<EcsClient>,
        cluster: String,
        identity: TaskIdentity,
        spec: &TaskSpec,
        task: Task,
        adopted: Option<String>,
    ) -> Result<Started, DriverError> {
        let state = TaskState {
            task_arn: task.task_arn.clone(),
            cluster: cluster.clone(),
            region: region.to_string(),
            endpoint: endpoint.clone(),
            // The revision that runs, not a family-only reference that may move on.
            task_definition: task
                .task_definition_arn
                .clone()
                .unwrap_or_else(|| spec.task_definition.clone()),
            started_at: SystemTime::now(),
            stdout_path: identity.stdout_path.clone(),
            stderr_path: identity.stderr_path.clone(),
            network: task.private_ipv4().map(|a| state::NetworkInfo {
                address: a.to_string(),
                ports: Vec::new(),
            }),
            alloc_id: Some(identity.alloc_id.clone()).filter(|a| !a.is_empty()),
            task_id: Some(identity.id.clone()),
        };
        let entry = TaskEntry::spawn(
            identity.clone(),
            state,
            client,
            &task.last_status,
            Arc::clone(&self.shared),
        )
        .map_err(|e| self.leak_guard(&task.task_arn, &cluster, region, endpoint.as_deref(), e))?;
        self.tasks()
            .insert(identity.id.clone(), Slot::Tracked(Arc::clone(&entry)));
        let network = if task.has_eni() {
            let td = task
                .task_definition_arn
                .clone()
                .unwrap_or_else(|| spec.task_definition.clone());
            self.await_network(&entry, &td, cfg.address_timeout)
        } else {
            None
        };
        if cfg.stream_logs {
            let td = task
                .task_definition_arn
                .clone()
                .unwrap_or_else(|| spec.task_definition.clone());
            self.start_log_tail(&entry, &td, cfg);
        } else {
            self.hold_fifos(&entry);
        }
        let mut persisted = entry.state.clone();
        persisted.network = network.clone();
        let driver_state = persisted.encode();
        let mut annotations: BTreeMap<String, String> = [
            ("task_arn", task.task_arn.clone()),
            ("cluster", cluster.clone()),
            ("task_definition", spec.task_definition.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let message = match &adopted {
            Some(why) => {
                log::info!(task_id = identity.id.as_str(); "adopted ECS task {} instead of starting a new one: {why}", task.task_arn);
                annotations.insert("adopted".into(), why.clone());
                format!("Adopted running ECS task {} ({why})", task.task_arn)
            }
            None => format!("Started ECS task {}", task.task_arn),
        };
        self.shared.events.publish(entry.event(message, annotations));
        Ok(Started {
            task_arn: task.task_arn,
            driver_state,
            network,
        })
    }

    /// Before RunTask: a running ECS task of the same slot that this allocation may take over
    /// (its own from an interrupted StartTask, a drained allocation's within its handoff window,
    /// a lost allocation's), already re-tagged to this allocation. Any failure on the way means
    /// "none": a new task is started, and the sweep deals with the old one.
    fn find_adoptable(
        &self,
        cfg: &DriverConfig,
        client: &EcsClient,
        cluster: &str,
        identity: &TaskIdentity,
        spec: &TaskSpec,
        started_by: &str,
    ) -> Option<(Task, String)> {
        let h = &cfg.handoff;
        if !h.adopt_lost && !h.drain_handoff {
            return None;
        }
        let input = ListTasksInput {
            cluster: cluster.to_string(),
            started_by: Some(started_by.to_string()),
            desired_status: Some("RUNNING".into()),
            ..Default::default()
        };
        let policy = || RetryPolicy::within(ADOPTION_LOOKUP_DEADLINE);
        let arns = match with_retries(policy(), || client.list_all_tasks(&input)) {
            Ok(a) => a,
            Err(e) => {
                log::warn!(task_id = identity.id.as_str(); "cannot look for an ECS task to adopt, starting a new one: {e}");
                return None;
            }
        };
        if arns.is_empty() {
            return None;
        }
        let slot = handoff::slot(identity);
        let mut candidates = Vec::new();
        for chunk in arns.chunks(100) {
            match with_retries(policy(), || client.describe_tasks_with_tags(cluster, chunk)) {
                Ok(out) => candidates.extend(out.tasks.into_iter().filter(|t| {
                    t.tag(TAG_MANAGED_BY) == Some(MANAGED_BY) && t.tag(handoff::TAG_SLOT) == Some(slot.as_str())
                })),
                Err(e) => {
                    log::warn!(task_id = identity.id.as_str(); "cannot read the ECS tasks of this slot, starting a new one: {e}");
                    return None;
                }
            }
        }
        // Our own task from a StartTask that Nomad repeats (the plugin died mid-call).
        if let Some(own) = candidates
            .iter()
            .position(|t| t.tag(handoff::TAG_TASK_ID) == Some(identity.id.as_str()) && t.desired_status == "RUNNING")
        {
            return Some((
                candidates.swap_remove(own),
                "this task's own ECS task, from an interrupted start".into(),
            ));
        }
        // Only tasks of this plugin's Nomad cluster and region are ever looked at further.
        let nomad = handoff::NomadIdentity {
            cluster: h.nomad_cluster.clone(),
            region: identity.region.clone(),
        };
        candidates.retain(|t| {
            let theirs = handoff::NomadIdentity::of_task(t);
            if theirs.as_ref() != Some(&nomad) {
                log::info!(task_id = identity.id.as_str(); "not adopting running ECS task {} of this slot: it belongs to {}, not {nomad}", t.task_arn,
                    theirs.map_or_else(|| "no Nomad cluster (no nomad:region tag)".to_string(), |n| n.to_string()));
                return false;
            }
            true
        });
        if candidates.is_empty() || identity.region.is_empty() {
            return None;
        }
        // A StartTask that the plugin's death interrupted is retried by Nomad with a new task
        // id (client/allocrunner/taskrunner/task_runner.go buildTaskConfig, v1.10.0): the ECS
        // task it started carries this allocation, this task (the slot) and this config, and
        // no task of this plugin watches it.
        let watched: Vec<String> = self
            .tasks()
            .values()
            .filter_map(|s| match s {
                Slot::Tracked(e) => Some(e.state.task_arn.clone()),
                Slot::Starting => None,
            })
            .collect();
        if let Some(own) = candidates.iter().position(|t| {
            t.tag(handoff::TAG_ALLOC_ID) == Some(identity.alloc_id.as_str())
                && !identity.alloc_id.is_empty()
                && t.desired_status == "RUNNING"
                && t.tag(handoff::TAG_CONFIG_HASH) == Some(identity.config_hash.as_str())
                && !watched.contains(&t.task_arn)
        }) {
            let task = candidates.swap_remove(own);
            let from = task.tag(handoff::TAG_TASK_ID).unwrap_or("?").to_string();
            return match retag(client, &task.task_arn, identity, h.nomad_cluster.as_deref(), "", false) {
                Ok(()) => Some((
                    task,
                    format!("this allocation's own ECS task, from an interrupted start (task id {from})"),
                )),
                Err(e) => {
                    log::warn!(task_id = identity.id.as_str(); "cannot re-tag this allocation's ECS task {} to take it back ({e}); starting a new one", task.task_arn);
                    None
                }
            };
        }
        let Some(api) = self.nomad.get(&h.api).api else {
            log::info!(task_id = identity.id.as_str(); "not looking for an ECS task to adopt: Nomad's API is unavailable");
            return None;
        };
        // Nomad links a replacement to the allocation it replaces (PreviousAllocation, set by
        // the scheduler for lost, drained and rescheduled allocations): only that allocation's
        // task is adopted, and only when exactly one task claims it.
        let previous = match api.allocation(&identity.alloc_id) {
            Ok(Some(own)) => Some(own.previous_allocation).filter(|p| !p.is_empty()),
            Ok(None) => None,
            Err(e) => {
                log::warn!(task_id = identity.id.as_str(); "cannot read allocation {} from Nomad, so not adopting: {e}", identity.alloc_id);
                return None;
            }
        };
        let claiming: Vec<&Task> = candidates
            .iter()
            .filter(|t| previous.is_some() && t.tag(handoff::TAG_ALLOC_ID) == previous.as_deref())
            .collect();
        if claiming.len() > 1 {
            let arns: Vec<&str> = claiming.iter().map(|t| t.task_arn.as_str()).collect();
            log::warn!(task_id = identity.id.as_str(); "not adopting: {} running ECS tasks claim allocation {} ({}); starting a new task, the sweep deals with the others",
                claiming.len(), previous.as_deref().unwrap_or_default(), arns.join(", "));
            return None;
        }
        let td_arn = match with_retries(policy(), || {
            task::task_definition(client, &spec.task_definition, &self.shared)
        }) {
            Ok(d) => d.arn.clone(),
            Err(e) => {
                log::warn!(task_id = identity.id.as_str(); "cannot read task definition {} to compare it with running tasks: {e}", spec.task_definition);
                return None;
            }
        };
        let replacement = handoff::Replacement {
            identity,
            nomad: &nomad,
            previous_allocation: previous.as_deref(),
            task_definition_arn: &td_arn,
            adopt_lost: h.adopt_lost,
            adopt_drained: h.drain_handoff,
        };
        for task in candidates {
            let now = SystemTime::now();
            let old = task.tag(handoff::TAG_ALLOC_ID).unwrap_or_default().to_string();
            // Nomad is asked only about the allocation this one replaces.
            let (alloc, node) = if !old.is_empty() && previous.as_deref() == Some(old.as_str()) {
                let alloc = api.allocation(&old);
                let node = match &alloc {
                    Ok(Some(a))
                        if matches!(a.client_status.as_str(), "running" | "pending") && !a.node_id.is_empty() =>
                    {
                        Some(api.node(&a.node_id))
                    }
                    _ => None,
                };
                (Some(alloc), node)
            } else {
                (None, None)
            };
            match handoff::adoption_verdict(&task, &replacement, alloc.as_ref(), node.as_ref(), now) {
                handoff::Verdict::Adopt(why) => match retag(
                    client,
                    &task.task_arn,
                    identity,
                    h.nomad_cluster.as_deref(),
                    &old,
                    task.tag(handoff::TAG_HANDOFF_UNTIL).is_some() || task.tag(handoff::TAG_ORPHAN_SINCE).is_some(),
                ) {
                    Ok(()) => return Some((task, why)),
                    Err(e) => {
                        log::warn!(task_id = identity.id.as_str(); "cannot re-tag ECS task {} to adopt it ({e}); starting a new one", task.task_arn)
                    }
                },
                handoff::Verdict::Leave(why) => {
                    log::info!(task_id = identity.id.as_str(); "not adopting running ECS task {} of this slot: {why}", task.task_arn)
                }
            }
        }
        None
    }

    /// The essential containers of a task definition (read through the shared cache).
    fn essential_containers(&self, client: &EcsClient, task_definition: &str) -> Result<Vec<String>, DriverError> {
        let def = with_retries(RetryPolicy::within(RUN_TASK_DEADLINE), || {
            task::task_definition(client, task_definition, &self.shared)
        })
        .map_err(|e| DriverError::StartFailed {
            recoverable: e.is_transient(),
            message: format!(
                "cannot read task definition {task_definition} to pass the Nomad environment to its essential \
                 containers (set env_containers or inject_env = false to skip this): {}",
                describe_aws_problem(&e, client.endpoint())
            ),
        })?;
        Ok(def.essential_containers())
    }

    /// For an awsvpc task: its port labels, and its ENI address, waited for up to
    /// `address_timeout` (the shared poller is asked for a fresh read every second meanwhile).
    fn await_network(&self, entry: &TaskEntry, task_definition: &str, timeout: Duration) -> Option<state::NetworkInfo> {
        let ports = match task::task_definition(&entry.client, task_definition, &self.shared) {
            Ok(def) => port_labels(&def),
            Err(e) => {
                log::warn!(task_id = entry.identity.id.as_str(); "cannot read task definition {task_definition} for its port mappings: {e}");
                Vec::new()
            }
        };
        entry.set_ports(ports.clone());
        let deadline = Instant::now() + timeout;
        let mut next_poke = Instant::now();
        let address = loop {
            if let Some(a) = entry.address() {
                break Some(a);
            }
            let now = Instant::now();
            if now >= deadline || entry.exit().is_some() {
                break None;
            }
            if now >= next_poke {
                self.shared.poller.poke();
                next_poke = now + STOP_WAIT_POLL;
            }
            std::thread::sleep(Duration::from_millis(100).min(deadline - now));
        };
        match address {
            Some(address) => Some(state::NetworkInfo { address, ports }),
            None => {
                self.shared.events.publish(entry.event(
                    format!(
                        "ECS gave task {} no private IPv4 address within {timeout:?}; Nomad services of this task \
                         will not advertise its address (raise address_timeout if ENIs take longer here)",
                        entry.state.task_arn
                    ),
                    BTreeMap::new(),
                ));
                None
            }
        }
    }

    /// `stream_logs = false`: nothing is read, but the task's FIFOs are held while it runs and
    /// closed when it ends, so Nomad's logmon is not left waiting for a writer at every stop.
    fn hold_fifos(&self, entry: &TaskEntry) {
        self.shared.logs.register_quiet(
            &entry.identity.id,
            &entry.identity.alloc_dir,
            &entry.state.stdout_path,
            &entry.state.stderr_path,
            &self.shared.events,
        );
    }

    /// Tails the task's awslogs streams into its stdout FIFO (and its lifecycle lines into
    /// the stderr FIFO). A container whose `awslogs-region` is not a region name is left out
    /// (a task event says so): a task definition must never pick the host the plugin calls.
    fn start_log_tail(&self, entry: &TaskEntry, task_definition: &str, cfg: &DriverConfig) {
        let sources = match task::task_definition(&entry.client, task_definition, &self.shared) {
            Ok(def) => logs::sources(&def, &entry.state.task_arn),
            Err(e) => {
                log::warn!(task_id = entry.identity.id.as_str(); "cannot read task definition {task_definition} for its log configuration; the task's output will not reach Nomad: {e}");
                Vec::new()
            }
        };
        let streams = sources
            .into_iter()
            .filter_map(|src| {
                let region = match logs::source_region(&src, &entry.state.region) {
                    Ok(r) => r,
                    Err(why) => {
                        log::warn!(task_id = entry.identity.id.as_str(); "{why}");
                        self.shared.events.publish(entry.event(why, BTreeMap::new()));
                        return None;
                    }
                };
                match self.logs_client(&region, cfg) {
                    Ok(c) => Some((src, c)),
                    Err(e) => {
                        log::warn!(task_id = entry.identity.id.as_str(); "cannot read CloudWatch Logs in {region}: {e}");
                        None
                    }
                }
            })
            .collect();
        // Refused FIFO paths become task events of this task (built when they happen).
        let shared = Arc::downgrade(&self.shared);
        let (task_id, alloc_id, task_name) = (
            entry.identity.id.clone(),
            entry.identity.alloc_id.clone(),
            entry.identity.name.clone(),
        );
        let notify: logs::Notify = Arc::new(move |message: String| {
            if let Some(shared) = shared.upgrade() {
                shared.events.publish(TaskEvent {
                    task_id: task_id.clone(),
                    alloc_id: alloc_id.clone(),
                    task_name: task_name.clone(),
                    timestamp: SystemTime::now(),
                    message,
                    annotations: BTreeMap::new(),
                });
            }
        });
        self.shared.logs.register(
            logs::Registration {
                task_id: entry.identity.id.clone(),
                task_name: entry.identity.name.clone(),
                alloc_dir: entry.identity.alloc_dir.clone(),
                stdout_path: entry.state.stdout_path.clone(),
                stderr_path: entry.state.stderr_path.clone(),
                streams,
                interval: cfg.logs_poll_interval,
                notify,
            },
            &self.shared.events,
        );
    }

    fn logs_client(&self, region: &str, cfg: &DriverConfig) -> Result<Arc<LogsClient>, AwsError> {
        let endpoint = endpoint_override(cfg.logs_endpoint.as_deref(), "LOGS", &env_var)
            .unwrap_or_else(|| endpoint_for("logs", region, use_fips(cfg)));
        let http = http_config(cfg);
        let credentials = self.credentials(cfg);
        let key = (region.to_string(), Some(endpoint.clone()), http.clone());
        cached(&self.logs_clients, key, || {
            LogsClient::new(&endpoint, region, credentials, &http)
        })
    }

    /// The task started but cannot be watched (no thread): stop it rather than leak it.
    fn leak_guard(
        &self,
        arn: &str,
        cluster: &str,
        region: &str,
        endpoint: Option<&str>,
        e: std::io::Error,
    ) -> DriverError {
        if let Ok(client) = self.client(region, endpoint) {
            if let Err(stop) = client.stop_task(cluster, arn, "nomad-driver-ecs could not watch the task") {
                log::error!("ECS task {arn} could not be watched nor stopped ({stop}); stop it by hand");
            }
        }
        DriverError::StartFailed {
            message: format!("cannot start a thread to watch the ECS task: {e}"),
            recoverable: true,
        }
    }

    /// RecoverTask: re-attach to a task from its driver_state alone. Idempotent.
    ///
    /// Nomad restores tasks one at a time (client/allocrunner/taskrunner/task_runner.go
    /// Restore → restoreHandle, v1.10.0), so a plugin restart makes no AWS call here: the
    /// re-tagging and the log tail's task definition read happen on a thread of their own.
    /// Only a handle Nomad re-uses for another task id is checked against ECS first (below).
    pub fn recover_task(self: &Arc<Self>, identity: TaskIdentity, driver_state: &[u8]) -> Result<(), DriverError> {
        if identity.id.is_empty() {
            return Err(DriverError::BadHandle(
                "the task handle has no task id (config.id is empty)".into(),
            ));
        }
        let mut state = match TaskState::decode(driver_state) {
            Ok(s) => s,
            Err(e) => {
                // Nomad follows a failed RecoverTask with DestroyTask(force) for the id
                // (restoreHandle): keep where the task is, so that it is stopped, not leaked.
                if let Some(found) = state::Salvaged::read(driver_state) {
                    self.unrecovered_tasks().insert(identity.id.clone(), found);
                }
                return Err(DriverError::BadHandle(e));
            }
        };
        self.note_node(&identity);
        if self.tasks().contains_key(&identity.id) {
            return Ok(());
        }
        let client = match self.client(&state.region, state.endpoint.as_deref()) {
            Ok(c) => c,
            Err(e) => {
                self.unrecovered_tasks()
                    .insert(identity.id.clone(), state::Salvaged::of(&state));
                return Err(DriverError::Aws(e));
            }
        };
        // Nomad 1.1–1.9's remote-task hook hands the last handle to RecoverTask again, with a
        // new task id, at every restart of the task and when a lost or drained allocation's
        // replacement takes over (client/allocrunner/taskrunner/remotetask_hook.go Prestart,
        // v1.9.7). An ECS task that already stopped must then fail the call, so that Nomad
        // starts a new one instead of reporting the old exit again.
        let reused = state.task_id.as_deref() != Some(identity.id.as_str());
        let seen = if reused {
            Some(self.check_reused_handle(&client, &state, &identity)?)
        } else {
            None
        };
        // The handle's FIFO paths are the allocation's that made it; Nomad's config is this one's.
        if !identity.stdout_path.is_empty() {
            state.stdout_path = identity.stdout_path.clone();
            state.stderr_path = identity.stderr_path.clone();
        }
        let arn = state.task_arn.clone();
        let previous_alloc = state.alloc_id.clone();
        let location = state::Salvaged::of(&state);
        let entry =
            TaskEntry::spawn(identity.clone(), state, client, "UNKNOWN", Arc::clone(&self.shared)).map_err(|e| {
                self.unrecovered_tasks().insert(identity.id.clone(), location);
                DriverError::Internal(format!("cannot start a thread to watch ECS task {arn}: {e}"))
            })?;
        {
            let mut tasks = self.tasks();
            if tasks.contains_key(&identity.id) {
                // Lost a race with a concurrent RecoverTask: keep the first.
                entry.send(TaskMsg::Forget);
                return Ok(());
            }
            tasks.insert(identity.id.clone(), Slot::Tracked(Arc::clone(&entry)));
        }
        self.unrecovered_tasks().remove(&identity.id);
        if let Some(task) = seen {
            entry.send(TaskMsg::Observed(Box::new(task)));
        }
        // Nomad 1.1–1.9 hand a lost or drained allocation's task to its replacement through
        // RecoverTask: the tags follow, so that the sweep sees a live allocation.
        let took_over = previous_alloc.filter(|a| *a != identity.alloc_id && !identity.alloc_id.is_empty());
        self.shared.poller.poke();
        let driver = Arc::clone(self);
        let follow = Arc::clone(&entry);
        let spawned = std::thread::Builder::new()
            .name("recover-follow-up".into())
            .stack_size(FOLLOW_UP_STACK)
            .spawn(move || driver.after_recovery(&follow, reused, took_over));
        if let Err(e) = spawned {
            log::warn!(task_id = entry.identity.id.as_str(); "cannot start the thread that re-tags ECS task {} and tails its logs: {e}", entry.state.task_arn);
        }
        Ok(())
    }

    /// A handle re-used for another task id (Nomad 1.1–1.9): its ECS task, if it still runs.
    fn check_reused_handle(
        &self,
        client: &EcsClient,
        state: &TaskState,
        identity: &TaskIdentity,
    ) -> Result<Task, DriverError> {
        let arns = [state.task_arn.clone()];
        let out = with_retries(RetryPolicy::within(REUSED_HANDLE_CHECK_DEADLINE), || {
            client.describe_tasks_with_tags(&state.cluster, &arns)
        })
        .map_err(|e| {
            self.unrecovered_tasks()
                .insert(identity.id.clone(), state::Salvaged::of(state));
            DriverError::Aws(e)
        })?;
        match out.tasks.into_iter().next() {
            Some(t) if t.last_status != "STOPPED" && t.desired_status != "STOPPED" => Ok(t),
            Some(t) => Err(DriverError::NotFound(format!(
                "ECS task {} of this handle is {} (desired {}){}: there is nothing to re-attach to, so Nomad starts a new task",
                t.task_arn,
                t.last_status,
                t.desired_status,
                t.stopped_reason.as_deref().map(|r| format!(", stopped: {r}")).unwrap_or_default()
            ))),
            None => Err(DriverError::NotFound(format!(
                "ECS does not know task {} in cluster {} any more: there is nothing to re-attach to, so Nomad starts a new task",
                state.task_arn, state.cluster
            ))),
        }
    }

    /// What RecoverTask leaves to a thread: the tags of a handle re-used by another task id
    /// (Nomad 1.1–1.9's restart or handoff), and the log tail, read from the task definition
    /// ECS reports for the running task (a family-only reference may have a newer revision).
    /// Its event comes last, so that the log tail writes it to the task's stderr too.
    fn after_recovery(&self, entry: &Arc<TaskEntry>, reused: bool, took_over: Option<String>) {
        let id = entry.identity.id.as_str();
        let arn = &entry.state.task_arn;
        if reused {
            let cfg = self.config();
            let old = took_over.as_deref().unwrap_or_default();
            if let Err(e) = retag(
                &entry.client,
                arn,
                &entry.identity,
                cfg_cluster_name(&cfg),
                old,
                took_over.is_some(),
            ) {
                log::warn!(task_id = id; "cannot re-tag ECS task {arn} to this allocation: {e}");
            }
        }
        if let Some(cfg) = self.config().filter(|c| c.stream_logs) {
            let td = entry
                .wait_observed(FIRST_OBSERVATION_WAIT)
                .unwrap_or_else(|| entry.state.task_definition.clone());
            // A task that ended while the plugin was away still has its last lines to show.
            self.start_log_tail(entry, &td, &cfg);
        } else {
            self.hold_fifos(entry);
        }
        let message = match &took_over {
            Some(old) => {
                log::info!(task_id = id; "took over ECS task {arn} from allocation {old} (Nomad's handoff)");
                format!("Took over ECS task {arn} from allocation {old}")
            }
            None => format!("Re-attached to ECS task {arn}"),
        };
        self.shared
            .events
            .publish(entry.event(message, [("task_arn".to_string(), arn.clone())].into_iter().collect()));
    }

    fn unrecovered_tasks(&self) -> MutexGuard<'_, HashMap<String, state::Salvaged>> {
        self.unrecovered.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers the node Nomad runs this plugin on (TaskConfig.node_id, Nomad 1.6+), for the
    /// sweep's election when `nomad_address` is not the local agent.
    fn note_node(&self, identity: &TaskIdentity) {
        if !identity.node_id.is_empty() {
            *self.node_id.lock().unwrap_or_else(|p| p.into_inner()) = Some(identity.node_id.clone());
        }
    }

    fn tracked(&self, id: &str) -> Result<Arc<TaskEntry>, DriverError> {
        match self.tasks().get(id) {
            Some(Slot::Tracked(e)) => Ok(Arc::clone(e)),
            Some(Slot::Starting) => Err(DriverError::NotFound(format!("task {id} is still starting"))),
            None => Err(DriverError::NotFound(format!(
                "task {id} is not known to the ecs driver"
            ))),
        }
    }

    /// WaitTask: a receiver that yields the exit result.
    pub fn wait_task(&self, id: &str) -> Result<oneshot::Receiver<ExitResult>, DriverError> {
        Ok(self.tracked(id)?.wait())
    }

    /// StopTask. Blocks up to `timeout` for the ECS task to stop.
    pub fn stop_task(&self, id: &str, timeout: Duration, signal: &str) -> Result<(), DriverError> {
        let entry = self.tracked(id)?;
        if entry.exit().is_some() {
            return Ok(());
        }
        if signal == "DETACH" {
            entry.send(TaskMsg::Detach);
            entry.wait_exit(Duration::from_secs(5));
            return Ok(());
        }
        if self.hand_over_instead_of_stop(&entry)? {
            entry.send(TaskMsg::Detach);
            entry.wait_exit(Duration::from_secs(5));
            return Ok(());
        }
        // ECS limits the reason to 255 characters; the ECS client cuts it.
        let reason = format!(
            "Stopped by Nomad: allocation {} task {}",
            entry.identity.alloc_id, entry.identity.name
        );
        let deadline = Instant::now() + timeout;
        entry.stop_requested.store(true, std::sync::atomic::Ordering::SeqCst);
        // Nomad emits its own Killing event; ours would push older events out of its ten.
        log::info!(task_id = id; "stopping ECS task {}: {reason}", entry.state.task_arn);
        let stop = with_retries(RetryPolicy::within(timeout.max(MIN_STOP_DEADLINE)), || {
            entry
                .client
                .stop_task(&entry.state.cluster, &entry.state.task_arn, &reason)
        });
        match stop {
            Ok(task) => entry.send(TaskMsg::Observed(Box::new(task))),
            Err(e) if is_task_gone(&e) => {
                log::info!(task_id = id; "ECS does not know task {} any more; waiting for the poller to confirm", entry.state.task_arn)
            }
            Err(e) => return Err(DriverError::Aws(e)),
        }
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if entry.wait_exit(STOP_WAIT_POLL.min(deadline - now)) {
                return Ok(());
            }
            self.shared.poller.poke();
        }
        // ECS accepted the stop; it kills the containers after their stopTimeout, which is
        // often longer than Nomad's kill_timeout. Nomad waits for WaitTask after a StopTask
        // that succeeded (task_runner.go killTask/handleKill, v1.10.0): an error here would
        // only make it retry and report leaked resources.
        if entry.exit().is_none() {
            log::info!(task_id = id; "ECS task {} is still {} {timeout:?} after StopTask; its exit reaches Nomad through WaitTask when ECS stops it",
                entry.state.task_arn, entry.snapshot().last_status);
        }
        Ok(())
    }

    /// At StopTask on Nomad 1.10+: true when the ECS task must keep running, because another
    /// allocation adopted it (this one was lost and came back), or because this allocation is
    /// being drained off its node and its replacement should adopt it (then the task is tagged
    /// with the end of its handoff window, after which the sweep stops it if no one adopted it).
    ///
    /// An error when the task's tags cannot be read: stopping it blindly could stop the task an
    /// adopter runs, so Nomad retries the StopTask instead.
    fn hand_over_instead_of_stop(&self, entry: &TaskEntry) -> Result<bool, DriverError> {
        let Some(cfg) = self.config() else { return Ok(false) };
        let h = &cfg.handoff;
        let id = entry.identity.id.as_str();
        let arn = &entry.state.task_arn;
        let policy = || RetryPolicy::within(MIN_STOP_DEADLINE);
        if (h.adopt_lost || h.drain_handoff) && !entry.identity.alloc_id.is_empty() {
            let tasks = [arn.clone()];
            let out = with_retries(policy(), || {
                entry.client.describe_tasks_with_tags(&entry.state.cluster, &tasks)
            })
            .map_err(|e| {
                log::warn!(task_id = id; "cannot read the tags of ECS task {arn} before stopping it, so not stopping it yet: {e}");
                DriverError::Aws(e)
            })?;
            let owner = out
                .tasks
                .first()
                .and_then(|t| t.tag(handoff::TAG_ALLOC_ID))
                .map(str::to_string);
            if let Some(owner) = owner.filter(|o| *o != entry.identity.alloc_id) {
                log::info!(task_id = id; "not stopping ECS task {arn}: allocation {owner} adopted it");
                self.shared.events.publish(
                    entry.event(
                        format!("ECS task {arn} now belongs to allocation {owner}, which adopted it; not stopping it"),
                        [("task_arn".to_string(), arn.clone()), ("adopted_by".to_string(), owner)]
                            .into_iter()
                            .collect(),
                    ),
                );
                return Ok(true);
            }
        }
        if !h.drain_handoff || h.reap_interval.is_zero() || h.reap_dry_run {
            return Ok(false);
        }
        let link = self.nomad.get(&h.api);
        let Some(api) = link.api else {
            log::debug!(task_id = id; "no drain handoff check: Nomad API {}", link.status);
            return Ok(false);
        };
        let alloc = match api.allocation(&entry.identity.alloc_id) {
            Ok(Some(a)) if a.migrate => a,
            Ok(_) => return Ok(false),
            Err(e) => {
                log::warn!(task_id = id; "cannot tell from Nomad whether allocation {} is being drained, so stopping its ECS task: {e}", entry.identity.alloc_id);
                return Ok(false);
            }
        };
        // `nomad alloc stop` and `nomad job restart -reschedule` set the same migrate flag as a
        // drain (nomad/alloc_endpoint.go Stop, v1.10.0) but mean "replace this task": only a
        // node that is draining hands its tasks over. System jobs run one allocation per node
        // (all at index 0): theirs are never handed over.
        if handoff::is_per_node_job(&alloc.job_type) {
            return Ok(false);
        }
        match api.node(&alloc.node_id) {
            Ok(Some(n)) if n.draining => {}
            Ok(_) => {
                log::info!(task_id = id; "allocation {} is being stopped or rescheduled, not drained off its node: stopping its ECS task", entry.identity.alloc_id);
                return Ok(false);
            }
            Err(e) => {
                log::warn!(task_id = id; "cannot tell from Nomad whether node {} is draining, so stopping the ECS task of allocation {}: {e}", alloc.node_id, entry.identity.alloc_id);
                return Ok(false);
            }
        }
        let until = SystemTime::now() + h.drain_handoff_window;
        let tag = [handoff::handoff_tag(until)];
        if let Err(e) = with_retries(policy(), || entry.client.tag_resource(arn, &tag)) {
            log::warn!(task_id = id; "cannot mark ECS task {arn} for adoption by the drained allocation's replacement, so stopping it: {e}");
            return Ok(false);
        }
        let window = h.drain_handoff_window;
        log::info!(task_id = id; "allocation {} is being drained: left ECS task {arn} running for its replacement to adopt within {window:?}", entry.identity.alloc_id);
        self.shared.events.publish(entry.event(
            format!(
                "Node drain: left ECS task {arn} running for the replacement allocation to adopt; it is stopped if none does within {window:?}"
            ),
            [("task_arn".to_string(), arn.clone()), ("handoff_until".to_string(), tag[0].1.clone())].into_iter().collect(),
        ));
        Ok(true)
    }

    /// The sweep's scope (the node attribute `driver.ecs.sweep_scope`): None while the sweep
    /// is off or this plugin's Nomad identity is not known (Nomad's agent did not say its
    /// region).
    fn sweep_scope(&self, cfg: &DriverConfig, ecs_region: &str, agent: &AgentSelf) -> Option<String> {
        if cfg.handoff.reap_interval.is_zero() {
            return None;
        }
        let nomad = sweep_identity(cfg, agent)?;
        Some(handoff::sweep_scope(&nomad, ecs_region, &sweep_clusters(cfg)))
    }

    /// The fingerprint's `driver.ecs.sweep`: off, held by the brake, or what the last round did.
    fn sweep_attribute(&self, cfg: &DriverConfig) -> String {
        let h = &cfg.handoff;
        if h.reap_interval.is_zero() {
            return "off (reap_interval = 0)".into();
        }
        if let Some(b) = self.brake.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            return format!(
                "braked since {}: {}; nothing is stopped until the Nomad agent (and with it the plugin) restarts",
                crate::aws::timestamp::format(b.since),
                b.why
            );
        }
        let status = self.sweep_status.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if h.reap_dry_run {
            format!("dry run; {status}")
        } else {
            status
        }
    }

    fn set_sweep_status(&self, status: impl Into<String>) {
        let status = status.into();
        log::debug!("orphan sweep: {status}");
        *self.sweep_status.lock().unwrap_or_else(|p| p.into_inner()) = status;
    }

    /// One round of the orphan sweep (`round` numbers it; see [`handoff::next_round`]).
    ///
    /// Every client with the plugin runs this each round, but only one sweeps: the clients
    /// whose plugin has the same sweep scope elect one per round from Nomad's node list, so the
    /// load on Nomad and ECS does not grow with the number of clients. The sweeper lists the
    /// running ECS tasks of the clusters the operator configured, keeps those of its own Nomad
    /// cluster and region that no local task watches, and stops those whose allocation has
    /// been over in Nomad (or gone, when the cluster is named) for the grace time — unless the
    /// round would stop too many (the brake). A client that cannot find itself in Nomad's node
    /// list (a wrong `nomad_address`) never sweeps.
    pub fn sweep(&self, round: u64) {
        let Some(cfg) = self.config().filter(|c| c.enabled) else {
            return;
        };
        let h = &cfg.handoff;
        if h.reap_interval.is_zero() {
            return;
        }
        if let Some(b) = self.brake.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            log::warn!(
                "orphan sweep braked since {}: {}; restart the Nomad agent to release it",
                crate::aws::timestamp::format(b.since),
                b.why
            );
            return;
        }
        let link = self.nomad.get(&h.api);
        let Some(api) = link.api else {
            self.set_sweep_status(format!("skipped: Nomad API {}", link.status));
            log::debug!("orphan sweep skipped: Nomad API {}", link.status);
            return;
        };
        let Some(region) = self.region(&cfg) else { return };
        let Some(nomad) = sweep_identity(&cfg, &link.agent) else {
            self.set_sweep_status("skipped: Nomad's agent does not say its region (the Nomad token needs agent:read)");
            return;
        };
        let scope = handoff::sweep_scope(&nomad, &region, &sweep_clusters(&cfg));
        let me = link
            .agent
            .node_id
            .clone()
            .or_else(|| self.node_id.lock().unwrap_or_else(|p| p.into_inner()).clone());
        let Some(me) = me else {
            self.set_sweep_status(
                "skipped: this node's id is unknown (nomad_address is not this client's agent, and Nomad has started no task here yet)",
            );
            return;
        };
        // The election: the ready nodes whose ecs driver is healthy with the same scope.
        let nodes = match api.nodes_with_driver(crate::nomad::server::DRIVER_NAME) {
            Ok(n) => n,
            Err(e) => {
                self.set_sweep_status(format!("skipped: cannot list Nomad's nodes: {e}"));
                return;
            }
        };
        let eligible: Vec<&str> = nodes
            .iter()
            .filter(|n| {
                n.status == "ready"
                    && n.driver.as_ref().is_some_and(|d| {
                        d.detected
                            && d.healthy
                            && d.attributes.get("driver.ecs.sweep_scope").map(String::as_str) == Some(scope.as_str())
                    })
            })
            .map(|n| n.id.as_str())
            .collect();
        if !eligible.contains(&me.as_str()) {
            self.set_sweep_status(format!(
                "standing by: Nomad at {} does not list this node ({me}) as ready with a healthy ecs driver of the \
                 same sweep scope; if it never does, check nomad_address",
                api.address()
            ));
            return;
        }
        let winner = handoff::elected(round, eligible.iter().copied()).unwrap_or_default();
        if winner != me {
            self.set_sweep_status(format!(
                "standing by: node {winner} sweeps round {round} ({} nodes share the scope {scope})",
                eligible.len()
            ));
            return;
        }
        self.sweep_as_elected(&cfg, &region, &api, &nomad, round);
    }

    /// The elected client's round: see [`Driver::sweep`].
    fn sweep_as_elected(
        &self,
        cfg: &DriverConfig,
        region: &str,
        api: &crate::nomad_api::NomadApi,
        nomad: &handoff::NomadIdentity,
        round: u64,
    ) {
        let h = &cfg.handoff;
        let endpoint = ecs_endpoint(cfg, region);
        let client = match self.client(region, endpoint.as_deref()) {
            Ok(c) => c,
            Err(e) => {
                self.set_sweep_status(format!("round {round} skipped: {e}"));
                return;
            }
        };
        let watched: std::collections::HashSet<String> = self
            .tasks()
            .values()
            .filter_map(|slot| match slot {
                Slot::Tracked(e) => Some(e.state.task_arn.clone()),
                Slot::Starting => None,
            })
            .collect();
        let policy = || RetryPolicy::within(SWEEP_CALL_DEADLINE);
        // One read per allocation per round, however many of its tasks are listed.
        let mut allocs = HashMap::new();
        let mut seen = 0usize;
        let mut stop: Vec<(String, String, String)> = Vec::new();
        let now = SystemTime::now();
        // The task definitions every listed task runs (the clean-up's view), and whether the
        // round saw every swept cluster whole.
        let mut running_definitions = std::collections::HashSet::new();
        let mut complete = true;
        for cluster in sweep_clusters(cfg) {
            let input = ListTasksInput {
                cluster: cluster.clone(),
                desired_status: Some("RUNNING".into()),
                ..Default::default()
            };
            let arns = match with_retries(policy(), || client.list_all_tasks(&input)) {
                Ok(a) => a,
                Err(e) => {
                    log::warn!("orphan sweep: cannot list the tasks of ECS cluster {cluster}: {e}");
                    complete = false;
                    continue;
                }
            };
            for chunk in arns.chunks(100) {
                let tasks = match with_retries(policy(), || client.describe_tasks_with_tags(&cluster, chunk)) {
                    Ok(out) => out.tasks,
                    Err(e) => {
                        log::warn!("orphan sweep: cannot read tasks of ECS cluster {cluster}: {e}");
                        complete = false;
                        continue;
                    }
                };
                for t in tasks {
                    if let Some(td) = &t.task_definition_arn {
                        running_definitions.insert(td.clone());
                    }
                    if t.tag(TAG_MANAGED_BY) != Some(MANAGED_BY)
                        || t.desired_status != "RUNNING"
                        || handoff::NomadIdentity::of_task(&t).as_ref() != Some(nomad)
                    {
                        continue;
                    }
                    seen += 1;
                    if watched.contains(&t.task_arn) {
                        continue;
                    }
                    let Some(alloc_id) = t.tag(handoff::TAG_ALLOC_ID) else {
                        continue;
                    };
                    let alloc = allocs
                        .entry(alloc_id.to_string())
                        .or_insert_with(|| api.allocation(alloc_id));
                    let why = match handoff::sweep_verdict(&t, alloc, nomad.cluster.is_some(), now) {
                        handoff::Sweep::Keep => {
                            if handoff::orphan_since(&t).is_some() {
                                let keys = [handoff::TAG_ORPHAN_SINCE.to_string()];
                                if let Err(e) = with_retries(policy(), || client.untag_resource(&t.task_arn, &keys)) {
                                    log::debug!("orphan sweep: cannot clear the orphan mark of {}: {e}", t.task_arn);
                                }
                            }
                            continue;
                        }
                        handoff::Sweep::Wait | handoff::Sweep::Unknown => continue,
                        handoff::Sweep::Orphan(why) => match handoff::orphan_since(&t) {
                            Some(since) if now.duration_since(since).unwrap_or_default() >= h.reap_grace => why,
                            Some(_) => continue,
                            None => {
                                // First sighting: mark the task, so that whichever client sweeps
                                // later counts the grace time from now.
                                // Rounded up to the second: the whole-second tag never cuts the
                                // grace time short.
                                let tag = [handoff::unix_time_tag(
                                    handoff::TAG_ORPHAN_SINCE,
                                    now + Duration::from_millis(999),
                                )];
                                match with_retries(policy(), || client.tag_resource(&t.task_arn, &tag)) {
                                    Ok(()) => {
                                        log::info!(task_arn = t.task_arn.as_str(); "orphan sweep: ECS task {} will be stopped after {:?}: {why}", t.task_arn, h.reap_grace)
                                    }
                                    Err(e) => log::warn!(
                                        "orphan sweep: cannot mark ECS task {} as an orphan: {e}",
                                        t.task_arn
                                    ),
                                }
                                if !h.reap_grace.is_zero() {
                                    continue;
                                }
                                why
                            }
                        },
                        handoff::Sweep::Expired(why) => why,
                    };
                    stop.push((cluster.clone(), t.task_arn.clone(), why));
                }
            }
        }
        self.clean_task_definitions(cfg, &client, nomad, &running_definitions, complete);
        if let Some(why) = handoff::brake(stop.len(), seen, h.reap_max_stop, h.reap_max_stop_percent) {
            let arns: Vec<&str> = stop.iter().take(20).map(|(_, arn, _)| arn.as_str()).collect();
            log::error!(
                "orphan sweep braked: {why} of {nomad}; nothing was stopped, and no round runs until the Nomad agent restarts. \
                 Check that nomad_address points at this cluster's Nomad and that nomad_cluster is right; if these really are orphans, \
                 stop them by hand, or raise reap_max_stop / reap_max_stop_percent, and restart the agent. First tasks: {}",
                arns.join(", ")
            );
            *self.brake.lock().unwrap_or_else(|p| p.into_inner()) = Some(Brake {
                since: SystemTime::now(),
                why,
            });
            return;
        }
        let mut stopped = 0usize;
        for (cluster, arn, why) in &stop {
            if h.reap_dry_run {
                log::info!(task_arn = arn.as_str(); "orphan sweep (dry run): would stop ECS task {arn}: {why}");
                continue;
            }
            let reason = format!("Stopped by nomad-driver-ecs's orphan sweep: {why}");
            match with_retries(policy(), || client.stop_task(cluster, arn, &reason)) {
                Ok(_) => {
                    stopped += 1;
                    log::info!(task_arn = arn.as_str(); "orphan sweep stopped ECS task {arn}: {why}");
                }
                Err(e) => log::warn!("orphan sweep: cannot stop ECS task {arn}: {e}"),
            }
        }
        self.set_sweep_status(format!(
            "round {round} swept by this node: {seen} running ECS tasks of {nomad} looked at, {stopped} stopped"
        ));
    }

    /// The elected sweeper's task definition clean-up (`task_definition_cleanup`), after the
    /// round has seen which definitions the swept clusters' tasks run: see [`cleanup`].
    fn clean_task_definitions(
        &self,
        cfg: &DriverConfig,
        client: &EcsClient,
        nomad: &handoff::NomadIdentity,
        running: &std::collections::HashSet<String>,
        complete: bool,
    ) {
        if cfg.task_definition_cleanup.is_zero() {
            return;
        }
        if !complete {
            log::info!("task definition clean-up skipped this round: not every swept cluster's tasks could be read");
            return;
        }
        let out = cleanup::round(
            client,
            &self.definitions,
            nomad,
            running,
            cfg.task_definition_cleanup,
            cfg.handoff.reap_dry_run,
        );
        log::debug!(
            "task definition clean-up: {} of the driver's revisions looked at, {} newly unused, {} deregistered",
            out.looked_at,
            out.marked,
            out.deregistered.len()
        );
    }

    /// DestroyTask: forget the task; with `force` stop a still-running ECS task first.
    pub fn destroy_task(&self, id: &str, force: bool) -> Result<(), DriverError> {
        let entry = match self.tasks().get(id) {
            None => {
                let unrecovered = self.unrecovered_tasks().remove(id);
                return match unrecovered {
                    Some(task) if force => self.stop_unrecovered(id, &task),
                    _ => Ok(()),
                };
            }
            Some(Slot::Starting) => return Err(DriverError::StillRunning(format!("task {id} is still starting"))),
            Some(Slot::Tracked(e)) => Arc::clone(e),
        };
        if entry.exit().is_none() {
            if !force {
                return Err(DriverError::StillRunning(format!(
                    "task {id} (ECS task {}) is still running: stop it first or destroy with force",
                    entry.state.task_arn
                )));
            }
            // ECS limits the reason to 255 characters; the ECS client cuts it.
            let reason = format!(
                "Destroyed by Nomad: allocation {} task {}",
                entry.identity.alloc_id, entry.identity.name
            );
            entry.stop_requested.store(true, std::sync::atomic::Ordering::SeqCst);
            let stop = with_retries(RetryPolicy::within(DESTROY_STOP_DEADLINE), || {
                entry
                    .client
                    .stop_task(&entry.state.cluster, &entry.state.task_arn, &reason)
            });
            if let Err(e) = stop {
                if !is_task_gone(&e) {
                    log::error!(task_id = id; "could not stop ECS task {} while destroying it ({e}); it may still be running: stop it by hand", entry.state.task_arn);
                }
            }
        }
        entry.send(TaskMsg::Forget);
        self.shared.logs.finish(id);
        self.tasks().remove(id);
        Ok(())
    }

    /// DestroyTask(force) after a failed RecoverTask: the ECS task of that handle is stopped,
    /// since Nomad goes on to start a new one.
    fn stop_unrecovered(&self, id: &str, task: &state::Salvaged) -> Result<(), DriverError> {
        let client = self
            .client(&task.region, task.endpoint.as_deref())
            .map_err(DriverError::Aws)?;
        let reason = format!("Destroyed by Nomad: task {id} could not be re-attached after a restart");
        match with_retries(RetryPolicy::within(DESTROY_STOP_DEADLINE), || {
            client.stop_task(&task.cluster, &task.task_arn, &reason)
        }) {
            Ok(_) => {
                log::info!(task_id = id; "stopped ECS task {} that could not be re-attached", task.task_arn);
                Ok(())
            }
            Err(e) if is_task_gone(&e) => Ok(()),
            Err(e) => {
                log::error!(task_id = id; "could not stop ECS task {} that could not be re-attached ({e}); it may still be running: stop it by hand", task.task_arn);
                Err(DriverError::Aws(e))
            }
        }
    }

    /// InspectTask.
    pub fn inspect_task(&self, id: &str) -> Result<TaskStatus, DriverError> {
        Ok(self.tracked(id)?.snapshot())
    }

    /// True while the task is running (TaskStats streams end when it is not).
    pub fn is_running(&self, id: &str) -> bool {
        self.tracked(id)
            .map(|e| e.snapshot().phase == Phase::Running)
            .unwrap_or(false)
    }

    pub fn task_count(&self) -> usize {
        self.tasks().len()
    }
}

/// ECS's answer to RunTask with a deregistered (INACTIVE) task definition revision.
fn is_inactive_definition(e: &AwsError) -> bool {
    e.code.ends_with("ClientException") && e.message.to_ascii_lowercase().contains("inactive")
}

/// The sweep thread: a round every `reap_interval` (rounds are slices of unix time, the same
/// on every client), for as long as the driver lives.
fn sweep_loop(driver: std::sync::Weak<Driver>) {
    loop {
        let interval = match driver.upgrade() {
            Some(d) => d.config().map(|c| c.handoff.reap_interval).unwrap_or_default(),
            None => return,
        };
        if interval.is_zero() {
            std::thread::sleep(Duration::from_secs(5));
            continue;
        }
        let (round, wait) = handoff::next_round(interval, SystemTime::now());
        std::thread::sleep(wait);
        match driver.upgrade() {
            Some(d) => d.sweep(round),
            None => return,
        }
    }
}

/// The sweep's own Nomad identity: the operator's `nomad_cluster` and the region Nomad's agent
/// reports (None when it does not say).
fn sweep_identity(cfg: &DriverConfig, agent: &AgentSelf) -> Option<handoff::NomadIdentity> {
    Some(handoff::NomadIdentity {
        cluster: cfg.handoff.nomad_cluster.clone(),
        region: agent.region.clone()?,
    })
}

/// The ECS clusters the sweep covers: the plugin's `cluster` and the operator's
/// `reap_clusters`, never a cluster only a job names.
fn sweep_clusters(cfg: &DriverConfig) -> Vec<String> {
    let mut clusters = vec![cfg.cluster.clone()];
    for c in &cfg.handoff.reap_clusters {
        if !clusters.contains(c) {
            clusters.push(c.clone());
        }
    }
    clusters
}

/// Tags ECS task `arn` with `identity` (and the allocation it came from), and removes its drain
/// handoff mark when it has one.
fn retag(
    client: &EcsClient,
    arn: &str,
    identity: &TaskIdentity,
    nomad_cluster: Option<&str>,
    old_alloc: &str,
    clear_handoff: bool,
) -> Result<(), AwsError> {
    let mut tags = identity_tags(identity, nomad_cluster);
    if !old_alloc.is_empty() && old_alloc != identity.alloc_id {
        tags.push((handoff::TAG_ADOPTED_FROM.to_string(), old_alloc.to_string()));
    }
    let policy = || RetryPolicy::within(ADOPTION_LOOKUP_DEADLINE);
    with_retries(policy(), || client.tag_resource(arn, &tags))?;
    if clear_handoff {
        let keys = [
            handoff::TAG_HANDOFF_UNTIL.to_string(),
            handoff::TAG_ORPHAN_SINCE.to_string(),
        ];
        if let Err(e) = with_retries(policy(), || client.untag_resource(arn, &keys)) {
            log::warn!(task_id = identity.id.as_str(); "adopted ECS task {arn} keeps its drain handoff tag ({e}); harmless");
        }
    }
    Ok(())
}

/// The client cached under `key`, made with `make` on first use.
fn cached<C>(
    map: &Mutex<HashMap<ClientKey, Arc<C>>>,
    key: ClientKey,
    make: impl FnOnce() -> Result<C, AwsError>,
) -> Result<Arc<C>, AwsError> {
    let mut clients = map.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = clients.get(&key) {
        return Ok(Arc::clone(c));
    }
    let c = Arc::new(make()?);
    clients.insert(key, Arc::clone(&c));
    Ok(c)
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// FIPS endpoints: the `use_fips_endpoint` option, or `AWS_USE_FIPS_ENDPOINT=true`.
fn use_fips(cfg: &DriverConfig) -> bool {
    cfg.use_fips_endpoint || env_var("AWS_USE_FIPS_ENDPOINT").is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// The ECS endpoint: the `endpoint` option, else `AWS_ENDPOINT_URL_ECS`, else
/// `AWS_ENDPOINT_URL`, else the FIPS endpoint when asked for; None: the regional default.
pub fn ecs_endpoint(cfg: &DriverConfig, region: &str) -> Option<String> {
    endpoint_override(cfg.endpoint.as_deref(), "ECS", &env_var)
        .or_else(|| use_fips(cfg).then(|| endpoint_for("ecs", region, true)))
}

/// Port labels of a task definition: each container port mapping's `name`, or the port number
/// itself when the mapping has no name.
pub fn port_labels(def: &crate::aws::ecs::TaskDefinition) -> Vec<(String, u16)> {
    let mut ports: Vec<(String, u16)> = def
        .containers
        .iter()
        .flat_map(|c| c.port_mappings.iter())
        .map(|m| {
            let label = m
                .name
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| m.container_port.to_string());
            (label, m.container_port)
        })
        .collect();
    ports.sort();
    ports.dedup_by(|a, b| a.0 == b.0);
    ports
}

/// How the AWS clients connect: the stanza's timeouts and `ca_file` (else `AWS_CA_BUNDLE`), and
/// the proxies of the agent's environment.
pub fn http_config(cfg: &DriverConfig) -> HttpConfig {
    let env = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
    HttpConfig {
        connect_timeout: cfg.connect_timeout,
        request_timeout: cfg.request_timeout,
        ca_file: cfg
            .ca_file
            .clone()
            .or_else(|| env("AWS_CA_BUNDLE").map(std::path::PathBuf::from)),
        proxy: ProxySettings::from_env(&env),
    }
}

/// A RunTask failure reason that may go away by itself (capacity, agent trouble).
pub fn is_capacity_reason(reason: &str) -> bool {
    let r = reason.to_ascii_uppercase();
    r.starts_with("RESOURCE") || r.starts_with("AGENT") || r.contains("CAPACITY") || r.contains("THROTTL")
}

fn is_task_gone(e: &AwsError) -> bool {
    e.kind == ErrorKind::NotFound
        || (e.code.contains("InvalidParameter") && e.message.to_ascii_lowercase().contains("not found"))
}

/// Turns an AWS error into advice an operator can act on.
pub fn describe_aws_problem(e: &AwsError, endpoint: &str) -> String {
    match e.kind {
        ErrorKind::Credentials => format!("no usable AWS credentials: {e}"),
        ErrorKind::Auth => format!("AWS rejected the request's credentials or signature ({e}): check the access key, secret and session token the agent runs with, and the IAM policy"),
        ErrorKind::Network => format!("cannot reach the ECS endpoint {endpoint}: {e}"),
        ErrorKind::Throttling => format!("ECS is throttling this account: {e}"),
        _ => e.to_string(),
    }
}

/// ECS RunTask clientToken (≤ 64 ASCII chars): a hash of Nomad's task id, so a repeated or
/// retried start of the same task is idempotent on ECS.
pub fn client_token(task_id: &str) -> String {
    sha256_hex(task_id.as_bytes(), 64)
}

/// Tag key marking ECS tasks this driver started (value: [`MANAGED_BY`]).
pub const TAG_MANAGED_BY: &str = "nomad:managed-by";
pub const MANAGED_BY: &str = "nomad-driver-ecs";
const MAX_TAG_VALUE: usize = 256;

/// Every tag key the driver may put on an ECS task: the identity tags of [`identity_tags`],
/// and those a drain handoff, an adoption or the sweep add later.
pub const DRIVER_TAG_KEYS: [&str; 16] = [
    TAG_MANAGED_BY,
    "nomad:namespace",
    "nomad:job-id",
    "nomad:task-group",
    "nomad:task",
    handoff::TAG_ALLOC_ID,
    handoff::TAG_ALLOC_INDEX,
    "nomad:node-id",
    handoff::TAG_TASK_ID,
    handoff::TAG_CONFIG_HASH,
    handoff::TAG_SLOT,
    handoff::TAG_REGION,
    handoff::TAG_CLUSTER,
    handoff::TAG_HANDOFF_UNTIL,
    handoff::TAG_ADOPTED_FROM,
    handoff::TAG_ORPHAN_SINCE,
];
/// How many of ECS's 50 tags per task the driver keeps for itself.
pub const MAX_DRIVER_TAGS: usize = DRIVER_TAG_KEYS.len();

/// The operator's `nomad_cluster`, when the plugin is configured and names one.
fn cfg_cluster_name(cfg: &Option<DriverConfig>) -> Option<&str> {
    cfg.as_ref().and_then(|c| c.handoff.nomad_cluster.as_deref())
}

/// The Nomad identity as ECS tags on every task the driver starts, so the task can be traced
/// back to its allocation and to the Nomad cluster and region that started it (and found
/// again by a reconciler). Empty values are left out; values are limited to the characters
/// and length ECS accepts.
pub fn identity_tags(identity: &TaskIdentity, nomad_cluster: Option<&str>) -> Vec<(String, String)> {
    let clean = |v: &str| -> String {
        let s: String = v
            .chars()
            .map(|c| {
                if c.is_alphanumeric() || " +-=._:/@".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        truncate(&s, MAX_TAG_VALUE)
    };
    let index = identity.alloc_index.map(|i| i.to_string()).unwrap_or_default();
    let slot = handoff::slot(identity);
    [
        (TAG_MANAGED_BY, MANAGED_BY),
        ("nomad:namespace", identity.namespace.as_str()),
        ("nomad:job-id", identity.job_id.as_str()),
        ("nomad:task-group", identity.task_group.as_str()),
        ("nomad:task", identity.name.as_str()),
        (handoff::TAG_ALLOC_ID, identity.alloc_id.as_str()),
        (handoff::TAG_ALLOC_INDEX, index.as_str()),
        ("nomad:node-id", identity.node_id.as_str()),
        (handoff::TAG_TASK_ID, identity.id.as_str()),
        (handoff::TAG_CONFIG_HASH, identity.config_hash.as_str()),
        (handoff::TAG_SLOT, slot.as_str()),
        (handoff::TAG_REGION, identity.region.as_str()),
        (handoff::TAG_CLUSTER, nomad_cluster.unwrap_or_default()),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| (k.to_string(), clean(v)))
    .collect()
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecs_endpoint_option_and_fips() {
        let mut cfg = DriverConfig {
            endpoint: Some("http://127.0.0.1:4566/".into()),
            ..Default::default()
        };
        assert_eq!(
            ecs_endpoint(&cfg, "us-east-1").as_deref(),
            Some("http://127.0.0.1:4566")
        );
        cfg.endpoint = None;
        cfg.use_fips_endpoint = true;
        if env_var("AWS_ENDPOINT_URL_ECS").is_none() && env_var("AWS_ENDPOINT_URL").is_none() {
            assert_eq!(
                ecs_endpoint(&cfg, "us-gov-west-1").as_deref(),
                Some("https://ecs-fips.us-gov-west-1.amazonaws.com")
            );
        }
    }

    #[test]
    fn client_token_is_deterministic_and_fits_ecs() {
        let a = client_token("0a1b2c3d-1111-2222-3333-444455556666/http-server/3f2a9c1e");
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(
            a,
            client_token("0a1b2c3d-1111-2222-3333-444455556666/http-server/3f2a9c1e")
        );
        assert_ne!(
            a,
            client_token("0a1b2c3d-1111-2222-3333-444455556666/http-server/00000000")
        );
    }

    #[test]
    fn identity_tags_carry_the_nomad_identity() {
        let id = TaskIdentity {
            alloc_id: "a-1".into(),
            name: "web".into(),
            namespace: "default".into(),
            job_id: "job#1".into(),
            task_group: "g".into(),
            node_id: String::new(),
            ..Default::default()
        };
        let tags = identity_tags(&id, Some("prod"));
        let get = |k: &str| tags.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(get(TAG_MANAGED_BY), Some("nomad-driver-ecs"));
        assert_eq!(get("nomad:alloc-id"), Some("a-1"));
        assert_eq!(
            get("nomad:job-id"),
            Some("job_1"),
            "characters ECS refuses are replaced"
        );
        assert_eq!(get("nomad:node-id"), None, "empty values are left out");
        assert_eq!(get("nomad:cluster"), Some("prod"));
        assert_eq!(get("nomad:region"), None, "no NOMAD_REGION, no region tag");
        let long = TaskIdentity {
            job_id: "j".repeat(300),
            ..id
        };
        assert_eq!(
            identity_tags(&long, None)
                .iter()
                .find(|(k, _)| k == "nomad:job-id")
                .unwrap()
                .1
                .len(),
            256
        );
    }

    #[test]
    fn every_tag_the_driver_adds_is_counted() {
        let full = TaskIdentity {
            id: "a-1/web/x".into(),
            alloc_id: "a-1".into(),
            name: "web".into(),
            namespace: "default".into(),
            job_id: "j".into(),
            task_group: "g".into(),
            node_id: "n".into(),
            alloc_index: Some(0),
            config_hash: "h".into(),
            region: "global".into(),
            ..Default::default()
        };
        let mut keys: Vec<String> = identity_tags(&full, Some("prod")).into_iter().map(|(k, _)| k).collect();
        keys.extend(
            [
                handoff::TAG_HANDOFF_UNTIL,
                handoff::TAG_ADOPTED_FROM,
                handoff::TAG_ORPHAN_SINCE,
            ]
            .map(String::from),
        );
        keys.sort();
        let mut counted: Vec<String> = DRIVER_TAG_KEYS.iter().map(|k| k.to_string()).collect();
        counted.sort();
        assert_eq!(keys, counted);
    }

    #[test]
    fn capacity_reasons_are_recoverable() {
        assert!(is_capacity_reason("RESOURCE:MEMORY"));
        assert!(is_capacity_reason(
            "Capacity is unavailable at this time. Please try again later or in a different availability zone"
        ));
        assert!(is_capacity_reason("AGENT"));
        assert!(!is_capacity_reason("MISSING"));
        assert!(!is_capacity_reason("ATTRIBUTE"));
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 5), "abc");
    }
}
