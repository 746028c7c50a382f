//! Plain settings the driver core works with: the agent's plugin stanza and one task's stanza,
//! already decoded and validated by the Nomad side (`nomad::config`).

use std::time::Duration;

/// Default ECS cluster when the plugin stanza names none (ECS's own default).
pub const DEFAULT_CLUSTER: &str = "default";
/// How often the status of watched tasks is read from ECS.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// Time allowed to open a TCP connection to an AWS endpoint.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often each CloudWatch Logs stream is read.
pub const DEFAULT_LOGS_POLL_INTERVAL: Duration = Duration::from_secs(2);
/// How long StartTask waits for an awsvpc task's private IPv4 address.
pub const DEFAULT_ADDRESS_TIMEOUT: Duration = Duration::from_secs(120);
/// Time allowed for one whole AWS request (connect included); then it counts as a transient error.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a drained allocation's ECS task waits for its replacement to adopt it.
pub const DEFAULT_DRAIN_HANDOFF_WINDOW: Duration = Duration::from_secs(10 * 60);
/// How often the orphan sweep runs (jittered by ±20%).
pub const DEFAULT_REAP_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// How long an ECS task's allocation must be terminal or gone before the sweep stops the task.
pub const DEFAULT_REAP_GRACE: Duration = Duration::from_secs(15 * 60);
/// The sweep's brake: a round that would stop more tasks than this stops none.
pub const DEFAULT_REAP_MAX_STOP: u32 = 10;
/// The sweep's brake: a round that would stop more than this share (in percent) of the
/// driver's running tasks it looked at stops none (rounds that would stop 2 or fewer are
/// exempt, so a small fleet's single orphan still goes).
pub const DEFAULT_REAP_MAX_STOP_PERCENT: u32 = 20;

/// Where and how the plugin reads Nomad's HTTP API (adoption, drains, reaping).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct NomadApiConfig {
    /// `nomad_address`; None → NOMAD_ADDR → http://127.0.0.1:4646.
    pub address: Option<String>,
    /// `nomad_token`; None → NOMAD_TOKEN.
    pub token: Option<String>,
    /// `nomad_token_file`, read at each request.
    pub token_file: Option<std::path::PathBuf>,
    /// `nomad_ca_file`; None → NOMAD_CACERT.
    pub ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for NomadApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NomadApiConfig")
            .field("address", &self.address.as_deref().map(crate::redact::url))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_file", &self.token_file)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// Adoption of lost allocations' tasks, drain handoff and the orphan sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandoffConfig {
    pub api: NomadApiConfig,
    /// `adopt_lost`: StartTask adopts the running ECS task of a lost allocation of the same slot.
    pub adopt_lost: bool,
    /// `drain_handoff`: a drained allocation's ECS task is left running for its replacement.
    pub drain_handoff: bool,
    pub drain_handoff_window: Duration,
    /// `reap_interval`; zero: no sweep.
    pub reap_interval: Duration,
    pub reap_grace: Duration,
    /// `reap_dry_run`: log what the sweep would stop, stop nothing.
    pub reap_dry_run: bool,
    /// `nomad_cluster`: the operator's name for this Nomad cluster, tagged on every task
    /// (`nomad:cluster`). None: not named; the sweep then never reads a 404 as "gone".
    pub nomad_cluster: Option<String>,
    /// `reap_clusters`: ECS clusters the sweep covers besides the plugin's `cluster`.
    pub reap_clusters: Vec<String>,
    /// The brake: most tasks one round may stop, in number and in percent of those seen.
    pub reap_max_stop: u32,
    pub reap_max_stop_percent: u32,
}

impl Default for HandoffConfig {
    fn default() -> Self {
        HandoffConfig {
            api: NomadApiConfig::default(),
            adopt_lost: true,
            drain_handoff: true,
            drain_handoff_window: DEFAULT_DRAIN_HANDOFF_WINDOW,
            reap_interval: DEFAULT_REAP_INTERVAL,
            reap_grace: DEFAULT_REAP_GRACE,
            reap_dry_run: false,
            nomad_cluster: None,
            reap_clusters: Vec::new(),
            reap_max_stop: DEFAULT_REAP_MAX_STOP,
            reap_max_stop_percent: DEFAULT_REAP_MAX_STOP_PERCENT,
        }
    }
}

/// The plugin stanza (`plugin "nomad-driver-ecs" { config { ... } }`).
#[derive(Debug, Clone, PartialEq)]
pub struct DriverConfig {
    pub enabled: bool,
    pub cluster: String,
    /// `None`: taken from the environment when the driver needs it.
    pub region: Option<String>,
    /// ECS API URL override (emulator, VPC endpoint). `None`: the public regional endpoint.
    pub endpoint: Option<String>,
    pub poll_interval: Duration,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Shared-files profile (`profile`); None → `AWS_PROFILE` → `default`.
    pub profile: Option<String>,
    /// Role to assume on top of the credential chain (cross-account clusters).
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
    pub role_session_name: Option<String>,
    /// STS API URL override.
    pub sts_endpoint: Option<String>,
    /// Extra CA certificates (PEM) to trust for AWS endpoints.
    pub ca_file: Option<std::path::PathBuf>,
    /// FIPS endpoints for ECS and STS (when no endpoint is given).
    pub use_fips_endpoint: bool,
    /// How long StartTask waits for an awsvpc task's address (0: not at all).
    pub address_timeout: Duration,
    /// Tail the containers' awslogs streams into the tasks' stdout (and lifecycle lines into
    /// their stderr).
    pub stream_logs: bool,
    /// How often each log stream is read.
    pub logs_poll_interval: Duration,
    /// CloudWatch Logs API URL override.
    pub logs_endpoint: Option<String>,
    /// Nomad API access and what the plugin does with it.
    pub handoff: HandoffConfig,
    /// `family_prefix`: put before the family of every task definition the driver registers
    /// from a job (`task_definition_json`, `task_definition_file`). Empty: none.
    pub family_prefix: String,
    /// `task_definition_cleanup`: how long a revision the driver registered must be unused
    /// before the sweep deregisters it; zero: never (the default).
    pub task_definition_cleanup: Duration,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            enabled: false,
            cluster: DEFAULT_CLUSTER.to_string(),
            region: None,
            endpoint: None,
            poll_interval: DEFAULT_POLL_INTERVAL,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            profile: None,
            role_arn: None,
            external_id: None,
            role_session_name: None,
            sts_endpoint: None,
            ca_file: None,
            use_fips_endpoint: false,
            address_timeout: DEFAULT_ADDRESS_TIMEOUT,
            stream_logs: true,
            logs_poll_interval: DEFAULT_LOGS_POLL_INTERVAL,
            logs_endpoint: None,
            handoff: HandoffConfig::default(),
            family_prefix: String::new(),
            task_definition_cleanup: Duration::ZERO,
        }
    }
}

/// `launch_type` of the task stanza.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchType {
    Fargate,
    Ec2,
    External,
}

impl LaunchType {
    pub const ALLOWED: &'static str = "FARGATE, EC2 or EXTERNAL";

    pub fn parse(s: &str) -> Option<LaunchType> {
        match s {
            "FARGATE" => Some(LaunchType::Fargate),
            "EC2" => Some(LaunchType::Ec2),
            "EXTERNAL" => Some(LaunchType::External),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LaunchType::Fargate => "FARGATE",
            LaunchType::Ec2 => "EC2",
            LaunchType::External => "EXTERNAL",
        }
    }
}

/// `network_configuration { aws_vpc_configuration { ... } }`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VpcConfig {
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    /// `ENABLED` or `DISABLED` (validated).
    pub assign_public_ip: Option<String>,
}

pub use crate::aws::ecs::{CapacityProviderStrategyItem, ContainerOverride, Placement};

/// The task stanza (`config { task { ... } }`), validated. Options are named as RunTask's
/// fields, in snake_case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSpec {
    /// A registered task definition (`family`, `family:revision`, ARN). Empty when the job
    /// writes its own definition (one of the two options below); the start resolves that to
    /// the ARN of a revision and sets it here.
    pub task_definition: String,
    /// `task_definition_json`: RegisterTaskDefinition's input, as the job wrote it (checked).
    pub task_definition_json: Option<String>,
    /// `task_definition_file`: a path inside the task's directory holding that JSON.
    pub task_definition_file: Option<String>,
    pub launch_type: Option<LaunchType>,
    pub vpc: Option<VpcConfig>,
    /// Per-task cluster; None: the plugin's.
    pub cluster: Option<String>,
    pub capacity_provider_strategy: Vec<CapacityProviderStrategyItem>,
    pub platform_version: Option<String>,
    pub enable_execute_command: Option<bool>,
    pub enable_ecs_managed_tags: Option<bool>,
    /// `TASK_DEFINITION`, `SERVICE` or `NONE`.
    pub propagate_tags: Option<String>,
    /// The job's own tags (the driver adds the Nomad identity tags).
    pub tags: Vec<(String, String)>,
    pub placement_constraints: Vec<Placement>,
    pub placement_strategy: Vec<Placement>,
    pub group: Option<String>,
    /// Replaces the driver's own `startedBy`.
    pub started_by: Option<String>,
    pub task_role_arn: Option<String>,
    pub execution_role_arn: Option<String>,
    /// Task-level cpu and memory overrides, as ECS writes them (`"512"`, `"1 vCPU"`, `"2GB"`).
    pub cpu: Option<String>,
    pub memory: Option<String>,
    pub container_overrides: Vec<ContainerOverride>,
    /// Pass the Nomad task's environment (its `env` and the NOMAD_* variables) to containers.
    pub inject_env: bool,
    /// The containers that get it; None: every essential container of the task definition.
    pub env_containers: Option<Vec<String>>,
}

impl Default for TaskSpec {
    fn default() -> Self {
        TaskSpec {
            task_definition: String::new(),
            task_definition_json: None,
            task_definition_file: None,
            launch_type: None,
            vpc: None,
            cluster: None,
            capacity_provider_strategy: Vec::new(),
            platform_version: None,
            enable_execute_command: None,
            enable_ecs_managed_tags: None,
            propagate_tags: None,
            tags: Vec::new(),
            placement_constraints: Vec::new(),
            placement_strategy: Vec::new(),
            group: None,
            started_by: None,
            task_role_arn: None,
            execution_role_arn: None,
            cpu: None,
            memory: None,
            container_overrides: Vec::new(),
            inject_env: true,
            env_containers: None,
        }
    }
}

/// Who a task is in Nomad's eyes: what events, stop reasons and tags name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskIdentity {
    /// Nomad's task id: `<alloc id>/<task name>/<random>`, new for each start.
    pub id: String,
    pub alloc_id: String,
    pub name: String,
    pub job_name: String,
    pub job_id: String,
    pub namespace: String,
    pub task_group: String,
    pub node_id: String,
    pub stdout_path: String,
    pub stderr_path: String,
    /// Nomad's allocation directory on the host (`<data_dir>/alloc/<alloc id>`; empty when Nomad
    /// sent none). The log tail keeps its stream positions in the task's directory below it.
    pub alloc_dir: String,
    /// NOMAD_ALLOC_INDEX: the allocation's slot in its task group.
    pub alloc_index: Option<u32>,
    /// NOMAD_REGION: the Nomad region the allocation runs in (part of the identity the driver
    /// tags every ECS task with).
    pub region: String,
    /// A hash of the task's driver config (the msgpack Nomad sends): equal configs, equal hash.
    pub config_hash: String,
}
