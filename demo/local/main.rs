//! The local demo: the AWS walk-through of demo/README.md, told against the ECS emulator.
//!
//! No AWS account and no Nomad: moto plays ECS on 127.0.0.1 (tests/support/ecs_emulator.py) and
//! this program plays the Nomad client, driving the real plugin binary over go-plugin gRPC
//! exactly as the integration tests do (it reuses tests/support). Run it with
//! `demo/local/run.sh`, which installs what is missing and sets the two environment variables:
//! `NOMAD_DRIVER_ECS_BIN` (the plugin binary) and `ECS_EMULATOR_PYTHON` (a Python with moto).
//!
//! The story, step by step as a Nomad 1.1–1.9 client drives the driver for demo/nomad/demo-ecs.nomad:
//! 1. terraform apply: the cluster, the subnets, task definition revisions 1 and 2;
//! 2. the client starts and fingerprints the plugin;
//! 3. nomad job run: StartTask (revision 1), then the plugin watches the ECS task;
//! 4. the client restarts: the plugin is SIGKILLed, relaunched, and re-attaches with RecoverTask;
//! 5. nomad node drain: StopTask with signal DETACH, then the replacement allocation adopts the
//!    same ECS task with RecoverTask (Nomad 1.10+ no longer does this);
//! 6. the task definition is updated: the old ECS task is stopped, a new one of revision 2 starts;
//! 7. the container fails inside ECS with exit code 1: WaitTask reports it; Nomad reschedules;
//! 8. nomad job stop: StopTask, WaitTask, DestroyTask;
//! 9. nomad job run demo-ecs-inline.nomad: two allocations of a job that writes its task
//!    definition inline; the plugin registers it once and both run that revision; then stopped.
//!
//! It exits non-zero if a step goes wrong or an ECS task is left RUNNING.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use grpcio::RpcStatus;
use nomad_driver_ecs::proto::attribute::Attribute;
use nomad_driver_ecs::proto::driver::{self as pb, TaskHandle};
use serde_json::{json, Value};

use support::cty::{self, TaskStanza};
use support::emulator::{Emulator, REGION};
use support::host::{self, Launch, Plugin};

/// The names of demo/terraform and demo/nomad; the network ids stand in for the ones Terraform
/// creates (the emulator makes subnets and a security group under exactly these ids).
const CLUSTER: &str = "nomad-remote-driver-demo";
const FAMILY: &str = "nomad-remote-driver-demo";
const REVISION_1: &str = "nomad-remote-driver-demo:1";
const REVISION_2: &str = "nomad-remote-driver-demo:2";
const IMAGE: &str = "public.ecr.aws/nginx/nginx:stable";
const SUBNETS: [&str; 2] = ["subnet-0cd4b2ec21331a144", "subnet-0da9019dcab8ae2f1"];
const SECURITY_GROUP: &str = "sg-05f444f6c0dda876d";
const POLL_INTERVAL: &str = "500ms";
const JOB: &str = "ecs-demo";
const GROUP: &str = "remote";
const TASK: &str = "http-server";
const WAIT: Duration = Duration::from_secs(30);

type Result<T> = std::result::Result<T, String>;

fn main() -> ExitCode {
    match run() {
        Ok(()) => {
            say(&format!("demo finished OK in {:.1}s", elapsed().as_secs_f64()));
            ExitCode::SUCCESS
        }
        Err(e) => {
            say(&format!("demo FAILED: {e}"));
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Narration helpers

fn elapsed() -> Duration {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

fn say(line: &str) {
    println!("[{:6.2}s] {line}", elapsed().as_secs_f64());
}

fn heading(title: &str) {
    println!();
    println!(
        "── {title} {}",
        "─".repeat(90usize.saturating_sub(title.chars().count()))
    );
}

fn rpc<T>(what: &str, r: std::result::Result<T, RpcStatus>) -> Result<T> {
    r.map_err(|e| format!("{what} failed: {:?}: {}", e.code(), e.message()))
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

fn attr_text(a: &Attribute) -> String {
    if a.has_string_val() {
        format!("{:?}", a.string_val())
    } else if a.has_bool_val() {
        a.bool_val().to_string()
    } else if a.has_int_val() {
        a.int_val().to_string()
    } else if a.has_float_val() {
        a.float_val().to_string()
    } else {
        "(unset)".into()
    }
}

/// The part of an ARN after `task/`: `<cluster>/<id>`.
fn short_arn(arn: &str) -> &str {
    arn.split_once(":task/").map_or(arn, |(_, rest)| rest)
}

// ---------------------------------------------------------------------------------------------
// Task events: one thread per plugin process prints them as they arrive and forwards them to
// the main thread, which waits on the ones a story needs.

struct Event {
    task_id: String,
    message: String,
    annotations: BTreeMap<String, String>,
}

fn follow_events(plugin: &Plugin, label: &'static str, forward: Sender<Event>) {
    let stream = plugin.task_events();
    std::thread::spawn(move || loop {
        match stream.recv() {
            Ok(Ok(ev)) => {
                let mut notes: Vec<String> = ev
                    .annotations
                    .iter()
                    .filter(|(k, v)| k.as_str() != "task_arn" && !v.is_empty())
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                notes.sort();
                let notes = if notes.is_empty() {
                    String::new()
                } else {
                    format!("  [{}]", notes.join(", "))
                };
                let alloc = ev.alloc_id.get(..8).unwrap_or(&ev.alloc_id);
                say(&format!("    event  {alloc}/{}: {}{notes}", ev.task_name, ev.message));
                let _ = forward.send(Event {
                    task_id: ev.task_id.clone(),
                    message: ev.message.clone(),
                    annotations: ev.annotations.into_iter().collect(),
                });
            }
            Ok(Err(e)) => {
                say(&format!("    event stream of the {label} plugin ended: {:?}", e.code()));
                return;
            }
            Err(_) => return,
        }
    });
}

fn await_event(events: &Receiver<Event>, task_id: &str, needle: &str) -> Result<Event> {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(ev) if ev.task_id == task_id && ev.message.contains(needle) => return Ok(ev),
            Ok(_) => continue,
            Err(RecvTimeoutError::Timeout) => {
                return Err(format!("no task event {needle:?} for {task_id} within {WAIT:?}"))
            }
            Err(RecvTimeoutError::Disconnected) => return Err("the task event stream closed".into()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Nomad's side of a task

/// The job's `config { task { ... } }` stanza (demo/nomad/demo-ecs.nomad with the ids filled
/// in), encoded as Nomad sends it.
fn job_stanza(task_definition: &str) -> Vec<u8> {
    TaskStanza {
        launch_type: Some("FARGATE"),
        task_definition: Some(task_definition),
        assign_public_ip: Some("ENABLED"),
        security_groups: Some(vec![SECURITY_GROUP.into()]),
        subnets: Some(SUBNETS.iter().map(|s| s.to_string()).collect()),
        network: true,
    }
    .encode()
}

/// The `task_definition_json` of demo/nomad/demo-ecs-inline.nomad (its heredoc), so the demo
/// runs exactly what the job file says.
fn inline_task_definition() -> Result<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/demo/nomad/demo-ecs-inline.nomad");
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let start = text
        .find("task_definition_json = <<JSON\n")
        .ok_or("demo-ecs-inline.nomad has no task_definition_json heredoc")?;
    let body = &text[start + "task_definition_json = <<JSON\n".len()..];
    let end = body.find("\nJSON\n").ok_or("the heredoc does not end")?;
    Ok(body[..end + 1].to_string())
}

/// The inline job's task stanza (the ids filled in), encoded as Nomad sends it.
fn inline_stanza(json: &str) -> Vec<u8> {
    TaskStanza {
        launch_type: Some("FARGATE"),
        task_definition: None,
        assign_public_ip: Some("ENABLED"),
        security_groups: Some(vec![SECURITY_GROUP.into()]),
        subnets: Some(SUBNETS.iter().map(|s| s.to_string()).collect()),
        network: true,
    }
    .encode_with(vec![("task_definition_json", cty::s(json))])
}

/// A TaskConfig as the Nomad client's task runner builds it for a new allocation.
fn task_config(alloc_id: &str, task_definition: &str) -> pb::TaskConfig {
    let suffix = &alloc_id[alloc_id.len() - 8..];
    let mut cfg = host::task_config(alloc_id, TASK, suffix, job_stanza(task_definition));
    cfg.job_name = JOB.into();
    cfg.job_id = JOB.into();
    cfg.task_group_name = GROUP.into();
    cfg.env.insert("NOMAD_JOB_NAME".into(), JOB.into());
    cfg
}

fn plugin_stanza(emu: &Emulator) -> Vec<u8> {
    cty::plugin_config(
        Some(true),
        Some(CLUSTER),
        Some(REGION),
        Some(&emu.endpoint()),
        Some(POLL_INTERVAL),
    )
}

/// Launches the plugin as Nomad does, shows the handshake, and configures it.
fn launch_plugin(emu: &Emulator, label: &str) -> Result<Plugin> {
    say(&format!(
        "nomad: launching the {label} plugin process {}",
        host::binary().display()
    ));
    let plugin = Plugin::launch(&Launch::test_credentials());
    say(&format!(
        "plugin pid {} handshake: {}",
        plugin.pid(),
        plugin.handshake.trim()
    ));
    say(&format!(
        "nomad: SetConfig  plugin \"nomad-driver-ecs\" {{ config {{ enabled = true  cluster = {CLUSTER:?}  region = {REGION:?}  endpoint = {:?}  poll_interval = {POLL_INTERVAL:?} }} }}",
        emu.endpoint()
    ));
    rpc("SetConfig", plugin.set_config(plugin_stanza(emu), true))?;
    Ok(plugin)
}

fn start_task(plugin: &Plugin, cfg: &pb::TaskConfig, task_definition: &str) -> Result<(TaskHandle, String)> {
    say(&format!(
        "nomad: StartTask {}  (task_definition = {task_definition:?}, launch_type = \"FARGATE\", subnets = {SUBNETS:?}, security_groups = [{SECURITY_GROUP:?}])",
        cfg.id
    ));
    let resp = rpc("StartTask", plugin.start_task(cfg))?;
    let handle = resp.handle.into_option().ok_or("StartTask returned no task handle")?;
    let state: Value = serde_json::from_slice(&handle.driver_state)
        .map_err(|e| format!("the handle's driver_state is not JSON: {e}"))?;
    let arn = state["task_arn"]
        .as_str()
        .ok_or("the handle's driver_state has no task_arn")?
        .to_string();
    say(&format!(
        "plugin: started ECS task {arn}  (handle version {}, state {:?}, driver_state {} bytes)",
        handle.version,
        handle.state.enum_value_or_default(),
        handle.driver_state.len()
    ));
    Ok((handle, arn))
}

fn inspect(plugin: &Plugin, task_id: &str) -> Result<()> {
    let insp = rpc("InspectTask", plugin.inspect_task(task_id))?;
    let state = insp
        .task
        .as_ref()
        .map(|t| t.state.enum_value_or_default())
        .unwrap_or_default();
    let attrs: BTreeMap<_, _> = insp
        .driver
        .as_ref()
        .map(|d| d.attributes.iter().collect())
        .unwrap_or_default();
    let attrs: Vec<String> = attrs
        .into_iter()
        .filter(|(k, _)| k.as_str() != "arn")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    say(&format!("plugin: InspectTask → {state:?}  {}", attrs.join(" ")));
    Ok(())
}

fn ecs_status(emu: &Emulator, arn: &str) -> Result<Value> {
    emu.tasks(CLUSTER)
        .into_iter()
        .find(|t| t["arn"] == arn)
        .ok_or_else(|| format!("the emulator does not know task {arn}"))
}

/// `family:revision` of the task definition an ECS task runs.
fn revision(t: &Value) -> String {
    t["task_definition_arn"]
        .as_str()
        .and_then(|a| a.rsplit_once('/'))
        .map_or("?".into(), |(_, r)| r.to_string())
}

/// One ECS task in plain words, as `aws ecs describe-tasks` would tell it.
fn plain(t: &Value) -> String {
    let arn = t["arn"].as_str().unwrap_or("?");
    let id = short_arn(arn).rsplit('/').next().unwrap_or(arn);
    let rev = revision(t);
    match t["last_status"].as_str().unwrap_or("?") {
        "RUNNING" => format!(
            "ECS task {id} ({rev}) is RUNNING, started by {}",
            t["started_by"].as_str().unwrap_or("?")
        ),
        "STOPPED" => format!(
            "ECS task {id} ({rev}) has STOPPED: {}",
            t["stopped_reason"].as_str().unwrap_or("no reason given")
        ),
        other => format!(
            "ECS task {id} ({rev}) is {other} (desired {})",
            t["desired_status"].as_str().unwrap_or("?")
        ),
    }
}

fn show_ecs(emu: &Emulator, arn: &str) -> Result<String> {
    let t = ecs_status(emu, arn)?;
    say(&format!("ecs: {}", plain(&t)));
    Ok(t["last_status"].as_str().unwrap_or("?").to_string())
}

fn expect_ecs(emu: &Emulator, arn: &str, want: &str) -> Result<()> {
    let status = show_ecs(emu, arn)?;
    check(status == want, || {
        format!("ECS task {arn} is {status}, expected {want}")
    })
}

fn wait_result(
    what: &str,
    waiting: Receiver<std::result::Result<pb::WaitTaskResponse, RpcStatus>>,
) -> Result<pb::WaitTaskResponse> {
    let resp = rpc(
        "WaitTask",
        waiting
            .recv_timeout(WAIT)
            .map_err(|_| format!("WaitTask for {what} did not return within {WAIT:?}"))?,
    )?;
    let res = resp
        .result
        .as_ref()
        .ok_or("WaitTask returned no result (Nomad would crash on that)")?;
    say(&format!(
        "plugin: WaitTask → exit_code={} signal={} oom_killed={}{}",
        res.exit_code,
        res.signal,
        res.oom_killed,
        if resp.err.is_empty() {
            String::new()
        } else {
            format!(" err={:?}", resp.err)
        }
    ));
    Ok(resp)
}

/// The handle as Nomad persists it: its driver config is not saved, so it comes back empty.
fn persisted(handle: &TaskHandle) -> TaskHandle {
    let mut h = handle.clone();
    if let Some(cfg) = h.config.as_mut() {
        cfg.msgpack_driver_config.clear();
    }
    h
}

/// What the Nomad 1.1–1.9 client hands the replacement allocation on a drain: the old task's
/// handle (its driver_state) under the new allocation's task id.
fn handed_over(old: &TaskHandle, new_cfg: &pb::TaskConfig) -> TaskHandle {
    let mut h = persisted(old);
    let mut cfg = new_cfg.clone();
    cfg.msgpack_driver_config.clear();
    h.config = Some(cfg).into();
    h
}

fn stop_and_destroy(
    plugin: &Plugin,
    events: &Receiver<Event>,
    cfg: &pb::TaskConfig,
    waiting: Receiver<std::result::Result<pb::WaitTaskResponse, RpcStatus>>,
) -> Result<()> {
    say(&format!("nomad: StopTask {} (kill_timeout 5s)", cfg.id));
    rpc("StopTask", plugin.stop_task(&cfg.id, Duration::from_secs(5), ""))?;
    await_event(events, &cfg.id, "ECS task stopped")?;
    let r = wait_result(&cfg.id, waiting)?;
    check(r.result.exit_code == 0, || {
        format!("a task Nomad stopped should exit 0, got {}", r.result.exit_code)
    })?;
    say(&format!("nomad: DestroyTask {} (force)", cfg.id));
    rpc("DestroyTask", plugin.destroy_task(&cfg.id, true))
}

// ---------------------------------------------------------------------------------------------

fn register(emu: &Emulator, revision_text: &str) -> Value {
    emu.setup_with(json!({
        "region": REGION,
        "cluster": CLUSTER,
        "task_definition_family": FAMILY,
        "containers": [{
            "name": TASK, "essential": true, "image": IMAGE,
            "entryPoint": ["/bin/sh", "-c"],
            "command": [format!("echo 'Hello from an ECS task started by Nomad ({revision_text})' > /usr/share/nginx/html/index.html && exec nginx -g 'daemon off;'")],
        }],
        "subnet_ids": SUBNETS,
        "security_group_ids": [SECURITY_GROUP],
    }))
}

fn run() -> Result<()> {
    elapsed();
    let bin = host::binary();
    check(bin.is_file(), || {
        format!(
            "no plugin binary at {}: build it with `cargo build --release` (demo/local/run.sh does) or point NOMAD_DRIVER_ECS_BIN at it",
            bin.display()
        )
    })?;
    println!("nomad-driver-ecs local demo: the plugin runs Nomad tasks as ECS tasks. Here moto plays ECS on 127.0.0.1");
    println!("and this program plays a Nomad 1.1–1.9 client running demo/nomad/demo-ecs.nomad; the steps are those of");
    println!("demo/README.md. No AWS account, nothing leaves this machine.");

    // ---- 1 ------------------------------------------------------------------------------------
    heading("1. terraform apply (demo/terraform): cluster, network, task definition");
    say("starting the ECS emulator (moto) ...");
    let emu = Emulator::start();
    say(&format!("emulator listening on {}", emu.endpoint()));
    let first = register(&emu, "revision 1");
    say(&format!(
        "cluster         {}",
        first["cluster_arn"].as_str().unwrap_or("?")
    ));
    say(&format!(
        "task definition {}  (files/base-demo.json: FARGATE, awsvpc, 256 CPU / 512 MiB)",
        first["task_definition_arn"].as_str().unwrap_or("?")
    ));
    let second = register(&emu, "revision 2, updated");
    say(&format!(
        "task definition {}  (files/updated-demo.json, registered now for step 6)",
        second["task_definition_arn"].as_str().unwrap_or("?")
    ));
    say(&format!(
        "network         subnets {SUBNETS:?}, security group {SECURITY_GROUP}"
    ));
    for (got, want) in [(&first, REVISION_1), (&second, REVISION_2)] {
        check(
            got["task_definition_arn"].as_str().is_some_and(|a| a.ends_with(want)),
            || {
                format!(
                    "the emulator registered {} instead of {want}",
                    got["task_definition_arn"]
                )
            },
        )?;
    }

    // ---- 2 ------------------------------------------------------------------------------------
    heading("2. nomad agent -config=client-1.hcl: the client loads the plugin; nomad node status");
    let plugin = launch_plugin(&emu, "first")?;
    let info = plugin.plugin_info();
    say(&format!(
        "plugin: PluginInfo → name={:?} type={:?} plugin_version={:?} api_versions={:?}",
        info.name,
        info.type_.enum_value_or_default(),
        info.plugin_version,
        info.plugin_api_versions
    ));
    check(info.name == "ecs", || {
        format!("the plugin calls itself {:?}, not \"ecs\"", info.name)
    })?;
    let caps = plugin.capabilities();
    say(&format!(
        "plugin: Capabilities → send_signals={} exec={} remote_tasks={}",
        caps.send_signals, caps.exec, caps.remote_tasks
    ));
    let fp = plugin.first_fingerprint();
    let health = fp.health.enum_value_or_default();
    say(&format!(
        "plugin: Fingerprint → {health:?} ({:?})",
        fp.health_description
    ));
    let attrs: BTreeMap<_, _> = fp.attributes.iter().collect();
    for (k, v) in attrs {
        say(&format!("          {k} = {}", attr_text(v)));
    }
    check(health == pb::fingerprint_response::HealthState::HEALTHY, || {
        format!("the driver is not healthy: {}", fp.health_description)
    })?;
    let (tx, events) = mpsc::channel();
    say("nomad: subscribing to TaskEvents (they print as they arrive, marked \"event\")");
    follow_events(&plugin, "first", tx.clone());

    // ---- 3 ------------------------------------------------------------------------------------
    heading("3. nomad job run demo-ecs.nomad, and watch it (nomad alloc status)");
    let cfg_a = task_config("5b0a5b9e-1111-4000-8000-00000000000a", REVISION_1);
    let (handle_a, arn_1) = start_task(&plugin, &cfg_a, REVISION_1)?;
    await_event(&events, &cfg_a.id, "Started ECS task")?;
    say("nomad: WaitTask (kept open while the task runs, as the task runner does)");
    let waiting = plugin.wait_task_async(&cfg_a.id, WAIT);
    // The plugin's status poller reads the task with DescribeTasks once per poll_interval.
    let polls = emu.call_count("DescribeTasks");
    let watch_start = Instant::now();
    while emu.call_count("DescribeTasks") == polls && watch_start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let waited = watch_start.elapsed();
    check(emu.call_count("DescribeTasks") > polls, || {
        "the plugin did not read the task's status from ECS within 10 s".into()
    })?;
    say(&format!(
        "plugin: watching: it read the task's status with DescribeTasks {} ms later (poll_interval {POLL_INTERVAL})",
        waited.as_millis()
    ));
    inspect(&plugin, &cfg_a.id)?;
    expect_ecs(&emu, &arn_1, "RUNNING")?;

    // ---- 4 ------------------------------------------------------------------------------------
    heading("4. the Nomad client restarts: the plugin process dies and is relaunched");
    let run_tasks = emu.call_count("RunTask");
    say(&format!(
        "kill -9 {}   (the plugin dies; the ECS task does not care)",
        plugin.pid()
    ));
    let old_stderr = plugin.kill();
    match waiting.recv_timeout(WAIT) {
        Ok(Err(e)) => say(&format!(
            "nomad: the open WaitTask broke ({:?}) → the plugin is gone; relaunch it and re-attach",
            e.code()
        )),
        Ok(Ok(r)) => return Err(format!("WaitTask completed although the plugin was killed: {r:?}")),
        Err(_) => return Err("WaitTask did not notice the plugin's death".into()),
    }
    host::assert_hclog_lines(&old_stderr);
    expect_ecs(&emu, &arn_1, "RUNNING")?;
    let plugin = launch_plugin(&emu, "second")?;
    follow_events(&plugin, "second", tx);
    say(&format!(
        "nomad: RecoverTask {} from the saved handle (driver_state only; no job config)",
        cfg_a.id
    ));
    rpc("RecoverTask", plugin.recover_task(&persisted(&handle_a)))?;
    await_event(&events, &cfg_a.id, "Re-attached")?;
    inspect(&plugin, &cfg_a.id)?;
    check(emu.call_count("RunTask") == run_tasks, || {
        "recovery started a second ECS task".into()
    })?;
    say("nomad: RunTask was not called again: the new plugin watches the same ECS task");
    let waiting = plugin.wait_task_async(&cfg_a.id, WAIT);

    // ---- 5 ------------------------------------------------------------------------------------
    heading("5. nomad node drain -enable (Nomad 1.1–1.9: the ECS task is handed over)");
    say(&format!(
        "nomad: StopTask {} signal=\"DETACH\" (the old allocation lets go)",
        cfg_a.id
    ));
    rpc(
        "StopTask",
        plugin.stop_task(&cfg_a.id, Duration::from_secs(5), "DETACH"),
    )?;
    await_event(&events, &cfg_a.id, "Detached")?;
    wait_result(&cfg_a.id, waiting)?;
    say(&format!("nomad: DestroyTask {} (force)", cfg_a.id));
    rpc("DestroyTask", plugin.destroy_task(&cfg_a.id, true))?;
    expect_ecs(&emu, &arn_1, "RUNNING")?;
    let cfg_b = task_config("5b0a5b9e-2222-4000-8000-00000000000b", REVISION_1);
    say(&format!(
        "nomad: the replacement allocation: RecoverTask {} with the old allocation's driver_state",
        cfg_b.id
    ));
    rpc("RecoverTask", plugin.recover_task(&handed_over(&handle_a, &cfg_b)))?;
    await_event(&events, &cfg_b.id, "Took over")?;
    inspect(&plugin, &cfg_b.id)?;
    check(emu.call_count("RunTask") == run_tasks, || {
        "the hand-over started a new ECS task".into()
    })?;
    expect_ecs(&emu, &arn_1, "RUNNING")?;
    say("nomad: same ECS task, no RunTask: the new allocation adopted it without an interruption");
    say("note:  Nomad 1.10 and later have no such hand-over: the plugin rebuilds it with Nomad's HTTP API (the");
    say("       drained allocation's task is left running and the replacement's StartTask adopts it; README.md,");
    say("       \"Lost allocations, drains and orphans\"; demo/README.md, step 7)");
    let waiting = plugin.wait_task_async(&cfg_b.id, WAIT);

    // ---- 6 ------------------------------------------------------------------------------------
    heading("6. terraform apply -var 'ecs_task_definition_file=./files/updated-demo.json'; job → :2");
    say(&format!(
        "$ nomad job run demo-ecs.nomad   (task_definition = {REVISION_2:?}: the allocation is replaced)"
    ));
    stop_and_destroy(&plugin, &events, &cfg_b, waiting)?;
    let cfg_c = task_config("5b0a5b9e-3333-4000-8000-00000000000c", REVISION_2);
    let (_, arn_2) = start_task(&plugin, &cfg_c, REVISION_2)?;
    await_event(&events, &cfg_c.id, "Started ECS task")?;
    let waiting = plugin.wait_task_async(&cfg_c.id, WAIT);
    let old = ecs_status(&emu, &arn_1)?;
    let new = ecs_status(&emu, &arn_2)?;
    say(&format!(
        "old: {}  {}  {}",
        short_arn(&arn_1),
        revision(&old),
        old["last_status"].as_str().unwrap_or("?")
    ));
    say(&format!(
        "new: {}  {}  {}",
        short_arn(&arn_2),
        revision(&new),
        new["last_status"].as_str().unwrap_or("?")
    ));
    check(revision(&old) == REVISION_1 && old["last_status"] == "STOPPED", || {
        format!("the old ECS task should be {REVISION_1} and STOPPED: {old}")
    })?;
    check(revision(&new) == REVISION_2 && new["last_status"] == "RUNNING", || {
        format!("the new ECS task should be {REVISION_2} and RUNNING: {new}")
    })?;

    // ---- 7 ------------------------------------------------------------------------------------
    heading("7. the container fails inside ECS (exit code 1)");
    say("ecs: the essential container exits with 1 (the emulator edits the task as ECS would)");
    emu.stop_task_raw(json!({
        "region": REGION, "cluster": CLUSTER, "task": arn_2, "exit_code": 1,
        "stop_code": "EssentialContainerExited",
        "stopped_reason": "Essential container in task exited",
    }));
    let ev = await_event(&events, &cfg_c.id, "ECS task stopped")?;
    let r = wait_result(&cfg_c.id, waiting)?;
    check(r.result.exit_code == 1, || {
        format!("WaitTask should report 1, got {}", r.result.exit_code)
    })?;
    let stop_code = ev.annotations.get("stop_code").cloned().unwrap_or_default();
    say(&format!(
        "nomad: the event's stop code is {stop_code:?}; the task exited with code 1"
    ));
    check(stop_code == "EssentialContainerExited", || {
        format!("the stop event lacks ECS's stop code: {:?}", ev.annotations)
    })?;
    say(&format!("nomad: DestroyTask {} (force)", cfg_c.id));
    rpc("DestroyTask", plugin.destroy_task(&cfg_c.id, true))?;
    expect_ecs(&emu, &arn_2, "STOPPED")?;
    say("nomad: restart { attempts = 0, mode = \"fail\" } → the allocation failed; reschedule → a new one");
    let cfg_d = task_config("5b0a5b9e-4444-4000-8000-00000000000d", REVISION_2);
    let (_, arn_3) = start_task(&plugin, &cfg_d, REVISION_2)?;
    await_event(&events, &cfg_d.id, "Started ECS task")?;
    let waiting = plugin.wait_task_async(&cfg_d.id, WAIT);
    expect_ecs(&emu, &arn_3, "RUNNING")?;

    // ---- 8 ------------------------------------------------------------------------------------
    heading("8. nomad job stop ecs-demo");
    stop_and_destroy(&plugin, &events, &cfg_d, waiting)?;
    expect_ecs(&emu, &arn_3, "STOPPED")?;

    // ---- 9 ------------------------------------------------------------------------------------
    heading("9. nomad job run demo-ecs-inline.nomad (count = 2): the task definition is in the job");
    let inline = inline_task_definition()?;
    say("job: task_definition_json = <<JSON ... JSON (family \"nomad-remote-driver-demo-inline\", the same nginx image)");
    let mut inline_tasks = Vec::new();
    for (i, alloc) in [
        "5b0a5b9e-5555-4000-8000-00000000000e",
        "5b0a5b9e-6666-4000-8000-00000000000f",
    ]
    .into_iter()
    .enumerate()
    {
        let mut cfg = task_config(alloc, "");
        cfg.msgpack_driver_config = inline_stanza(&inline);
        cfg.job_name = "ecs-demo-inline".into();
        cfg.job_id = "ecs-demo-inline".into();
        cfg.env.insert("NOMAD_ALLOC_INDEX".into(), i.to_string());
        let (handle, arn) = start_task(&plugin, &cfg, "(inline JSON)")?;
        await_event(&events, &cfg.id, "Started ECS task")?;
        let state: Value = serde_json::from_slice(&handle.driver_state).map_err(|e| e.to_string())?;
        say(&format!(
            "plugin: allocation {i} runs {}",
            state["task_definition"].as_str().unwrap_or("?")
        ));
        let waiting = plugin.wait_task_async(&cfg.id, WAIT);
        inline_tasks.push((cfg, arn, waiting));
    }
    let registrations = emu.call_count("RegisterTaskDefinition");
    say(&format!(
        "ecs: RegisterTaskDefinition calls: {registrations} for 2 allocations (the revision is tagged nomad:taskdef-hash and reused)"
    ));
    check(registrations == 1, || {
        format!("expected one registration, saw {registrations}")
    })?;
    for (cfg, arn, _) in &inline_tasks {
        let t = ecs_status(&emu, arn)?;
        check(revision(&t) == "nomad-remote-driver-demo-inline:1", || {
            format!("{} should run nomad-remote-driver-demo-inline:1: {t}", cfg.id)
        })?;
    }
    say("$ nomad job stop ecs-demo-inline");
    for (cfg, arn, waiting) in inline_tasks {
        stop_and_destroy(&plugin, &events, &cfg, waiting)?;
        expect_ecs(&emu, &arn, "STOPPED")?;
    }

    // ---- The end ------------------------------------------------------------------------------
    heading("The end: aws ecs describe-tasks for every task of the cluster; the agent shuts down");
    let tasks = emu.tasks(CLUSTER);
    for t in &tasks {
        say(&format!("ecs: {}", plain(t)));
    }
    say(&format!(
        "ECS calls made by the plugins: {}",
        emu.calls()
            .as_object()
            .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    ));
    let running: Vec<&str> = tasks
        .iter()
        .filter(|t| t["last_status"] != "STOPPED")
        .filter_map(|t| t["arn"].as_str())
        .collect();
    check(running.is_empty(), || format!("ECS tasks left running: {running:?}"))?;
    check(tasks.len() == 5, || {
        format!("expected 5 ECS tasks (one per RunTask), found {}", tasks.len())
    })?;
    say("every ECS task is STOPPED; 5 RunTask calls for 6 allocations (the drain adopted a task)");
    plugin.assert_hclog_stderr();
    say(&format!(
        "plugin stderr: {} + {} lines from the two processes, all hclog JSON; nothing on stdout after the handshake",
        old_stderr.len(),
        plugin.stderr_lines().len()
    ));
    say("nomad: agent shutdown → go-plugin Controller.Shutdown");
    match plugin.shutdown() {
        Some(d) => say(&format!("plugin exited {} ms after Shutdown", d.as_millis())),
        None => return Err("the plugin did not exit within 2 s of Shutdown (it was SIGKILLed)".into()),
    }
    Ok(())
}
