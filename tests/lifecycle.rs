//! A task's whole life as Nomad drives it: start, events, stats, inspect, wait, stop,
//! destroy; external exits; detaching; transient ECS errors.

mod support;

use std::time::Duration;

use grpcio::RpcStatusCode;
use nomad_driver_ecs::proto::driver::TaskState;
use serde_json::json;
use support::cty::{self, TaskStanza};
use support::emulator::{Emulator, REGION};
use support::host::{self, wait_event, Launch, Plugin};
use support::{World, WAIT};

#[test]
fn seed_stanzas_run_unchanged() {
    // The seed's own subnet and security group ids exist in the emulator's default VPC.
    let emu = Emulator::start();
    emu.setup_with(json!({
        "region": REGION, "cluster": "nomad-remote-driver-cluster",
        "subnet_ids": ["subnet-0cd4b2ec21331a144", "subnet-0da9019dcab8ae2f1"],
        "security_group_ids": ["sg-05f444f6c0dda876d"],
    }));
    let p = Plugin::launch(&Launch::test_credentials());
    // The seed plugin stanza, plus only the emulator endpoint.
    p.set_config(
        cty::plugin_config(
            Some(true),
            Some("nomad-remote-driver-cluster"),
            Some("us-east-1"),
            Some(&emu.endpoint()),
            None,
        ),
        true,
    )
    .unwrap();
    let seed_task = TaskStanza {
        launch_type: Some("FARGATE"),
        task_definition: Some("my-task-definition:1"),
        assign_public_ip: Some("ENABLED"),
        security_groups: Some(vec!["sg-05f444f6c0dda876d".into()]),
        subnets: Some(vec![
            "subnet-0cd4b2ec21331a144".into(),
            "subnet-0da9019dcab8ae2f1".into(),
        ]),
        network: true,
    };
    let cfg = host::task_config(
        "5b0a5b9e-0000-4000-8000-000000000001",
        "http-server",
        "0a0b0c0d",
        seed_task.encode(),
    );
    let resp = p.start_task(&cfg).expect("seed job starts");
    let handle = resp.handle.into_option().unwrap();
    assert!(handle.version >= 1);
    assert_eq!(handle.config.as_ref().unwrap(), &cfg, "TaskConfig echoed whole");
    assert_eq!(handle.state.enum_value(), Ok(TaskState::RUNNING));

    let run = &emu.requests("RunTask")[0];
    assert_eq!(run["cluster"], "nomad-remote-driver-cluster");
    assert_eq!(run["taskDefinition"], "my-task-definition:1");
    assert_eq!(run["launchType"], "FARGATE");
    assert_eq!(run["count"], 1);
    let vpc = &run["networkConfiguration"]["awsvpcConfiguration"];
    assert_eq!(vpc["assignPublicIp"], "ENABLED");
    assert_eq!(vpc["securityGroups"], json!(["sg-05f444f6c0dda876d"]));
    assert_eq!(
        vpc["subnets"],
        json!(["subnet-0cd4b2ec21331a144", "subnet-0da9019dcab8ae2f1"])
    );
    assert!(run["startedBy"].as_str().unwrap().starts_with("nomad/"));
    let token = run["clientToken"].as_str().unwrap();
    assert!(!token.is_empty() && token.len() <= 64);
    // Every ECS task carries the Nomad identity as tags.
    let tags: std::collections::BTreeMap<String, String> = run["tags"]
        .as_array()
        .expect("tags sent")
        .iter()
        .map(|t| {
            (
                t["key"].as_str().unwrap().to_string(),
                t["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(tags["nomad:managed-by"], "nomad-driver-ecs");
    assert_eq!(tags["nomad:alloc-id"], cfg.alloc_id);
    assert_eq!(tags["nomad:task"], "http-server");
    assert_eq!(tags["nomad:job-id"], cfg.job_id);
    assert_eq!(tags["nomad:namespace"], cfg.namespace);
    assert_eq!(tags["nomad:task-group"], cfg.task_group_name);
    assert_eq!(tags["nomad:node-id"], cfg.node_id);

    // The driver_state has what a re-attach needs.
    let state: serde_json::Value = serde_json::from_slice(&handle.driver_state).unwrap();
    assert!(state["task_arn"]
        .as_str()
        .unwrap()
        .starts_with("arn:aws:ecs:us-east-1:"));
    assert_eq!(state["cluster"], "nomad-remote-driver-cluster");
    assert_eq!(state["region"], "us-east-1");
    assert_eq!(state["endpoint"], emu.endpoint());
    assert_eq!(state["stdout_path"], cfg.stdout_path);
    p.stop_task(&cfg.id, Duration::from_secs(5), "").unwrap();
    p.destroy_task(&cfg.id, true).unwrap();
    p.assert_hclog_stderr();
}

#[test]
fn full_lifecycle_start_inspect_stop_wait_destroy() {
    let w = World::new("lc-full");
    let events = w.plugin.task_events();
    let (cfg, _handle, arn) = w.start("11111111-aaaa-4000-8000-000000000001", "web");
    let started = wait_event(&events, "Started ECS task", WAIT);
    assert_eq!(started.task_id, cfg.id);
    assert_eq!(started.alloc_id, cfg.alloc_id);
    assert_eq!(started.task_name, "web");
    assert_eq!(started.annotations["task_arn"], arn);
    assert!(started.timestamp.is_some());

    let waiting = w.plugin.wait_task_async(&cfg.id, WAIT);
    let insp = w.plugin.inspect_task(&cfg.id).unwrap();
    let task = insp.task.as_ref().unwrap();
    assert_eq!(task.state.enum_value(), Ok(TaskState::RUNNING));
    assert!(task.started_at.is_some() && task.completed_at.is_some() && task.result.is_some());
    let attrs = &insp.driver.as_ref().unwrap().attributes;
    assert_eq!(attrs["arn"], arn);
    assert_eq!(attrs["cluster"], "lc-full");
    assert!(attrs.contains_key("last_status") && attrs.contains_key("desired_status"));

    // Stats flow while the task runs.
    let stats = w.plugin.task_stats(&cfg.id, Duration::from_millis(100));
    for _ in 0..2 {
        let s = stats.recv_timeout(WAIT).unwrap().unwrap();
        let st = s.stats.as_ref().expect("stats set");
        assert!(st.agg_resource_usage.is_some(), "agg_resource_usage set");
        assert_eq!(st.id, cfg.id);
    }

    // Destroy without force refuses while it runs.
    let e = w.plugin.destroy_task(&cfg.id, false).unwrap_err();
    assert_eq!(e.code(), RpcStatusCode::FAILED_PRECONDITION);

    w.plugin
        .stop_task(&cfg.id, Duration::from_secs(10), "SIGTERM")
        .expect("StopTask");
    let stop_req = &w.emu.requests("StopTask")[0];
    assert!(
        stop_req["reason"].as_str().unwrap().contains(&cfg.alloc_id),
        "stop reason names the allocation"
    );
    assert!(
        stop_req["reason"].as_str().unwrap().contains("web"),
        "stop reason names the task"
    );
    let stopped = wait_event(&events, "ECS task stopped", WAIT);
    assert!(stopped.annotations.contains_key("container_exit_codes"));
    let res = waiting.recv_timeout(WAIT).unwrap().expect("WaitTask");
    assert!(res.result.is_some());
    assert_eq!(w.emu.task_status("lc-full", &arn).as_deref(), Some("STOPPED"));

    // Stats end when the task ends.
    host::eventually(WAIT, "stats stream to end", || {
        match stats.recv_timeout(Duration::from_millis(200)) {
            Ok(Ok(_)) => None,
            _ => Some(()),
        }
    });

    // A second stop is harmless; inspect shows the exit.
    w.plugin.stop_task(&cfg.id, Duration::from_secs(5), "").unwrap();
    let insp = w.plugin.inspect_task(&cfg.id).unwrap();
    assert_eq!(insp.task.as_ref().unwrap().state.enum_value(), Ok(TaskState::EXITED));
    assert_eq!(w.emu.call_count("StopTask"), 1, "an exited task is not stopped again");
    w.plugin.destroy_task(&cfg.id, false).expect("destroy after exit");
    w.plugin.destroy_task(&cfg.id, true).expect("destroy is idempotent");
    assert_eq!(
        w.plugin.inspect_task(&cfg.id).unwrap_err().code(),
        RpcStatusCode::NOT_FOUND
    );
    w.plugin.assert_hclog_stderr();
}

#[test]
fn external_exit_137_reaches_every_waiter() {
    let w = World::new("lc-exit");
    let events = w.plugin.task_events();
    let (cfg, _h, arn) = w.start("22222222-aaaa-4000-8000-000000000002", "worker");
    let waiters: Vec<_> = (0..3).map(|_| w.plugin.wait_task_async(&cfg.id, WAIT)).collect();
    w.emu
        .exit_task("lc-exit", &arn, Some(137), "Essential container in task exited");
    for rx in waiters {
        let r = rx.recv_timeout(WAIT).unwrap().expect("WaitTask");
        let res = r.result.unwrap();
        assert_eq!(res.exit_code, 137);
        assert_eq!(r.err, "");
    }
    let ev = wait_event(&events, "ECS task stopped", WAIT);
    assert_eq!(ev.annotations["stop_code"], "EssentialContainerExited");
    assert_eq!(ev.annotations["exit_code"], "137");
    // A late WaitTask returns at once with the same result.
    assert_eq!(
        w.plugin.wait_task(&cfg.id, WAIT).unwrap().result.unwrap().exit_code,
        137
    );
    let insp = w.plugin.inspect_task(&cfg.id).unwrap();
    assert_eq!(insp.task.as_ref().unwrap().result.as_ref().unwrap().exit_code, 137);
    w.plugin.destroy_task(&cfg.id, true).unwrap();
    assert_eq!(
        w.emu.call_count("StopTask"),
        0,
        "a stopped task is not stopped again on destroy"
    );
}

#[test]
fn essential_container_codes_decide_and_missing_codes_fail_with_the_reason() {
    let emu = Emulator::start();
    let setup = emu.setup_with(json!({"region": REGION, "cluster": "lc-ess",
        "containers": [{"name": "web", "essential": true}, {"name": "sidecar", "essential": false}]}));
    let p = Plugin::launch(&Launch::test_credentials());
    p.set_config(
        cty::plugin_config(
            Some(true),
            Some("lc-ess"),
            Some(REGION),
            Some(&emu.endpoint()),
            Some(support::TEST_POLL),
        ),
        true,
    )
    .unwrap();
    let subnets: Vec<String> = setup["subnets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().into())
        .collect();
    let stanza = TaskStanza {
        launch_type: Some("FARGATE"),
        task_definition: Some("my-task-definition"),
        assign_public_ip: None,
        security_groups: Some(vec![setup["security_group"].as_str().unwrap().to_string()]),
        subnets: Some(subnets),
        network: true,
    };
    let start = |alloc: &str| {
        let cfg = host::task_config(alloc, "app", "00000001", stanza.encode());
        p.start_task(&cfg).unwrap();
        let arn = support::arn_of_alloc(&emu, "lc-ess", alloc);
        (cfg, arn)
    };

    // The non-essential sidecar's 3 does not count; the essential web's 0 does.
    let (cfg, arn) = start("33333333-aaaa-4000-8000-000000000001");
    emu.stop_task_raw(
        json!({"region": REGION, "cluster": "lc-ess", "task": arn, "exit_codes": {"web": 0, "sidecar": 3}}),
    );
    let r = p.wait_task(&cfg.id, WAIT).unwrap();
    assert_eq!(r.result.unwrap().exit_code, 0);
    assert_eq!(r.err, "");

    // No exit code at all (e.g. the image never pulled): exit 1 with ECS's reason.
    let (cfg, arn) = start("33333333-aaaa-4000-8000-000000000002");
    emu.stop_task_raw(
        json!({"region": REGION, "cluster": "lc-ess", "task": arn, "exit_code": null,
        "stop_code": "TaskFailedToStart", "stopped_reason": "CannotPullContainerError: pull access denied for nginx"}),
    );
    let r = p.wait_task(&cfg.id, WAIT).unwrap();
    assert_eq!(r.result.unwrap().exit_code, 1);
    assert!(r.err.contains("CannotPullContainerError"), "{}", r.err);
    assert_eq!(
        emu.call_count("DescribeTaskDefinition"),
        2,
        "a bare family is read at each start (for the environment's containers); the watcher reuses that read"
    );
}

#[test]
fn detach_leaves_the_ecs_task_running() {
    let w = World::new("lc-detach");
    let (cfg, _h, arn) = w.start("44444444-aaaa-4000-8000-000000000004", "web");
    let waiting = w.plugin.wait_task_async(&cfg.id, WAIT);
    w.plugin
        .stop_task(&cfg.id, Duration::from_secs(5), "DETACH")
        .expect("DETACH");
    waiting
        .recv_timeout(WAIT)
        .unwrap()
        .expect("WaitTask completes after DETACH");
    w.plugin.destroy_task(&cfg.id, true).expect("destroy after detach");
    assert_eq!(w.emu.call_count("StopTask"), 0);
    assert_eq!(w.emu.task_status("lc-detach", &arn).as_deref(), Some("RUNNING"));
}

#[test]
fn a_second_start_of_the_same_task_id_is_refused_without_a_second_run_task() {
    let w = World::new("lc-dup");
    let (cfg, _h, _arn) = w.start("55555555-aaaa-4000-8000-000000000005", "web");
    let e = w.plugin.start_task(&cfg).unwrap_err();
    assert_eq!(e.code(), RpcStatusCode::ALREADY_EXISTS);
    assert_eq!(w.emu.call_count("RunTask"), 1);
    // Same task id → same clientToken (a real ECS would return the same task).
    let other = host::task_config("55555555-aaaa-4000-8000-000000000005", "web", "ffffffff", w.stanza());
    w.plugin.start_task(&other).unwrap();
    let reqs = w.emu.requests("RunTask");
    assert_ne!(
        reqs[0]["clientToken"], reqs[1]["clientToken"],
        "a restart (new task id) gets a new token"
    );
}

#[test]
fn transient_ecs_errors_never_end_a_task() {
    let w = World::new("lc-flaky");
    let (cfg, _h, arn) = w.start("66666666-aaaa-4000-8000-000000000006", "web");
    let before = w.emu.call_count("DescribeTasks");
    w.emu
        .fault(json!({"operation": "DescribeTasks", "count": 3, "status": 400, "type": "ThrottlingException"}));
    w.emu
        .fault(json!({"operation": "DescribeTasks", "count": 3, "status": 503}));
    host::eventually(WAIT, "the faults to be consumed", || {
        (w.emu.call_count("DescribeTasks") >= before + 7).then_some(())
    });
    let insp = w.plugin.inspect_task(&cfg.id).unwrap();
    assert_eq!(insp.task.as_ref().unwrap().state.enum_value(), Ok(TaskState::RUNNING));
    w.emu
        .exit_task("lc-flaky", &arn, Some(2), "Essential container in task exited");
    assert_eq!(w.plugin.wait_task(&cfg.id, WAIT).unwrap().result.unwrap().exit_code, 2);
}

#[test]
fn run_task_is_retried_through_throttling() {
    let w = World::new("lc-retry");
    w.emu
        .fault(json!({"operation": "RunTask", "count": 2, "status": 400, "type": "ThrottlingException"}));
    let (cfg, _h, _arn) = w.start("77777777-aaaa-4000-8000-000000000007", "web");
    assert_eq!(w.emu.call_count("RunTask"), 3);
    let reqs = w.emu.requests("RunTask");
    assert!(
        reqs.iter().all(|r| r["clientToken"] == reqs[0]["clientToken"]),
        "retries reuse the clientToken"
    );
    assert_eq!(w.emu.tasks("lc-retry").len(), 1);
    w.plugin.stop_task(&cfg.id, Duration::from_secs(5), "").unwrap();
}

#[test]
fn an_answer_slower_than_request_timeout_is_abandoned_and_retried() {
    let w = World::new("lc-timeout");
    w.plugin
        .set_config(
            cty::plugin_config_with(
                Some(true),
                Some("lc-timeout"),
                Some(REGION),
                Some(&w.emu.endpoint()),
                Some(support::TEST_POLL),
                &[("request_timeout", "500ms"), ("connect_timeout", "500ms")],
            ),
            true,
        )
        .expect("SetConfig with timeouts");
    // The first RunTask is answered after 3 s with a made-up task: a plugin that waited for it
    // (no request_timeout) would take that task; one that gave up after 500 ms retries and gets
    // the emulator's real one.
    let fake = "arn:aws:ecs:us-east-1:123456789012:task/lc-timeout/made-up-by-the-slow-answer";
    w.emu.fault(json!({"operation": "RunTask", "count": 1, "delay_ms": 3000,
        "body": {"tasks": [{"taskArn": fake, "lastStatus": "PROVISIONING", "desiredStatus": "RUNNING",
                            "containers": []}], "failures": []}}));
    let (cfg, handle, arn) = w.start("77777777-aaaa-4000-8000-000000000008", "web");
    assert!(
        !String::from_utf8_lossy(&handle.driver_state).contains(fake),
        "the handle names the retried task, not the slow answer's"
    );
    let insp = w.plugin.inspect_task(&cfg.id).unwrap();
    assert_eq!(insp.driver.as_ref().unwrap().attributes["arn"], arn);
    assert_eq!(w.emu.call_count("RunTask"), 2, "one abandoned call, one retry");
    w.plugin.stop_task(&cfg.id, Duration::from_secs(5), "").unwrap();
}

#[test]
fn a_task_ecs_forgot_exits_with_an_error() {
    let w = World::new("lc-forgot");
    let (cfg, _h, arn) = w.start("88888888-aaaa-4000-8000-000000000008", "web");
    w.emu.post(
        "/_test/forget-task",
        json!({"region": REGION, "cluster": "lc-forgot", "task": arn}),
    );
    let r = w.plugin.wait_task(&cfg.id, Duration::from_secs(60)).unwrap();
    assert_eq!(r.result.unwrap().exit_code, 1);
    assert!(r.err.contains("no longer knows"), "{}", r.err);
}

/// Nomad keeps ten events per task: ECS's intermediate statuses are log lines, reaching
/// RUNNING is one event, and going back and forth between statuses adds none.
#[test]
fn reaching_running_is_one_event_and_intermediate_statuses_are_none() {
    let w = World::new("lc-status");
    let events = w.plugin.task_events();
    let (cfg, _h, arn) = w.start("12121212-aaaa-4000-8000-000000000012", "web");
    wait_event(&events, "Started ECS task", WAIT);
    let running = wait_event(&events, "ECS task is RUNNING", WAIT);
    assert_eq!(running.task_id, cfg.id);
    assert_eq!(running.annotations["desired_status"], "RUNNING");
    // One read says the task went back to PENDING; the next reads say RUNNING again.
    w.emu.fault(json!({"operation": "DescribeTasks", "count": 1, "status": 200,
        "body": {"tasks": [{"taskArn": arn, "lastStatus": "PENDING", "desiredStatus": "RUNNING", "containers": []}], "failures": []}}));
    support::host::eventually(WAIT, "the poller to read the fault", || {
        w.emu
            .get("/_test/fault")
            .as_array()
            .is_some_and(|q| q.iter().all(|f| f["remaining"] == 0))
            .then_some(())
    });
    w.plugin.stop_task(&cfg.id, Duration::from_secs(5), "").unwrap();
    w.plugin.wait_task(&cfg.id, WAIT).unwrap();
    let mut seen = Vec::new();
    while let Ok(Ok(ev)) = events.recv_timeout(Duration::from_millis(500)) {
        seen.push(ev.message);
    }
    assert!(
        !seen
            .iter()
            .any(|m| m.contains("PENDING") || m.contains("ECS task is RUNNING") || m.contains("Stop requested")),
        "{seen:?}"
    );
    assert!(seen.iter().any(|m| m.contains("exit code")), "{seen:?}");
}

/// Each way a task can end, as Nomad sees it: the exit code, whether it counts as failed (err),
/// and the event's annotations saying who ended it.
#[test]
fn exit_details_tell_a_container_exit_from_an_ecs_stop() {
    let w = World::new("lc-details");
    let events = w.plugin.task_events();
    let stopped = |alloc: &str, body: serde_json::Value| {
        let (cfg, _h, arn) = w.start(alloc, "web");
        let mut body = body;
        body["region"] = json!(REGION);
        body["cluster"] = json!("lc-details");
        body["task"] = json!(arn);
        w.emu.stop_task_raw(body);
        let r = w.plugin.wait_task(&cfg.id, WAIT).unwrap();
        let ev = wait_event(&events, "exit code", WAIT);
        (r, ev)
    };

    // Fargate Spot reclaimed the capacity: the container's SIGTERM code, and a failure naming why.
    let (r, ev) = stopped(
        "88888888-aaaa-4000-8000-000000000001",
        json!({"exit_code": 143, "stop_code": "SpotInterruption",
               "stopped_reason": "Your Spot Task was interrupted.", "container_reason": "SIGTERM"}),
    );
    assert_eq!(r.result.as_ref().unwrap().exit_code, 143);
    assert!(
        r.err.contains("SpotInterruption") && r.err.contains("Your Spot Task was interrupted."),
        "{}",
        r.err
    );
    assert_eq!(ev.annotations["ended_by"], "ecs");
    assert_eq!(ev.annotations["stop_code"], "SpotInterruption");
    assert_eq!(ev.annotations["container_exit_codes"], "web=143");
    assert_eq!(ev.annotations["container_reasons"], "web: SIGTERM");

    // The container exited by itself: its code, no error.
    let (r, ev) = stopped("88888888-aaaa-4000-8000-000000000002", json!({"exit_code": 3}));
    assert_eq!(r.result.as_ref().unwrap().exit_code, 3);
    assert_eq!(r.err, "");
    assert_eq!(ev.annotations["ended_by"], "container");

    // Someone stopped it in the ECS console: a failure that says so.
    let (r, ev) = stopped(
        "88888888-aaaa-4000-8000-000000000003",
        json!({"exit_code": 137, "stop_code": "UserInitiated", "stopped_reason": "Task stopped by user"}),
    );
    assert!(
        r.err.contains("stopped outside Nomad: Task stopped by user"),
        "{}",
        r.err
    );
    assert_eq!(ev.annotations["ended_by"], "ecs");

    // Capacity or image trouble: the task never ran.
    let (r, _) = stopped(
        "88888888-aaaa-4000-8000-000000000004",
        json!({"exit_code": null, "stop_code": "TaskFailedToStart",
               "stopped_reason": "ResourceInitializationError: unable to pull secrets or registry auth"}),
    );
    assert_eq!(r.result.as_ref().unwrap().exit_code, 1);
    assert!(
        r.err.contains("TaskFailedToStart") && r.err.contains("ResourceInitializationError"),
        "{}",
        r.err
    );

    // Nomad's own stop is not a failure, whatever stop code ECS gives it.
    let (cfg, _h, _arn) = w.start("88888888-aaaa-4000-8000-000000000005", "web");
    w.plugin.stop_task(&cfg.id, Duration::from_secs(10), "").unwrap();
    let r = w.plugin.wait_task(&cfg.id, WAIT).unwrap();
    assert_eq!(r.err, "", "a stop Nomad asked for");
    let ev = wait_event(&events, "exit code", WAIT);
    assert_eq!(ev.annotations["ended_by"], "nomad");
}
