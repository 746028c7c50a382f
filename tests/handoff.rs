//! Nomad 1.10+ has no remote-task handoff: the plugin adopts a lost or drained allocation's ECS
//! task for its replacement, and sweeps away the tasks of allocations that are over — with a
//! stand-in of Nomad's HTTP API (ACLs on, one agent per client node) beside the ECS emulator.
//!
//! Each plugin runs "on" a Nomad node: it talks to that node's agent, and its fingerprints
//! reach the stand-in's node list as a Nomad client stores them, which is what the sweep's
//! election reads. Sweep and adoption only ever consider tasks of their own Nomad cluster and
//! region; the tests of that (other clusters sharing the ECS cluster, a wrong `nomad_address`,
//! forged tags, the brake) are at the end.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use nomad_driver_ecs::aws::credentials::{Credentials, StaticCredentials};
use nomad_driver_ecs::aws::ecs::{AwsVpcConfiguration, EcsClient, RunTaskInput};
use nomad_driver_ecs::aws::http::HttpConfig;
use nomad_driver_ecs::proto::driver::{TaskConfig, TaskHandle};
use serde_json::Value;
use support::cty::{list, s, Cty};
use support::emulator::{Emulator, REGION};
use support::host::{self, assert_health, attr_str, closed_port, eventually, wait_event, Launch, Plugin};
use support::nomad_stand_in::{AllocSpec, NomadStandIn};
use support::{handle_arn, persisted, WAIT};

use nomad_driver_ecs::proto::driver::fingerprint_response::HealthState;

const TOKEN: &str = "5e1f0c2a-acl-secret-token-77d1";
/// The operator's name for the tests' Nomad cluster (`nomad_cluster`).
const NOMAD_CLUSTER: &str = "test-east";

struct Setup {
    emu: Emulator,
    nomad: Arc<NomadStandIn>,
    cluster: String,
    setup: Value,
}

impl Setup {
    fn new(cluster: &str) -> Setup {
        let emu = Emulator::start();
        let setup = emu.setup(cluster);
        Setup {
            emu,
            nomad: Arc::new(NomadStandIn::start(Some(TOKEN))),
            cluster: cluster.into(),
            setup,
        }
    }

    /// A plugin on Nomad node `node` of `nomad`, talking to that node's agent, sweeping every
    /// second (grace 1 h unless `extra` says otherwise), in Nomad cluster `test-east`.
    fn plugin_in(&self, nomad: &Arc<NomadStandIn>, node: &str, extra: &[(&str, Cty)]) -> Plugin {
        let p = Plugin::launch(&Launch::test_credentials());
        let mut values = vec![
            ("nomad_address", s(&nomad.agent_url(node))),
            ("nomad_token", s(TOKEN)),
            ("nomad_cluster", s(NOMAD_CLUSTER)),
            ("reap_interval", s("1s")),
            ("reap_grace", s("1h")),
        ];
        for (k, v) in extra {
            values.retain(|(key, _)| key != k);
            values.push((k, v.clone()));
        }
        p.set_config(self.config(values), true).expect("SetConfig");
        register_fingerprints(nomad, node, &p);
        p
    }

    fn plugin(&self, node: &str, extra: &[(&str, Cty)]) -> Plugin {
        self.plugin_in(&self.nomad, node, extra)
    }

    fn config(&self, values: Vec<(&str, Cty)>) -> Vec<u8> {
        support::test_plugin_config(&self.cluster, &self.emu.endpoint(), values)
    }

    /// Allocation `alloc` (slot index `index`, replacing `previous`) as Nomad knows it, and its
    /// task's config.
    fn alloc_in(
        &self,
        nomad: &NomadStandIn,
        alloc: &str,
        index: u32,
        previous: &str,
        task_definition: &str,
    ) -> TaskConfig {
        nomad.put_alloc(AllocSpec {
            id: alloc.into(),
            namespace: "default".into(),
            job_id: "ecs-remote".into(),
            task_group: "ecs-remote".into(),
            index,
            node_id: "node-1".into(),
            client_status: "running".into(),
            desired_status: "run".into(),
            migrate: false,
            previous: previous.into(),
        });
        let mut cfg = host::task_config(
            alloc,
            "web",
            &alloc[..8],
            support::fargate_stanza(&self.setup, task_definition).encode(),
        );
        cfg.env.insert("NOMAD_ALLOC_INDEX".into(), index.to_string());
        cfg.env
            .insert("NOMAD_ALLOC_NAME".into(), format!("ecs-remote.ecs-remote[{index}]"));
        cfg
    }

    fn alloc(&self, alloc: &str, index: u32, previous: &str, task_definition: &str) -> TaskConfig {
        self.alloc_in(&self.nomad, alloc, index, previous, task_definition)
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
        self.status_in(&self.cluster, arn)
    }

    fn status_in(&self, cluster: &str, arn: &str) -> String {
        self.emu.task_status(cluster, arn).unwrap_or_default()
    }

    /// Waits until ECS reports `arn` STOPPED; its stopped reason.
    fn await_stopped(&self, arn: &str) -> String {
        self.await_stopped_in(&self.cluster, arn)
    }

    fn await_stopped_in(&self, cluster: &str, arn: &str) -> String {
        eventually(WAIT, &format!("ECS task {arn} stopped"), || {
            self.emu
                .tasks(cluster)
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

    /// An ECS client of someone else in the same AWS account (RunTask, TagResource).
    fn outsider(&self) -> EcsClient {
        let creds = StaticCredentials(Credentials::new("AKIDOTHER", "other-secret", None, None, "test"));
        EcsClient::new(
            Some(&self.emu.endpoint()),
            REGION,
            Arc::new(creds),
            &HttpConfig::default(),
        )
        .unwrap()
    }

    /// Runs a task directly in ECS (not through the plugin) with these tags.
    fn run_outside(&self, ecs: &EcsClient, started_by: &str, tags: Vec<(String, String)>) -> String {
        let input = RunTaskInput {
            cluster: self.cluster.clone(),
            task_definition: TD.into(),
            launch_type: Some("FARGATE".into()),
            network: Some(AwsVpcConfiguration {
                subnets: vec![self.setup["subnets"][0].as_str().unwrap().to_string()],
                security_groups: vec![self.setup["security_group"].as_str().unwrap().to_string()],
                assign_public_ip: None,
            }),
            started_by: Some(started_by.into()),
            tags,
            ..Default::default()
        };
        let out = ecs.run_task(&input).unwrap();
        out.tasks[0].task_arn.clone()
    }
}

/// What a Nomad client does with its driver plugins' fingerprints: every response of the
/// plugin's Fingerprint stream updates the node's `Drivers.ecs` (client/pluginmanager/
/// drivermanager/instance.go `handleFingerprint`, client/node_updater.go at v1.10.0). Returns
/// once the first fingerprint is stored.
fn register_fingerprints(nomad: &Arc<NomadStandIn>, node: &str, p: &Plugin) {
    support::nomad_stand_in::follow_fingerprints(nomad, node, p);
}

/// The node dies with its plugin: Nomad marks it down (heartbeat missed).
fn node_dies(w: &Setup, node: &str, p: Plugin) {
    p.kill();
    w.nomad.set_node(node, "down");
}

/// Waits until `p` logged `n` more lines containing `needle`.
fn await_log(p: &Plugin, needle: &str, n: usize) {
    let count = || p.stderr_lines().iter().filter(|l| l.contains(needle)).count();
    let start = count();
    eventually(WAIT, &format!("{n} more log lines with {needle:?}"), || {
        (count() >= start + n).then_some(())
    });
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
    let p1 = w.plugin("node-1", &[]);
    let a_cfg = w.alloc(a, 0, "", TD);
    let (a_handle, arn) = w.start(&p1, &a_cfg);
    assert_eq!(w.tag(&arn, "nomad:alloc-index").as_deref(), Some("0"));
    assert!(w.tag(&arn, "nomad:config-hash").is_some_and(|h| h.len() == 16));
    assert_eq!(w.tag(&arn, "nomad:region").as_deref(), Some("global"));
    assert_eq!(w.tag(&arn, "nomad:cluster").as_deref(), Some(NOMAD_CLUSTER));
    let started_by = w.emu.tasks(&w.cluster)[0]["started_by"].as_str().unwrap().to_string();
    assert!(
        started_by.starts_with("nomad/") && started_by.len() <= 128,
        "{started_by}"
    );
    no_secret(&p1);
    // The node dies for good; Nomad marks allocation A lost and places B in the same slot.
    node_dies(&w, "node-1", p1);
    w.nomad.set_client_status(a, "lost");
    let b_cfg = w.alloc(b, 0, a, TD);
    let p2 = w.plugin("node-2", &[]);
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
    w.nomad.set_node("node-1", "ready");
    let p1 = w.plugin("node-1", &[]);
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
    let p1 = w.plugin("node-1", &[]);
    let (_, old) = w.start(&p1, &w.alloc(a, 0, "", TD));
    node_dies(&w, "node-1", p1);
    w.nomad.set_client_status(a, "lost");
    let p2 = w.plugin("node-2", &[]);
    let (_, new) = w.start(&p2, &w.alloc(b, 0, a, v2));
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
    let p1 = w.plugin("node-1", &[]);
    let (_, old) = w.start(&p1, &w.alloc(a, 0, "", TD));
    node_dies(&w, "node-1", p1);
    // A disconnected node (max_client_disconnect): the allocation is unknown, and may come back.
    w.nomad.set_client_status(a, "unknown");
    let p2 = w.plugin("node-2", &[("reap_grace", s("0s"))]);
    let (_, new) = w.start(&p2, &w.alloc(b, 0, a, TD));
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
    let p1 = w.plugin("node-1", &[]);
    let (_, arn) = w.start(&p1, &w.alloc(a, 0, "", TD));
    node_dies(&w, "node-1", p1);
    let grace = Duration::from_secs(3);
    let p2 = w.plugin("node-2", &[("reap_grace", s("3s"))]);
    // A 500 from the allocation endpoint means "cannot tell", never "gone".
    w.nomad.fail_alloc(a, true);
    w.nomad.set_client_status(a, "complete");
    w.await_reads(a, 5);
    assert_eq!(w.status(&arn), "RUNNING");
    assert_eq!(
        w.tag(&arn, "nomad:orphan-since"),
        None,
        "not marked while Nomad cannot tell"
    );
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
    assert!(
        w.tag(&arn, "nomad:orphan-since").is_some(),
        "the first sighting is on the task"
    );
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
    let p = w.plugin("node-1", &[]);
    let events = p.task_events();
    let a_cfg = w.alloc(a, 0, "", TD);
    let (_, arn) = w.start(&p, &a_cfg);
    // `nomad node drain`: the allocation's desired transition is migrate; Nomad kills it.
    w.nomad.drain(a);
    p.stop_task(&a_cfg.id, Duration::from_secs(10), "SIGINT")
        .expect("StopTask");
    wait_event(&events, "Node drain", WAIT);
    assert_eq!(p.wait_task(&a_cfg.id, WAIT).unwrap().result.unwrap().exit_code, 0);
    p.destroy_task(&a_cfg.id, true).expect("DestroyTask");
    assert_eq!(w.status(&arn), "RUNNING", "left running for the replacement");
    assert!(w.tag(&arn, "nomad:handoff-until").is_some());
    w.nomad.set_client_status(a, "complete");
    // The replacement, on another node.
    let p2 = w.plugin("node-2", &[]);
    let b_cfg = w.alloc(b, 0, a, TD);
    let (_, adopted) = w.start(&p2, &b_cfg);
    assert_eq!(adopted, arn);
    assert_eq!(w.emu.call_count("RunTask"), 1);
    assert_eq!(w.tag(&arn, "nomad:alloc-id").as_deref(), Some(b));
    assert_eq!(w.tag(&arn, "nomad:handoff-until"), None, "the mark is cleared");
    // The adoption asked this cluster's Nomad about both allocations.
    let asked: Vec<String> = w.nomad.requests().iter().map(|r| r.path.clone()).collect();
    assert!(asked.iter().any(|p| p == &format!("/v1/allocation/{b}")), "{asked:?}");
    assert!(asked.iter().any(|p| p == &format!("/v1/allocation/{a}")), "{asked:?}");
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
    let p = w.plugin("node-1", &[]);
    let a_cfg = w.alloc(a, 0, "", TD);
    let (_, arn) = w.start(&p, &a_cfg);
    // The drain's plan stops A and places B at once; B's client is quicker.
    w.nomad.drain(a);
    let p2 = w.plugin("node-2", &[]);
    let (_, adopted) = w.start(&p2, &w.alloc(b, 0, a, TD));
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
    let p = w.plugin("node-1", &[("drain_handoff_window", s("2s"))]);
    let a_cfg = w.alloc(a, 0, "", TD);
    let (_, arn) = w.start(&p, &a_cfg);
    w.nomad.drain(a);
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

/// `nomad alloc stop` (and `nomad job restart -reschedule`) set the same migrate flag as a
/// drain without draining the node (nomad/alloc_endpoint.go Stop, v1.10.0): the user asked for
/// a new task, so the old one is stopped and the replacement starts its own.
#[test]
fn alloc_stop_replaces_the_task_instead_of_handing_it_over() {
    let w = Setup::new("ho-allocstop");
    let (a, b) = (
        "a4141414-0000-4000-8000-000000000041",
        "b4242424-0000-4000-8000-000000000042",
    );
    let p = w.plugin("node-1", &[]);
    let a_cfg = w.alloc(a, 0, "", TD);
    let (_, arn) = w.start(&p, &a_cfg);
    w.nomad.stop_alloc(a);
    // The replacement may be placed before A's kill: it must not take A's task.
    let p2 = w.plugin("node-2", &[]);
    let (_, new) = w.start(&p2, &w.alloc(b, 0, a, TD));
    assert_ne!(new, arn, "alloc stop must not hand the task to the replacement");
    p.stop_task(&a_cfg.id, Duration::from_secs(10), "SIGINT")
        .expect("StopTask");
    assert_eq!(w.status(&arn), "STOPPED");
    assert_eq!(w.tag(&arn, "nomad:handoff-until"), None);
    assert_eq!(w.emu.call_count("RunTask"), 2);
}

/// System jobs run one allocation per node, all at index 0 (so they share a slot): a drained
/// system allocation's task is stopped, not handed to another node's allocation.
#[test]
fn a_system_jobs_task_is_never_handed_over() {
    let w = Setup::new("ho-system");
    let (a, b) = (
        "a4343434-0000-4000-8000-000000000043",
        "b4444444-0000-4000-8000-000000000044",
    );
    let p = w.plugin("node-1", &[]);
    let a_cfg = w.alloc(a, 0, "", TD);
    let (_, arn) = w.start(&p, &a_cfg);
    w.nomad.set_job_type(a, "system");
    w.nomad.drain(a);
    // Another node's allocation of the job, which Nomad links to A (as after a job update).
    let p2 = w.plugin("node-2", &[]);
    let b_cfg = w.alloc(b, 0, a, TD);
    w.nomad.set_job_type(b, "system");
    let (_, other) = w.start(&p2, &b_cfg);
    assert_ne!(other, arn, "another node's system allocation took this node's task");
    p.stop_task(&a_cfg.id, Duration::from_secs(10), "SIGINT")
        .expect("StopTask");
    assert_eq!(w.status(&arn), "STOPPED");
    assert_eq!(w.tag(&arn, "nomad:handoff-until"), None);
}

#[test]
fn without_nomads_api_nothing_is_adopted_or_reaped_and_the_plugin_is_healthy() {
    let w = Setup::new("ho-noapi");
    let a = "a1212121-0000-4000-8000-000000000012";
    let b = "b1313131-0000-4000-8000-000000000013";
    let closed = format!("http://127.0.0.1:{}", closed_port());
    let p1 = w.plugin("node-1", &[("nomad_address", s(&closed))]);
    let (_, old) = w.start(&p1, &w.alloc(a, 0, "", TD));
    p1.kill();
    w.nomad.set_client_status(a, "lost");
    let p2 = w.plugin("node-2", &[("nomad_address", s(&closed)), ("reap_grace", s("0s"))]);
    let fp = p2.first_fingerprint();
    assert_health(&fp, HealthState::HEALTHY);
    let api = attr_str(&fp, "driver.ecs.nomad_api").unwrap_or_default();
    assert!(api.starts_with("unavailable"), "{api}");
    let b_cfg = w.alloc(b, 0, a, TD);
    let (_, new) = w.start(&p2, &b_cfg);
    assert_ne!(new, old, "nothing adopted");
    await_log(&p2, "orphan sweep skipped", 2);
    assert_eq!(w.status(&old), "RUNNING", "nothing reaped");
    // Drains fall back to stopping the task.
    w.nomad.drain(b);
    p2.stop_task(&b_cfg.id, Duration::from_secs(10), "SIGINT")
        .expect("StopTask");
    assert_eq!(w.status(&new), "STOPPED");

    // A wrong token: the API answers 403, the features stay off, still healthy.
    let p3 = w.plugin("node-3", &[("nomad_token", s("not-the-token"))]);
    let fp = p3.first_fingerprint();
    assert_health(&fp, HealthState::HEALTHY);
    let api = attr_str(&fp, "driver.ecs.nomad_api").unwrap_or_default();
    assert!(api.starts_with("unavailable") && api.contains("403"), "{api}");
    assert!(!api.contains("not-the-token"));
    // With the stand-in reachable and the right token, the attribute says so.
    let p4 = w.plugin("node-4", &[]);
    let fp = p4.first_fingerprint();
    let api = attr_str(&fp, "driver.ecs.nomad_api").unwrap_or_default();
    assert!(api.starts_with("available (Nomad 1.10"), "{api}");
    assert_eq!(
        attr_str(&fp, "driver.ecs.sweep_scope").as_deref(),
        Some("test-east@global ecs:us-east-1:ho-noapi")
    );
}

#[test]
fn dry_run_stops_nothing() {
    let w = Setup::new("ho-dry");
    let a = "a1414141-0000-4000-8000-000000000014";
    let p1 = w.plugin("node-1", &[]);
    let (_, arn) = w.start(&p1, &w.alloc(a, 0, "", TD));
    node_dies(&w, "node-1", p1);
    w.nomad.remove_alloc(a);
    let p2 = w.plugin("node-2", &[("reap_grace", s("0s")), ("reap_dry_run", Cty::Bool(true))]);
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
    let p1 = w.plugin("node-1", &[]);
    let a_cfg = w.alloc(a, 0, "", TD);
    let (a_handle, arn) = w.start(&p1, &a_cfg);
    // 1.1-1.9: the old allocation's task is detached, not stopped...
    p1.stop_task(&a_cfg.id, Duration::from_secs(10), "DETACH")
        .expect("StopTask DETACH");
    p1.destroy_task(&a_cfg.id, true).unwrap();
    assert_eq!(w.status(&arn), "RUNNING");
    w.nomad.set_client_status(a, "lost");
    // ...and the replacement recovers it with the old driver_state and its own config.
    let b_cfg = w.alloc(b, 0, a, TD);
    let mut handle = persisted(&a_handle);
    let mut cfg = b_cfg.clone();
    cfg.msgpack_driver_config.clear();
    handle.config = Some(cfg).into();
    let p2 = w.plugin("node-2", &[]);
    let events = p2.task_events();
    p2.recover_task(&handle).expect("RecoverTask");
    wait_event(&events, "Took over ECS task", WAIT);
    // The tags move after RecoverTask answered (it makes no AWS call of its own for them).
    host::eventually(WAIT, "the tags to name the new allocation", || {
        (w.tag(&arn, "nomad:alloc-id").as_deref() == Some(b)).then_some(())
    });
    drop(p1);
    w.nomad.set_node("node-1", "down");
    // The other client's sweep sees a live allocation.
    let p3 = w.plugin("node-3", &[("reap_grace", s("0s"))]);
    w.await_reads(b, 3);
    assert_eq!(w.status(&arn), "RUNNING");
    assert_eq!(w.emu.call_count("RunTask"), 1);
    drop(p3);
}

// ---- Shared ECS clusters, wrong addresses, forged tags: issue 11 ----

#[test]
fn another_nomad_cluster_sharing_the_ecs_cluster_is_never_swept() {
    let w = Setup::new("ho-shared");
    let west = Arc::new(NomadStandIn::start(Some(TOKEN)));
    let (ours, theirs) = (
        "a2020202-0000-4000-8000-000000000020",
        "c2121212-0000-4000-8000-000000000021",
    );
    // The other Nomad cluster ("test-west", same region name) runs a task in the same ECS
    // cluster, then its client dies: its allocation is still running over there.
    let pw = w.plugin_in(&west, "west-1", &[("nomad_cluster", s("test-west"))]);
    let (_, their_task) = w.start(&pw, &w.alloc_in(&west, theirs, 0, "", TD));
    assert_eq!(w.tag(&their_task, "nomad:cluster").as_deref(), Some("test-west"));
    pw.kill();
    // An orphan of ours, to show the sweep does run.
    let p1 = w.plugin("node-1", &[]);
    let (_, our_task) = w.start(&p1, &w.alloc(ours, 0, "", TD));
    node_dies(&w, "node-1", p1);
    w.nomad.remove_alloc(ours);
    let p2 = w.plugin("node-2", &[("reap_grace", s("0s"))]);
    w.await_stopped(&our_task);
    await_log(&p2, "swept by this node", 3);
    assert_eq!(
        w.status(&their_task),
        "RUNNING",
        "another Nomad cluster's task is left alone"
    );
    assert!(
        !w.nomad.requests().iter().any(|r| r.path.contains(theirs)),
        "their allocation is not even looked up here"
    );

    // Two clusters that both leave nomad_cluster unset (same identity, "global"): Nomad's 404
    // for the other's allocation proves nothing, so their task is still left alone.
    let pw = w.plugin_in(&west, "west-2", &[("nomad_cluster", s(""))]);
    let (_, unnamed_theirs) = w.start(
        &pw,
        &w.alloc_in(&west, "c2222222-0000-4000-8000-000000000022", 0, "", TD),
    );
    pw.kill();
    assert_eq!(w.tag(&unnamed_theirs, "nomad:cluster"), None);
    let p3 = w.plugin("node-3", &[("reap_grace", s("0s")), ("nomad_cluster", s(""))]);
    drop(p2);
    w.nomad.set_node("node-2", "down");
    await_log(&p3, "swept by this node", 3);
    assert_eq!(w.status(&unnamed_theirs), "RUNNING");
    assert!(
        w.nomad.requests().iter().any(|r| r.path.contains("c2222222")),
        "looked up, found nothing, kept"
    );
}

#[test]
fn a_wrong_nomad_address_stops_nothing() {
    let w = Setup::new("ho-wrong");
    let a = "a2323232-0000-4000-8000-000000000023";
    let p1 = w.plugin("node-1", &[]);
    let a_cfg = w.alloc(a, 0, "", TD);
    let (handle, arn) = w.start(&p1, &a_cfg);
    p1.kill();
    // The client restarts with nomad_address pointing at another Nomad cluster, which knows
    // neither this node nor its allocations (every allocation read is a 404 there).
    let other = Arc::new(NomadStandIn::start(Some(TOKEN)));
    let p = Plugin::launch(&Launch::test_credentials());
    p.set_config(
        w.config(vec![
            ("nomad_address", s(&other.url())),
            ("nomad_token", s(TOKEN)),
            ("nomad_cluster", s(NOMAD_CLUSTER)),
            ("reap_interval", s("1s")),
            ("reap_grace", s("0s")),
        ]),
        true,
    )
    .expect("SetConfig");
    // Nomad restores this node's task; the plugin now knows its node id (node-1).
    p.recover_task(&persisted(&handle)).expect("RecoverTask");
    // Another unwatched task of this cluster, whose allocation the wrong Nomad does not know.
    let b_cfg = w.alloc("b2424242-0000-4000-8000-000000000024", 1, "", TD);
    let p_b = w.plugin("node-2", &[]);
    let (_, b_arn) = w.start(&p_b, &b_cfg);
    p_b.kill();
    w.nomad.set_node("node-2", "down");
    await_log(&p, "does not list this node", 3);
    assert_eq!(w.status(&arn), "RUNNING");
    assert_eq!(w.status(&b_arn), "RUNNING");
    assert_eq!(w.emu.call_count("StopTask"), 0);
    assert_eq!(other.alloc_reads(), 0, "no allocation was even looked at");
    let sweep = attr_str(&p.first_fingerprint(), "driver.ecs.sweep").unwrap_or_default();
    assert!(sweep.contains("does not list this node"), "{sweep}");
}

#[test]
fn the_sweep_covers_only_the_clusters_the_operator_configured() {
    let w = Setup::new("ho-conf");
    let other = "ho-jobs";
    w.emu.setup(other);
    let a = "a2525252-0000-4000-8000-000000000025";
    let p1 = w.plugin("node-1", &[]);
    // A job names its own ECS cluster.
    let mut cfg = w.alloc(a, 0, "", TD);
    cfg.msgpack_driver_config = support::fargate_stanza(&w.setup, TD).encode_with(vec![("cluster", s(other))]);
    let (_, arn) = w.start(&p1, &cfg);
    assert_eq!(w.status_in(other, &arn), "RUNNING");
    node_dies(&w, "node-1", p1);
    w.nomad.set_client_status(a, "complete");
    let p2 = w.plugin("node-2", &[("reap_grace", s("0s"))]);
    await_log(&p2, "swept by this node", 3);
    assert_eq!(
        w.status_in(other, &arn),
        "RUNNING",
        "a cluster only a job names is not swept"
    );
    assert!(!w.nomad.requests().iter().any(|r| r.path.contains(a)));
    // Listed by the operator (agent configuration changed, agent restarted), it is.
    p2.kill();
    let _p2 = w.plugin("node-2", &[("reap_grace", s("0s")), ("reap_clusters", list(&[other]))]);
    let reason = w.await_stopped_in(other, &arn);
    assert!(reason.contains("complete"), "{reason}");
}

#[test]
fn the_brake_holds_a_round_that_would_stop_too_many() {
    let w = Setup::new("ho-brake");
    let p1 = w.plugin("node-1", &[]);
    let allocs: Vec<String> = (0..4)
        .map(|i| format!("a26262{i}2-0000-4000-8000-00000000002{i}"))
        .collect();
    let arns: Vec<String> = allocs
        .iter()
        .enumerate()
        .map(|(i, a)| w.start(&p1, &w.alloc(a, i as u32, "", TD)).1)
        .collect();
    node_dies(&w, "node-1", p1);
    // Nomad says every one of them is over (a wrong answer, or a real mass orphaning).
    for a in &allocs {
        w.nomad.set_client_status(a, "complete");
    }
    let p2 = w.plugin("node-2", &[("reap_grace", s("0s")), ("reap_max_stop", Cty::Int(3))]);
    eventually(WAIT, "the brake", || {
        p2.stderr_lines()
            .iter()
            .find(|l| l.contains("orphan sweep braked") && l.contains(r#""@level":"error""#))
            .cloned()
    });
    await_log(&p2, "orphan sweep braked since", 2);
    for arn in &arns {
        assert_eq!(w.status(arn), "RUNNING");
    }
    assert_eq!(w.emu.call_count("StopTask"), 0);
    let sweep = attr_str(&p2.first_fingerprint(), "driver.ecs.sweep").unwrap_or_default();
    assert!(
        sweep.starts_with("braked since") && sweep.contains("reap_max_stop = 3"),
        "{sweep}"
    );
    // The operator looks, agrees, raises the limits and restarts the agent: a new process.
    p2.kill();
    let _p2 = w.plugin(
        "node-2",
        &[
            ("reap_grace", s("0s")),
            ("reap_max_stop", Cty::Int(10)),
            ("reap_max_stop_percent", Cty::Int(100)),
        ],
    );
    for arn in &arns {
        w.await_stopped(arn);
    }
}

#[test]
fn only_one_client_reads_allocations_per_round() {
    let w = Setup::new("ho-load");
    let a = "a2727272-0000-4000-8000-000000000027";
    let p1 = w.plugin("node-1", &[]);
    let (_, arn) = w.start(&p1, &w.alloc(a, 0, "", TD));
    node_dies(&w, "node-1", p1);
    // Kept by every sweep (its node is disconnected), so read once per round by the sweeper.
    w.nomad.set_client_status(a, "unknown");
    let plugins: Vec<Plugin> = (2..5).map(|n| w.plugin(&format!("node-{n}"), &[])).collect();
    let (lists0, reads0) = (w.nomad.node_list_reads(), w.nomad.alloc_reads());
    eventually(WAIT, "15 node list reads (5 rounds of 3 clients)", || {
        (w.nomad.node_list_reads() >= lists0 + 15).then_some(())
    });
    let rounds_seen = (w.nomad.node_list_reads() - lists0).div_ceil(3);
    let reads = w.nomad.alloc_reads() - reads0;
    assert!(reads >= 2, "the sweep ran ({reads} reads)");
    assert!(
        reads <= rounds_seen + 1,
        "{reads} allocation reads in about {rounds_seen} rounds: more than one client per round"
    );
    assert_eq!(w.status(&arn), "RUNNING");
    drop(plugins);
}

#[test]
fn a_task_of_another_allocation_or_with_forged_tags_is_not_adopted() {
    let w = Setup::new("ho-forge");
    let (a, b) = (
        "a2828282-0000-4000-8000-000000000028",
        "b2929292-0000-4000-8000-000000000029",
    );
    let p = w.plugin("node-1", &[]);
    let a_cfg = w.alloc(a, 0, "", TD);
    let (_, arn) = w.start(&p, &a_cfg);
    w.nomad.drain(a);
    p.stop_task(&a_cfg.id, Duration::from_secs(10), "SIGINT")
        .expect("StopTask");
    p.destroy_task(&a_cfg.id, true).unwrap();
    w.nomad.set_client_status(a, "complete");
    // Someone with ecs:RunTask and ecs:TagResource copies the drained task's tags onto a
    // task of their own, hoping the replacement adopts theirs.
    let outsider = w.outsider();
    let tags = w.emu.task_tags(&w.cluster, &arn);
    let started_by = w.emu.tasks(&w.cluster)[0]["started_by"].as_str().unwrap().to_string();
    let forged = w.run_outside(&outsider, &started_by, tags);
    // Nomad's replacement B replaces A: two tasks claim A, so neither is adopted.
    let p2 = w.plugin("node-2", &[]);
    let (_, new) = w.start(&p2, &w.alloc(b, 0, a, TD));
    assert_ne!(new, arn);
    assert_ne!(new, forged);
    assert!(p2
        .stderr_lines()
        .iter()
        .any(|l| l.contains("not adopting") && l.contains("claim allocation")));
    // An allocation that Nomad does not say B replaces is never adopted, whatever the tags.
    let c = "c3030303-0000-4000-8000-000000000030";
    let c_cfg = w.alloc(c, 0, "", TD);
    let (_, c_new) = w.start(&p2, &c_cfg);
    assert_ne!(c_new, forged);
    assert_ne!(c_new, arn);
    assert_eq!(
        w.tag(&forged, "nomad:alloc-id").as_deref(),
        Some(a),
        "the forged task was not taken"
    );
}

#[test]
fn a_drained_task_of_another_nomad_cluster_is_not_adopted() {
    let w = Setup::new("ho-xdrain");
    let west = Arc::new(NomadStandIn::start(Some(TOKEN)));
    let (a, b) = (
        "a3131313-0000-4000-8000-000000000031",
        "b3232323-0000-4000-8000-000000000032",
    );
    // test-west drains the allocation of the same namespace/job/group/index/task.
    let pw = w.plugin_in(&west, "west-1", &[("nomad_cluster", s("test-west"))]);
    let a_cfg = w.alloc_in(&west, a, 0, "", TD);
    let (_, arn) = w.start(&pw, &a_cfg);
    west.drain(a);
    pw.stop_task(&a_cfg.id, Duration::from_secs(10), "SIGINT")
        .expect("StopTask");
    assert!(w.tag(&arn, "nomad:handoff-until").is_some());
    // test-east places B; even if its Nomad named A (it cannot: A is not one of its
    // allocations), the task belongs to test-west.
    let p = w.plugin("node-1", &[]);
    let (_, new) = w.start(&p, &w.alloc(b, 0, a, TD));
    assert_ne!(new, arn);
    assert!(p
        .stderr_lines()
        .iter()
        .any(|l| l.contains("not adopting") && l.contains("test-west")));
    assert_eq!(w.tag(&arn, "nomad:cluster").as_deref(), Some("test-west"));
}
