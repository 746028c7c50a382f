//! Chaos suite: hundreds of task lifecycles driven the way Nomad drives them, while a proxy of
//! ours between the plugin and the ECS emulator throttles, fails, stalls and drops requests at set
//! rates, and the plugin is SIGKILLed at random and relaunched (SetConfig, then RecoverTask from
//! the handles the "task runners" hold, as Nomad does).
//!
//! At the end the invariants are checked against the emulator:
//! - every ECS task is STOPPED or owned by a live handle;
//! - no Nomad task id (one allocation per lifecycle here) ever had two ECS tasks;
//! - every WaitTask result equals the exit code the test injected;
//! - no WaitTask (or other call) hung;
//! - the plugin never exited on its own, never panicked, and logged only hclog JSON.
//!
//! The run prints its counts (lifecycles, faults injected, kills, violations) on stderr, even
//! without `--nocapture`, and fails on any violation. Size and seed from the environment:
//! `CHAOS_LIFECYCLES` (default 300), `CHAOS_WORKERS` (12), `CHAOS_SEED` (from the clock; printed),
//! `CHAOS_KILL_EVERY_MS` (mean time between SIGKILLs, 2000).

mod support;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use grpcio::{RpcStatus, RpcStatusCode};
use nomad_driver_ecs::proto::driver as pb;
use serde_json::Value;

use support::cty;
use support::emulator::{Emulator, REGION};
use support::host::{self, Launch, Plugin};
use support::proxy::{Fault, FaultPlan, FaultyProxy, Rng, ALL_FAULTS};

const CLUSTER: &str = "chaos";
/// How long any WaitTask may take after the test made the task exit or stopped it.
const WAIT_BOUND: Duration = Duration::from_secs(60);
/// The plugin's AWS request timeout in this run, and the proxy's stalls (past it).
const REQUEST_TIMEOUT: &str = "1s";
const STALL: Duration = Duration::from_millis(1500);
const POLL: &str = "500ms";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn log(line: &str) {
    // Straight to the process's stderr: the test harness does not capture this, so the counts
    // show in CI logs whether the test passes or fails.
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[derive(Default)]
struct Stats {
    lifecycles: AtomicU64,
    starts: AtomicU64,
    start_failures: AtomicU64,
    start_repeats_after_kill: AtomicU64,
    recoveries: AtomicU64,
    exits_injected: AtomicU64,
    exits_checked: AtomicU64,
    stops: AtomicU64,
    stop_errors: AtomicU64,
    destroy_errors: AtomicU64,
    kills: AtomicU64,
    max_detection_ms: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The "Nomad client": the current plugin instance, relaunched after every kill.
struct Host {
    slot: Mutex<(u64, Option<Arc<Plugin>>)>,
    ready: Condvar,
    config: Vec<u8>,
    /// stderr of every instance, checked at the end.
    logs: Mutex<Vec<Arc<Mutex<Vec<String>>>>>,
    violations: Mutex<Vec<String>>,
}

impl Host {
    fn new(config: Vec<u8>) -> Host {
        let h = Host {
            slot: Mutex::new((0, None)),
            ready: Condvar::new(),
            config,
            logs: Mutex::new(Vec::new()),
            violations: Mutex::new(Vec::new()),
        };
        let p = h.launch();
        *h.slot.lock().unwrap() = (1, Some(p));
        h
    }

    fn launch(&self) -> Arc<Plugin> {
        let p = Plugin::launch(&Launch::test_credentials().with_env("NOMAD_DRIVER_ECS_LOG", "debug"));
        self.logs.lock().unwrap().push(Arc::clone(&p.stderr));
        // SetConfig does not call AWS; it must simply work.
        if let Err(e) = p.set_config(self.config.clone(), true) {
            self.violation(format!("SetConfig failed after a relaunch: {e:?}"));
        }
        Arc::new(p)
    }

    fn violation(&self, v: String) {
        log(&format!("chaos: VIOLATION: {v}"));
        self.violations.lock().unwrap().push(v);
    }

    /// The live instance and its generation (waits while a relaunch is under way).
    fn current(&self) -> (u64, Arc<Plugin>) {
        let mut slot = self.slot.lock().unwrap();
        loop {
            if let Some(p) = &slot.1 {
                return (slot.0, Arc::clone(p));
            }
            slot = self.ready.wait(slot).unwrap();
        }
    }

    fn generation(&self) -> u64 {
        self.slot.lock().unwrap().0
    }

    /// SIGKILL the plugin, then launch and configure a new one (Nomad's plugin manager).
    fn kill_and_relaunch(&self) {
        let old = {
            let mut slot = self.slot.lock().unwrap();
            slot.0 += 1;
            slot.1.take()
        };
        if let Some(old) = old {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &old.pid().to_string()])
                .status();
        }
        let p = self.launch();
        let mut slot = self.slot.lock().unwrap();
        slot.1 = Some(p);
        self.ready.notify_all();
    }

    /// Is the live instance still running? Checked under the slot lock, so a kill of ours is
    /// never mistaken for the plugin exiting on its own.
    fn check_alive(&self) {
        let slot = self.slot.lock().unwrap();
        if let Some(p) = &slot.1 {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", p.pid())).unwrap_or_default();
            let state = stat.rsplit(')').next().and_then(|r| r.split_whitespace().next());
            if !matches!(state, Some(s) if s != "Z" && s != "X") {
                drop(slot);
                self.violation("the plugin exited on its own".into());
                // Keep going with a new instance, so the rest of the run still means something.
                self.kill_and_relaunch();
            }
        }
    }
}

/// One Nomad task as its task runner sees it.
struct Lifecycle {
    cfg: pb::TaskConfig,
    handle: Option<pb::TaskHandle>,
    arn: Option<String>,
    /// The plugin generation that knows this task (RecoverTask is due when it changes).
    known_gen: u64,
}

impl Lifecycle {
    /// One RPC as a task runner makes it: if the plugin died since the task was last known to
    /// it, RecoverTask first (with the in-memory handle); if it dies during the call, repeat.
    fn call<T>(
        &mut self,
        host: &Host,
        stats: &Stats,
        what: &str,
        mut f: impl FnMut(&Plugin) -> Result<T, RpcStatus>,
    ) -> Result<T, RpcStatus> {
        loop {
            let (gen, p) = host.current();
            if let Some(handle) = &self.handle {
                if self.known_gen != gen {
                    match p.recover_task(handle) {
                        Ok(()) => {
                            bump(&stats.recoveries);
                            self.known_gen = gen;
                        }
                        Err(_) if host.generation() != gen => continue,
                        Err(e) => {
                            host.violation(format!(
                                "RecoverTask of {} failed before {what}: {:?} {}",
                                self.cfg.id,
                                e.code(),
                                e.message()
                            ));
                            return Err(e);
                        }
                    }
                }
            }
            match f(&p) {
                Ok(v) => {
                    self.known_gen = gen;
                    return Ok(v);
                }
                Err(_) if host.generation() != gen => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

fn uuid(rng: &mut Rng) -> String {
    let a = rng.next_u64();
    let b = rng.next_u64();
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

fn arn_of(handle: &pb::TaskHandle) -> Option<String> {
    let v: Value = serde_json::from_slice(&handle.driver_state).ok()?;
    v.get("task_arn").and_then(Value::as_str).map(str::to_string)
}

struct Ctx<'a> {
    host: &'a Host,
    emu: &'a Emulator,
    stats: &'a Stats,
    stanza: &'a [u8],
}

/// The allocation index of the next lifecycle.
static NEXT_INDEX: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// StartTask, repeated with the same config if the plugin died during the call.
fn start(ctx: &Ctx, rng: &mut Rng) -> Option<Lifecycle> {
    let alloc = uuid(rng);
    let suffix = format!("{:08x}", rng.next_u64() as u32);
    let mut cfg = host::task_config(&alloc, "app", &suffix, ctx.stanza.to_vec());
    // Each lifecycle is an allocation of its own slot (a group with one index per lifecycle):
    // the invariant below counts ECS tasks per slot (startedBy).
    let index = NEXT_INDEX.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    cfg.env.insert("NOMAD_ALLOC_INDEX".into(), index.to_string());
    cfg.env
        .insert("NOMAD_ALLOC_NAME".into(), format!("ecs-remote.ecs-remote[{index}]"));
    let mut lc = Lifecycle {
        cfg,
        handle: None,
        arn: None,
        known_gen: 0,
    };
    let mut attempts = 0;
    let cfg = lc.cfg.clone();
    let res = lc.call(ctx.host, ctx.stats, "StartTask", |p| {
        attempts += 1;
        p.start_task(&cfg)
    });
    if attempts > 1 {
        ctx.stats
            .start_repeats_after_kill
            .fetch_add(attempts - 1, Ordering::Relaxed);
    }
    match res {
        Ok(resp) => {
            bump(&ctx.stats.starts);
            let Some(handle) = resp.handle.into_option() else {
                ctx.host
                    .violation(format!("StartTask of {} answered without a handle", lc.cfg.id));
                return None;
            };
            lc.arn = arn_of(&handle);
            if lc.arn.is_none() {
                ctx.host
                    .violation(format!("handle of {} carries no task ARN", lc.cfg.id));
            }
            lc.handle = Some(handle);
            Some(lc)
        }
        Err(e) => {
            bump(&ctx.stats.start_failures);
            if e.code() == RpcStatusCode::DEADLINE_EXCEEDED {
                ctx.host
                    .violation(format!("StartTask of {} hung: {}", lc.cfg.id, e.message()));
            } else {
                log(&format!(
                    "chaos: StartTask of {} failed ({:?}): {}",
                    lc.cfg.id,
                    e.code(),
                    e.message()
                ));
            }
            // Nomad would retry under a new task id; the allocation's ECS task (if any) must
            // not be left running: checked at the end.
            None
        }
    }
}

/// WaitTask until a result, recovering across kills; None (and a violation) if it hung/failed.
fn wait(ctx: &Ctx, lc: &mut Lifecycle) -> Option<(pb::ExitResult, String)> {
    let deadline = Instant::now() + WAIT_BOUND;
    let id = lc.cfg.id.clone();
    let res = lc.call(ctx.host, ctx.stats, "WaitTask", |p| {
        let left = deadline.saturating_duration_since(Instant::now());
        p.wait_task(&id, left.max(Duration::from_millis(1)))
    });
    match res {
        Ok(r) => match r.result.into_option() {
            Some(result) => Some((result, r.err)),
            None => {
                ctx.host
                    .violation(format!("WaitTask of {id} answered without a result"));
                None
            }
        },
        Err(e) => {
            let what = if e.code() == RpcStatusCode::DEADLINE_EXCEEDED {
                "hung"
            } else {
                "failed"
            };
            ctx.host
                .violation(format!("WaitTask of {id} {what}: {:?} {}", e.code(), e.message()));
            None
        }
    }
}

/// One whole life: start, then either the ECS task exits with a code the test picks, or Nomad
/// stops it; then DestroyTask.
fn lifecycle(ctx: &Ctx, rng: &mut Rng) {
    let Some(mut lc) = start(ctx, rng) else {
        bump(&ctx.stats.lifecycles);
        return;
    };
    let id = lc.cfg.id.clone();
    std::thread::sleep(Duration::from_millis(rng.below(1500)));
    if rng.below(100) < 70 {
        let code = rng.below(256) as i64;
        let arn = lc.arn.clone().unwrap_or_default();
        ctx.emu
            .exit_task(CLUSTER, &arn, Some(code), "Essential container in task exited");
        bump(&ctx.stats.exits_injected);
        let t0 = Instant::now();
        if let Some((result, err)) = wait(ctx, &mut lc) {
            let ms = t0.elapsed().as_millis() as u64;
            ctx.stats.max_detection_ms.fetch_max(ms, Ordering::Relaxed);
            bump(&ctx.stats.exits_checked);
            if i64::from(result.exit_code) != code {
                ctx.host.violation(format!(
                    "WaitTask of {id} gave exit code {} (err {err:?}); the test injected {code}",
                    result.exit_code
                ));
            }
        }
    } else {
        bump(&ctx.stats.stops);
        // Nomad retries a failed StopTask up to 5 times (with backoff), then waits anyway.
        for _ in 0..5 {
            let r = lc.call(ctx.host, ctx.stats, "StopTask", |p| {
                p.stop_task(&id, Duration::from_secs(5), "")
            });
            match r {
                Ok(()) => break,
                Err(e) => {
                    bump(&ctx.stats.stop_errors);
                    log(&format!("chaos: StopTask of {id}: {:?} {}", e.code(), e.message()));
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
        wait(ctx, &mut lc);
    }
    if lc
        .call(ctx.host, ctx.stats, "DestroyTask", |p| p.destroy_task(&id, true))
        .is_err()
    {
        bump(&ctx.stats.destroy_errors);
    }
    bump(&ctx.stats.lifecycles);
}

fn stanza(setup: &Value) -> Vec<u8> {
    support::fargate_stanza(setup, "my-task-definition").encode()
}

#[test]
fn chaos_lifecycles_keep_every_invariant() {
    let lifecycles = env_num("CHAOS_LIFECYCLES", 300) as usize;
    let workers = env_num("CHAOS_WORKERS", 12).max(1) as usize;
    let kill_every = env_num("CHAOS_KILL_EVERY_MS", 2000).max(200);
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    log(&format!(
        "chaos: seed {seed} (set CHAOS_SEED={seed} to draw the same faults, kills and exit codes), {lifecycles} lifecycles on {workers} workers, a SIGKILL every ~{kill_every} ms"
    ));

    let emu = Emulator::start();
    let setup = emu.setup(CLUSTER);
    let plan = FaultPlan {
        per_mille: vec![
            (Fault::Throttle, 40),
            (Fault::ServerErrorBefore, 20),
            (Fault::ServerErrorAfter, 15),
            (Fault::StallBefore, 8),
            (Fault::StallAfter, 8),
            (Fault::DropMidResponse, 15),
        ],
        stall: STALL,
        seed,
    };
    let proxy = FaultyProxy::start(emu.port, plan);
    let config = cty::plugin_config_with(
        Some(true),
        Some(CLUSTER),
        Some(REGION),
        Some(&proxy.endpoint()),
        Some(POLL),
        &[
            ("request_timeout", REQUEST_TIMEOUT),
            ("connect_timeout", REQUEST_TIMEOUT),
        ],
    );
    let host = Host::new(config);
    let stats = Stats::default();
    let stanza = stanza(&setup);
    let ctx = Ctx {
        host: &host,
        emu: &emu,
        stats: &stats,
        stanza: &stanza,
    };
    let next = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    let started = Instant::now();

    let live: Vec<Lifecycle> = std::thread::scope(|s| {
        // The plugin manager's watch: the plugin must never exit unless we killed it.
        s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                host.check_alive();
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        // The killer.
        s.spawn(|| {
            let mut rng = Rng::new(seed ^ 0x5eed);
            while !done.load(Ordering::SeqCst) {
                let pause = Duration::from_millis(kill_every / 2 + rng.below(kill_every));
                let until = Instant::now() + pause;
                while Instant::now() < until && !done.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                if done.load(Ordering::SeqCst) {
                    break;
                }
                host.kill_and_relaunch();
                bump(&stats.kills);
            }
        });
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (ctx, next) = (&ctx, &next);
                s.spawn(move || {
                    let mut rng = Rng::new(seed.wrapping_add(1 + w as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                    while next.fetch_add(1, Ordering::SeqCst) < lifecycles {
                        lifecycle(ctx, &mut rng);
                    }
                    // One more task per worker that stays running: a live handle at the end.
                    start(ctx, &mut rng)
                })
            })
            .collect();
        let live: Vec<Lifecycle> = handles
            .into_iter()
            .filter_map(|h| h.join().expect("worker panicked"))
            .collect();
        done.store(true, Ordering::SeqCst);
        live
    });
    let chaos_time = started.elapsed();

    // One last kill with the live tasks held; every one must be recovered and still running.
    host.kill_and_relaunch();
    bump(&stats.kills);
    let mut live = live;
    for lc in &mut live {
        let id = lc.cfg.id.clone();
        match lc.call(&host, &stats, "InspectTask", |p| p.inspect_task(&id)) {
            Ok(r) => {
                let state = r.task.as_ref().map(|t| t.state.enum_value());
                if state != Some(Ok(pb::TaskState::RUNNING)) {
                    host.violation(format!("live task {id} is {state:?} after recovery, not RUNNING"));
                }
            }
            Err(e) => host.violation(format!("InspectTask of live task {id}: {}", e.message())),
        }
    }

    // Invariants, read from the emulator with faults off.
    proxy.set_faults(false);
    let tasks = emu.tasks(CLUSTER);
    let live_arns: HashMap<String, String> = live
        .iter()
        .filter_map(|lc| lc.arn.clone().map(|a| (a, lc.cfg.id.clone())))
        .collect();
    let mut per_alloc: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in &tasks {
        let arn = t["arn"].as_str().unwrap_or_default().to_string();
        let status = t["last_status"].as_str().unwrap_or_default();
        if status != "STOPPED" && !live_arns.contains_key(&arn) {
            host.violation(format!(
                "ECS task {arn} ({}) is {status} and no live handle owns it: leaked",
                t["started_by"]
            ));
        }
        let owner = t["started_by"].as_str().unwrap_or_default().to_string();
        per_alloc.entry(owner).or_default().push(arn);
    }
    for (owner, arns) in &per_alloc {
        if arns.len() > 1 {
            host.violation(format!("{owner} has {} ECS tasks: {arns:?}", arns.len()));
        }
    }
    for (arn, id) in &live_arns {
        if emu.task_status(CLUSTER, arn).as_deref() != Some("RUNNING") {
            host.violation(format!("live task {id} ({arn}) is not RUNNING in ECS"));
        }
    }

    // Clean up the live tasks the way Nomad would, faults off.
    for lc in &mut live {
        let id = lc.cfg.id.clone();
        let _ = lc.call(&host, &stats, "StopTask", |p| {
            p.stop_task(&id, Duration::from_secs(10), "")
        });
        let _ = wait(&ctx, lc);
        let _ = lc.call(&host, &stats, "DestroyTask", |p| p.destroy_task(&id, true));
    }
    for t in emu.tasks(CLUSTER) {
        if t["last_status"] != "STOPPED" {
            host.violation(format!(
                "ECS task {} still {} after the final stops",
                t["arn"], t["last_status"]
            ));
        }
    }

    // The plugin's own output: hclog JSON only, no panic, no secret.
    let final_plugin = {
        let mut slot = host.slot.lock().unwrap();
        slot.1.take()
    };
    if let Some(p) = final_plugin.and_then(|p| Arc::try_unwrap(p).ok()) {
        if p.shutdown().is_none() {
            host.violation("the plugin did not exit within 2 s of Shutdown".into());
        }
    }
    let mut log_lines = 0;
    for stderr in host.logs.lock().unwrap().iter() {
        let lines = stderr.lock().unwrap().clone();
        log_lines += lines.len();
        support::host::assert_hclog_lines(&lines);
        for l in &lines {
            if l.contains("panicked") || l.contains("test-secret-not-real") {
                host.violation(format!("plugin log line: {l}"));
            }
        }
    }

    let c = &proxy.counters;
    let faults: Vec<String> = ALL_FAULTS
        .iter()
        .map(|f| format!("{f:?} {}", c.faults_of(*f)))
        .collect();
    let violations = host.violations.lock().unwrap().clone();
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    log(&format!(
        "chaos: {} lifecycles in {:.1} s (+{} live at the end); starts {} (failed {}, repeated after a kill {}), \
         exits injected {} / checked {}, stops {} (StopTask errors {}), DestroyTask errors {}, \
         kills {}, recoveries {}, slowest exit detection {} ms; proxy: {} API requests, {} faults injected ({}); \
         {} plugin log lines; violations {}",
        g(&stats.lifecycles),
        chaos_time.as_secs_f64(),
        live.len(),
        g(&stats.starts),
        g(&stats.start_failures),
        g(&stats.start_repeats_after_kill),
        g(&stats.exits_injected),
        g(&stats.exits_checked),
        g(&stats.stops),
        g(&stats.stop_errors),
        g(&stats.destroy_errors),
        g(&stats.kills),
        g(&stats.recoveries),
        g(&stats.max_detection_ms),
        c.requests.load(Ordering::Relaxed),
        c.total_faults(),
        faults.join(", "),
        log_lines,
        violations.len()
    ));
    assert!(
        violations.is_empty(),
        "{} violations (seed {seed}):\n{}",
        violations.len(),
        violations.join("\n")
    );
    assert_eq!(
        g(&stats.lifecycles) as usize,
        lifecycles,
        "every lifecycle ran to its end"
    );
    assert!(g(&stats.kills) > 0 && c.total_faults() > 0, "the run injected nothing");
}
