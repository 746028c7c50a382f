//! Task definitions written in the job (`task_definition_json`, `task_definition_file`): the
//! driver registers them itself, once per distinct definition, tags each revision with the
//! definition's hash and reuses it; the file is read only from inside the task's directory;
//! a lost allocation's task is adopted when the definition is the same.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use grpcio::RpcStatusCode;
use nomad_driver_ecs::proto::driver::TaskConfig;
use serde_json::Value;
use support::cty::{s, Cty, TaskStanza};
use support::emulator::Emulator;
use support::host::{self, eventually, recoverable, wait_event, Launch, Plugin};
use support::nomad_stand_in::{AllocSpec, NomadStandIn};
use support::{fargate_stanza, handle_arn, World, WAIT};

/// A Fargate definition of one container `web` running `image`, without a family. (The
/// container's own `memory` only because moto's RunTask fails without it.)
fn definition(image: &str) -> String {
    format!(
        r#"{{
  "networkMode": "awsvpc",
  "requiresCompatibilities": ["FARGATE"],
  "cpu": "256",
  "memory": "512",
  "containerDefinitions": [
    {{"name": "web", "image": "{image}", "essential": true, "memory": 512,
      "portMappings": [{{"containerPort": 8080, "name": "http"}}]}}
  ]
}}"#
    )
}

/// The task stanza on the emulator's network with these task-definition attributes (and no
/// `task_definition`).
fn stanza(setup: &Value, attrs: Vec<(&str, Cty)>) -> Vec<u8> {
    TaskStanza {
        task_definition: None,
        ..fargate_stanza(setup, "")
    }
    .encode_with(attrs)
}

fn json_stanza(w: &World, text: &str) -> Vec<u8> {
    stanza(&w.setup, vec![("task_definition_json", s(text))])
}

fn alloc_id(n: usize) -> String {
    format!("{n:08x}-0000-4000-8000-000000000000")
}

fn state(handle: &nomad_driver_ecs::proto::driver::TaskHandle) -> Value {
    serde_json::from_slice(&handle.driver_state).expect("driver_state is JSON")
}

fn registrations(emu: &Emulator) -> Vec<Value> {
    emu.requests("RegisterTaskDefinition")
}

fn tag<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .and_then(|t| t["value"].as_str())
}

/// An allocation directory with the task directory `<dir>/web/local` in it.
fn alloc_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("td-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("web/local")).unwrap();
    std::fs::create_dir_all(d.join("alloc/logs")).unwrap();
    d
}

fn file_config(alloc: &str, suffix: &str, dir: &Path, setup: &Value, path: &str) -> TaskConfig {
    let mut cfg = host::task_config(
        alloc,
        "web",
        suffix,
        stanza(setup, vec![("task_definition_file", s(path))]),
    );
    cfg.alloc_dir = dir.to_str().unwrap().to_string();
    cfg
}

#[test]
fn many_starts_of_one_definition_register_it_once() {
    let w = World::new("td-many");
    let text = definition("nginx:1.27");
    let stanza = json_stanza(&w, &text);
    // 100 starts, 4 at a time: one registration, every task on that revision.
    let handles: Vec<_> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|t| {
                let (plugin, stanza) = (&w.plugin, stanza.clone());
                scope.spawn(move || {
                    (0..25)
                        .map(|i| {
                            let cfg = host::task_config(&alloc_id(t * 25 + i), "web", "a1b2c3d4", stanza.clone());
                            plugin
                                .start_task(&cfg)
                                .expect("StartTask")
                                .handle
                                .into_option()
                                .expect("handle")
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(handles.len(), 100);
    let regs = registrations(&w.emu);
    assert_eq!(regs.len(), 1, "one RegisterTaskDefinition for 100 starts");
    let reg = &regs[0];
    // The family derives from namespace, job, group and task; the driver's tags are on it.
    assert_eq!(reg["family"], "default-ecs-remote-ecs-remote-web");
    assert_eq!(tag(reg, "nomad:managed-by"), Some("nomad-driver-ecs"));
    let hash = tag(reg, "nomad:taskdef-hash").expect("hash tag").to_string();
    assert_eq!(hash.len(), 32);
    assert_eq!(reg["containerDefinitions"][0]["image"], "nginx:1.27");
    let arn = "arn:aws:ecs:us-east-1:123456789012:task-definition/default-ecs-remote-ecs-remote-web:1";
    let tasks = w.emu.tasks(&w.cluster);
    assert_eq!(tasks.len(), 100);
    assert!(tasks.iter().all(|t| t["task_definition_arn"] == arn), "{tasks:?}");
    assert!(w.emu.requests("RunTask").iter().all(|b| b["taskDefinition"] == arn));
    // Everything else works as with a named definition: the Nomad environment reaches the
    // essential container, the address and the definition's named port reach Nomad.
    let run = w.emu.requests("RunTask").pop().unwrap();
    let env = run["overrides"]["containerOverrides"][0].clone();
    assert_eq!(env["name"], "web");
    assert!(env["environment"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["name"] == "NOMAD_ALLOC_ID"));
    let st = state(&handles[0]);
    assert_eq!(st["task_definition"], arn);
    assert!(st["address"].as_str().is_some_and(|a| !a.is_empty()), "{st}");
    assert_eq!(st["ports"]["http"], 8080, "{st}");

    // Another plugin process (a restart, another client) finds the revision by its hash tag.
    let other = Plugin::launch(&Launch::test_credentials());
    other
        .set_config(
            support::test_plugin_config(&w.cluster, &w.emu.endpoint(), Vec::new()),
            true,
        )
        .unwrap();
    let lists = w.emu.call_count("ListTaskDefinitions");
    let h = other
        .start_task(&host::task_config(&alloc_id(500), "web", "a1b2c3d4", stanza.clone()))
        .expect("StartTask")
        .handle
        .into_option()
        .unwrap();
    assert_eq!(state(&h)["task_definition"], arn);
    assert_eq!(registrations(&w.emu).len(), 1, "reused across processes");
    assert_eq!(w.emu.call_count("ListTaskDefinitions"), lists + 1);
    assert!(other
        .stderr_lines()
        .iter()
        .any(|l| l.contains("registered before with the same definition")));
    // The same definition written differently (key order, spacing) is the same definition.
    let reordered: Value = serde_json::from_str(&text).unwrap();
    let compact = serde_json::to_string(&reordered).unwrap();
    assert_ne!(compact, text);
    other
        .start_task(&host::task_config(
            &alloc_id(501),
            "web",
            "a1b2c3d4",
            json_stanza(&w, &compact),
        ))
        .expect("StartTask");
    assert_eq!(registrations(&w.emu).len(), 1);
}

#[test]
fn a_changed_definition_gets_one_new_revision() {
    let w = World::new("td-change");
    let start = |p: &Plugin, n: usize, text: &str| {
        let h = p
            .start_task(&host::task_config(
                &alloc_id(n),
                "web",
                "a1b2c3d4",
                json_stanza(&w, text),
            ))
            .expect("StartTask")
            .handle
            .into_option()
            .unwrap();
        state(&h)["task_definition"].as_str().unwrap().to_string()
    };
    let family_arn = "arn:aws:ecs:us-east-1:123456789012:task-definition/default-ecs-remote-ecs-remote-web";
    let (v1, v2) = (definition("nginx:1"), definition("nginx:2"));
    assert_eq!(start(&w.plugin, 1, &v1), format!("{family_arn}:1"));
    assert_eq!(start(&w.plugin, 2, &v2), format!("{family_arn}:2"));
    assert_eq!(start(&w.plugin, 3, &v2), format!("{family_arn}:2"));
    assert_eq!(registrations(&w.emu).len(), 2, "one new revision for the change");
    // Back to v1 (a rollback, or an old allocation's restart during a rolling update): v1's
    // revision again, from this process's memory and from ECS's tags in a new process.
    assert_eq!(start(&w.plugin, 4, &v1), format!("{family_arn}:1"));
    let other = Plugin::launch(&Launch::test_credentials());
    other
        .set_config(
            support::test_plugin_config(&w.cluster, &w.emu.endpoint(), Vec::new()),
            true,
        )
        .unwrap();
    assert_eq!(start(&other, 5, &v1), format!("{family_arn}:1"));
    assert_eq!(start(&other, 6, &v2), format!("{family_arn}:2"));
    assert_eq!(registrations(&w.emu).len(), 2);
    let hashes: Vec<String> = registrations(&w.emu)
        .iter()
        .map(|r| tag(r, "nomad:taskdef-hash").unwrap().to_string())
        .collect();
    assert_ne!(hashes[0], hashes[1]);

    // The JSON's own family, with the operator's family_prefix.
    let prefixed = Plugin::launch(&Launch::test_credentials());
    prefixed
        .set_config(
            support::test_plugin_config(&w.cluster, &w.emu.endpoint(), vec![("family_prefix", s("nomad-"))]),
            true,
        )
        .unwrap();
    let own = v1.replacen('{', r#"{"family": "shop-web", "#, 1);
    assert_eq!(
        start(&prefixed, 7, &own),
        "arn:aws:ecs:us-east-1:123456789012:task-definition/nomad-shop-web:1"
    );
    assert_eq!(registrations(&w.emu).len(), 3);
}

#[test]
fn task_definition_files_are_read_only_inside_the_task_directory() {
    let w = World::new("td-file");
    let dir = alloc_dir("file");
    std::fs::write(dir.join("web/local/td.json"), definition("nginx:1")).unwrap();
    let outside = dir.with_extension("outside.json");
    std::fs::write(&outside, definition("evil:1")).unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("web/local/link.json")).unwrap();
    std::os::unix::fs::symlink(dir.join("alloc"), dir.join("web/shared")).unwrap();
    std::fs::write(dir.join("alloc/td.json"), definition("evil:2")).unwrap();
    let alloc = alloc_id(1);

    let h = w
        .plugin
        .start_task(&file_config(&alloc, "00000001", &dir, &w.setup, "local/td.json"))
        .expect("StartTask")
        .handle
        .into_option()
        .unwrap();
    let first = state(&h)["task_definition"].as_str().unwrap().to_string();
    assert!(first.ends_with("/default-ecs-remote-ecs-remote-web:1"), "{first}");
    let first_hash = w.emu.task_tags(&w.cluster, &handle_arn(&h));

    let refused = [
        ("../../../../../../etc/passwd", "`..`"),
        ("local/../../alloc/td.json", "`..`"),
        ("/etc/passwd", "absolute"),
        (outside.to_str().unwrap(), "absolute"),
        ("local/link.json", "symbolic link"),
        ("shared/td.json", "symbolic link"),
        ("local/missing.json", "does not exist"),
    ];
    for (i, (path, why)) in refused.iter().enumerate() {
        let cfg = file_config(&alloc, &format!("1{i:07}"), &dir, &w.setup, path);
        let e = w.plugin.start_task(&cfg).unwrap_err();
        assert_eq!(e.code(), RpcStatusCode::INVALID_ARGUMENT, "{path}: {}", e.message());
        assert!(
            e.message().contains("task.task_definition_file"),
            "{path}: {}",
            e.message()
        );
        assert!(e.message().contains(why), "{path}: {} should say {why}", e.message());
        assert_eq!(recoverable(&e), Some(false));
    }
    assert_eq!(w.emu.call_count("RunTask"), 1, "nothing started from a refused path");
    assert_eq!(registrations(&w.emu).len(), 1);
    assert!(registrations(&w.emu).iter().all(|r| !r.to_string().contains("evil")));

    // A new file content (a template re-rendered) is a new revision, and the task's config
    // hash (its identity for adoption) changes with it though the job's config did not.
    std::fs::write(dir.join("web/local/td.json"), definition("nginx:2")).unwrap();
    let h2 = w
        .plugin
        .start_task(&file_config(&alloc, "00000002", &dir, &w.setup, "local/td.json"))
        .expect("StartTask")
        .handle
        .into_option()
        .unwrap();
    assert!(state(&h2)["task_definition"].as_str().unwrap().ends_with(":2"));
    let hash_of = |tags: &[(String, String)]| {
        tags.iter()
            .find(|(k, _)| k == "nomad:config-hash")
            .map(|(_, v)| v.clone())
    };
    assert_ne!(
        hash_of(&first_hash),
        hash_of(&w.emu.task_tags(&w.cluster, &handle_arn(&h2)))
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&outside);
}

#[test]
fn bad_definitions_name_the_option_and_the_position() {
    let w = World::new("td-bad");
    let dir = alloc_dir("bad");
    std::fs::write(
        dir.join("web/local/bad.json"),
        "{\n  \"containerDefinitions\": [\n    {\"name\": \"web\",, }\n  ]\n}",
    )
    .unwrap();
    std::fs::write(dir.join("web/local/big.json"), " ".repeat(64 * 1024 + 1)).unwrap();
    std::fs::write(
        dir.join("web/local/noimage.json"),
        r#"{"containerDefinitions": [{"name": "web"}]}"#,
    )
    .unwrap();
    let alloc = alloc_id(2);
    let json = |text: &str| host::task_config(&alloc, "web", "00000001", json_stanza(&w, text));
    let file = |path: &str| file_config(&alloc, "00000002", &dir, &w.setup, path);
    let cases: Vec<(TaskConfig, &str, &str)> = vec![
        (
            json("{\n  \"cpu\": \"256\"\n  \"memory\": \"512\"\n}"),
            "task.task_definition_json",
            "line 3, column 3",
        ),
        (json("[]"), "task.task_definition_json", "JSON object"),
        (
            json(r#"{"taskDefinition": {}}"#),
            "task.task_definition_json",
            "describe-task-definition",
        ),
        (
            json(r#"{"family": "web"}"#),
            "task.task_definition_json",
            "containerDefinitions",
        ),
        (
            file("local/bad.json"),
            "task.task_definition_file",
            "local/bad.json: invalid JSON at line 3, column 20",
        ),
        (
            file("local/big.json"),
            "task.task_definition_file",
            "larger than 65536 bytes",
        ),
        (
            file("local/noimage.json"),
            "task.task_definition_file",
            "containerDefinitions[0].image",
        ),
        (
            host::task_config(
                &alloc,
                "web",
                "00000003",
                TaskStanza {
                    task_definition: Some("my-task-definition"),
                    ..fargate_stanza(&w.setup, "")
                }
                .encode_with(vec![("task_definition_json", s(&definition("x")))]),
            ),
            "task.task_definition_json",
            "only one of",
        ),
    ];
    for (i, (cfg, field, hint)) in cases.iter().enumerate() {
        let e = w.plugin.start_task(cfg).unwrap_err();
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
        assert_eq!(recoverable(&e), Some(false), "case {i}");
    }
    assert_eq!(registrations(&w.emu).len(), 0);
    assert_eq!(w.emu.call_count("RunTask"), 0);

    // ECS's own refusal of a definition is passed on, not recoverable.
    w.emu.fault(
        serde_json::json!({"operation": "RegisterTaskDefinition", "count": 1, "status": 400,
        "type": "ClientException", "message": "Invalid 'cpu' setting for task."}),
    );
    let e = w.plugin.start_task(&json(&definition("nginx"))).unwrap_err();
    assert!(e.message().contains("Invalid 'cpu' setting"), "{}", e.message());
    assert!(e.message().contains("task.task_definition_json"), "{}", e.message());
    assert_eq!(recoverable(&e), Some(false));
    assert_eq!(w.emu.call_count("RunTask"), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

const TOKEN: &str = "5e1f0c2a-acl-secret-token-77d1";

/// A plugin on Nomad node `node`, talking to its agent in the stand-in, with a named cluster.
fn nomad_plugin(emu: &Emulator, nomad: &Arc<NomadStandIn>, cluster: &str, node: &str) -> Plugin {
    let p = Plugin::launch(&Launch::test_credentials());
    let values = vec![
        ("nomad_address", s(&nomad.agent_url(node))),
        ("nomad_token", s(TOKEN)),
        ("nomad_cluster", s("test-east")),
        ("reap_interval", s("0s")),
    ];
    p.set_config(support::test_plugin_config(cluster, &emu.endpoint(), values), true)
        .expect("SetConfig");
    let rx = p.fingerprint();
    let first = rx.recv_timeout(WAIT).expect("a fingerprint").expect("fingerprint ok");
    nomad.register_fingerprint(node, "ecs", &first);
    p
}

fn put_alloc(nomad: &NomadStandIn, alloc: &str, previous: &str) {
    nomad.put_alloc(AllocSpec {
        id: alloc.into(),
        namespace: "default".into(),
        job_id: "ecs-remote".into(),
        task_group: "ecs-remote".into(),
        index: 0,
        node_id: "node-1".into(),
        client_status: "running".into(),
        desired_status: "run".into(),
        migrate: false,
        previous: previous.into(),
    });
}

#[test]
fn a_lost_allocations_job_defined_task_is_adopted_when_the_definition_is_the_same() {
    let emu = Emulator::start();
    let cluster = "td-adopt";
    let setup = emu.setup(cluster);
    let nomad = Arc::new(NomadStandIn::start(Some(TOKEN)));
    let (a, b, c) = (
        "a1111111-0000-4000-8000-000000000001",
        "b2222222-0000-4000-8000-000000000002",
        "c3333333-0000-4000-8000-000000000003",
    );
    let (dir_a, dir_b, dir_c) = (alloc_dir("adopt-a"), alloc_dir("adopt-b"), alloc_dir("adopt-c"));
    for d in [&dir_a, &dir_b] {
        std::fs::write(d.join("web/local/td.json"), definition("nginx:1")).unwrap();
    }
    let p1 = nomad_plugin(&emu, &nomad, cluster, "node-1");
    put_alloc(&nomad, a, "");
    let a_cfg = file_config(a, "aaaaaaaa", &dir_a, &setup, "local/td.json");
    let arn = handle_arn(&p1.start_task(&a_cfg).expect("StartTask").handle.unwrap());

    // Node 1 dies; Nomad marks A lost and places B in its slot, with the same file.
    p1.kill();
    nomad.set_node("node-1", "down");
    nomad.set_client_status(a, "lost");
    put_alloc(&nomad, b, a);
    let p2 = nomad_plugin(&emu, &nomad, cluster, "node-2");
    let events = p2.task_events();
    let b_cfg = file_config(b, "bbbbbbbb", &dir_b, &setup, "local/td.json");
    let adopted = handle_arn(&p2.start_task(&b_cfg).expect("StartTask").handle.unwrap());
    assert_eq!(adopted, arn, "B adopted A's ECS task");
    wait_event(&events, "Adopted running ECS task", WAIT);
    assert_eq!(emu.call_count("RunTask"), 1);
    assert_eq!(
        emu.requests("RegisterTaskDefinition").len(),
        1,
        "B found A's revision by its hash"
    );
    let tags = emu.task_tags(cluster, &arn);
    assert!(tags.iter().any(|(k, v)| k == "nomad:alloc-id" && v == b), "{tags:?}");

    // B's node dies too; C replaces B, but its file holds another definition: not adopted.
    std::fs::write(dir_c.join("web/local/td.json"), definition("nginx:2")).unwrap();
    p2.kill();
    nomad.set_node("node-2", "down");
    nomad.set_client_status(b, "lost");
    put_alloc(&nomad, c, b);
    let p3 = nomad_plugin(&emu, &nomad, cluster, "node-3");
    let c_cfg = file_config(c, "cccccccc", &dir_c, &setup, "local/td.json");
    let fresh = handle_arn(&p3.start_task(&c_cfg).expect("StartTask").handle.unwrap());
    assert_ne!(fresh, arn, "another definition: a new task");
    assert_eq!(emu.call_count("RunTask"), 2);
    eventually(WAIT, "the reason in the log", || {
        p3.stderr_lines()
            .iter()
            .any(|l| l.contains("not adopting") && l.contains("task config differs"))
            .then_some(())
    });
    for d in [dir_a, dir_b, dir_c] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// A plugin on node `node` that sweeps every second (grace 1 h for tasks) with `extra` plugin
/// options, its fingerprints kept in the stand-in's node list (the sweep's election reads them).
fn sweeping_plugin(
    emu: &Emulator,
    nomad: &Arc<NomadStandIn>,
    cluster: &str,
    node: &str,
    extra: Vec<(&str, Cty)>,
) -> Plugin {
    let p = Plugin::launch(&Launch::test_credentials());
    let mut values = vec![
        ("nomad_address", s(&nomad.agent_url(node))),
        ("nomad_token", s(TOKEN)),
        ("nomad_cluster", s("test-east")),
        ("reap_interval", s("1s")),
        ("reap_grace", s("1h")),
    ];
    values.extend(extra);
    p.set_config(support::test_plugin_config(cluster, &emu.endpoint(), values), true)
        .expect("SetConfig");
    support::nomad_stand_in::follow_fingerprints(nomad, node, &p);
    p
}

/// The number of the last sweep round this plugin ran as the elected sweeper.
fn swept_round(p: &Plugin) -> Option<u64> {
    let status = host::attr_str(&p.first_fingerprint(), "driver.ecs.sweep")?;
    status.strip_prefix("round ")?.split(' ').next()?.parse().ok()
}

/// Waits until the plugin has swept `n` more rounds.
fn await_rounds(p: &Plugin, n: u64) {
    let start = eventually(WAIT, "a sweep round", || swept_round(p));
    eventually(WAIT, &format!("{n} more sweep rounds"), || {
        swept_round(p).filter(|r| *r >= start + n).map(|_| ())
    });
}

fn inactive_revisions(emu: &Emulator) -> Vec<String> {
    let out = emu.ecs("ListTaskDefinitions", serde_json::json!({"status": "INACTIVE"}));
    out["taskDefinitionArns"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// TagResource calls on `arn` that wrote `key`.
fn tagged(emu: &Emulator, arn: &str, key: &str) -> usize {
    emu.requests("TagResource")
        .iter()
        .filter(|r| r["resourceArn"] == arn && tag(r, key).is_some())
        .count()
}

const FAMILY_ARN: &str = "arn:aws:ecs:us-east-1:123456789012:task-definition/default-ecs-remote-ecs-remote-web";

fn start_defined(p: &Plugin, setup: &Value, n: usize, text: &str) -> (String, String) {
    let cfg = host::task_config(
        &alloc_id(n),
        "web",
        "a1b2c3d4",
        stanza(setup, vec![("task_definition_json", s(text))]),
    );
    let h = p.start_task(&cfg).expect("StartTask").handle.into_option().unwrap();
    (cfg.id, state(&h)["task_definition"].as_str().unwrap().to_string())
}

#[test]
fn unused_revisions_the_driver_registered_are_deregistered_after_the_grace_time() {
    let emu = Emulator::start();
    let cluster = "td-clean";
    let setup = emu.setup(cluster);
    let nomad = Arc::new(NomadStandIn::start(Some(TOKEN)));
    // Revisions the clean-up must never touch: one registered by hand, one of another Nomad
    // cluster's driver (same region, other nomad:cluster), both unused.
    let container = serde_json::json!([{"name": "x", "image": "busybox", "memory": 128}]);
    let by_hand = emu.ecs(
        "RegisterTaskDefinition",
        serde_json::json!({"family": "by-hand", "containerDefinitions": container}),
    )["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .unwrap()
        .to_string();
    let theirs = emu.ecs(
        "RegisterTaskDefinition",
        serde_json::json!({"family": "other-nomad", "containerDefinitions": container, "tags": [
            {"key": "nomad:managed-by", "value": "nomad-driver-ecs"},
            {"key": "nomad:taskdef-hash", "value": "0123456789abcdef0123456789abcdef"},
            {"key": "nomad:region", "value": "global"},
            {"key": "nomad:cluster", "value": "test-west"}]}),
    )["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .unwrap()
        .to_string();

    let p = sweeping_plugin(
        &emu,
        &nomad,
        cluster,
        "node-1",
        vec![("task_definition_cleanup", s("2s"))],
    );
    let (v1, v2) = (definition("nginx:1"), definition("nginx:2"));
    let (id1, rev1) = start_defined(&p, &setup, 1, &v1);
    let (_id2, rev2) = start_defined(&p, &setup, 2, &v2);
    assert_eq!(
        (rev1.as_str(), rev2.as_str()),
        (&*format!("{FAMILY_ARN}:1"), &*format!("{FAMILY_ARN}:2"))
    );
    // Registered with the Nomad identity, and marked as used by the start.
    let ours = registrations(&emu);
    let first = ours
        .iter()
        .find(|r| r["containerDefinitions"][0]["image"] == "nginx:1")
        .unwrap();
    assert_eq!(tag(first, "nomad:region"), Some("global"));
    assert_eq!(tag(first, "nomad:cluster"), Some("test-east"));
    assert!(
        tagged(&emu, &rev1, "nomad:last-used") >= 1,
        "the start marks its revision used"
    );

    // v1's only task ends: after the grace time its revision goes; v2's, running, stays.
    p.stop_task(&id1, std::time::Duration::from_secs(5), "SIGTERM")
        .expect("StopTask");
    p.destroy_task(&id1, true).expect("DestroyTask");
    eventually(WAIT, "v1's revision deregistered", || {
        inactive_revisions(&emu).contains(&rev1).then_some(())
    });
    assert!(
        tagged(&emu, &rev1, "nomad:unused-since") >= 1,
        "marked unused before it went"
    );
    assert!(p
        .stderr_lines()
        .iter()
        .any(|l| l.contains("task definition clean-up: deregistered") && l.contains(&rev1)));
    await_rounds(&p, 3);
    assert_eq!(
        inactive_revisions(&emu),
        vec![rev1.clone()],
        "only the unused revision of the driver's"
    );
    assert_eq!(
        tagged(&emu, &rev2, "nomad:unused-since"),
        0,
        "a running task's revision is never marked"
    );
    for arn in [&by_hand, &theirs] {
        assert_eq!(
            tagged(&emu, arn, "nomad:unused-since"),
            0,
            "{arn} is not this driver's to clean"
        );
    }

    // v1 again (a job revert): registered anew, and the task runs on the new revision.
    let (_id3, rev3) = start_defined(&p, &setup, 3, &v1);
    assert_eq!(rev3, format!("{FAMILY_ARN}:3"));
    assert_eq!(registrations(&emu).len(), 2 + 3, "two by hand, three by the driver");
}

#[test]
fn without_task_definition_cleanup_no_revision_is_ever_deregistered() {
    let emu = Emulator::start();
    let cluster = "td-keep";
    let setup = emu.setup(cluster);
    let nomad = Arc::new(NomadStandIn::start(Some(TOKEN)));
    let p = sweeping_plugin(&emu, &nomad, cluster, "node-1", Vec::new());
    let (id1, rev1) = start_defined(&p, &setup, 1, &definition("nginx:1"));
    p.stop_task(&id1, std::time::Duration::from_secs(5), "SIGTERM")
        .expect("StopTask");
    p.destroy_task(&id1, true).expect("DestroyTask");
    // The sweep runs: five rounds, time enough for a clean-up with a 1 s grace to act.
    await_rounds(&p, 5);
    assert_eq!(emu.call_count("DeregisterTaskDefinition"), 0);
    assert!(inactive_revisions(&emu).is_empty());
    assert_eq!(tagged(&emu, &rev1, "nomad:unused-since"), 0);
    assert_eq!(
        tagged(&emu, &rev1, "nomad:last-used"),
        0,
        "no use marks when the clean-up is off"
    );
}
