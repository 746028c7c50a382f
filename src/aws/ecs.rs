//! Typed ECS calls over [`JsonClient`]. Requests are built with
//! `serde_json::json!`, responses parsed by hand; field names follow the ECS
//! API model (botocore `ecs/2014-11-13/service-2.json`).

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::credentials::CredentialSource;
use super::error::{AwsError, ErrorKind};
use super::http::{default_endpoint, HttpConfig, JsonClient};

/// The SigV4 signing name of ECS.
pub const SERVICE: &str = "ecs";
/// The `X-Amz-Target` prefix of ECS.
pub const TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113";
/// Longest `reason` ECS accepts in StopTask.
pub const MAX_STOP_REASON_CHARS: usize = 255;
/// Most tags ECS allows on one resource (the API model's `Tags` max).
pub const MAX_TAGS_PER_RESOURCE: usize = 50;
/// Longest tag key ECS accepts, in characters.
pub const MAX_TAG_KEY_CHARS: usize = 128;
/// Longest tag value ECS accepts, in characters.
pub const MAX_TAG_VALUE_CHARS: usize = 256;
/// Largest ListTasks page (`maxResults` is 1..=100; ECS pages by 100 when it is absent).
pub const MAX_LIST_RESULTS: u32 = 100;
/// [`EcsClient::list_all_tasks`] gives up after this many pages, so that a misbehaving
/// endpoint cannot keep it paging forever.
pub const MAX_LIST_PAGES: usize = 100;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cluster {
    pub arn: String,
    pub name: String,
    /// `ACTIVE`, `PROVISIONING`, `DEPROVISIONING`, `FAILED`, `INACTIVE`.
    pub status: String,
}

/// One entry of an ECS `failures` list (e.g. `reason: "MISSING"`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failure {
    pub arn: Option<String>,
    pub reason: Option<String>,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DescribeClustersOutput {
    pub clusters: Vec<Cluster>,
    pub failures: Vec<Failure>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsVpcConfiguration {
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    /// `ENABLED` or `DISABLED`.
    pub assign_public_ip: Option<String>,
}

/// One entry of RunTask's `capacityProviderStrategy`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapacityProviderStrategyItem {
    pub capacity_provider: String,
    pub weight: Option<u32>,
    pub base: Option<u32>,
}

/// A `placementConstraints` (`type` + `expression`) or `placementStrategy` (`type` + `field`)
/// entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    pub kind: String,
    pub value: Option<String>,
}

/// One entry of `overrides.containerOverrides`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerOverride {
    pub name: String,
    pub command: Option<Vec<String>>,
    /// In the order given (ECS keeps the last value of a repeated name).
    pub environment: Vec<(String, String)>,
    pub cpu: Option<u32>,
    pub memory: Option<u32>,
    pub memory_reservation: Option<u32>,
}

/// RunTask's `overrides`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskOverride {
    pub task_role_arn: Option<String>,
    pub execution_role_arn: Option<String>,
    pub cpu: Option<String>,
    pub memory: Option<String>,
    pub container_overrides: Vec<ContainerOverride>,
}

impl TaskOverride {
    pub fn is_empty(&self) -> bool {
        *self == TaskOverride::default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunTaskInput {
    pub cluster: String,
    pub task_definition: String,
    /// `FARGATE`, `EC2`, `EXTERNAL`, ...; omitted when None.
    pub launch_type: Option<String>,
    pub capacity_provider_strategy: Vec<CapacityProviderStrategyItem>,
    pub platform_version: Option<String>,
    pub network: Option<AwsVpcConfiguration>,
    pub started_by: Option<String>,
    pub client_token: Option<String>,
    pub tags: Vec<(String, String)>,
    pub enable_execute_command: Option<bool>,
    pub enable_ecs_managed_tags: Option<bool>,
    pub propagate_tags: Option<String>,
    pub placement_constraints: Vec<Placement>,
    pub placement_strategy: Vec<Placement>,
    pub group: Option<String>,
    pub overrides: TaskOverride,
    /// Always 1 from the driver; 0 is sent as 1.
    pub count: u32,
}

impl Default for RunTaskInput {
    fn default() -> Self {
        RunTaskInput {
            cluster: String::new(),
            task_definition: String::new(),
            launch_type: None,
            capacity_provider_strategy: Vec::new(),
            platform_version: None,
            network: None,
            started_by: None,
            client_token: None,
            tags: Vec::new(),
            enable_execute_command: None,
            enable_ecs_managed_tags: None,
            propagate_tags: None,
            placement_constraints: Vec::new(),
            placement_strategy: Vec::new(),
            group: None,
            overrides: TaskOverride::default(),
            count: 1,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunTaskOutput {
    pub tasks: Vec<Task>,
    pub failures: Vec<Failure>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Container {
    pub name: String,
    pub container_arn: Option<String>,
    pub last_status: Option<String>,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Task {
    pub task_arn: String,
    pub cluster_arn: Option<String>,
    pub task_definition_arn: Option<String>,
    pub last_status: String,
    pub desired_status: String,
    pub stop_code: Option<String>,
    pub stopped_reason: Option<String>,
    /// Epoch seconds, as ECS sends them.
    pub created_at: Option<f64>,
    pub started_at: Option<f64>,
    pub stopping_at: Option<f64>,
    pub stopped_at: Option<f64>,
    pub containers: Vec<Container>,
    pub started_by: Option<String>,
    pub launch_type: Option<String>,
    pub attachments: Vec<Attachment>,
    /// The task's `tags` (key, value), in ECS's order. ECS sends them only when asked
    /// ([`EcsClient::describe_tasks_with_tags`]); otherwise empty.
    pub tags: Vec<(String, String)>,
    /// The task group (`family:<name>` unless RunTask named one).
    pub group: Option<String>,
}

/// One of a task's `attachments` (for awsvpc: `ElasticNetworkInterface`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attachment {
    pub kind: String,
    pub status: Option<String>,
    /// `details` name/value pairs (`privateIPv4Address`, `networkInterfaceId`, ...).
    pub details: Vec<(String, String)>,
}

impl Task {
    /// Has the task an elastic network interface (awsvpc networking)?
    pub fn has_eni(&self) -> bool {
        self.attachments.iter().any(|a| a.kind == "ElasticNetworkInterface")
    }

    /// The private IPv4 address of its ENI, once ECS knows it.
    pub fn private_ipv4(&self) -> Option<&str> {
        self.attachments
            .iter()
            .filter(|a| a.kind == "ElasticNetworkInterface")
            .flat_map(|a| a.details.iter())
            .find(|(k, v)| k == "privateIPv4Address" && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// The value of the tag `key` (tag keys are case-sensitive).
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DescribeTasksOutput {
    pub tasks: Vec<Task>,
    pub failures: Vec<Failure>,
}

/// ListTasks' filters and paging. `startedBy` must be the only filter when given (an ECS
/// rule, not checked here).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListTasksInput {
    /// Omitted when empty (ECS then uses the `default` cluster).
    pub cluster: String,
    pub started_by: Option<String>,
    pub family: Option<String>,
    /// `RUNNING`, `PENDING` or `STOPPED`.
    pub desired_status: Option<String>,
    /// The page size, 1..=100 (values outside are clamped into that range).
    pub max_results: Option<u32>,
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListTasksOutput {
    pub task_arns: Vec<String>,
    /// None on the last page (an empty token counts as none).
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerDefinition {
    pub name: String,
    /// ECS treats a missing `essential` as true.
    pub essential: bool,
    pub port_mappings: Vec<PortMapping>,
    pub log_configuration: Option<LogConfiguration>,
}

impl Default for ContainerDefinition {
    fn default() -> Self {
        ContainerDefinition {
            name: String::new(),
            essential: true,
            port_mappings: Vec::new(),
            log_configuration: None,
        }
    }
}

/// A container's `logConfiguration`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogConfiguration {
    /// `awslogs`, `awsfirelens`, `splunk`, ...
    pub log_driver: String,
    pub options: Vec<(String, String)>,
}

impl LogConfiguration {
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// One of a container definition's `portMappings`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortMapping {
    pub container_port: u16,
    /// The mapping's `name` (Service Connect); optional.
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskDefinition {
    pub arn: String,
    pub family: String,
    pub revision: i64,
    pub containers: Vec<ContainerDefinition>,
}

impl TaskDefinition {
    /// The names of the containers whose exit ends the task.
    pub fn essential_containers(&self) -> Vec<String> {
        self.containers
            .iter()
            .filter(|c| c.essential)
            .map(|c| c.name.clone())
            .collect()
    }
}

/// Typed ECS operations.
#[derive(Debug)]
pub struct EcsClient {
    json: JsonClient,
}

impl EcsClient {
    /// `endpoint` None (or empty) → the public endpoint of `region`.
    pub fn new(
        endpoint: Option<&str>,
        region: &str,
        creds: Arc<dyn CredentialSource>,
        cfg: &HttpConfig,
    ) -> Result<Self, AwsError> {
        let endpoint = match endpoint.map(str::trim).filter(|e| !e.is_empty()) {
            Some(e) => e.to_string(),
            None => default_endpoint(SERVICE, region.trim()),
        };
        let json = JsonClient::new(&endpoint, region, SERVICE, TARGET_PREFIX, creds, cfg)?;
        Ok(EcsClient { json })
    }

    pub fn endpoint(&self) -> &str {
        self.json.endpoint()
    }

    pub fn describe_clusters(&self, clusters: &[&str]) -> Result<DescribeClustersOutput, AwsError> {
        const OP: &str = "DescribeClusters";
        let v = self.json.call(OP, &json!({ "clusters": clusters }))?;
        parse_describe_clusters(&v).map_err(|e| decode_error(OP, e))
    }

    pub fn run_task(&self, input: &RunTaskInput) -> Result<RunTaskOutput, AwsError> {
        const OP: &str = "RunTask";
        let v = self.json.call(OP, &run_task_request(input))?;
        parse_tasks_and_failures(&v)
            .map(|(tasks, failures)| RunTaskOutput { tasks, failures })
            .map_err(|e| decode_error(OP, e))
    }

    /// The caller keeps `tasks` to at most 100 ARNs (the ECS limit).
    pub fn describe_tasks(&self, cluster: &str, tasks: &[String]) -> Result<DescribeTasksOutput, AwsError> {
        self.describe_tasks_including(cluster, tasks, false)
    }

    /// As [`EcsClient::describe_tasks`], with each task's tags (`include: ["TAGS"]`).
    pub fn describe_tasks_with_tags(&self, cluster: &str, tasks: &[String]) -> Result<DescribeTasksOutput, AwsError> {
        self.describe_tasks_including(cluster, tasks, true)
    }

    fn describe_tasks_including(
        &self,
        cluster: &str,
        tasks: &[String],
        include_tags: bool,
    ) -> Result<DescribeTasksOutput, AwsError> {
        const OP: &str = "DescribeTasks";
        let v = self
            .json
            .call(OP, &describe_tasks_request(cluster, tasks, include_tags))?;
        parse_tasks_and_failures(&v)
            .map(|(tasks, failures)| DescribeTasksOutput { tasks, failures })
            .map_err(|e| decode_error(OP, e))
    }

    /// One ListTasks page.
    pub fn list_tasks(&self, input: &ListTasksInput) -> Result<ListTasksOutput, AwsError> {
        const OP: &str = "ListTasks";
        let v = self.json.call(OP, &list_tasks_request(input))?;
        parse_list_tasks(&v).map_err(|e| decode_error(OP, e))
    }

    /// Every task ARN that matches `input`, following `nextToken` from `input.next_token`
    /// (None: the first page) with pages of `input.max_results` (default 100). ARNs that a
    /// later page repeats (tasks shifting while paging) are kept once, in first-seen order.
    ///
    /// A page without `nextToken` (or with an empty one) ends the listing. A `nextToken`
    /// seen before, or more than [`MAX_LIST_PAGES`] pages, is an error of kind
    /// [`ErrorKind::Decode`]: the endpoint is paging in a loop. Not retried here: wrap the
    /// whole call in the caller's retry policy.
    pub fn list_all_tasks(&self, input: &ListTasksInput) -> Result<Vec<String>, AwsError> {
        const OP: &str = "ListTasks";
        let mut page = ListTasksInput {
            max_results: Some(input.max_results.unwrap_or(MAX_LIST_RESULTS)),
            ..input.clone()
        };
        let mut seen_tokens: HashSet<String> = page.next_token.iter().cloned().collect();
        let mut seen_arns = HashSet::new();
        let mut arns = Vec::new();
        for _ in 0..MAX_LIST_PAGES {
            let out = self.list_tasks(&page)?;
            for arn in out.task_arns {
                if seen_arns.insert(arn.clone()) {
                    arns.push(arn);
                }
            }
            match out.next_token {
                None => return Ok(arns),
                Some(token) if !seen_tokens.insert(token.clone()) => {
                    return Err(AwsError::new(
                        ErrorKind::Decode,
                        OP,
                        "RepeatedNextToken",
                        "the endpoint answered a nextToken it had already given; stopped paging so as not to loop forever",
                        None,
                    ));
                }
                Some(token) => page.next_token = Some(token),
            }
        }
        Err(AwsError::new(
            ErrorKind::Decode,
            OP,
            "TooManyPages",
            format!(
                "still more results after {MAX_LIST_PAGES} pages ({} task ARNs); stopped paging so as not to loop forever",
                arns.len()
            ),
            None,
        ))
    }

    /// Adds tags to a resource (a task ARN, ...), replacing the value of keys it already has.
    /// More than [`MAX_TAGS_PER_RESOURCE`] tags, or a key or value longer than ECS allows (an
    /// empty key included), is refused locally with an error of kind [`ErrorKind::Client`].
    pub fn tag_resource(&self, resource_arn: &str, tags: &[(String, String)]) -> Result<(), AwsError> {
        const OP: &str = "TagResource";
        check_tags(tags).map_err(|e| e.with_operation(OP))?;
        self.json.call(OP, &tag_resource_request(resource_arn, tags))?;
        Ok(())
    }

    /// Removes the tags with these keys from a resource (keys it lacks are ignored by ECS).
    pub fn untag_resource(&self, resource_arn: &str, tag_keys: &[String]) -> Result<(), AwsError> {
        const OP: &str = "UntagResource";
        self.json.call(OP, &untag_resource_request(resource_arn, tag_keys))?;
        Ok(())
    }

    /// Stops a task; `reason` is cut to 255 characters (the ECS limit) and
    /// omitted when empty.
    pub fn stop_task(&self, cluster: &str, task: &str, reason: &str) -> Result<Task, AwsError> {
        const OP: &str = "StopTask";
        let v = self.json.call(OP, &stop_task_request(cluster, task, reason))?;
        object(&v, "response")
            .and_then(|o| o.get("task").ok_or_else(|| Missing("task".to_string())))
            .and_then(|t| parse_task(t, "task"))
            .map_err(|e| decode_error(OP, e))
    }

    /// `task_definition` is a family, `family:revision` or a full ARN.
    pub fn describe_task_definition(&self, task_definition: &str) -> Result<TaskDefinition, AwsError> {
        const OP: &str = "DescribeTaskDefinition";
        let v = self.json.call(OP, &json!({ "taskDefinition": task_definition }))?;
        object(&v, "response")
            .and_then(|o| {
                o.get("taskDefinition")
                    .ok_or_else(|| Missing("taskDefinition".to_string()))
            })
            .and_then(|t| parse_task_definition(t, "taskDefinition"))
            .map_err(|e| decode_error(OP, e))
    }

    /// DescribeTaskDefinition with `include: ["TAGS"]`: the definition and its tags.
    pub fn describe_task_definition_with_tags(
        &self,
        task_definition: &str,
    ) -> Result<(TaskDefinition, Vec<(String, String)>), AwsError> {
        const OP: &str = "DescribeTaskDefinition";
        let v = self
            .json
            .call(OP, &json!({ "taskDefinition": task_definition, "include": ["TAGS"] }))?;
        parse_task_definition_and_tags(&v).map_err(|e| decode_error(OP, e))
    }

    /// RegisterTaskDefinition. `input` is the whole request body (family, containerDefinitions,
    /// tags, ...), as `aws ecs register-task-definition --cli-input-json` takes it. Returns the
    /// new revision and its tags.
    pub fn register_task_definition(&self, input: &Value) -> Result<(TaskDefinition, Vec<(String, String)>), AwsError> {
        const OP: &str = "RegisterTaskDefinition";
        let v = self.json.call(OP, input)?;
        parse_task_definition_and_tags(&v).map_err(|e| decode_error(OP, e))
    }

    /// One page of ListTaskDefinitions for exactly the family `family` (ECS's `familyPrefix`
    /// is a whole family name; None: every family), with `status` (`ACTIVE` or `INACTIVE`),
    /// newest first (`sort: DESC`). Returns the ARNs and the next page's token.
    pub fn list_task_definitions(
        &self,
        family: Option<&str>,
        status: &str,
        next_token: Option<&str>,
    ) -> Result<(Vec<String>, Option<String>), AwsError> {
        const OP: &str = "ListTaskDefinitions";
        let v = self
            .json
            .call(OP, &list_task_definitions_request(family, status, next_token))?;
        let parsed = object(&v, "response").and_then(|o| {
            let arns = array(o, "taskDefinitionArns", "")?
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    a.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| Missing(format!("taskDefinitionArns[{i}]")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((arns, opt_str(o, "nextToken").filter(|t| !t.is_empty())))
        });
        parsed.map_err(|e| decode_error(OP, e))
    }

    /// DeregisterTaskDefinition of one revision (`family:revision` or its ARN).
    pub fn deregister_task_definition(&self, task_definition: &str) -> Result<(), AwsError> {
        const OP: &str = "DeregisterTaskDefinition";
        self.json.call(OP, &json!({ "taskDefinition": task_definition }))?;
        Ok(())
    }
}

// ---------------------------------------------------------------- requests

/// The RunTask request body.
pub fn run_task_request(input: &RunTaskInput) -> Value {
    let mut body = Map::new();
    if !input.cluster.is_empty() {
        body.insert("cluster".into(), json!(input.cluster));
    }
    body.insert("taskDefinition".into(), json!(input.task_definition));
    body.insert("count".into(), json!(input.count.max(1)));
    if let Some(lt) = input.launch_type.as_deref().filter(|s| !s.is_empty()) {
        body.insert("launchType".into(), json!(lt));
    }
    if let Some(net) = &input.network {
        let mut vpc = Map::new();
        if !net.subnets.is_empty() {
            vpc.insert("subnets".into(), json!(net.subnets));
        }
        if !net.security_groups.is_empty() {
            vpc.insert("securityGroups".into(), json!(net.security_groups));
        }
        if let Some(ip) = net.assign_public_ip.as_deref().filter(|s| !s.is_empty()) {
            vpc.insert("assignPublicIp".into(), json!(ip));
        }
        if !vpc.is_empty() {
            body.insert("networkConfiguration".into(), json!({ "awsvpcConfiguration": vpc }));
        }
    }
    if let Some(s) = input.started_by.as_deref().filter(|s| !s.is_empty()) {
        body.insert("startedBy".into(), json!(s));
    }
    if let Some(t) = input.client_token.as_deref().filter(|s| !s.is_empty()) {
        body.insert("clientToken".into(), json!(t));
    }
    if !input.tags.is_empty() {
        let tags: Vec<Value> = input
            .tags
            .iter()
            .map(|(k, v)| json!({ "key": k, "value": v }))
            .collect();
        body.insert("tags".into(), Value::Array(tags));
    }
    if !input.capacity_provider_strategy.is_empty() {
        let items: Vec<Value> = input
            .capacity_provider_strategy
            .iter()
            .map(|c| {
                let mut m = Map::new();
                m.insert("capacityProvider".into(), json!(c.capacity_provider));
                if let Some(w) = c.weight {
                    m.insert("weight".into(), json!(w));
                }
                if let Some(b) = c.base {
                    m.insert("base".into(), json!(b));
                }
                Value::Object(m)
            })
            .collect();
        body.insert("capacityProviderStrategy".into(), Value::Array(items));
    }
    let mut put_str = |key: &str, v: &Option<String>| {
        if let Some(v) = v.as_deref().filter(|s| !s.is_empty()) {
            body.insert(key.into(), json!(v));
        }
    };
    put_str("platformVersion", &input.platform_version);
    put_str("propagateTags", &input.propagate_tags);
    put_str("group", &input.group);
    if let Some(b) = input.enable_execute_command {
        body.insert("enableExecuteCommand".into(), json!(b));
    }
    if let Some(b) = input.enable_ecs_managed_tags {
        body.insert("enableECSManagedTags".into(), json!(b));
    }
    let placements = |items: &[Placement], value_key: &str| -> Value {
        Value::Array(
            items
                .iter()
                .map(|p| {
                    let mut m = Map::new();
                    m.insert("type".into(), json!(p.kind));
                    if let Some(v) = p.value.as_deref().filter(|s| !s.is_empty()) {
                        m.insert(value_key.into(), json!(v));
                    }
                    Value::Object(m)
                })
                .collect(),
        )
    };
    if !input.placement_constraints.is_empty() {
        body.insert(
            "placementConstraints".into(),
            placements(&input.placement_constraints, "expression"),
        );
    }
    if !input.placement_strategy.is_empty() {
        body.insert(
            "placementStrategy".into(),
            placements(&input.placement_strategy, "field"),
        );
    }
    if !input.overrides.is_empty() {
        body.insert("overrides".into(), overrides_json(&input.overrides));
    }
    Value::Object(body)
}

/// RunTask's `overrides` object (ECS limits its JSON to 8192 bytes; see [`MAX_OVERRIDES_BYTES`]).
pub fn overrides_json(o: &TaskOverride) -> Value {
    let mut m = Map::new();
    for (key, v) in [
        ("taskRoleArn", &o.task_role_arn),
        ("executionRoleArn", &o.execution_role_arn),
        ("cpu", &o.cpu),
        ("memory", &o.memory),
    ] {
        if let Some(v) = v.as_deref().filter(|s| !s.is_empty()) {
            m.insert(key.into(), json!(v));
        }
    }
    if !o.container_overrides.is_empty() {
        let list: Vec<Value> = o
            .container_overrides
            .iter()
            .map(|c| {
                let mut cm = Map::new();
                cm.insert("name".into(), json!(c.name));
                if let Some(cmd) = &c.command {
                    cm.insert("command".into(), json!(cmd));
                }
                if !c.environment.is_empty() {
                    let env: Vec<Value> = c
                        .environment
                        .iter()
                        .map(|(k, v)| json!({ "name": k, "value": v }))
                        .collect();
                    cm.insert("environment".into(), Value::Array(env));
                }
                for (key, v) in [
                    ("cpu", c.cpu),
                    ("memory", c.memory),
                    ("memoryReservation", c.memory_reservation),
                ] {
                    if let Some(v) = v {
                        cm.insert(key.into(), json!(v));
                    }
                }
                Value::Object(cm)
            })
            .collect();
        m.insert("containerOverrides".into(), Value::Array(list));
    }
    Value::Object(m)
}

/// ECS's limit on the size of RunTask's `overrides` JSON.
pub const MAX_OVERRIDES_BYTES: usize = 8192;

/// The StopTask request body.
pub fn stop_task_request(cluster: &str, task: &str, reason: &str) -> Value {
    let mut body = Map::new();
    if !cluster.is_empty() {
        body.insert("cluster".into(), json!(cluster));
    }
    body.insert("task".into(), json!(task));
    let reason = reason.trim();
    if !reason.is_empty() {
        let cut: String = reason.chars().take(MAX_STOP_REASON_CHARS).collect();
        body.insert("reason".into(), json!(cut));
    }
    Value::Object(body)
}

/// The DescribeTasks request body; `include_tags` asks for the tasks' tags.
pub fn describe_tasks_request(cluster: &str, tasks: &[String], include_tags: bool) -> Value {
    let mut body = Map::new();
    body.insert("cluster".into(), json!(cluster));
    body.insert("tasks".into(), json!(tasks));
    if include_tags {
        body.insert("include".into(), json!(["TAGS"]));
    }
    Value::Object(body)
}

/// The ListTasks request body: absent or empty fields are omitted, `maxResults` is clamped
/// to 1..=100.
pub fn list_tasks_request(input: &ListTasksInput) -> Value {
    let mut body = Map::new();
    if !input.cluster.is_empty() {
        body.insert("cluster".into(), json!(input.cluster));
    }
    for (key, v) in [
        ("startedBy", &input.started_by),
        ("family", &input.family),
        ("desiredStatus", &input.desired_status),
    ] {
        if let Some(v) = v.as_deref().filter(|s| !s.is_empty()) {
            body.insert(key.into(), json!(v));
        }
    }
    if let Some(n) = input.max_results {
        body.insert("maxResults".into(), json!(n.clamp(1, MAX_LIST_RESULTS)));
    }
    if let Some(t) = input.next_token.as_deref().filter(|s| !s.is_empty()) {
        body.insert("nextToken".into(), json!(t));
    }
    Value::Object(body)
}

/// The ListTaskDefinitions request body: one family (None: all), one status, newest first,
/// 100 a page.
pub fn list_task_definitions_request(family: Option<&str>, status: &str, next_token: Option<&str>) -> Value {
    let mut body = Map::new();
    if let Some(f) = family {
        body.insert("familyPrefix".into(), json!(f));
    }
    body.insert("status".into(), json!(status));
    body.insert("sort".into(), json!("DESC"));
    body.insert("maxResults".into(), json!(MAX_LIST_RESULTS));
    if let Some(t) = next_token.filter(|t| !t.is_empty()) {
        body.insert("nextToken".into(), json!(t));
    }
    Value::Object(body)
}

/// The TagResource request body (limits are checked by [`EcsClient::tag_resource`]).
pub fn tag_resource_request(resource_arn: &str, tags: &[(String, String)]) -> Value {
    let tags: Vec<Value> = tags.iter().map(|(k, v)| json!({ "key": k, "value": v })).collect();
    json!({ "resourceArn": resource_arn, "tags": tags })
}

/// The UntagResource request body.
pub fn untag_resource_request(resource_arn: &str, tag_keys: &[String]) -> Value {
    json!({ "resourceArn": resource_arn, "tagKeys": tag_keys })
}

/// ECS's limits on one TagResource call: at most 50 tags, keys of 1 to 128 characters,
/// values of at most 256.
fn check_tags(tags: &[(String, String)]) -> Result<(), AwsError> {
    let refuse = |code: &str, message: String| Err(AwsError::new(ErrorKind::Client, "", code, message, None));
    if tags.len() > MAX_TAGS_PER_RESOURCE {
        return refuse(
            "TooManyTags",
            format!(
                "{} tags given; ECS allows at most {MAX_TAGS_PER_RESOURCE} tags per resource",
                tags.len()
            ),
        );
    }
    for (key, value) in tags {
        let key_chars = key.chars().count();
        if key_chars == 0 || key_chars > MAX_TAG_KEY_CHARS {
            return refuse(
                "InvalidTag",
                format!("tag key {key:?} has {key_chars} characters; ECS wants 1 to {MAX_TAG_KEY_CHARS}"),
            );
        }
        let value_chars = value.chars().count();
        if value_chars > MAX_TAG_VALUE_CHARS {
            return refuse(
                "InvalidTag",
                format!(
                    "the value of tag {key:?} has {value_chars} characters; ECS allows at most {MAX_TAG_VALUE_CHARS}"
                ),
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- responses

/// A response field that is missing or has the wrong type; holds its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing(pub String);

fn decode_error(operation: &str, e: Missing) -> AwsError {
    AwsError::new(
        ErrorKind::Decode,
        operation,
        "InvalidResponse",
        format!("the response has no valid {} (missing or of the wrong type)", e.0),
        None,
    )
}

fn object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, Missing> {
    v.as_object().ok_or_else(|| Missing(path.to_string()))
}

fn opt_str(o: &Map<String, Value>, key: &str) -> Option<String> {
    o.get(key).and_then(Value::as_str).map(str::to_string)
}

fn req_str(o: &Map<String, Value>, key: &str, path: &str) -> Result<String, Missing> {
    opt_str(o, key).ok_or_else(|| Missing(format!("{path}.{key}")))
}

/// A timestamp as epoch seconds: a JSON number, or a string holding one.
fn opt_time(o: &Map<String, Value>, key: &str) -> Option<f64> {
    match o.get(key)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

/// An integer that some emulators send as a float (`0.0`).
fn opt_int(o: &Map<String, Value>, key: &str) -> Option<i64> {
    let n = o.get(key)?.as_number()?;
    n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
            .map(|f| f as i64)
    })
}

/// The array at `key`; absent or null is empty, anything else is an error.
fn array<'a>(o: &'a Map<String, Value>, key: &str, path: &str) -> Result<&'a [Value], Missing> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a.as_slice()),
        Some(_) => Err(Missing(format!("{path}{key}"))),
    }
}

fn parse_failures(o: &Map<String, Value>) -> Result<Vec<Failure>, Missing> {
    array(o, "failures", "")?
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let f = object(f, &format!("failures[{i}]"))?;
            Ok(Failure {
                arn: opt_str(f, "arn"),
                reason: opt_str(f, "reason"),
                detail: opt_str(f, "detail"),
            })
        })
        .collect()
}

pub fn parse_cluster(v: &Value, path: &str) -> Result<Cluster, Missing> {
    let o = object(v, path)?;
    Ok(Cluster {
        arn: req_str(o, "clusterArn", path)?,
        name: req_str(o, "clusterName", path)?,
        status: req_str(o, "status", path)?,
    })
}

pub fn parse_describe_clusters(v: &Value) -> Result<DescribeClustersOutput, Missing> {
    let o = object(v, "response")?;
    let clusters = array(o, "clusters", "")?
        .iter()
        .enumerate()
        .map(|(i, c)| parse_cluster(c, &format!("clusters[{i}]")))
        .collect::<Result<_, _>>()?;
    Ok(DescribeClustersOutput {
        clusters,
        failures: parse_failures(o)?,
    })
}

fn parse_container(v: &Value, path: &str) -> Result<Container, Missing> {
    let o = object(v, path)?;
    Ok(Container {
        name: req_str(o, "name", path)?,
        container_arn: opt_str(o, "containerArn"),
        last_status: opt_str(o, "lastStatus"),
        exit_code: opt_int(o, "exitCode"),
        reason: opt_str(o, "reason"),
    })
}

pub fn parse_task(v: &Value, path: &str) -> Result<Task, Missing> {
    let o = object(v, path)?;
    let containers = array(o, "containers", &format!("{path}."))?
        .iter()
        .enumerate()
        .map(|(i, c)| parse_container(c, &format!("{path}.containers[{i}]")))
        .collect::<Result<_, _>>()?;
    Ok(Task {
        task_arn: req_str(o, "taskArn", path)?,
        cluster_arn: opt_str(o, "clusterArn"),
        task_definition_arn: opt_str(o, "taskDefinitionArn"),
        last_status: req_str(o, "lastStatus", path)?,
        desired_status: req_str(o, "desiredStatus", path)?,
        stop_code: opt_str(o, "stopCode"),
        stopped_reason: opt_str(o, "stoppedReason"),
        created_at: opt_time(o, "createdAt"),
        started_at: opt_time(o, "startedAt"),
        stopping_at: opt_time(o, "stoppingAt"),
        stopped_at: opt_time(o, "stoppedAt"),
        containers,
        started_by: opt_str(o, "startedBy"),
        // moto sends "" for capacity-provider launches: treat as absent.
        launch_type: opt_str(o, "launchType").filter(|s| !s.is_empty()),
        attachments: o
            .get("attachments")
            .and_then(Value::as_array)
            .map(|list| list.iter().filter_map(parse_attachment).collect())
            .unwrap_or_default(),
        tags: parse_tags(o, path)?,
        group: opt_str(o, "group"),
    })
}

/// `tags: [{key, value}]`; absent or null is empty, a missing `value` is "".
fn parse_tags(o: &Map<String, Value>, path: &str) -> Result<Vec<(String, String)>, Missing> {
    array(o, "tags", &format!("{path}."))?
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let tpath = format!("{path}.tags[{i}]");
            let t = object(t, &tpath)?;
            let key = req_str(t, "key", &tpath)?;
            let value = match t.get("value") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(_) => return Err(Missing(format!("{tpath}.value"))),
            };
            Ok((key, value))
        })
        .collect()
}

/// `{taskArns: [...], nextToken}` as ListTasks returns it.
pub fn parse_list_tasks(v: &Value) -> Result<ListTasksOutput, Missing> {
    let o = object(v, "response")?;
    let task_arns = array(o, "taskArns", "")?
        .iter()
        .enumerate()
        .map(|(i, a)| {
            a.as_str()
                .map(str::to_string)
                .ok_or_else(|| Missing(format!("taskArns[{i}]")))
        })
        .collect::<Result<_, _>>()?;
    let next_token = match o.get("nextToken") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(Missing("nextToken".into())),
    };
    Ok(ListTasksOutput { task_arns, next_token })
}

/// An attachment; malformed ones are skipped (they only add information).
fn parse_attachment(v: &Value) -> Option<Attachment> {
    let o = v.as_object()?;
    Some(Attachment {
        kind: opt_str(o, "type")?,
        status: opt_str(o, "status"),
        details: o
            .get("details")
            .and_then(Value::as_array)
            .map(|d| {
                d.iter()
                    .filter_map(|kv| {
                        Some((
                            kv.get("name")?.as_str()?.to_string(),
                            kv.get("value")?.as_str()?.to_string(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// `{tasks: [...], failures: [...]}` as RunTask and DescribeTasks return it.
pub fn parse_tasks_and_failures(v: &Value) -> Result<(Vec<Task>, Vec<Failure>), Missing> {
    let o = object(v, "response")?;
    let tasks = array(o, "tasks", "")?
        .iter()
        .enumerate()
        .map(|(i, t)| parse_task(t, &format!("tasks[{i}]")))
        .collect::<Result<_, _>>()?;
    Ok((tasks, parse_failures(o)?))
}

pub fn parse_task_definition(v: &Value, path: &str) -> Result<TaskDefinition, Missing> {
    let o = object(v, path)?;
    let containers = array(o, "containerDefinitions", &format!("{path}."))?
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let cpath = format!("{path}.containerDefinitions[{i}]");
            let c = object(c, &cpath)?;
            Ok(ContainerDefinition {
                name: req_str(c, "name", &cpath)?,
                essential: c.get("essential").and_then(Value::as_bool).unwrap_or(true),
                port_mappings: c
                    .get("portMappings")
                    .and_then(Value::as_array)
                    .map(|list| {
                        list.iter()
                            .filter_map(|m| {
                                let port = m.get("containerPort")?.as_u64()?;
                                Some(PortMapping {
                                    container_port: u16::try_from(port).ok()?,
                                    name: m.get("name").and_then(Value::as_str).map(str::to_string),
                                })
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                log_configuration: c.get("logConfiguration").and_then(|l| {
                    Some(LogConfiguration {
                        log_driver: l.get("logDriver")?.as_str()?.to_string(),
                        options: l
                            .get("options")
                            .and_then(Value::as_object)
                            .map(|o| {
                                o.iter()
                                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    })
                }),
            })
        })
        .collect::<Result<_, Missing>>()?;
    Ok(TaskDefinition {
        arn: req_str(o, "taskDefinitionArn", path)?,
        family: req_str(o, "family", path)?,
        revision: opt_int(o, "revision").ok_or_else(|| Missing(format!("{path}.revision")))?,
        containers,
    })
}

/// `{taskDefinition: {...}, tags: [...]}` as RegisterTaskDefinition and DescribeTaskDefinition
/// (with `include: ["TAGS"]`) return it.
pub fn parse_task_definition_and_tags(v: &Value) -> Result<(TaskDefinition, Vec<(String, String)>), Missing> {
    let o = object(v, "response")?;
    let def = o
        .get("taskDefinition")
        .ok_or_else(|| Missing("taskDefinition".to_string()))
        .and_then(|t| parse_task_definition(t, "taskDefinition"))?;
    Ok((def, parse_tags(o, "response")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_definition_registry_calls_follow_the_api_model() {
        assert_eq!(
            list_task_definitions_request(Some("web"), "ACTIVE", None),
            json!({"familyPrefix": "web", "status": "ACTIVE", "sort": "DESC", "maxResults": 100})
        );
        assert_eq!(
            list_task_definitions_request(None, "ACTIVE", None),
            json!({"status": "ACTIVE", "sort": "DESC", "maxResults": 100})
        );
        assert_eq!(
            list_task_definitions_request(Some("web"), "INACTIVE", Some("t"))["nextToken"],
            "t"
        );
        let v = json!({"taskDefinition": {"taskDefinitionArn": "arn:aws:ecs:us-east-1:1:task-definition/web:3",
            "family": "web", "revision": 3, "containerDefinitions": [{"name": "web", "essential": true}]},
            "tags": [{"key": "nomad:taskdef-hash", "value": "abc"}]});
        let (def, tags) = parse_task_definition_and_tags(&v).unwrap();
        assert_eq!(def.revision, 3);
        assert_eq!(tags, [("nomad:taskdef-hash".to_string(), "abc".to_string())]);
        let (_, none) = parse_task_definition_and_tags(&json!({"taskDefinition": v["taskDefinition"]})).unwrap();
        assert!(none.is_empty());
        assert!(parse_task_definition_and_tags(&json!({"tags": []})).is_err());
    }

    #[test]
    fn run_task_request_options_follow_the_api_model() {
        let input = RunTaskInput {
            cluster: "c".into(),
            task_definition: "web".into(),
            capacity_provider_strategy: vec![
                CapacityProviderStrategyItem {
                    capacity_provider: "FARGATE_SPOT".into(),
                    weight: Some(3),
                    base: None,
                },
                CapacityProviderStrategyItem {
                    capacity_provider: "FARGATE".into(),
                    weight: Some(1),
                    base: Some(1),
                },
            ],
            platform_version: Some("1.4.0".into()),
            enable_execute_command: Some(true),
            enable_ecs_managed_tags: Some(false),
            propagate_tags: Some("TASK_DEFINITION".into()),
            placement_constraints: vec![Placement {
                kind: "memberOf".into(),
                value: Some("attribute:ecs.instance-type =~ t3.*".into()),
            }],
            placement_strategy: vec![Placement {
                kind: "spread".into(),
                value: Some("attribute:ecs.availability-zone".into()),
            }],
            group: Some("family:web".into()),
            overrides: TaskOverride {
                task_role_arn: Some("arn:aws:iam::1:role/t".into()),
                execution_role_arn: None,
                cpu: Some("512".into()),
                memory: None,
                container_overrides: vec![ContainerOverride {
                    name: "app".into(),
                    command: Some(vec!["serve".into()]),
                    environment: vec![("A".into(), "1".into())],
                    cpu: None,
                    memory: Some(256),
                    memory_reservation: Some(128),
                }],
            },
            ..Default::default()
        };
        assert_eq!(
            run_task_request(&input),
            json!({
                "cluster": "c", "taskDefinition": "web", "count": 1,
                "capacityProviderStrategy": [
                    {"capacityProvider": "FARGATE_SPOT", "weight": 3},
                    {"capacityProvider": "FARGATE", "weight": 1, "base": 1}],
                "platformVersion": "1.4.0", "enableExecuteCommand": true, "enableECSManagedTags": false,
                "propagateTags": "TASK_DEFINITION",
                "placementConstraints": [{"type": "memberOf", "expression": "attribute:ecs.instance-type =~ t3.*"}],
                "placementStrategy": [{"type": "spread", "field": "attribute:ecs.availability-zone"}],
                "group": "family:web",
                "overrides": {"taskRoleArn": "arn:aws:iam::1:role/t", "cpu": "512", "containerOverrides": [
                    {"name": "app", "command": ["serve"], "environment": [{"name": "A", "value": "1"}],
                     "memory": 256, "memoryReservation": 128}]}
            })
        );
    }

    #[test]
    fn run_task_request_full() {
        let input = RunTaskInput {
            cluster: "c1".into(),
            task_definition: "web:3".into(),
            launch_type: Some("FARGATE".into()),
            network: Some(AwsVpcConfiguration {
                subnets: vec!["subnet-1".into(), "subnet-2".into()],
                security_groups: vec!["sg-1".into()],
                assign_public_ip: Some("ENABLED".into()),
            }),
            started_by: Some("nomad-abc".into()),
            client_token: Some("alloc-1-task".into()),
            tags: vec![("nomad:alloc".into(), "a1".into()), ("k".into(), "".into())],
            count: 1,
            ..Default::default()
        };
        assert_eq!(
            run_task_request(&input),
            json!({
                "cluster": "c1",
                "taskDefinition": "web:3",
                "count": 1,
                "launchType": "FARGATE",
                "networkConfiguration": {"awsvpcConfiguration": {
                    "subnets": ["subnet-1", "subnet-2"],
                    "securityGroups": ["sg-1"],
                    "assignPublicIp": "ENABLED"
                }},
                "startedBy": "nomad-abc",
                "clientToken": "alloc-1-task",
                "tags": [{"key": "nomad:alloc", "value": "a1"}, {"key": "k", "value": ""}]
            })
        );
    }

    #[test]
    fn run_task_request_minimal_omits_empty_fields() {
        let input = RunTaskInput {
            cluster: "c1".into(),
            task_definition: "web".into(),
            network: Some(AwsVpcConfiguration {
                subnets: vec!["subnet-1".into()],
                ..Default::default()
            }),
            count: 0,
            ..Default::default()
        };
        assert_eq!(
            run_task_request(&input),
            json!({
                "cluster": "c1",
                "taskDefinition": "web",
                "count": 1,
                "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"]}}
            })
        );
        assert_eq!(RunTaskInput::default().count, 1);
        let no_net = RunTaskInput {
            task_definition: "web".into(),
            network: Some(AwsVpcConfiguration::default()),
            ..Default::default()
        };
        assert_eq!(run_task_request(&no_net), json!({"taskDefinition": "web", "count": 1}));
    }

    #[test]
    fn stop_task_request_cuts_reason() {
        assert_eq!(
            stop_task_request("c1", "arn:t", "  stopped by nomad  "),
            json!({"cluster": "c1", "task": "arn:t", "reason": "stopped by nomad"})
        );
        assert_eq!(stop_task_request("c1", "t", ""), json!({"cluster": "c1", "task": "t"}));
        let long = "é".repeat(400);
        let v = stop_task_request("c1", "t", &long);
        assert_eq!(v["reason"].as_str().unwrap().chars().count(), 255);
    }

    /// Shape of a real ECS RunTask/DescribeTasks task (fields per the API model).
    fn real_task() -> Value {
        json!({
            "attachments": [{"id": "a", "type": "ElasticNetworkInterface", "status": "ATTACHED",
                "details": [{"name": "privateIPv4Address", "value": "10.0.1.5"}]}],
            "availabilityZone": "us-east-1a",
            "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/c1",
            "containers": [
                {"containerArn": "arn:aws:ecs:us-east-1:123456789012:container/c1/abc/def",
                 "taskArn": "arn:aws:ecs:us-east-1:123456789012:task/c1/abc",
                 "name": "app", "image": "nginx", "lastStatus": "STOPPED", "exitCode": 137,
                 "reason": "OutOfMemoryError: Container killed due to memory usage",
                 "networkInterfaces": [], "cpu": "0"},
                {"name": "sidecar", "lastStatus": "RUNNING"}
            ],
            "cpu": "256", "memory": "512",
            "createdAt": 1700000000.123,
            "desiredStatus": "STOPPED",
            "lastStatus": "STOPPED",
            "launchType": "FARGATE",
            "startedAt": 1700000010.5,
            "startedBy": "nomad-abc",
            "stopCode": "EssentialContainerExited",
            "stoppedAt": 1700000100,
            "stoppedReason": "Essential container in task exited",
            "stoppingAt": 1700000090.0,
            "taskArn": "arn:aws:ecs:us-east-1:123456789012:task/c1/abc",
            "taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/web:3",
            "version": 4
        })
    }

    #[test]
    fn parse_real_task_shape() {
        let (tasks, failures) = parse_tasks_and_failures(&json!({
            "tasks": [real_task()],
            "failures": [{"arn": "arn:aws:ecs:us-east-1:123456789012:task/c1/zzz", "reason": "MISSING"}]
        }))
        .unwrap();
        assert_eq!(
            failures,
            vec![Failure {
                arn: Some("arn:aws:ecs:us-east-1:123456789012:task/c1/zzz".into()),
                reason: Some("MISSING".into()),
                detail: None
            }]
        );
        let t = &tasks[0];
        assert_eq!(t.task_arn, "arn:aws:ecs:us-east-1:123456789012:task/c1/abc");
        assert_eq!(t.last_status, "STOPPED");
        assert_eq!(t.desired_status, "STOPPED");
        assert_eq!(t.stop_code.as_deref(), Some("EssentialContainerExited"));
        assert_eq!(t.created_at, Some(1700000000.123));
        assert_eq!(t.started_at, Some(1700000010.5));
        assert_eq!(t.stopping_at, Some(1700000090.0));
        assert_eq!(t.stopped_at, Some(1700000100.0));
        assert_eq!(t.launch_type.as_deref(), Some("FARGATE"));
        assert_eq!(t.started_by.as_deref(), Some("nomad-abc"));
        assert_eq!(
            t.task_definition_arn.as_deref(),
            Some("arn:aws:ecs:us-east-1:123456789012:task-definition/web:3")
        );
        assert_eq!(t.containers.len(), 2);
        assert_eq!(t.containers[0].exit_code, Some(137));
        assert_eq!(t.containers[0].last_status.as_deref(), Some("STOPPED"));
        assert!(t.containers[0]
            .reason
            .as_deref()
            .unwrap()
            .starts_with("OutOfMemoryError"));
        assert_eq!(t.containers[1].exit_code, None);
        assert_eq!(t.containers[1].container_arn, None);
    }

    #[test]
    fn parse_moto_task_shape() {
        // As moto 5 returns it: launchType "" with capacity providers, a
        // container with exitCode 0, no timestamps, float-looking numbers.
        let v = json!({"tasks": [{
            "attachments": [], "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/c1",
            "containers": [{"containerArn": "arn:aws:ecs:us-east-1:123456789012:container/c1/x/y",
                "name": "app", "lastStatus": "PENDING", "exitCode": 0.0,
                "networkBindings": [], "taskArn": "arn:aws:ecs:us-east-1:123456789012:task/c1/x"}],
            "desiredStatus": "RUNNING", "lastStatus": "RUNNING", "launchType": "",
            "overrides": {}, "startedBy": "nomad", "stoppedReason": "",
            "tags": [], "taskArn": "arn:aws:ecs:us-east-1:123456789012:task/c1/x",
            "taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/web:1",
            "createdAt": "1700000000.5"
        }], "failures": []});
        let (tasks, failures) = parse_tasks_and_failures(&v).unwrap();
        assert!(failures.is_empty());
        let t = &tasks[0];
        assert_eq!(t.launch_type, None);
        assert_eq!(t.containers[0].exit_code, Some(0));
        assert_eq!(t.created_at, Some(1700000000.5));
        assert_eq!(t.stopped_at, None);
        assert_eq!(t.stop_code, None);
        assert_eq!(t.stopped_reason.as_deref(), Some(""));
    }

    #[test]
    fn missing_required_fields_are_named() {
        let mut t = real_task();
        t.as_object_mut().unwrap().remove("taskArn");
        let e = parse_tasks_and_failures(&json!({"tasks": [t]})).unwrap_err();
        assert_eq!(e, Missing("tasks[0].taskArn".into()));
        let err = decode_error("DescribeTasks", e);
        assert_eq!(err.kind, ErrorKind::Decode);
        assert!(err.to_string().contains("tasks[0].taskArn"), "{err}");

        let mut t = real_task();
        t["containers"][1].as_object_mut().unwrap().remove("name");
        let e = parse_tasks_and_failures(&json!({"tasks": [t]})).unwrap_err();
        assert_eq!(e, Missing("tasks[0].containers[1].name".into()));

        let e = parse_tasks_and_failures(&json!({"tasks": {"a": 1}})).unwrap_err();
        assert_eq!(e, Missing("tasks".into()));
        let e = parse_tasks_and_failures(&json!([1])).unwrap_err();
        assert_eq!(e, Missing("response".into()));
        // Absent lists are empty, not errors.
        assert_eq!(parse_tasks_and_failures(&json!({})).unwrap(), (vec![], vec![]));
    }

    #[test]
    fn parse_clusters() {
        let v = json!({
            "clusters": [{
                "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/c1",
                "clusterName": "c1", "status": "ACTIVE",
                "registeredContainerInstancesCount": 0, "runningTasksCount": 1,
                "pendingTasksCount": 0, "activeServicesCount": 0,
                "statistics": [], "tags": [], "settings": [{"name": "containerInsights", "value": "disabled"}],
                "capacityProviders": ["FARGATE"], "defaultCapacityProviderStrategy": []
            }],
            "failures": [{"arn": "arn:aws:ecs:us-east-1:123456789012:cluster/nope", "reason": "MISSING"}]
        });
        let out = parse_describe_clusters(&v).unwrap();
        assert_eq!(
            out.clusters,
            vec![Cluster {
                arn: "arn:aws:ecs:us-east-1:123456789012:cluster/c1".into(),
                name: "c1".into(),
                status: "ACTIVE".into()
            }]
        );
        assert_eq!(out.failures[0].reason.as_deref(), Some("MISSING"));
        let e = parse_describe_clusters(&json!({"clusters": [{"clusterName": "c1"}]})).unwrap_err();
        assert_eq!(e, Missing("clusters[0].clusterArn".into()));
    }

    #[test]
    fn parse_task_definitions() {
        let v = json!({
            "taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/web:3",
            "containerDefinitions": [
                {"name": "app", "image": "nginx", "cpu": 0, "memory": 512, "essential": true,
                 "portMappings": [{"containerPort": 80, "hostPort": 80, "protocol": "tcp", "name": "http"},
                                  {"containerPort": 9100, "protocol": "tcp"}, {"containerPort": 99999}],
                 "environment": [], "mountPoints": [], "volumesFrom": []},
                {"name": "log", "image": "fluent", "essential": false},
                {"name": "init", "image": "busybox"}
            ],
            "family": "web", "revision": 3, "volumes": [], "status": "ACTIVE",
            "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
            "cpu": "256", "memory": "512", "registeredAt": 1700000000.0
        });
        let td = parse_task_definition(&v, "taskDefinition").unwrap();
        assert_eq!(td.arn, "arn:aws:ecs:us-east-1:123456789012:task-definition/web:3");
        assert_eq!(td.family, "web");
        assert_eq!(td.revision, 3);
        assert_eq!(
            td.containers,
            vec![
                ContainerDefinition {
                    name: "app".into(),
                    essential: true,
                    port_mappings: vec![
                        PortMapping {
                            container_port: 80,
                            name: Some("http".into())
                        },
                        PortMapping {
                            container_port: 9100,
                            name: None
                        },
                    ],
                    log_configuration: None,
                },
                ContainerDefinition {
                    name: "log".into(),
                    essential: false,
                    ..Default::default()
                },
                ContainerDefinition {
                    name: "init".into(),
                    essential: true,
                    ..Default::default()
                },
            ]
        );
        let mut bad = v.clone();
        bad.as_object_mut().unwrap().remove("revision");
        assert_eq!(
            parse_task_definition(&bad, "taskDefinition").unwrap_err(),
            Missing("taskDefinition.revision".into())
        );
        assert!(ContainerDefinition::default().essential);
    }

    #[test]
    fn describe_tasks_request_includes_tags_only_when_asked() {
        let arns = vec!["arn:t1".to_string(), "arn:t2".to_string()];
        assert_eq!(
            describe_tasks_request("c1", &arns, false),
            json!({"cluster": "c1", "tasks": ["arn:t1", "arn:t2"]})
        );
        assert_eq!(
            describe_tasks_request("c1", &arns, true),
            json!({"cluster": "c1", "tasks": ["arn:t1", "arn:t2"], "include": ["TAGS"]})
        );
    }

    #[test]
    fn list_tasks_request_omits_absent_fields() {
        assert_eq!(list_tasks_request(&ListTasksInput::default()), json!({}));
        let input = ListTasksInput {
            cluster: "c1".into(),
            started_by: Some("slot-a".into()),
            family: Some("web".into()),
            desired_status: Some("STOPPED".into()),
            max_results: Some(25),
            next_token: Some("tok".into()),
        };
        assert_eq!(
            list_tasks_request(&input),
            json!({"cluster": "c1", "startedBy": "slot-a", "family": "web", "desiredStatus": "STOPPED",
                   "maxResults": 25, "nextToken": "tok"})
        );
        let empties = ListTasksInput {
            cluster: "c1".into(),
            started_by: Some(String::new()),
            family: None,
            desired_status: Some(String::new()),
            max_results: None,
            next_token: Some(String::new()),
        };
        assert_eq!(list_tasks_request(&empties), json!({"cluster": "c1"}));
        // maxResults is 1..=100 in the API model.
        for (given, sent) in [(0, 1), (1, 1), (100, 100), (101, 100), (u32::MAX, 100)] {
            let input = ListTasksInput {
                max_results: Some(given),
                ..Default::default()
            };
            assert_eq!(list_tasks_request(&input), json!({ "maxResults": sent }), "{given}");
        }
    }

    #[test]
    fn parse_list_tasks_pages() {
        let last = parse_list_tasks(&json!({"taskArns": ["arn:a", "arn:b"]})).unwrap();
        assert_eq!(
            last,
            ListTasksOutput {
                task_arns: vec!["arn:a".into(), "arn:b".into()],
                next_token: None
            }
        );
        let more = parse_list_tasks(&json!({"taskArns": ["arn:a"], "nextToken": "abc=="})).unwrap();
        assert_eq!(more.task_arns, vec!["arn:a".to_string()]);
        assert_eq!(more.next_token.as_deref(), Some("abc=="));
        // Empty or null tokens end the listing; absent taskArns is an empty page.
        assert_eq!(
            parse_list_tasks(&json!({"taskArns": [], "nextToken": ""})).unwrap(),
            ListTasksOutput::default()
        );
        assert_eq!(
            parse_list_tasks(&json!({"nextToken": null})).unwrap(),
            ListTasksOutput::default()
        );
        assert_eq!(
            parse_list_tasks(&json!({"taskArns": ["arn:a", 7]})).unwrap_err(),
            Missing("taskArns[1]".into())
        );
        assert_eq!(
            parse_list_tasks(&json!({"taskArns": "arn:a"})).unwrap_err(),
            Missing("taskArns".into())
        );
        assert_eq!(
            parse_list_tasks(&json!({"taskArns": [], "nextToken": 3})).unwrap_err(),
            Missing("nextToken".into())
        );
        assert_eq!(parse_list_tasks(&json!(null)).unwrap_err(), Missing("response".into()));
    }

    #[test]
    fn tag_requests_follow_the_api_model() {
        let tags = vec![
            ("nomad:alloc".to_string(), "a1".to_string()),
            ("k".to_string(), String::new()),
        ];
        assert_eq!(
            tag_resource_request("arn:aws:ecs:us-east-1:1:task/c/x", &tags),
            json!({"resourceArn": "arn:aws:ecs:us-east-1:1:task/c/x",
                   "tags": [{"key": "nomad:alloc", "value": "a1"}, {"key": "k", "value": ""}]})
        );
        assert_eq!(
            untag_resource_request("arn:x", &["a".to_string(), "b".to_string()]),
            json!({"resourceArn": "arn:x", "tagKeys": ["a", "b"]})
        );
    }

    #[test]
    fn tag_limits_are_checked_locally() {
        let tags = |n: usize| -> Vec<(String, String)> { (0..n).map(|i| (format!("k{i}"), "v".to_string())).collect() };
        assert!(check_tags(&[]).is_ok());
        assert!(check_tags(&tags(50)).is_ok());
        let e = check_tags(&tags(51)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Client);
        assert_eq!(e.code, "TooManyTags");
        assert!(e.message.contains("51") && e.message.contains("50"), "{e}");
        let e = e.with_operation("TagResource");
        assert!(e.to_string().starts_with("ECS TagResource: TooManyTags"), "{e}");

        assert!(check_tags(&[("é".repeat(128), "v".repeat(256))]).is_ok());
        for bad in [
            (String::new(), "v".to_string()),
            ("k".repeat(129), "v".to_string()),
            ("k".to_string(), "v".repeat(257)),
        ] {
            let e = check_tags(std::slice::from_ref(&bad)).unwrap_err();
            assert_eq!((e.kind, e.code.as_str()), (ErrorKind::Client, "InvalidTag"), "{bad:?}");
        }
    }

    #[test]
    fn tag_resource_refuses_too_many_tags_without_calling() {
        use crate::aws::credentials::{Credentials, StaticCredentials};
        let creds: Arc<dyn CredentialSource> = Arc::new(StaticCredentials(Credentials::new("A", "B", None, None, "t")));
        // Port 9 (discard) is never reached: the check comes first.
        let c = EcsClient::new(Some("http://127.0.0.1:9"), "us-east-1", creds, &HttpConfig::default()).unwrap();
        let many: Vec<(String, String)> = (0..51).map(|i| (format!("k{i}"), String::new())).collect();
        let e = c.tag_resource("arn:aws:ecs:us-east-1:1:task/c/x", &many).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Client);
        assert_eq!(e.operation, "TagResource");
        assert!(e.to_string().contains("51 tags"), "{e}");
    }

    #[test]
    fn parse_task_tags_and_group() {
        let mut t = real_task();
        t["tags"] = json!([{"key": "nomad:alloc", "value": "a1"}, {"key": "empty"}, {"key": "n", "value": null}]);
        t["group"] = json!("family:web");
        let task = parse_task(&t, "task").unwrap();
        assert_eq!(
            task.tags,
            vec![
                ("nomad:alloc".to_string(), "a1".to_string()),
                ("empty".to_string(), String::new()),
                ("n".to_string(), String::new()),
            ]
        );
        assert_eq!(task.tag("nomad:alloc"), Some("a1"));
        assert_eq!(task.tag("empty"), Some(""));
        assert_eq!(task.tag("Nomad:alloc"), None, "keys are case-sensitive");
        assert_eq!(task.group.as_deref(), Some("family:web"));

        // Absent or null tags (DescribeTasks without include TAGS) are empty.
        let plain = parse_task(&real_task(), "task").unwrap();
        assert!(plain.tags.is_empty());
        assert_eq!(plain.group, None);
        t["tags"] = Value::Null;
        assert!(parse_task(&t, "task").unwrap().tags.is_empty());

        // Malformed entries are named by their path.
        t["tags"] = json!([{"key": "a", "value": "1"}, {"value": "2"}]);
        let e = parse_tasks_and_failures(&json!({"tasks": [t.clone()]})).unwrap_err();
        assert_eq!(e, Missing("tasks[0].tags[1].key".into()));
        t["tags"] = json!([{"key": "a", "value": 1}]);
        assert_eq!(
            parse_task(&t, "task").unwrap_err(),
            Missing("task.tags[0].value".into())
        );
        t["tags"] = json!(["a"]);
        assert_eq!(parse_task(&t, "task").unwrap_err(), Missing("task.tags[0]".into()));
        t["tags"] = json!({"a": "1"});
        assert_eq!(parse_task(&t, "task").unwrap_err(), Missing("task.tags".into()));
    }

    #[test]
    fn client_endpoint_defaults() {
        use crate::aws::credentials::{Credentials, StaticCredentials};
        let creds: Arc<dyn CredentialSource> = Arc::new(StaticCredentials(Credentials::new("A", "B", None, None, "t")));
        let c = EcsClient::new(None, "eu-west-1", creds.clone(), &HttpConfig::default()).unwrap();
        assert_eq!(c.endpoint(), "https://ecs.eu-west-1.amazonaws.com");
        let c = EcsClient::new(Some(""), "cn-north-1", creds.clone(), &HttpConfig::default()).unwrap();
        assert_eq!(c.endpoint(), "https://ecs.cn-north-1.amazonaws.com.cn");
        let c = EcsClient::new(
            Some("http://127.0.0.1:5055/"),
            "us-east-1",
            creds,
            &HttpConfig::default(),
        )
        .unwrap();
        assert_eq!(c.endpoint(), "http://127.0.0.1:5055");
    }
}
