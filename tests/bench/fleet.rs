//! Fleet benchmark (figures, not a pass/fail test): the release plugin binary watching K ECS
//! tasks on the emulator, as a Nomad client drives it. For each K it measures
//!
//! - exec → handshake: process spawn until the go-plugin handshake line is read (once, not per K);
//! - RSS and threads of the plugin idle after SetConfig, with K watched tasks, and the peak;
//! - StartTask latency (the first tasks one at a time, the rest from several host threads);
//! - DescribeTasks calls per poll and per minute in steady state (the emulator's call counter,
//!   sampled every 50 ms, split into polls);
//! - stop-detection latency: a sample of tasks is made to exit in the emulator, spread over two
//!   poll intervals, and timed until their open WaitTask answers.
//!
//! Run (see BENCHMARKS.md): `ECS_EMULATOR_PYTHON=.venv/bin/python cargo bench --bench fleet`.
//! Environment: `FLEET_K` (default `100,1000`), `FLEET_POLL` (the plugin's `poll_interval`,
//! default `5s`), `FLEET_STEADY_SECS` (steady-state window, default 60), `FLEET_STOP_SAMPLE`
//! (tasks made to exit, default 50), `FLEET_START_THREADS` (concurrent StartTask callers, default
//! 4), `FLEET_HANDSHAKES` (handshake samples, default 20). `--write` (or `FLEET_WRITE=1`) puts
//! the figures into BENCHMARKS.md between its `fleet-bench` markers. `FLEET_SMAPS_DIR=<dir>`
//! keeps a copy of the plugin's /proc/<pid>/smaps in steady state; `FLEET_PLUGIN_ENV='A=1 B=2'`
//! adds environment variables to the plugin's (experiments, e.g. glibc's `MALLOC_ARENA_MAX`).
//! `FLEET_TLS=1` puts a TLS relay (`tls_relay.py`) in front of the emulator, so the plugin talks
//! HTTPS with certificate checks as against real ECS.

#[path = "../support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use grpcio::CallOption;
use nomad_driver_ecs::nomad::methods as m;
use nomad_driver_ecs::proto::driver as pb;
use support::cty::{self, TaskStanza};
use support::emulator::{Emulator, REGION};
use support::host::{self, Launch, Plugin};

#[path = "shared.rs"]
mod shared;
use shared::{env_or, mem, rel, Mem};

/// The plugin's own default log filter (`NOMAD_DRIVER_ECS_LOG` unset); the test host would
/// otherwise turn on trace logging.
const DEFAULT_LOG_FILTER: &str = "warn,nomad_driver_ecs=debug";
/// Tasks started one at a time before the concurrent starts (uncontended latency).
const SERIAL_STARTS: usize = 20;
/// Linux's USER_HZ for /proc/<pid>/stat times.
const CLK_TCK: f64 = 100.0;

struct Opts {
    ks: Vec<usize>,
    poll: String,
    poll_dur: Duration,
    steady: Duration,
    stop_sample: usize,
    start_threads: usize,
    handshakes: usize,
    /// Extra environment for the plugin (experiments: `MALLOC_ARENA_MAX=1`, `RUST_MIN_STACK=...`).
    plugin_env: Vec<(String, String)>,
    /// ECS over HTTPS (a TLS relay in front of the emulator) instead of plain HTTP.
    tls: bool,
    write: bool,
}

fn parse_duration(s: &str) -> Duration {
    let s = s.trim();
    let (num, mul) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.parse().unwrap_or_else(|_| panic!("bad duration {s:?}"));
    Duration::from_secs_f64(v * mul)
}

impl Opts {
    fn from_env() -> Opts {
        let ks = env_or("FLEET_K", "100,1000")
            .split(',')
            .map(|k| k.trim().parse().expect("FLEET_K: comma-separated task counts"))
            .filter(|&k| k > 0)
            .collect();
        let poll = env_or("FLEET_POLL", "5s");
        let poll_dur = parse_duration(&poll);
        let num = |name: &str, default: &str| -> usize {
            env_or(name, default)
                .parse()
                .unwrap_or_else(|_| panic!("{name} must be a number"))
        };
        Opts {
            ks,
            poll,
            poll_dur,
            steady: Duration::from_secs(num("FLEET_STEADY_SECS", "60") as u64),
            stop_sample: num("FLEET_STOP_SAMPLE", "50"),
            start_threads: num("FLEET_START_THREADS", "4").max(1),
            handshakes: num("FLEET_HANDSHAKES", "20").max(1),
            plugin_env: env_or("FLEET_PLUGIN_ENV", "")
                .split_whitespace()
                .map(|kv| {
                    let (k, v) = kv.split_once('=').expect("FLEET_PLUGIN_ENV: NAME=value ...");
                    (k.to_string(), v.to_string())
                })
                .collect(),
            tls: env_or("FLEET_TLS", "0") == "1",
            write: std::env::args().any(|a| a == "--write")
                || std::env::var_os("FLEET_WRITE").is_some_and(|v| v == "1"),
        }
    }

    fn command(&self) -> String {
        let mut extra = String::new();
        if !self.plugin_env.is_empty() {
            let kv: Vec<String> = self.plugin_env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            extra += &format!("FLEET_PLUGIN_ENV='{}' ", kv.join(" "));
        }
        let mut build = String::new();
        if let Some(bin) = std::env::var_os("NOMAD_DRIVER_ECS_BIN") {
            let rel = rel(Path::new(&bin));
            if rel.contains("target/dist/") {
                build = ".ci/release x86_64-unknown-linux-musl && ".into();
            }
            extra += &format!("NOMAD_DRIVER_ECS_BIN={rel} ");
        }
        format!(
            "{build}{extra}{}ECS_EMULATOR_PYTHON=.venv/bin/python FLEET_K={} FLEET_POLL={} FLEET_STEADY_SECS={} FLEET_STOP_SAMPLE={} FLEET_START_THREADS={} FLEET_HANDSHAKES={} cargo bench --bench fleet -- --write",
            if self.tls { "FLEET_TLS=1 " } else { "" },
            self.ks.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(","),
            self.poll,
            self.steady.as_secs(),
            self.stop_sample,
            self.start_threads,
            self.handshakes
        )
    }
}

// ---- measurements ------------------------------------------------------------------------------

/// User + system CPU seconds the process used so far.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/<pid>/stat");
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after "state".
    let ticks: u64 = f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0);
    ticks as f64 / CLK_TCK
}

/// Where the resident memory is, from /proc/<pid>/smaps: thread stacks (an anonymous mapping
/// right above a one-page guard), malloc arenas (an anonymous mapping right below the unused
/// rest of its reservation), the main heap, other anonymous memory, the plugin binary's own
/// pages and shared libraries.
fn breakdown(pid: u32) -> (String, u64) {
    struct Map {
        start: u64,
        end: u64,
        perms: String,
        path: String,
        rss: u64,
    }
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut maps: Vec<Map> = Vec::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let first = parts.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(start), Ok(end)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                let perms = parts.next().unwrap_or("").to_string();
                let path = parts.nth(3).unwrap_or("").to_string();
                maps.push(Map {
                    start,
                    end,
                    perms,
                    path,
                    rss: 0,
                });
                continue;
            }
        }
        if let (Some(m), Some(v)) = (maps.last_mut(), line.strip_prefix("Rss:")) {
            m.rss = v.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0);
        }
    }
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let (mut stacks, mut n_stacks, mut arenas, mut n_arenas, mut heap, mut other, mut bin, mut libs) =
        (0, 0, 0, 0, 0, 0, 0, 0);
    let mut deepest = 0;
    for (i, m) in maps.iter().enumerate() {
        let guard_below = i > 0 && {
            let p = &maps[i - 1];
            p.end == m.start && p.perms.starts_with("---") && p.end - p.start == 4096
        };
        let reserve_above = maps
            .get(i + 1)
            .is_some_and(|n| n.start == m.end && n.perms.starts_with("---") && n.path.is_empty());
        if m.path == exe {
            bin += m.rss;
        } else if m.path.starts_with('/') {
            libs += m.rss;
        } else if m.path == "[heap]" {
            heap += m.rss;
        } else if !m.path.is_empty() || !m.perms.starts_with("rw") {
            other += m.rss;
        } else if guard_below {
            stacks += m.rss;
            n_stacks += 1;
            deepest = deepest.max(m.rss);
        } else if reserve_above {
            arenas += m.rss;
            n_arenas += 1;
        } else {
            other += m.rss;
        }
    }
    let text = format!(
        "thread stacks {} ({n_stacks} mappings), malloc arenas {} ({n_arenas}), main heap {}, other anonymous {}, plugin binary {}, shared libraries {}",
        mib(stacks),
        mib(arenas),
        mib(heap),
        mib(other),
        mib(bin),
        mib(libs)
    );
    (text, deepest)
}

fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

fn ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1000.0;
    if v < 10.0 {
        format!("{v:.2} ms")
    } else {
        format!("{v:.0} ms")
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Nearest-rank percentile of sorted samples.
fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

// ---- exec → handshake --------------------------------------------------------------------------

struct Handshake {
    samples: Vec<Duration>,
}

fn measure_handshake(binary: &Path, n: usize) -> Handshake {
    let mut samples = Vec::new();
    for _ in 0..n {
        let mut cmd = Command::new(binary);
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", "/nonexistent/ecs-bench-home")
            .env(host::COOKIE_KEY, host::COOKIE)
            .env("PLUGIN_MIN_PORT", "10000")
            .env("PLUGIN_MAX_PORT", "25000")
            .env("PLUGIN_PROTOCOL_VERSIONS", "2")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let t0 = Instant::now();
        let mut child = cmd.spawn().expect("spawn plugin");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("handshake line");
        samples.push(t0.elapsed());
        let _ = child.kill();
        let _ = child.wait();
        assert!(line.contains("|unix|"), "unexpected handshake line {line:?}");
        // A killed plugin leaves its socket directory behind.
        if let Some(sock) = line.trim().split('|').nth(3) {
            let sock = PathBuf::from(sock);
            let _ = std::fs::remove_file(&sock);
            if let Some(dir) = sock.parent() {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
    Handshake { samples }
}

// ---- idle figures of each plugin build -----------------------------------------------------------

/// The plugin builds to compare at idle: the one benchmarked, and Cargo's dynamic release and
/// the x86_64 musl release artifact (`.ci/release`) if present.
fn builds(primary: &Path) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = vec![primary.to_path_buf()];
    for p in [
        root.join("target/release/nomad-driver-ecs"),
        root.join("target/dist/x86_64-unknown-linux-musl/nomad-driver-ecs"),
    ] {
        let same = |a: &Path, b: &Path| a.canonicalize().ok().is_some_and(|a| b.canonicalize().ok() == Some(a));
        if p.exists() && !out.iter().any(|o| same(o, &p)) {
            out.push(p);
        }
    }
    out
}

struct Idle {
    binary: PathBuf,
    handshake: Vec<Duration>,
    mem: Mem,
    /// Proportional set size (shared pages divided among the processes mapping them), kB.
    pss_kb: u64,
    breakdown: String,
}

/// Handshake samples, then RSS and threads one second after SetConfig (no ECS call is made).
fn measure_idle(binary: &Path, handshakes: usize) -> Idle {
    let mut handshake = measure_handshake(binary, handshakes).samples;
    handshake.sort();
    let plugin = Plugin::launch(
        &Launch::test_credentials()
            .with_env("NOMAD_DRIVER_ECS_LOG", DEFAULT_LOG_FILTER)
            .with_binary(binary),
    );
    plugin
        .set_config(
            cty::plugin_config(Some(true), Some("idle"), Some(REGION), Some("http://127.0.0.1:9"), None),
            true,
        )
        .expect("SetConfig");
    std::thread::sleep(Duration::from_secs(1));
    let mem = mem(plugin.pid());
    let (breakdown, _) = breakdown(plugin.pid());
    let pss_kb = std::fs::read_to_string(format!("/proc/{}/smaps_rollup", plugin.pid()))
        .ok()
        .and_then(|r| {
            r.lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0);
    Idle {
        binary: binary.to_path_buf(),
        handshake,
        mem,
        pss_kb,
        breakdown,
    }
}

// ---- TLS mode ----------------------------------------------------------------------------------

/// `tests/bench/tls_relay.py`: TLS in front of the emulator, with a throw-away CA.
struct TlsRelay {
    child: Child,
    /// Kept open: the relay exits when its stdin closes.
    _stdin: ChildStdin,
    port: u16,
    /// The system root certificates plus the throw-away CA (for `SSL_CERT_FILE`).
    bundle: PathBuf,
}

impl TlsRelay {
    fn start(upstream: u16) -> TlsRelay {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bench/tls_relay.py");
        let mut child = Command::new(support::emulator::python())
            .arg(script)
            .arg("--upstream-port")
            .arg(upstream.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the TLS relay");
        let stdin = child.stdin.take().expect("stdin");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("READY line");
        let mut parts = line.split_whitespace();
        assert_eq!(parts.next(), Some("READY"), "TLS relay printed {line:?}");
        let port = parts.next().and_then(|p| p.parse().ok()).expect("port");
        let bundle = PathBuf::from(parts.next().expect("bundle path"));
        TlsRelay {
            child,
            _stdin: stdin,
            port,
            bundle,
        }
    }
}

impl Drop for TlsRelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = self.bundle.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

// ---- one fleet ---------------------------------------------------------------------------------

#[derive(Default)]
struct Fleet {
    k: usize,
    idle: Mem,
    idle_streams: Mem,
    idle_smaps: String,
    serial_start: Vec<Duration>,
    concurrent_start: Vec<Duration>,
    start_wall: Duration,
    /// ECS calls the emulator saw while the K tasks were started.
    start_calls: String,
    started: Mem,
    started_smaps: String,
    steady: Mem,
    steady_smaps: String,
    after_stops: Mem,
    /// The most stack any plugin thread touched (resident pages of its stack mapping).
    deepest_stack_kb: u64,
    polls: Vec<u64>,
    poll_spans: Vec<Duration>,
    window: Duration,
    window_calls: u64,
    steady_cpu: f64,
    detection: Vec<Duration>,
    detection_failed: usize,
    wall: Duration,
}

/// "Op n, Op n" for every operation whose count grew between two `/_test/calls` answers.
fn call_deltas(before: &serde_json::Value, after: &serde_json::Value) -> String {
    let Some(after) = after.as_object() else {
        return String::new();
    };
    after
        .iter()
        .filter_map(|(op, n)| {
            let d = n.as_u64()? - before.get(op).and_then(|b| b.as_u64()).unwrap_or(0);
            (d > 0).then(|| format!("{op} {d}"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

struct Started {
    id: String,
    arn: String,
}

fn run_fleet(opts: &Opts, k: usize) -> Fleet {
    let wall = Instant::now();
    let mut f = Fleet { k, ..Fleet::default() };
    let cluster = format!("k{k}-fleet");
    eprintln!("[K={k}] starting the emulator and the plugin");
    let emu = Emulator::start();
    let setup = emu.setup(&cluster);
    let relay = opts.tls.then(|| TlsRelay::start(emu.port));
    let endpoint = match &relay {
        Some(r) => format!("https://127.0.0.1:{}", r.port),
        None => emu.endpoint(),
    };
    let strs = |key: &str| -> Vec<String> {
        setup[key]
            .as_array()
            .expect("setup answer")
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let stanza = TaskStanza {
        launch_type: Some("FARGATE"),
        task_definition: Some("my-task-definition"),
        assign_public_ip: Some("ENABLED"),
        security_groups: Some(vec![setup["security_group"].as_str().unwrap().to_string()]),
        subnets: Some(strs("subnets")),
        network: true,
    }
    .encode();

    let mut launch = Launch::test_credentials().with_env("NOMAD_DRIVER_ECS_LOG", DEFAULT_LOG_FILTER);
    if let Some(r) = &relay {
        launch = launch.with_env("SSL_CERT_FILE", &r.bundle.display().to_string());
    }
    for (k, v) in &opts.plugin_env {
        launch = launch.with_env(k, v);
    }
    let plugin = Plugin::launch(&launch);
    let pid = plugin.pid();
    plugin
        .set_config(
            cty::plugin_config(
                Some(true),
                Some(&cluster),
                Some(REGION),
                Some(&endpoint),
                Some(&opts.poll),
            ),
            true,
        )
        .expect("SetConfig");
    std::thread::sleep(Duration::from_secs(1));
    f.idle = mem(pid);
    f.idle_smaps = breakdown(pid).0;
    // What a Nomad client keeps open all the time.
    let fingerprints = plugin.fingerprint();
    let events = plugin.task_events();
    fingerprints
        .recv_timeout(Duration::from_secs(30))
        .expect("fingerprint")
        .expect("fingerprint ok");
    std::thread::sleep(Duration::from_secs(1));
    f.idle_streams = mem(pid);
    let drain = std::thread::spawn(move || {
        while events.recv().is_ok() {}
        drop(fingerprints);
    });

    // ---- StartTask × K, then WaitTask on each (as Nomad's task runner does) ----
    eprintln!(
        "[K={k}] starting {k} tasks ({SERIAL_STARTS} one at a time, the rest from {} threads)",
        opts.start_threads
    );
    let calls_before = emu.calls();
    let t_start = Instant::now();
    let cfgs: Vec<pb::TaskConfig> = (0..k)
        .map(|i| {
            host::task_config(
                &format!("{k:08x}-0000-4000-8000-{i:012x}"),
                "web",
                "a1b2c3d4",
                stanza.clone(),
            )
        })
        .collect();
    let start_one = |cfg: &pb::TaskConfig| -> (Started, Duration) {
        let t0 = Instant::now();
        let resp = plugin
            .start_task(cfg)
            .unwrap_or_else(|e| panic!("StartTask {}: {e:?}", cfg.id));
        let took = t0.elapsed();
        let handle = resp.handle.into_option().expect("handle");
        let state: serde_json::Value = serde_json::from_slice(&handle.driver_state).expect("driver_state");
        let arn = state["task_arn"].as_str().expect("task_arn").to_string();
        (
            Started {
                id: cfg.id.clone(),
                arn,
            },
            took,
        )
    };
    let serial = SERIAL_STARTS.min(k);
    let mut started: Vec<Option<Started>> = (0..k).map(|_| None).collect();
    for (i, cfg) in cfgs.iter().enumerate().take(serial) {
        let (s, took) = start_one(cfg);
        started[i] = Some(s);
        f.serial_start.push(took);
    }
    let next = AtomicUsize::new(serial);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..opts.start_threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= k {
                    return;
                }
                let (s, took) = start_one(&cfgs[i]);
                results.lock().unwrap().push((i, s, took));
                if (i + 1).is_multiple_of(100) {
                    eprintln!(
                        "[K={k}]   {} tasks started ({:.0} s)",
                        i + 1,
                        t_start.elapsed().as_secs_f64()
                    );
                }
            });
        }
    });
    for (i, s, took) in results.into_inner().unwrap() {
        started[i] = Some(s);
        f.concurrent_start.push(took);
    }
    let started: Vec<Started> = started.into_iter().map(|s| s.expect("every task started")).collect();
    f.start_wall = t_start.elapsed();
    f.start_calls = call_deltas(&calls_before, &emu.calls());

    std::thread::sleep(Duration::from_secs(1));
    f.started = mem(pid);
    f.started_smaps = breakdown(pid).0;

    let stop_sample = opts.stop_sample.min(k);
    let sample: Vec<usize> = (0..stop_sample).map(|j| j * k / stop_sample).collect();
    let wait_req = |id: &str| {
        let mut req = pb::WaitTaskRequest::new();
        req.task_id = id.into();
        req
    };
    let long = CallOption::default().timeout(Duration::from_secs(3600));
    let mut waits = BTreeMap::new();
    for (i, s) in started.iter().enumerate() {
        let call = plugin
            .client
            .unary_call_async(&m::WAIT_TASK, &wait_req(&s.id), long.clone())
            .expect("WaitTask");
        waits.insert(i, call);
    }

    // ---- steady state: DescribeTasks per poll ----
    // Let a couple of polls pass first (the last starts may still be settling).
    std::thread::sleep(opts.poll_dur * 2);
    eprintln!(
        "[K={k}] steady state: counting DescribeTasks for {} s",
        opts.steady.as_secs()
    );
    let cpu0 = cpu_secs(pid);
    let w0 = Instant::now();
    let c0 = emu.call_count("DescribeTasks");
    let mut samples = vec![(w0, c0)];
    while w0.elapsed() < opts.steady {
        std::thread::sleep(Duration::from_millis(50));
        samples.push((Instant::now(), emu.call_count("DescribeTasks")));
    }
    f.window = w0.elapsed();
    f.steady_cpu = cpu_secs(pid) - cpu0;
    f.window_calls = samples.last().unwrap().1 - c0;
    // Split the increments into polls: a poll is a burst of calls; bursts are an interval apart.
    let gap = opts.poll_dur / 2;
    let mut bursts: Vec<(Instant, Instant, u64)> = Vec::new();
    for w in samples.windows(2) {
        let (t, inc) = (w[1].0, w[1].1 - w[0].1);
        if inc == 0 {
            continue;
        }
        match bursts.last_mut() {
            Some(b) if t.duration_since(b.1) < gap => {
                b.1 = t;
                b.2 += inc;
            }
            _ => bursts.push((w[0].0, t, inc)),
        }
    }
    // The first and last bursts may be cut by the window's edges.
    if bursts.len() > 2 {
        let inner = &bursts[1..bursts.len() - 1];
        f.polls = inner.iter().map(|b| b.2).collect();
        f.poll_spans = inner.iter().map(|b| b.1.duration_since(b.0)).collect();
    } else {
        f.polls = bursts.iter().map(|b| b.2).collect();
    }
    f.steady = mem(pid);
    (f.steady_smaps, _) = breakdown(pid);
    if let Some(dir) = std::env::var_os("FLEET_SMAPS_DIR") {
        let to = Path::new(&dir).join(format!("smaps-k{k}.txt"));
        let _ = std::fs::copy(format!("/proc/{pid}/smaps"), &to);
        eprintln!("[K={k}] copied /proc/{pid}/smaps to {}", to.display());
    }

    // ---- stop detection ----
    eprintln!("[K={k}] stop detection: {stop_sample} tasks exit over two poll intervals");
    let (tx, rx) = mpsc::channel();
    let mut waiters = Vec::new();
    for &i in &sample {
        let call = waits.remove(&i).expect("wait call");
        let tx = tx.clone();
        waiters.push(std::thread::spawn(move || {
            let r = futures_executor::block_on(call);
            let _ = tx.send((i, Instant::now(), r));
        }));
    }
    drop(tx);
    let spacing = if stop_sample > 0 {
        opts.poll_dur * 2 / stop_sample as u32
    } else {
        Duration::ZERO
    };
    let mut exited_at = BTreeMap::new();
    for &i in &sample {
        exited_at.insert(i, Instant::now());
        emu.exit_task(&cluster, &started[i].arn, Some(3), "Essential container in task exited");
        std::thread::sleep(spacing);
    }
    let deadline = Instant::now() + opts.poll_dur * 4 + Duration::from_secs(60);
    for _ in 0..stop_sample {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((i, at, Ok(resp))) => {
                let code = resp.result.as_ref().map(|r| r.exit_code).unwrap_or(-1);
                if code == 3 {
                    f.detection.push(at.duration_since(exited_at[&i]));
                } else {
                    eprintln!("[K={k}] task {i}: WaitTask gave exit code {code}, expected 3");
                    f.detection_failed += 1;
                }
            }
            Ok((i, _, Err(e))) => {
                eprintln!("[K={k}] task {i}: WaitTask failed: {e}");
                f.detection_failed += 1;
            }
            Err(_) => {
                eprintln!("[K={k}] WaitTask results missing after the deadline");
                f.detection_failed += stop_sample - f.detection.len() - f.detection_failed;
                break;
            }
        }
    }
    f.after_stops = mem(pid);
    f.deepest_stack_kb = breakdown(pid).1;
    drop(waits);
    drop(plugin);
    for w in waiters {
        let _ = w.join();
    }
    let _ = drain.join();
    drop(relay);
    drop(emu);
    f.serial_start.sort();
    f.concurrent_start.sort();
    f.detection.sort();
    f.wall = wall.elapsed();
    f
}

// ---- report ------------------------------------------------------------------------------------

fn machine() -> Vec<(String, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let ram = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map(|kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let run = |cmd: &str, args: &[&str]| -> String {
        Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let python = support::emulator::python();
    vec![
        ("date (UTC)".into(), run("date", &["-u", "+%Y-%m-%d %H:%M"])),
        ("CPU".into(), format!("{cpu}, {cores} cores available")),
        ("RAM".into(), ram),
        ("kernel".into(), kernel),
        ("rustc".into(), run("rustc", &["--version"])),
        (
            "emulator".into(),
            format!(
                "moto {} ({})",
                run(&python, &["-c", "import moto; print(moto.__version__)"]),
                run(&python, &["--version"])
            ),
        ),
    ]
}

fn report(opts: &Opts, binary: &Path, idle: &[Idle], fleets: &[Fleet], took: Duration) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Command (from the project root):\n\n```sh\n{}\n```\n",
        opts.command()
    );
    let _ = writeln!(o, "| machine | |\n|---|---|");
    for (k, v) in machine() {
        let _ = writeln!(o, "| {k} | {v} |");
    }
    let size = std::fs::metadata(binary).map(|m| m.len()).unwrap_or(0);
    let _ = writeln!(o, "| plugin binary | `{}` ({size} bytes) |", rel(binary));
    let _ = writeln!(
        o,
        "| settings | ECS over {}, poll_interval {}, steady-state window {} s, {} tasks made to exit, {} StartTask threads |",
        if opts.tls { "HTTPS (TLS relay in front of the emulator)" } else { "plain HTTP (the emulator's own port)" },
        opts.poll,
        opts.steady.as_secs(),
        opts.stop_sample,
        opts.start_threads
    );
    let _ = writeln!(o, "| bench wall time | {:.0} s |\n", took.as_secs_f64());

    let _ = writeln!(
        o,
        "Idle: exec → handshake ({} samples: spawn until the handshake line is read), then RSS one second after SetConfig.\n",
        opts.handshakes
    );
    let _ = writeln!(
        o,
        "| plugin build | size | exec → handshake, median (min–max) | RSS idle (anonymous / file-backed) | PSS idle | threads | resident memory by kind |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|");
    for i in idle {
        let size = std::fs::metadata(&i.binary).map(|m| m.len()).unwrap_or(0);
        let _ = writeln!(
            o,
            "| `{}` | {:.1} MiB | {} ({}–{}) | {} ({} / {}) | {} | {} | {} |",
            rel(&i.binary),
            size as f64 / 1024.0 / 1024.0,
            ms(pct(&i.handshake, 50.0)),
            ms(i.handshake.first().copied().unwrap_or_default()),
            ms(i.handshake.last().copied().unwrap_or_default()),
            mib(i.mem.rss_kb),
            mib(i.mem.anon_kb),
            mib(i.mem.file_kb),
            mib(i.pss_kb),
            i.mem.threads,
            i.breakdown
        );
    }
    let _ = writeln!(o, "\nTargets: handshake ≤ 20 ms, idle RSS ≤ 8 MiB.\n");

    let interval = opts.poll_dur;
    let _ = write!(o, "| | ");
    for f in fleets {
        let _ = write!(o, "K = {} | ", f.k);
    }
    let _ = writeln!(o, "target |");
    let _ = write!(o, "|---|");
    for _ in fleets {
        let _ = write!(o, "---|");
    }
    let _ = writeln!(o, "---|");
    let mut row = |name: &str, cell: &dyn Fn(&Fleet) -> String, target: &str| {
        let _ = write!(o, "| {name} | ");
        for f in fleets {
            let _ = write!(o, "{} | ", cell(f));
        }
        let _ = writeln!(o, "{target} |");
    };
    row(
        "RSS / threads, idle after SetConfig",
        &|f| format!("{} / {}", mib(f.idle.rss_kb), f.idle.threads),
        "≤ 8 MiB",
    );
    row(
        "… of which anonymous / file-backed",
        &|f| format!("{} / {}", mib(f.idle.anon_kb), mib(f.idle.file_kb)),
        "",
    );
    row(
        "RSS / threads, idle + Fingerprint and TaskEvents streams",
        &|f| format!("{} / {}", mib(f.idle_streams.rss_kb), f.idle_streams.threads),
        "",
    );
    row(
        &format!("StartTask latency p50 / p95, one at a time (first {SERIAL_STARTS})"),
        &|f| {
            format!(
                "{} / {}",
                ms(pct(&f.serial_start, 50.0)),
                ms(pct(&f.serial_start, 95.0))
            )
        },
        "",
    );
    row(
        &format!("StartTask latency p50 / p95, {} concurrent callers", opts.start_threads),
        &|f| {
            format!(
                "{} / {}",
                ms(pct(&f.concurrent_start, 50.0)),
                ms(pct(&f.concurrent_start, 95.0))
            )
        },
        "",
    );
    row(
        "time to start all K (StartTask rate)",
        &|f| {
            format!(
                "{} ({:.0}/s)",
                secs(f.start_wall),
                f.k as f64 / f.start_wall.as_secs_f64().max(1e-9)
            )
        },
        "",
    );
    row("ECS calls while starting the K tasks", &|f| f.start_calls.clone(), "");
    row(
        "RSS / threads after K StartTasks, before WaitTask",
        &|f| format!("{} / {}", mib(f.started.rss_kb), f.started.threads),
        "",
    );
    row(
        "RSS / threads with K watched tasks (WaitTask open on each)",
        &|f| format!("{} / {}", mib(f.steady.rss_kb), f.steady.threads),
        "≤ 64 MiB at K = 1000",
    );
    row(
        "… of which anonymous / file-backed",
        &|f| format!("{} / {}", mib(f.steady.anon_kb), mib(f.steady.file_kb)),
        "",
    );
    row(
        "… per watched task above idle",
        &|f| {
            format!(
                "{:.1} KiB",
                f.steady.rss_kb.saturating_sub(f.idle_streams.rss_kb) as f64 / f.k as f64
            )
        },
        "",
    );
    row(
        "virtual memory (VmSize): idle / with K watched tasks",
        &|f| format!("{} / {}", mib(f.idle.virt_kb), mib(f.steady.virt_kb)),
        "",
    );
    row("peak RSS (VmHWM) over the run", &|f| mib(f.after_stops.hwm_kb), "");
    row(
        "deepest thread stack (resident KiB of the largest stack mapping)",
        &|f| format!("{} KiB", f.deepest_stack_kb),
        "",
    );
    row(
        "DescribeTasks per poll, min–max (polls counted)",
        &|f| {
            let min = f.polls.iter().min().copied().unwrap_or(0);
            let max = f.polls.iter().max().copied().unwrap_or(0);
            format!("{min}–{max} ({})", f.polls.len())
        },
        "≤ ceil(K/100)",
    );
    row(
        "DescribeTasks per minute (whole window)",
        &|f| format!("{:.1}", f.window_calls as f64 * 60.0 / f.window.as_secs_f64()),
        &format!("≤ ceil(K/100) × {:.0}", 60.0 / interval.as_secs_f64()),
    );
    row(
        "one poll's duration, median (max), ±50 ms",
        &|f| {
            let mut s = f.poll_spans.clone();
            s.sort();
            format!("{} ({})", ms(pct(&s, 50.0)), ms(s.last().copied().unwrap_or_default()))
        },
        "",
    );
    row(
        "plugin CPU in steady state (share of one core)",
        &|f| format!("{:.2} %", 100.0 * f.steady_cpu / f.window.as_secs_f64()),
        "",
    );
    row(
        "stop detection p50 / p95 (max)",
        &|f| {
            format!(
                "{} / {} ({})",
                secs(pct(&f.detection, 50.0)),
                secs(pct(&f.detection, 95.0)),
                secs(f.detection.last().copied().unwrap_or_default())
            )
        },
        &format!("p95 ≤ {}", secs(interval + Duration::from_secs(1))),
    );
    row(
        "… samples (failed)",
        &|f| format!("{} ({})", f.detection.len(), f.detection_failed),
        "",
    );
    row("wall time of this K", &|f| secs(f.wall), "");
    let _ = writeln!(o);
    for f in fleets {
        let _ = writeln!(
            o,
            "K = {}, resident memory by kind, idle: {}; after K StartTasks: {}; with K watched tasks: {}.  ",
            f.k, f.idle_smaps, f.started_smaps, f.steady_smaps
        );
    }
    o
}

fn write_benchmarks_md(section: &str, tls: bool) {
    let mode = if tls { "tls" } else { "http" };
    let (begin, end) = (
        format!("<!-- fleet-bench:{mode}:begin -->"),
        format!("<!-- fleet-bench:{mode}:end -->"),
    );
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/BENCHMARKS.md");
    let old = std::fs::read_to_string(path).unwrap_or_else(|_| "# Benchmarks\n\n".into());
    let block = format!("{begin}\n{section}{end}");
    let new = match (old.find(&begin), old.find(&end)) {
        (Some(b), Some(e)) if e > b => format!("{}{block}{}", &old[..b], &old[e + end.len()..]),
        _ => format!("{}\n{block}\n", old.trim_end()),
    };
    std::fs::write(path, new).expect("write BENCHMARKS.md");
    eprintln!("wrote {path}");
}

fn main() {
    let opts = Opts::from_env();
    let binary = host::binary();
    assert!(
        binary.exists(),
        "no plugin binary at {} (cargo bench builds it; or set NOMAD_DRIVER_ECS_BIN)",
        binary.display()
    );
    eprintln!("plugin binary: {}", binary.display());
    let t0 = Instant::now();
    let idle: Vec<Idle> = builds(&binary)
        .iter()
        .map(|b| measure_idle(b, opts.handshakes))
        .collect();
    let fleets: Vec<Fleet> = opts.ks.iter().map(|&k| run_fleet(&opts, k)).collect();
    let section = report(&opts, &binary, &idle, &fleets, t0.elapsed());
    println!("{section}");
    eprintln!("bench took {:.0} s", t0.elapsed().as_secs_f64());
    if opts.write {
        write_benchmarks_md(&section, opts.tls);
    }
}
