//! The local demo: a Nomad-like session against the ECS emulator, narrated on stdout.
//!
//! No AWS account and no Nomad: moto plays ECS on 127.0.0.1 (tests/support/ecs_emulator.py) and
//! this program plays the Nomad client, driving the real plugin binary over go-plugin gRPC
//! exactly as the integration tests do (it reuses tests/support). Run it with
//! `demo/local/run.sh`, which installs what is missing and sets the two environment variables:
//! `NOMAD_DRIVER_ECS_BIN` (the plugin binary) and `ECS_EMULATOR_PYTHON` (a Python with moto).
//!
//! Three stories, each the way a Nomad client would drive the driver:
//! 1. `nomad job run`, then `nomad job stop`: StartTask, InspectTask, StopTask, WaitTask, DestroyTask.
//! 2. the container dies in ECS with exit code 137: WaitTask reports it, with ECS's stop code.
//! 3. the plugin process crashes: Nomad relaunches it and re-attaches with RecoverTask.

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

/// The cluster and network ids of the seed configuration (the AWS demo's terraform makes real ones).
const CLUSTER: &str = "nomad-remote-driver-cluster";
const TASK_DEFINITION: &str = "my-task-definition:1";
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

/// The seed job's `config { task { ... } }` stanza, encoded as Nomad sends it.
fn seed_stanza() -> Vec<u8> {
    TaskStanza {
        launch_type: Some("FARGATE"),
        task_definition: Some(TASK_DEFINITION),
        assign_public_ip: Some("ENABLED"),
        security_groups: Some(vec![SECURITY_GROUP.into()]),
        subnets: Some(SUBNETS.iter().map(|s| s.to_string()).collect()),
        network: true,
    }
    .encode()
}

/// A TaskConfig as the Nomad client's task runner builds it for a new allocation.
fn task_config(alloc_id: &str) -> pb::TaskConfig {
    let mut cfg = host::task_config(alloc_id, TASK, "7d3c2b1a", seed_stanza());
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

fn start_task(plugin: &Plugin, cfg: &pb::TaskConfig) -> Result<(TaskHandle, String)> {
    say(&format!(
        "nomad: StartTask {}  (task_definition = {TASK_DEFINITION:?}, launch_type = \"FARGATE\", subnets = {SUBNETS:?}, security_groups = [{SECURITY_GROUP:?}])",
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

fn show_ecs(emu: &Emulator, arn: &str) -> Result<String> {
    let t = ecs_status(emu, arn)?;
    let status = t["last_status"].as_str().unwrap_or("?").to_string();
    let reason = t["stopped_reason"].as_str().unwrap_or_default();
    say(&format!(
        "aws ecs describe-tasks: {}  lastStatus={status} desiredStatus={}{}",
        short_arn(arn),
        t["desired_status"].as_str().unwrap_or("?"),
        if reason.is_empty() {
            String::new()
        } else {
            format!("  stoppedReason={reason:?}")
        }
    ));
    Ok(status)
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

// ---------------------------------------------------------------------------------------------

fn run() -> Result<()> {
    elapsed();
    let bin = host::binary();
    check(bin.is_file(), || {
        format!(
            "no plugin binary at {}: build it with `cargo build --release` (demo/local/run.sh does) or point NOMAD_DRIVER_ECS_BIN at it",
            bin.display()
        )
    })?;
    println!("nomad-driver-ecs local demo: the plugin runs Nomad tasks as ECS tasks; here moto plays ECS on");
    println!("127.0.0.1 and this program plays the Nomad client. No AWS account, nothing leaves this machine.");

    heading("AWS side (what terraform does in demo/aws)");
    say("starting the ECS emulator (moto) ...");
    let emu = Emulator::start();
    say(&format!("emulator listening on {}", emu.endpoint()));
    let setup = emu.setup_with(json!({
        "region": REGION,
        "cluster": CLUSTER,
        "containers": [{"name": TASK, "essential": true, "image": "public.ecr.aws/nginx/nginx:stable"}],
        "subnet_ids": SUBNETS,
        "security_group_ids": [SECURITY_GROUP],
    }));
    say(&format!(
        "cluster         {}",
        setup["cluster_arn"].as_str().unwrap_or("?")
    ));
    say(&format!(
        "task definition {}  (FARGATE, awsvpc, 256 CPU / 512 MiB)",
        setup["task_definition_arn"].as_str().unwrap_or("?")
    ));
    say(&format!(
        "network         subnets {SUBNETS:?}, security group {SECURITY_GROUP}"
    ));
    check(
        setup["task_definition_arn"]
            .as_str()
            .is_some_and(|a| a.ends_with(TASK_DEFINITION)),
        || {
            format!(
                "the emulator registered {} instead of {TASK_DEFINITION}",
                setup["task_definition_arn"]
            )
        },
    )?;

    heading("Nomad client starts and loads the plugin");
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

    // ---- Story 1 --------------------------------------------------------------------------
    heading("Story 1: nomad job run demo.nomad, then nomad job stop");
    let cfg = task_config("5b0a5b9e-1111-4000-8000-000000000001");
    let (_handle, arn) = start_task(&plugin, &cfg)?;
    await_event(&events, &cfg.id, "Started ECS task")?;
    say("nomad: WaitTask (kept open while the task runs, as the task runner does)");
    let waiting = plugin.wait_task_async(&cfg.id, WAIT);
    inspect(&plugin, &cfg.id)?;
    let status = show_ecs(&emu, &arn)?;
    check(status == "RUNNING", || {
        format!("ECS task is {status}, expected RUNNING")
    })?;
    say("$ nomad job stop ecs-demo");
    say(&format!("nomad: StopTask {} (kill_timeout 5s)", cfg.id));
    rpc("StopTask", plugin.stop_task(&cfg.id, Duration::from_secs(5), ""))?;
    await_event(&events, &cfg.id, "ECS task stopped")?;
    let r = wait_result("story 1", waiting)?;
    check(r.result.exit_code == 0, || {
        format!("a stopped task should exit 0, got {}", r.result.exit_code)
    })?;
    say(&format!("nomad: DestroyTask {} (force)", cfg.id));
    rpc("DestroyTask", plugin.destroy_task(&cfg.id, true))?;
    let status = show_ecs(&emu, &arn)?;
    check(status == "STOPPED", || {
        format!("ECS task is {status}, expected STOPPED")
    })?;

    // ---- Story 2 --------------------------------------------------------------------------
    heading("Story 2: the container dies inside ECS (exit code 137)");
    let cfg = task_config("5b0a5b9e-2222-4000-8000-000000000002");
    let (_handle, arn) = start_task(&plugin, &cfg)?;
    await_event(&events, &cfg.id, "Started ECS task")?;
    let waiting = plugin.wait_task_async(&cfg.id, WAIT);
    say("ecs: the essential container is OOM-killed (the emulator edits the task as ECS would)");
    emu.stop_task_raw(json!({
        "region": REGION, "cluster": CLUSTER, "task": arn, "exit_code": 137,
        "stop_code": "EssentialContainerExited",
        "stopped_reason": "Essential container in task exited",
        "container_reason": "OutOfMemoryError: Container killed due to memory usage",
    }));
    let ev = await_event(&events, &cfg.id, "ECS task stopped")?;
    let r = wait_result("story 2", waiting)?;
    check(r.result.exit_code == 137, || {
        format!("WaitTask should report 137, got {}", r.result.exit_code)
    })?;
    check(
        ev.annotations.get("stop_code").map(String::as_str) == Some("EssentialContainerExited"),
        || format!("the stop event lacks ECS's stop code: {:?}", ev.annotations),
    )?;
    say("nomad: the task failed with 137 → the job's restart/reschedule policy decides what happens next");
    say(&format!("nomad: DestroyTask {} (force)", cfg.id));
    rpc("DestroyTask", plugin.destroy_task(&cfg.id, true))?;
    show_ecs(&emu, &arn)?;

    // ---- Story 3 --------------------------------------------------------------------------
    heading("Story 3: the plugin process crashes while a task runs");
    let cfg = task_config("5b0a5b9e-3333-4000-8000-000000000003");
    let (handle, arn) = start_task(&plugin, &cfg)?;
    await_event(&events, &cfg.id, "Started ECS task")?;
    let waiting = plugin.wait_task_async(&cfg.id, WAIT);
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
    show_ecs(&emu, &arn)?;

    let plugin = launch_plugin(&emu, "second")?;
    follow_events(&plugin, "second", tx);
    say(&format!(
        "nomad: RecoverTask {} from the saved handle (driver_state only; no job config)",
        cfg.id
    ));
    rpc("RecoverTask", plugin.recover_task(&persisted(&handle)))?;
    await_event(&events, &cfg.id, "Re-attached")?;
    inspect(&plugin, &cfg.id)?;
    check(emu.call_count("RunTask") == run_tasks, || {
        "recovery started a second ECS task".into()
    })?;
    say("nomad: RunTask was not called again: the same ECS task is watched by the new plugin");
    let waiting = plugin.wait_task_async(&cfg.id, WAIT);
    say("$ nomad job stop ecs-demo");
    say(&format!("nomad: StopTask {} (kill_timeout 5s)", cfg.id));
    rpc("StopTask", plugin.stop_task(&cfg.id, Duration::from_secs(5), ""))?;
    wait_result("story 3", waiting)?;
    say(&format!("nomad: DestroyTask {} (force)", cfg.id));
    rpc("DestroyTask", plugin.destroy_task(&cfg.id, true))?;

    // ---- The end --------------------------------------------------------------------------
    heading("The end: aws ecs list-tasks --desired-status STOPPED, and the agent shuts down");
    let tasks = emu.tasks(CLUSTER);
    for t in &tasks {
        say(&format!(
            "{}  {}  {:?}",
            short_arn(t["arn"].as_str().unwrap_or("?")),
            t["last_status"].as_str().unwrap_or("?"),
            t["stopped_reason"].as_str().unwrap_or_default()
        ));
    }
    check(tasks.len() == 3, || {
        format!("expected 3 ECS tasks, found {}", tasks.len())
    })?;
    check(tasks.iter().all(|t| t["last_status"] == "STOPPED"), || {
        "some ECS task is still running".into()
    })?;
    say(&format!(
        "ECS calls made by the plugins: {}",
        emu.calls()
            .as_object()
            .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    ));
    plugin.assert_hclog_stderr();
    let lines = plugin.stderr_lines().len();
    say(&format!(
        "plugin stderr: {} + {lines} lines from the two processes, all hclog JSON; nothing on stdout after the handshake",
        old_stderr.len()
    ));
    say("nomad: agent shutdown → go-plugin Controller.Shutdown");
    match plugin.shutdown() {
        Some(d) => say(&format!("plugin exited {} ms after Shutdown", d.as_millis())),
        None => return Err("the plugin did not exit within 2 s of Shutdown (it was SIGKILLed)".into()),
    }
    Ok(())
}
