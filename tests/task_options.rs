//! The task block's RunTask options and the Nomad environment, as ECS receives them (RunTask
//! bodies captured by the emulator's control layer).

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use grpcio::RpcStatusCode;
use serde_json::{json, Value};
use support::cty::{list, obj, s, Cty};
use support::host::{self, recoverable};
use support::World;

fn run_task_body(w: &World) -> Value {
    w.emu.requests("RunTask").last().cloned().expect("a RunTask was sent")
}

fn env_of(container: &Value) -> BTreeMap<String, String> {
    container["environment"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["name"].as_str().unwrap().to_string(),
                        e["value"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_option_reaches_run_task() {
    let w = World::new("opt-all");
    let other = w.emu.setup("opt-other");
    assert!(
        other["cluster_arn"].as_str().is_some_and(|a| a.ends_with("/opt-other")),
        "{other}"
    );
    let stanza = w.stanza_with(
        None,
        vec![
            ("cluster", s("opt-other")),
            (
                "capacity_provider_strategy",
                Cty::List(vec![
                    obj(vec![
                        ("capacity_provider", s("FARGATE_SPOT")),
                        ("weight", Cty::Int(3)),
                        ("base", Cty::Null),
                    ]),
                    obj(vec![
                        ("capacity_provider", s("FARGATE")),
                        ("weight", Cty::Int(1)),
                        ("base", Cty::Int(1)),
                    ]),
                ]),
            ),
            ("platform_version", s("1.4.0")),
            ("enable_execute_command", Cty::Bool(true)),
            ("enable_ecs_managed_tags", Cty::Bool(true)),
            ("propagate_tags", s("TASK_DEFINITION")),
            ("tags", obj(vec![("team", s("payments"))])),
            ("group", s("family:web")),
            ("started_by", s("release-42")),
            ("task_role_arn", s("arn:aws:iam::123456789012:role/app")),
            ("execution_role_arn", s("arn:aws:iam::123456789012:role/exec")),
            ("cpu", s("512")),
            ("memory", s("1024")),
            (
                "container_overrides",
                Cty::List(vec![obj(vec![
                    ("name", s("web")),
                    ("command", list(&["serve", "--port=8080"])),
                    ("environment", obj(vec![("MODE", s("explicit"))])),
                    ("cpu", Cty::Int(256)),
                    ("memory", Cty::Int(512)),
                    ("memory_reservation", Cty::Int(256)),
                ])]),
            ),
            ("inject_env", Cty::Bool(false)),
        ],
    );
    let cfg = host::task_config("dddddddd-0000-4000-8000-000000000001", "web", "a1b2c3d4", stanza);
    w.plugin.start_task(&cfg).expect("StartTask");
    let body = run_task_body(&w);
    assert_eq!(body["cluster"], "opt-other", "per-task cluster");
    assert!(body.get("launchType").is_none());
    assert_eq!(
        body["capacityProviderStrategy"],
        json!([{"capacityProvider": "FARGATE_SPOT", "weight": 3}, {"capacityProvider": "FARGATE", "weight": 1, "base": 1}])
    );
    assert_eq!(body["platformVersion"], "1.4.0");
    assert_eq!(body["enableExecuteCommand"], true);
    assert_eq!(body["enableECSManagedTags"], true);
    assert_eq!(body["propagateTags"], "TASK_DEFINITION");
    assert_eq!(body["group"], "family:web");
    assert_eq!(body["startedBy"], "release-42");
    let tags = body["tags"].as_array().unwrap();
    assert!(tags.contains(&json!({"key": "team", "value": "payments"})));
    assert!(tags.iter().any(|t| t["key"] == "nomad:alloc-id"), "identity tags stay");
    assert_eq!(
        body["overrides"],
        json!({"taskRoleArn": "arn:aws:iam::123456789012:role/app", "executionRoleArn": "arn:aws:iam::123456789012:role/exec",
               "cpu": "512", "memory": "1024",
               "containerOverrides": [{"name": "web", "command": ["serve", "--port=8080"],
                   "environment": [{"name": "MODE", "value": "explicit"}], "cpu": 256, "memory": 512, "memoryReservation": 256}]})
    );
    // The task runs in the per-task cluster and is stopped there.
    assert_eq!(w.emu.tasks("opt-other").len(), 1);
    w.plugin.stop_task(&cfg.id, Duration::from_secs(10), "").unwrap();
    let arn = w.emu.tasks("opt-other")[0]["arn"].as_str().unwrap().to_string();
    assert_eq!(w.emu.task_status("opt-other", &arn).as_deref(), Some("STOPPED"));
}

#[test]
fn placement_options_for_ec2_tasks() {
    let w = World::new("opt-ec2");
    let stanza = w.stanza_with(
        Some("EC2"),
        vec![
            (
                "placement_constraints",
                Cty::List(vec![
                    obj(vec![("type", s("distinctInstance")), ("expression", Cty::Null)]),
                    obj(vec![
                        ("type", s("memberOf")),
                        ("expression", s("attribute:ecs.instance-type =~ t3.*")),
                    ]),
                ]),
            ),
            (
                "placement_strategy",
                Cty::List(vec![obj(vec![
                    ("type", s("spread")),
                    ("field", s("attribute:ecs.availability-zone")),
                ])]),
            ),
        ],
    );
    let cfg = host::task_config("dddddddd-0000-4000-8000-000000000002", "web", "a1b2c3d4", stanza);
    // The emulator has no container instances: ECS answers with a placement failure.
    w.emu.fault(json!({"operation": "RunTask", "count": 1,
        "body": {"tasks": [], "failures": [{"reason": "RESOURCE:CPU"}]}}));
    let e = w.plugin.start_task(&cfg).unwrap_err();
    assert_eq!(
        recoverable(&e),
        Some(true),
        "capacity failures are recoverable: {}",
        e.message()
    );
    assert!(e.message().contains("RESOURCE:CPU"), "{}", e.message());
    let body = run_task_body(&w);
    assert_eq!(
        body["placementConstraints"],
        json!([{"type": "distinctInstance"}, {"type": "memberOf", "expression": "attribute:ecs.instance-type =~ t3.*"}])
    );
    assert_eq!(
        body["placementStrategy"],
        json!([{"type": "spread", "field": "attribute:ecs.availability-zone"}])
    );
}

fn nomad_env(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "NOMAD_ALLOC_ID".to_string(),
            "dddddddd-0000-4000-8000-000000000003".to_string(),
        ),
        ("NOMAD_JOB_NAME".into(), "ecs-remote".into()),
        ("NOMAD_TOKEN".into(), "nomad-workload-token-secret".into()),
        ("GREETING".into(), "hello".into()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

#[test]
fn the_nomad_environment_reaches_the_essential_containers() {
    let w = World::new("opt-env");
    w.emu.setup_with(
        json!({"region": "us-east-1", "cluster": "opt-env", "task_definition_family": "my-task-definition",
        "containers": [{"name": "web", "essential": true}, {"name": "sidecar", "essential": false}]}),
    );
    let stanza = w.stanza_with(
        Some("FARGATE"),
        vec![(
            "container_overrides",
            Cty::List(vec![obj(vec![
                ("name", s("web")),
                ("environment", obj(vec![("GREETING", s("explicit wins"))])),
            ])]),
        )],
    );
    let mut cfg = host::task_config("dddddddd-0000-4000-8000-000000000003", "web", "a1b2c3d4", stanza);
    cfg.env = nomad_env(&[]).into_iter().collect();
    w.plugin.start_task(&cfg).expect("StartTask");
    let body = run_task_body(&w);
    let containers = body["overrides"]["containerOverrides"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "only the essential container: {containers:?}");
    assert_eq!(containers[0]["name"], "web");
    let env = env_of(&containers[0]);
    assert_eq!(env["GREETING"], "explicit wins");
    assert_eq!(env["NOMAD_ALLOC_ID"], "dddddddd-0000-4000-8000-000000000003");
    assert_eq!(env["NOMAD_JOB_NAME"], "ecs-remote");
    assert!(
        !env.contains_key("NOMAD_TOKEN"),
        "tokens never go into RunTask overrides"
    );
    assert!(!body.to_string().contains("nomad-workload-token-secret"));
    w.plugin.stop_task(&cfg.id, Duration::from_secs(10), "").unwrap();

    // env_containers picks the containers; inject_env = false sends none.
    let stanza = w.stanza_with(Some("FARGATE"), vec![("env_containers", list(&["sidecar"]))]);
    let mut cfg = host::task_config("dddddddd-0000-4000-8000-000000000004", "web", "a1b2c3d4", stanza);
    cfg.env = nomad_env(&[]).into_iter().collect();
    w.plugin.start_task(&cfg).expect("StartTask");
    let containers = run_task_body(&w)["overrides"]["containerOverrides"].clone();
    assert_eq!(containers.as_array().unwrap().len(), 1);
    assert_eq!(containers[0]["name"], "sidecar");
    w.plugin.stop_task(&cfg.id, Duration::from_secs(10), "").unwrap();

    let stanza = w.stanza_with(Some("FARGATE"), vec![("inject_env", Cty::Bool(false))]);
    let mut cfg = host::task_config("dddddddd-0000-4000-8000-000000000005", "web", "a1b2c3d4", stanza);
    cfg.env = nomad_env(&[]).into_iter().collect();
    w.plugin.start_task(&cfg).expect("StartTask");
    assert!(run_task_body(&w).get("overrides").is_none());
    w.plugin.stop_task(&cfg.id, Duration::from_secs(10), "").unwrap();
}

#[test]
fn overrides_over_8192_bytes_are_refused_before_run_task() {
    let w = World::new("opt-big");
    let mut cfg = host::task_config("dddddddd-0000-4000-8000-000000000006", "web", "a1b2c3d4", w.stanza());
    let big: Vec<(String, String)> = (0..100).map(|i| (format!("BIG_{i:03}"), "x".repeat(100))).collect();
    cfg.env = big.into_iter().collect();
    let e = w.plugin.start_task(&cfg).unwrap_err();
    assert_eq!(e.code(), RpcStatusCode::INVALID_ARGUMENT, "{}", e.message());
    assert_eq!(recoverable(&e), Some(false));
    assert!(
        e.message().contains("8192") && e.message().contains("bytes"),
        "{}",
        e.message()
    );
    assert!(
        e.message().contains("env_containers"),
        "says how to fix it: {}",
        e.message()
    );
    assert_eq!(w.emu.call_count("RunTask"), 0, "nothing started");
}
