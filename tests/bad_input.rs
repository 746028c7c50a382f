//! Bad task configs and ECS refusals: clear errors naming the field, no ECS task started, and
//! the recoverable flag Nomad's restart policy reads.

mod support;

use grpcio::RpcStatusCode;
use serde_json::json;
use support::cty::TaskStanza;
use support::host::{self, recoverable};
use support::World;

fn stanza(w: &World) -> TaskStanza<'static> {
    TaskStanza {
        launch_type: Some("FARGATE"),
        task_definition: Some("my-task-definition"),
        assign_public_ip: Some("ENABLED"),
        security_groups: Some(vec![w.security_group()]),
        subnets: Some(w.subnets()),
        network: true,
    }
}

#[test]
fn each_bad_task_config_names_its_field_and_starts_nothing() {
    let w = World::new("bi-fields");
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (
            TaskStanza {
                task_definition: None,
                ..stanza(&w)
            }
            .encode(),
            "task.task_definition",
            "required",
        ),
        (
            TaskStanza {
                task_definition: Some(""),
                ..stanza(&w)
            }
            .encode(),
            "task.task_definition",
            "required",
        ),
        (
            TaskStanza {
                launch_type: Some("LAMBDA"),
                ..stanza(&w)
            }
            .encode(),
            "task.launch_type",
            "FARGATE, EC2 or EXTERNAL",
        ),
        (
            TaskStanza {
                assign_public_ip: Some("yes"),
                ..stanza(&w)
            }
            .encode(),
            "task.network_configuration.aws_vpc_configuration.assign_public_ip",
            "ENABLED",
        ),
        (
            TaskStanza {
                subnets: None,
                ..stanza(&w)
            }
            .encode(),
            "task.network_configuration.aws_vpc_configuration.subnets",
            "subnet",
        ),
        (vec![0xc1, 0x00], "config", "decode"),
        (Vec::new(), "task", "task"),
    ];
    for (i, (bytes, field, hint)) in cases.into_iter().enumerate() {
        let cfg = host::task_config("bbbbbbbb-0000-4000-8000-000000000001", "web", &format!("{i:08}"), bytes);
        let e = w.plugin.start_task(&cfg).unwrap_err();
        assert_eq!(e.code(), RpcStatusCode::INVALID_ARGUMENT, "case {i}: {}", e.message());
        assert!(
            e.message().contains(field),
            "case {i}: {} should name {field}",
            e.message()
        );
        assert!(
            e.message().contains(hint),
            "case {i}: {} should say {hint}",
            e.message()
        );
        assert_eq!(recoverable(&e), Some(false), "case {i}: bad config is not recoverable");
    }
    assert_eq!(w.emu.call_count("RunTask"), 0, "no RunTask for a bad config");
    assert_eq!(w.plugin.plugin_info().name, "ecs");
    w.plugin.assert_hclog_stderr();
}

#[test]
fn run_task_failures_carry_ecs_reason_and_recoverability() {
    let w = World::new("bi-fail");
    let cfg = |n: u32| {
        host::task_config(
            "bbbbbbbb-0000-4000-8000-000000000002",
            "web",
            &format!("{n:08}"),
            stanza(&w).encode(),
        )
    };

    // Capacity: recoverable.
    w.emu.fault(json!({"operation": "RunTask", "count": 1, "status": 200,
        "body": {"tasks": [], "failures": [{"arn": "arn:aws:ecs:us-east-1:123456789012:container-instance/x", "reason": "RESOURCE:MEMORY"}]}}));
    let e = w.plugin.start_task(&cfg(1)).unwrap_err();
    assert!(e.message().contains("RESOURCE:MEMORY"), "{}", e.message());
    assert_eq!(recoverable(&e), Some(true));

    // Configuration: not recoverable.
    w.emu.fault(json!({"operation": "RunTask", "count": 1, "status": 200,
        "body": {"tasks": [], "failures": [{"arn": "arn:aws:ecs:us-east-1:123456789012:cluster/bi-fail", "reason": "MISSING"}]}}));
    let e = w.plugin.start_task(&cfg(2)).unwrap_err();
    assert!(e.message().contains("MISSING"), "{}", e.message());
    assert_eq!(recoverable(&e), Some(false));

    // An API error ECS gives for a bad request: not recoverable, ECS's message passed on.
    w.emu.fault(
        json!({"operation": "RunTask", "count": 1, "status": 400, "type": "InvalidParameterException",
        "message": "Task definition does not support launch_type FARGATE."}),
    );
    let e = w.plugin.start_task(&cfg(3)).unwrap_err();
    assert!(
        e.message().contains("InvalidParameterException") && e.message().contains("launch_type"),
        "{}",
        e.message()
    );
    assert_eq!(recoverable(&e), Some(false));

    // An unknown task definition straight from the emulator.
    let bad_td = TaskStanza {
        task_definition: Some("no-such-family:7"),
        ..stanza(&w)
    }
    .encode();
    let e = w
        .plugin
        .start_task(&host::task_config(
            "bbbbbbbb-0000-4000-8000-000000000002",
            "web",
            "00000004",
            bad_td,
        ))
        .unwrap_err();
    assert_eq!(recoverable(&e), Some(false), "{}", e.message());

    // After failures the same ids can start for real, and nothing was left behind.
    assert!(w.emu.tasks("bi-fail").is_empty());
    w.plugin.start_task(&cfg(1)).expect("a later start works");
    assert_eq!(w.emu.tasks("bi-fail").len(), 1);
}
