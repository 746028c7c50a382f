//! Nomad 1.10+ has no remote-task handoff: the plugin adopts a lost or drained allocation's ECS
//! task for its replacement, and sweeps away the tasks of allocations that are over — with a
//! stand-in of Nomad's HTTP API (ACLs on) beside the ECS emulator.

mod support;

use std::time::{Duration, Instant};

use nomad_driver_ecs::proto::driver::{TaskConfig, TaskHandle};
use serde_json::Value;
use support::cty::{self, s, Cty};
use support::emulator::{Emulator, REGION};
use support::host::{self, assert_health, attr_str, closed_port, eventually, wait_event, Launch, Plugin};
use support::nomad_stand_in::{AllocSpec, NomadStandIn};
use support::{handle_arn, persisted, TEST_POLL, WAIT};

use nomad_driver_ecs::proto::driver::fingerprint_response::HealthState;

const TOKEN: &str = "5e1f0c2a-acl-secret-token-77d1";

struct Setup {
    emu: Emulator,
    nomad: NomadStandIn,
    cluster: String,
    setup: Value,
}

impl Setup {
    fn new(cluster: &str) -> Setup {
        let emu = Emulator::start();
        let setup = emu.setup(cluster);
        Setup {
            emu,
            nomad: NomadStandIn::start(Some(TOKEN)),
            cluster: cluster.into(),
            setup,
        }
    }

    /// A plugin pointed at the emulator and the stand-in, sweeping every second; `extra`
    /// overrides (e.g. the grace time).
    fn plugin(&self, extra: &[(&str, Cty)]) -> Plugin {
        let p = Plugin::launch(&Launch::test_credentials());
        let mut values = vec![
            ("nomad_address", s(&self.nomad.url())),
            ("nomad_token", s(TOKEN)),
            ("reap_interval", s("1s")),
            ("reap_grace", s("1h")),
        ];
        values.extend(extra.iter().cloned());
        p.set_config(
            cty::plugin_config_values(
                Some(true),
                Some(&self.cluster),
                Some(REGION),
                Some(&self.emu.endpoint()),
                Some(TEST_POLL),
                values,
            ),
            true,
        )
        .expect("SetConfig");
        p
    }

    /// Allocation `alloc` (slot index `index`) as Nomad knows it, and its task's config.
    fn alloc(&self, alloc: &str, index: u32, task_definition: &str) -> TaskConfig {
        self.nomad.put_alloc(AllocSpec {
            id: alloc.into(),
            namespace: "default".into(),
            job_id: "ecs-remote".into(),
            task_group: "ecs-remote".into(),
            index,
            node_id: "node-1".into(),
            client_status: "running".into(),
            desired_status: "run".into(),
            migrate: false,
        });
        let mut cfg = host::task_config(
            alloc,
            "web",
            &alloc[..8],
            support::fargate_stanza(&self.setup, task_definition).encode(),
        );
        cfg.env.insert("NOMAD_ALLOC_INDEX".into(), index.to_string());
        cfg
    }

    fn start(&self, p: &Plugin, cfg: &TaskConfig) -> (TaskHandle, String) {
        let handle = p
            .start_task(cfg)
            .expect("StartTask")
            .handle
            .into_option()
            .expect("handle");
        let arn = handle_arn(&handle);
        (handle, arn)
    }

    fn tag(&self, arn: &str, key: &str) -> Option<String> {
        self.emu
            .task_tags(&self.cluster, arn)
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    fn status(&self, arn: &str) -> String {
        self.emu.task_status(&self.cluster, arn).unwrap_or_default()
    }

    /// Waits until ECS reports `arn` STOPPED; its stopped reason.
    fn await_stopped(&self, arn: &str) -> String {
        eventually(WAIT, &format!("ECS task {arn} stopped"), || {
            self.emu
                .tasks(&self.cluster)
                .into_iter()
                .find(|t| t["arn"] == arn && t["last_status"] == "STOPPED")
                .map(|t| t["stopped_reason"].as_str().unwrap_or_default().to_string())
        })
    }

    fn running(&self) -> usize {
        self.emu
            .tasks(&self.cluster)
            .iter()
            .filter(|t| t["last_status"] != "STOPPED")
            .count()
    }

    /// Waits until Nomad's API was asked about `alloc` `n` more times (so that at least that
    /// many sweeps or lookups happened).
    fn await_reads(&self, alloc: &str, n: usize) {
        let reads = || self.nomad.requests().iter().filter(|r| r.path.contains(alloc)).count();
        let start = reads();
        eventually(WAIT, &format!("{n} more reads of allocation {alloc}"), || {
            (reads() >= start + n).then_some(())
        });
    }
}

const TD: &str = "my-task-definition";

fn no_secret(p: &Plugin) {
    for line in p.stderr_lines() {
        assert!(!line.contains(TOKEN), "the Nomad token reached the log: {line}");
    }
}

#[test]
fn a_lost_allocations_task_is_adopted_by_its_replacement() {
    let w = Setup::new("ho-lost");
    let (a, b) = (
        "a1111111-0000-4000-8000-000000000001",
        "b2222222-0000-4000-8000-000000000002",
    );
    let p1 = w.plugin(&[]);
    let a_cfg = w.alloc(a, 0, TD);
    let (a_handle, arn) = w.start(&p1, &a_cfg);
    assert_eq!(w.tag(&arn, "nomad:alloc-index").as_deref(), Some("0"));
    assert!(w.tag(&arn, "nomad:config-hash").is_some_and(|h| h.len() == 16));
    let started_by = w.emu.tasks(&w.cluster)[0]["started_by"].as_str().unwrap().to_string();
    assert!(
        started_by.starts_with("nomad/") && started_by.len() <= 128,
        "{started_by}"
    );
    no_secret(&p1);
    // The node dies for good; Nomad marks allocation A lost and places B in the same slot.
    p1.kill();
    w.nomad.set_client_status(a, "lost");
    let b_cfg = w.alloc(b, 0, TD);
    let p2 = w.plugin(&[]);
    let events = p2.task_events();
    let (_, adopted) = w.start(&p2, &b_cfg);
    assert_eq!(adopted, arn, "B's handle names A's ECS task");
    let ev = wait_event(&events, "Adopted running ECS task", WAIT);
    assert!(ev.annotations["adopted"].contains(a), "{:?}", ev.annotations);
    assert_eq!(w.emu.call_count("RunTask"), 1, "no second task");
    assert_eq!(w.running(), 1);
    assert_eq!(w.tag(&arn, "nomad:alloc-id").as_deref(), Some(b));
    assert_eq!(w.tag(&arn, "nomad:adopted-from").as_deref(), Some(a));
    assert_eq!(w.tag(&arn, "nomad:task-id").as_deref(), Some(b_cfg.id.as_str()));
    assert!(p2
        .stderr_lines()
        .iter()
        .any(|l| l.contains("adopted ECS task") && l.contains(r#""@level":"info""#)));

    // The old node comes back after all: its client recovers A and stops it. The task is B's now.
    let p1 = w.plugin(&[]);
    p1.recover_task(&persisted(&a_handle)).expect("RecoverTask");
    p1.stop_task(&a_cfg.id, Duration::from_secs(10), "SIGTERM")
        .expect("StopTask");
    assert_eq!(p1.wait_task(&a_cfg.id, WAIT).unwrap().result.unwrap().exit_code, 0);
    p1.destroy_task(&a_cfg.id, true).expect("DestroyTask");
    assert_eq!(w.status(&arn), "RUNNING", "A's client left B's task alone");

    // The task's later exit reaches B.
    w.emu
        .exit_task(&w.cluster, &arn, Some(3), "Essential container in task exited");
    assert_eq!(p2.wait_task(&b_cfg.id, WAIT).unwrap().result.unwrap().exit_code, 3);
    for p in [&p1, &p2] {
        no_secret(p);
        assert!(w
            .nomad
            .requests()
            .iter()
            .all(|r| r.headers.get("x-nomad-token").map(String::as_str) == Some(TOKEN)));
    }
}

#[test]
fn a_rolling_update_does_not_adopt_the_old_version() {
    let w = Setup::new("ho-roll");
    let v2 = "my-task-definition-v2";
    w.emu
        .setup_with(serde_json::json!({"region": REGION, "cluster": w.cluster, "task_definition_family": v2}));
    let (a, b) = (
        "a3333333-0000-4000-8000-000000000003",
        "b4444444-0000-4000-8000-000000000004",
    );
    let p1 = w.plugin(&[]);
    let (_, old) = w.start(&p1, &w.alloc(a, 0, TD));
    p1.kill();
    w.nomad.set_client_status(a, "lost");
    let p2 = w.plugin(&[]);
    let (_, new) = w.start(&p2, &w.alloc(b, 0, v2));
    assert_ne!(new, old, "another task definition: a new task");
    assert_eq!(w.emu.call_count("RunTask"), 2);
    assert!(p2
        .stderr_lines()
        .iter()
        .any(|l| l.contains("not adopting") && l.contains("task config differs")));
    assert_eq!(
        w.tag(&old, "nomad:alloc-id").as_deref(),
        Some(a),
        "the old task keeps its tags"
    );
}

#[test]
fn an_unknown_allocation_is_neither_adopted_nor_reaped() {
    let w = Setup::new("ho-unknown");
    let (a, b) = (
        "a5555555-0000-4000-8000-000000000005",
        "b6666666-0000-4000-8000-000000000006",
    );
    let p1 = w.plugin(&[]);
    let (_, old) = w.start(&p1, &w.alloc(a, 0, TD));
    p1.kill();
    // A disconnected node (max_client_disconnect): the allocation is unknown, and may come back.
    w.nomad.set_client_status(a, "unknown");
    let p2 = w.plugin(&[("reap_grace", s("0s"))]);
    let (_, new) = w.start(&p2, &w.alloc(b, 0, TD));
    assert_ne!(new, old);
    assert_eq!(w.emu.call_count("RunTask"), 2);
    w.await_reads(a, 3);
    assert_eq!(w.status(&old), "RUNNING", "an unknown allocation's task is not reaped");
    // The sweep does run: once the allocation is over, its task goes at once (grace 0).
    w.nomad.set_client_status(a, "complete");
    w.await_stopped(&old);
    assert_eq!(w.status(&new), "RUNNING", "a watched task is never swept");
}

#[test]
fn a_garbage_collected_allocations_task_is_reaped_after_the_grace_time() {
    let w = Setup::new("ho-gc");
    let a = "a7777777-0000-4000-8000-000000000007";
    let p1 = w.plugin(&[]);
    let (_, arn) = w.start(&p1, &w.alloc(a, 0, TD));
    p1.kill();
    let grace = Duration::from_secs(3);
    let p2 = w.plugin(&[("reap_grace", s("3s"))]);
    // A 500 from the allocation endpoint means "cannot tell", never "gone".
    w.nomad.fail_alloc(a, true);
    w.nomad.set_client_status(a, "complete");
    w.await_reads(a, 5);
    assert_eq!(w.status(&arn), "RUNNING");
    w.nomad.fail_alloc(a, false);
    // Taken before the removal: the sweep cannot see the allocation gone any earlier.
    let gone = Instant::now();
    w.nomad.remove_alloc(a);
    let reason = w.await_stopped(&arn);
    assert!(
        gone.elapsed() >= grace,
        "stopped {:?} after the allocation went, before the grace time",
        gone.elapsed()
    );
    assert!(reason.contains(a) && reason.contains("no longer exists"), "{reason}");
    eventually(WAIT, "the sweep's log line", || {
        p2.stderr_lines()
            .iter()
            .any(|l| l.contains("orphan sweep stopped ECS task"))
            .then_some(())
    });
    no_secret(&p2);
}

#[test]
fn a_drained_allocations_task_is_adopted_by_its_replacement() {
    let w = Setup::new("ho-drain");
    let (a, b) = (
        "a8888888-0000-4000-8000-000000000008",
        "b9999999-0000-4000-8000-000000000009",
    );
    let p = w.plugin(&[]);
    let events = p.task_events();
    let a_cfg = w.alloc(a, 0, TD);
    let (_, arn) = w.start(&p, &a_cfg);
    // `nomad node drain`: the allocation's desired transition is migrate; Nomad kills it.
    w.nomad.set_migrate(a, true);
    p.stop_task(&a_cfg.id, Duration::from_secs(10), "SIGINT")
        .expect("StopTask");
    wait_event(&events, "Node drain", WAIT);
    assert_eq!(p.wait_task(&a_cfg.id, WAIT).unwrap().result.unwrap().exit_code, 0);
    p.destroy_task(&a_cfg.id, true).expect("DestroyTask");
    assert_eq!(w.status(&arn), "RUNNING", "left running for the replacement");
    assert!(w.tag(&arn, "nomad:handoff-until").is_some());
    w.nomad.set_client_status(a, "complete");
    // The replacement, on another node.
    let p2 = w.plugin(&[]);
    let b_cfg = w.alloc(b, 0, TD);
    let (_, adopted) = w.start(&p2, &b_cfg);
    assert_eq!(adopted, arn);
    assert_eq!(w.emu.call_count("RunTask"), 1);
    assert_eq!(w.tag(&arn, "nomad:alloc-id").as_deref(), Some(b));
    assert_eq!(w.tag(&arn, "nomad:handoff-until"), None, "the mark is cleared");
    // An ordinary stop of B stops the task.
    p2.stop_task(&b_cfg.id, Duration::from_secs(10), "SIGINT")
        .expect("StopTask");
    assert_eq!(w.status(&arn), "STOPPED");
}

#[test]
fn a_replacement_that_starts_before_the_drained_allocation_stops_adopts_its_task() {
    let w = Setup::new("ho-early");
    let (a, b) = (
        "a1717171-0000-4000-8000-000000000017",
        "b1818181-0000-4000-8000-000000000018",
    );
    let p = w.plugin(&[]);
    let a_cfg = w.alloc(a, 0, TD);
    let (_, arn) = w.start(&p, &a_cfg);
    // The drain's plan stops A and places B at once; B's client is quicker.
    w.nomad.set_migrate(a, true);
    let p2 = w.plugin(&[]);
    let (_, adopted) = w.start(&p2, &w.alloc(b, 0, TD));
    assert_eq!(adopted, arn);
    assert_eq!(w.tag(&arn, "nomad:alloc-id").as_deref(), Some(b));
    // A's kill then leaves B's task alone.
    p.stop_task(&a_cfg.id, Duration::from_secs(10), "SIGINT")
        .expect("StopTask");
    assert_eq!(p.wait_task(&a_cfg.id, WAIT).unwrap().result.unwrap().exit_code, 0);
    assert_eq!(w.status(&arn), "RUNNING");
    assert_eq!(w.emu.call_count("RunTask"), 1);
}

#[test]
fn a_drained_task_nobody_adopts_is_stopped_when_its_window_ends() {
    let w = Setup::new("ho-window");
    let a = "a1010101-0000-4000-8000-000000000010";
    let p = w.plugin(&[("drain_handoff_window", s("2s"))]);
    let a_cfg = w.alloc(a, 0, TD);
    let (_, arn) = w.start(&p, &a_cfg);
    w.nomad.set_migrate(a, true);
    // Taken before StopTask: the window (whole seconds; more than 1 s of the 2) starts later.
    let left = Instant::now();
    p.stop_task(&a_cfg.id, Duration::from_secs(10), "SIGINT")
        .expect("StopTask");
    p.wait_task(&a_cfg.id, WAIT).unwrap();
    p.destroy_task(&a_cfg.id, true).unwrap();
    w.nomad.set_client_status(a, "complete");
    let reason = w.await_stopped(&arn);
    assert!(
        left.elapsed() >= Duration::from_secs(1),
        "stopped before its window ended"
    );
    assert!(reason.contains("drain handoff window"), "{reason}");
}

#[test]
fn without_nomads_api_nothing_is_adopted_or_reaped_and_the_plugin_is_healthy() {
    let w = Setup::new("ho-noapi");
    let a = "a1212121-0000-4000-8000-000000000012";
    let b = "b1313131-0000-4000-8000-000000000013";
    let closed = format!("http://127.0.0.1:{}", closed_port());
    let p1 = w.plugin(&[("nomad_address", s(&closed))]);
    let (_, old) = w.start(&p1, &w.alloc(a, 0, TD));
    p1.kill();
    w.nomad.set_client_status(a, "lost");
    let p2 = w.plugin(&[("nomad_address", s(&closed)), ("reap_grace", s("0s"))]);
    let fp = p2.first_fingerprint();
    assert_health(&fp, HealthState::HEALTHY);
    let api = attr_str(&fp, "driver.ecs.nomad_api").unwrap_or_default();
    assert!(api.starts_with("unavailable"), "{api}");
    let b_cfg = w.alloc(b, 0, TD);
    let (_, new) = w.start(&p2, &b_cfg);
    assert_ne!(new, old, "nothing adopted");
    eventually(WAIT, "two skipped sweeps", || {
        let n = p2
            .stderr_lines()
            .iter()
            .filter(|l| l.contains("orphan sweep skipped"))
            .count();
        (n >= 2).then_some(())
    });
    assert_eq!(w.status(&old), "RUNNING", "nothing reaped");
    // Drains fall back to stopping the task.
    w.nomad.set_migrate(b, true);
    p2.stop_task(&b_cfg.id, Duration::from_secs(10), "SIGINT")
        .expect("StopTask");
    assert_eq!(w.status(&new), "STOPPED");

    // A wrong token: the API answers 403, the features stay off, still healthy.
    let p3 = w.plugin(&[("nomad_token", s("not-the-token"))]);
    let fp = p3.first_fingerprint();
    assert_health(&fp, HealthState::HEALTHY);
    let api = attr_str(&fp, "driver.ecs.nomad_api").unwrap_or_default();
    assert!(api.starts_with("unavailable") && api.contains("403"), "{api}");
    assert!(!api.contains("not-the-token"));
    // With the stand-in reachable and the right token, the attribute says so.
    let p4 = w.plugin(&[]);
    let api = attr_str(&p4.first_fingerprint(), "driver.ecs.nomad_api").unwrap_or_default();
    assert!(api.starts_with("available (Nomad 1.10"), "{api}");
}

#[test]
fn dry_run_stops_nothing() {
    let w = Setup::new("ho-dry");
    let a = "a1414141-0000-4000-8000-000000000014";
    let p1 = w.plugin(&[]);
    let (_, arn) = w.start(&p1, &w.alloc(a, 0, TD));
    p1.kill();
    w.nomad.remove_alloc(a);
    let p2 = w.plugin(&[("reap_grace", s("0s")), ("reap_dry_run", Cty::Bool(true))]);
    eventually(WAIT, "two dry-run verdicts", || {
        let n = p2
            .stderr_lines()
            .iter()
            .filter(|l| l.contains("would stop ECS task") && l.contains(&arn))
            .count();
        (n >= 2).then_some(())
    });
    assert_eq!(w.status(&arn), "RUNNING");
    assert_eq!(w.emu.call_count("StopTask"), 0);
}

#[test]
fn nomad_1_9_handoff_by_recover_task_moves_the_tags_and_is_not_swept() {
    let w = Setup::new("ho-native");
    let (a, b) = (
        "a1515151-0000-4000-8000-000000000015",
        "b1616161-0000-4000-8000-000000000016",
    );
    let p1 = w.plugin(&[]);
    let a_cfg = w.alloc(a, 0, TD);
    let (a_handle, arn) = w.start(&p1, &a_cfg);
    // 1.1-1.9: the old allocation's task is detached, not stopped...
    p1.stop_task(&a_cfg.id, Duration::from_secs(10), "DETACH")
        .expect("StopTask DETACH");
    p1.destroy_task(&a_cfg.id, true).unwrap();
    assert_eq!(w.status(&arn), "RUNNING");
    w.nomad.set_client_status(a, "lost");
    // ...and the replacement recovers it with the old driver_state and its own config.
    let b_cfg = w.alloc(b, 0, TD);
    let mut handle = persisted(&a_handle);
    let mut cfg = b_cfg.clone();
    cfg.msgpack_driver_config.clear();
    handle.config = Some(cfg).into();
    let p2 = w.plugin(&[]);
    let events = p2.task_events();
    p2.recover_task(&handle).expect("RecoverTask");
    wait_event(&events, "Took over ECS task", WAIT);
    assert_eq!(w.tag(&arn, "nomad:alloc-id").as_deref(), Some(b));
    // The other client's sweep sees a live allocation.
    let p3 = w.plugin(&[("reap_grace", s("0s"))]);
    w.await_reads(b, 3);
    assert_eq!(w.status(&arn), "RUNNING");
    assert_eq!(w.emu.call_count("RunTask"), 1);
    drop(p3);
}
