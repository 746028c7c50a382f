//! The plugin under the task runner of a real Nomad client: restarts that reuse the last
//! handle (Nomad 1.1–1.9), StartTask retried under a new task id, kills bounded by
//! `max_kill_timeout`, serial restores and the DestroyTask that follows a failed RecoverTask,
//! and the ten events Nomad keeps per task. Nomad's side is played by the models in
//! `support::task_runner`, each following the Nomad file it cites.

mod support;

use std::time::Duration;

use grpcio::RpcStatusCode;
use serde_json::json;

use nomad_driver_ecs::proto::driver as pb;
use support::host::{self, Launch, Plugin};
use support::logmon::Logmon;
use support::task_runner::{self as tr, Began, EventList};
use support::{handle_arn, persisted, World, WAIT};

fn relaunch(w: &World) -> Plugin {
    let p = Plugin::launch(&Launch::test_credentials());
    p.set_config(
        support::test_plugin_config(&w.cluster, &w.emu.endpoint(), Vec::new()),
        true,
    )
    .unwrap();
    p
}

/// The same Nomad task, started again by its task runner: a new task id
/// (task_runner.go buildTaskConfig: `<alloc>/<task>/<8 random characters>`).
fn next_invocation(cfg: &pb::TaskConfig, suffix: &str) -> pb::TaskConfig {
    let mut next = cfg.clone();
    next.id = format!("{}/{}/{suffix}", cfg.alloc_id, cfg.name);
    next
}

/// Nomad 1.1–1.9 (remotetask_hook.go, v1.9.7): after the task exits, its restart hands the
/// exited task's handle to RecoverTask under a new task id. The plugin must refuse it, so that
/// Nomad starts a new ECS task, rather than report the old exit again (a restart loop that
/// fails at once).
#[test]
fn a_restart_under_nomad_1_9_starts_a_new_ecs_task_when_the_old_one_stopped() {
    let w = World::new("nc-restart");
    let (cfg, handle, arn) = w.start("c1000000-0000-4000-8000-000000000001", "web");
    w.emu
        .exit_task("nc-restart", &arn, Some(2), "Essential container in task exited");
    assert_eq!(w.plugin.wait_task(&cfg.id, WAIT).unwrap().result.unwrap().exit_code, 2);
    w.plugin.destroy_task(&cfg.id, false).expect("DestroyTask");
    // Restart 1: the last handle is the one StartTask gave.
    let second = next_invocation(&cfg, "b2c3d4e5");
    let Began::Started(refusal, new_handle) = tr::remote_task_prestart(&w.plugin, &persisted(&handle), &second) else {
        panic!("RecoverTask accepted the handle of a STOPPED ECS task");
    };
    assert_eq!(refusal.code(), RpcStatusCode::NOT_FOUND, "{refusal:?}");
    assert!(refusal.message().contains(&arn), "{}", refusal.message());
    let new_arn = handle_arn(&new_handle);
    assert_ne!(new_arn, arn);
    assert_eq!(w.emu.call_count("RunTask"), 2);
    let insp = w.plugin.inspect_task(&second.id).unwrap();
    assert_eq!(
        insp.task.as_ref().unwrap().state.enum_value(),
        Ok(pb::TaskState::RUNNING),
        "the restarted task runs"
    );
    // The new task's exit is its own.
    w.emu
        .exit_task("nc-restart", &new_arn, Some(5), "Essential container in task exited");
    assert_eq!(
        w.plugin.wait_task(&second.id, WAIT).unwrap().result.unwrap().exit_code,
        5
    );
}

/// Nomad saves a task's handle only once StartTask returned, and a StartTask the plugin's death
/// interrupted is retried under a new task id (task_runner.go runDriver and buildTaskConfig,
/// v1.10.0). The retry takes back the ECS task the first call started instead of running a
/// second one for the same allocation.
#[test]
fn a_retried_start_takes_back_the_ecs_task_of_the_interrupted_one() {
    let mut w = World::new("nc-retry");
    let (cfg, _lost_handle, arn) = w.start("c2000000-0000-4000-8000-000000000002", "web");
    // The plugin dies before Nomad stored the handle.
    let old = std::mem::replace(&mut w.plugin, Plugin::launch(&Launch::test_credentials()));
    old.kill();
    w.plugin = relaunch(&w);
    let events = w.plugin.task_events();
    let retry = next_invocation(&cfg, "c3d4e5f6");
    let handle = w
        .plugin
        .start_task(&retry)
        .expect("StartTask")
        .handle
        .into_option()
        .expect("handle");
    assert_eq!(handle_arn(&handle), arn, "the retry runs a second ECS task");
    assert_eq!(w.emu.call_count("RunTask"), 1);
    host::wait_event(&events, "interrupted start", WAIT);
    let tags = w.emu.task_tags("nc-retry", &arn);
    assert!(
        tags.iter().any(|(k, v)| k == "nomad:task-id" && *v == retry.id),
        "the ECS task names the retry's task id: {tags:?}"
    );
    let running: Vec<_> = w
        .emu
        .tasks("nc-retry")
        .into_iter()
        .filter(|t| t["last_status"] != "STOPPED")
        .collect();
    assert_eq!(running.len(), 1, "{running:?}");
    // An in-place restart after a stop does not take the stopped task back.
    let kill = tr::kill(
        &w.plugin,
        &retry.id,
        Duration::from_secs(10),
        tr::DEFAULT_MAX_KILL_TIMEOUT,
        "SIGINT",
    );
    assert!(kill.succeeded(), "{kill:?}");
    w.plugin.wait_task(&retry.id, WAIT).unwrap();
    w.plugin.destroy_task(&retry.id, false).unwrap();
    let third = next_invocation(&cfg, "d4e5f6a7");
    let h3 = w
        .plugin
        .start_task(&third)
        .expect("StartTask")
        .handle
        .into_option()
        .unwrap();
    assert_ne!(handle_arn(&h3), arn);
}

/// Nomad stops a task with `min(kill_timeout, max_kill_timeout)` and, once StopTask succeeded,
/// waits for the exit through WaitTask (driver_handle.go, task_runner.go killTask/handleKill,
/// v1.10.0). ECS stops containers after their own stopTimeout, often later than Nomad's 5 s
/// default: that is no failure, or Nomad retries the kill and reports leaked resources.
#[test]
fn a_stop_that_outlasts_kill_timeout_succeeds_and_the_exit_comes_through_wait_task() {
    let w = World::new("nc-slowstop");
    let (cfg, _h, arn) = w.start("c3000000-0000-4000-8000-000000000003", "web");
    // ECS accepts the stop, but the containers take their time.
    w.emu.fault(json!({"operation": "StopTask", "count": 1, "status": 200,
        "body": {"task": {"taskArn": arn, "lastStatus": "DEACTIVATING", "desiredStatus": "STOPPED", "containers": []}}}));
    let waiting = w.plugin.wait_task_async(&cfg.id, Duration::from_secs(120));
    let kill = tr::kill(
        &w.plugin,
        &cfg.id,
        Duration::from_secs(1),
        tr::DEFAULT_MAX_KILL_TIMEOUT,
        "SIGTERM",
    );
    assert!(kill.succeeded(), "{kill:?}");
    assert_eq!(kill.attempts.len(), 1, "Nomad had to retry the kill: {kill:?}");
    assert!(
        waiting.recv_timeout(Duration::from_millis(100)).is_err(),
        "WaitTask answered before ECS stopped the task"
    );
    // The containers stop.
    w.emu.exit_task("nc-slowstop", &arn, Some(143), "Task stopped by user");
    let r = waiting.recv_timeout(WAIT).unwrap().expect("WaitTask");
    assert!(r.result.is_some());
}

/// A client restart restores tasks one at a time (client.go restoreState, alloc_runner.go
/// Restore, task_runner.go restoreHandle, v1.10.0). RecoverTask makes no AWS call, so a
/// restore does not take N × ECS latency, nor hang while ECS does not answer.
#[test]
fn restore_answers_at_once_while_ecs_hangs() {
    let mut w = World::new("nc-restore");
    let handles: Vec<_> = (1..=3)
        .map(|i| {
            let (_, h, _) = w.start(&format!("c400000{i}-0000-4000-8000-00000000000{i}"), "web");
            persisted(&h)
        })
        .collect();
    let old = std::mem::replace(&mut w.plugin, Plugin::launch(&Launch::test_credentials()));
    old.kill();
    // Every call that is not the poller's hangs for 20 s and then gets a reset.
    for op in ["DescribeTaskDefinition", "TagResource", "ListTasks"] {
        w.emu
            .fault(json!({"operation": op, "count": 100, "delay_ms": 20000, "close": true}));
    }
    w.plugin = relaunch(&w);
    for h in &handles {
        w.plugin
            .recover_task_within(h, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("RecoverTask waited on ECS: {e:?}"));
    }
    let restored = tr::restore(&w.plugin, &handles);
    assert!(
        restored.iter().all(|r| r.recover.is_ok() && r.destroy.is_none()),
        "{restored:?}"
    );
    for h in &handles {
        let id = &h.config.as_ref().unwrap().id;
        assert_eq!(
            w.plugin
                .inspect_task(id)
                .unwrap()
                .task
                .as_ref()
                .unwrap()
                .state
                .enum_value(),
            Ok(pb::TaskState::RUNNING)
        );
    }
}

/// A handle this plugin cannot read (here: one a newer version wrote) fails RecoverTask;
/// Nomad then calls DestroyTask(force) for the id and starts the task anew (restoreHandle,
/// v1.10.0). That DestroyTask stops the ECS task the handle names, so none is leaked.
#[test]
fn a_handle_that_cannot_be_recovered_is_stopped_by_nomads_destroy() {
    let mut w = World::new("nc-unrecovered");
    let (cfg, handle, arn) = w.start("c5000000-0000-4000-8000-000000000005", "web");
    let old = std::mem::replace(&mut w.plugin, Plugin::launch(&Launch::test_credentials()));
    old.kill();
    w.plugin = relaunch(&w);
    let mut newer = persisted(&handle);
    let mut state: serde_json::Value = serde_json::from_slice(&newer.driver_state).unwrap();
    state["version"] = json!(99);
    newer.driver_state = state.to_string().into_bytes();
    let restored = tr::restore(&w.plugin, &[newer]);
    let r = &restored[0];
    let err = r.recover.as_ref().expect_err("RecoverTask of a version-99 handle");
    assert!(err.message().contains("version 99"), "{}", err.message());
    assert!(matches!(r.destroy, Some(Ok(()))), "{r:?}");
    assert_eq!(w.emu.task_status("nc-unrecovered", &arn).as_deref(), Some("STOPPED"));
    let stop = &w.emu.requests("StopTask")[0];
    assert!(stop["reason"].as_str().unwrap().contains(&cfg.id), "{stop}");
    // A DestroyTask for an id nobody knows stays a no-op.
    w.plugin
        .destroy_task("c5000000-0000-4000-8000-000000000005/web/ffffffff", true)
        .unwrap();
    assert_eq!(w.emu.call_count("StopTask"), 1);
}

/// Before stopping a task the plugin reads its tags (another allocation may have adopted it).
/// When that read fails the stop fails too, and Nomad's kill retries it; the task is not
/// stopped blindly.
#[test]
fn a_stop_that_cannot_read_the_tasks_tags_fails_and_is_retried() {
    let w = World::new("nc-tagsfail");
    let (cfg, _h, arn) = w.start("c6000000-0000-4000-8000-000000000006", "web");
    w.emu
        .fault(json!({"operation": "DescribeTasks", "count": 1000, "status": 400,
        "type": "AccessDeniedException", "message": "not allowed"}));
    let e = w
        .plugin
        .stop_task(&cfg.id, Duration::from_secs(5), "SIGINT")
        .expect_err("StopTask without the task's tags");
    assert!(e.message().contains("not allowed"), "{}", e.message());
    assert_eq!(w.emu.call_count("StopTask"), 0, "stopped blindly");
    assert_eq!(w.emu.task_status("nc-tagsfail", &arn).as_deref(), Some("RUNNING"));
    w.emu.post("/_test/fault/clear", json!({}));
    let kill = tr::kill(
        &w.plugin,
        &cfg.id,
        Duration::from_secs(5),
        tr::DEFAULT_MAX_KILL_TIMEOUT,
        "SIGINT",
    );
    assert!(kill.succeeded(), "{kill:?}");
    assert_eq!(w.emu.task_status("nc-tagsfail", &arn).as_deref(), Some("STOPPED"));
}

/// Nomad keeps a task's last ten events (task_runner.go appendTaskEvent, v1.10.0); its own
/// Received and Task Setup must still be there after a whole life of the task.
#[test]
fn nomads_own_events_survive_a_tasks_whole_life() {
    let w = World::new("nc-events");
    let events = w.plugin.task_events();
    let mut list = EventList::default();
    // task_runner.go Run/prestart emit these before the driver is called.
    list.push("Received");
    list.push("Task Setup");
    let (cfg, _h, arn) = w.start("c7000000-0000-4000-8000-000000000007", "web");
    list.push("Started");
    // ECS's own progress as a real task shows it, one status per read.
    for status in ["PENDING", "ACTIVATING", "RUNNING"] {
        w.emu.fault(json!({"operation": "DescribeTasks", "count": 1, "status": 200,
            "body": {"tasks": [{"taskArn": arn, "lastStatus": status, "desiredStatus": "RUNNING", "containers": []}], "failures": []}}));
        host::eventually(WAIT, "the poller to read the status", || {
            w.emu
                .get("/_test/fault")
                .as_array()
                .is_some_and(|q| q.iter().all(|f| f["remaining"] == 0))
                .then_some(())
        });
    }
    list.push("Killing");
    let kill = tr::kill(
        &w.plugin,
        &cfg.id,
        Duration::from_secs(10),
        tr::DEFAULT_MAX_KILL_TIMEOUT,
        "SIGINT",
    );
    assert!(kill.succeeded());
    w.plugin.wait_task(&cfg.id, WAIT).unwrap();
    let mut from_driver = Vec::new();
    host::eventually(WAIT, "the exit event", || {
        while let Ok(Ok(ev)) = events.recv_timeout(Duration::from_millis(200)) {
            from_driver.push(ev.message.clone());
        }
        from_driver.iter().any(|m| m.contains("exit code")).then_some(())
    });
    for m in &from_driver {
        list.push(m.clone());
    }
    list.push("Killed");
    assert!(
        list.contains("Received"),
        "Nomad's first events were pushed out: {:?}",
        list.events
    );
    assert!(list.contains("Task Setup"), "{:?}", list.events);
    assert!(from_driver.len() <= 3, "{from_driver:?}");
}

/// An older handle names the task definition as the job did, maybe by family only, whose latest
/// revision may have moved on. A recovered task's log tail reads the definition ECS says the
/// task runs, never the family's latest.
#[test]
fn a_recovered_task_reads_the_definition_it_runs_not_the_familys_latest() {
    let mut w = World::new("nc-family");
    let (cfg, handle, arn) = w.start("c8000000-0000-4000-8000-000000000008", "web");
    let running = w
        .emu
        .tasks("nc-family")
        .into_iter()
        .find(|t| t["arn"] == arn.as_str())
        .and_then(|t| t["task_definition_arn"].as_str().map(str::to_string))
        .expect("the emulator names the task's definition");
    let mut old_style = persisted(&handle);
    let mut state: serde_json::Value = serde_json::from_slice(&old_style.driver_state).unwrap();
    assert_eq!(
        state["task_definition"],
        running.as_str(),
        "a new handle pins the revision"
    );
    state["task_definition"] = json!("my-task-definition");
    old_style.driver_state = state.to_string().into_bytes();
    let old = std::mem::replace(&mut w.plugin, Plugin::launch(&Launch::test_credentials()));
    old.kill();
    w.emu.post("/_test/calls/reset", json!({}));
    w.plugin = relaunch(&w);
    w.plugin.recover_task(&old_style).expect("RecoverTask");
    let asked = host::eventually(WAIT, "the log tail to read the task definition", || {
        let r = w.emu.requests("DescribeTaskDefinition");
        (!r.is_empty()).then_some(r)
    });
    assert!(
        asked.iter().all(|r| r["taskDefinition"] == running.as_str()),
        "read {asked:?}, the task runs {running}"
    );
    assert!(w.plugin.inspect_task(&cfg.id).is_ok());
}

/// A task laid out as Nomad lays it out under `dir`: the allocation directory, its shared
/// `alloc/logs` with the FIFO paths (client/allocdir, v1.10.0), the task's own directory.
fn laid_out(w: &World, dir: &std::path::Path, alloc: &str, suffix: &str) -> pb::TaskConfig {
    let mut cfg = host::task_config(alloc, "web", suffix, w.stanza());
    let alloc_dir = dir.join(alloc);
    std::fs::create_dir_all(alloc_dir.join("alloc/logs")).unwrap();
    std::fs::create_dir_all(alloc_dir.join("web")).unwrap();
    cfg.alloc_dir = alloc_dir.display().to_string();
    cfg.stdout_path = alloc_dir.join("alloc/logs/.web.stdout.fifo").display().to_string();
    cfg.stderr_path = alloc_dir.join("alloc/logs/.web.stderr.fifo").display().to_string();
    cfg
}

/// Nomad 1.1–1.9 hand a lost or drained allocation's task to its replacement: RecoverTask with
/// the old allocation's handle (its driver_state names the old FIFO paths) and the new
/// allocation's task config (remotetask_hook.go, v1.9.7). The log tail writes to the new
/// allocation's FIFOs, which its logmon reads, never to the old allocation's.
#[test]
fn after_a_nomad_1_9_handoff_the_log_tail_writes_the_new_allocations_fifos() {
    let w = World::new("nc-fifos");
    let dir = std::env::temp_dir().join(format!("ecs-nc-fifos-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (a, b) = (
        "c9000000-0000-4000-8000-00000000000a",
        "c9000000-0000-4000-8000-00000000000b",
    );
    let a_cfg = laid_out(&w, &dir, a, "a1a1a1a1");
    let mut old_logmon = Logmon::new(&a_cfg.stdout_path, &a_cfg.stderr_path);
    old_logmon.start();
    let handle = w
        .plugin
        .start_task(&a_cfg)
        .expect("StartTask")
        .handle
        .into_option()
        .unwrap();
    host::eventually(WAIT, "A's start line in A's stderr", || {
        old_logmon
            .stderr_lines()
            .iter()
            .any(|l| l.contains("Started ECS task"))
            .then_some(())
    });
    // The old allocation is lost: its client detaches (remotetask_hook.go PreKilling).
    w.plugin
        .stop_task(&a_cfg.id, Duration::from_secs(10), "DETACH")
        .unwrap();
    w.plugin.destroy_task(&a_cfg.id, true).unwrap();
    let b_cfg = laid_out(&w, &dir, b, "b1b1b1b1");
    let mut new_logmon = Logmon::new(&b_cfg.stdout_path, &b_cfg.stderr_path);
    new_logmon.start();
    let began = tr::remote_task_prestart(&w.plugin, &persisted(&handle), &b_cfg);
    assert!(matches!(began, Began::Recovered), "{began:?}");
    host::eventually(WAIT, "the handoff line in B's stderr", || {
        new_logmon
            .stderr_lines()
            .iter()
            .any(|l| l.contains("Took over ECS task"))
            .then_some(())
    });
    assert!(
        !old_logmon.stderr_lines().iter().any(|l| l.contains("Took over")),
        "{:?}",
        old_logmon.stderr_lines()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
