//! Against the Go plugin floor (figures, not a pass/fail test): the Rust plugin's release binary
//! side by side with a minimal go-plugin gRPC plugin (`tests/bench/go-floor/`, built from
//! Debian's go-plugin by `tests/bench/go-floor/build.sh`). For each binary, in one run:
//!
//! - the file size (both stripped) and what `file` says about it;
//! - exec → handshake: spawned as go-plugin spawns a plugin, the time until the first stdout line
//!   (`1|2|unix|<socket>|grpc|`) is read; the two binaries alternate, after one warm-up each;
//! - idle RSS: launched, handshake read, then VmRSS, RssAnon, RssFile and Threads from
//!   /proc/<pid>/status after a few idle seconds (median of a few launches, by VmRSS).
//!
//! The targets (Rust ≤ 0.75 × the floor's size and idle RSS, handshake ≤ the floor's) are reported,
//! never asserted.
//!
//! Run (see BENCHMARKS.md): `cargo bench --bench floor -- --write`. Environment:
//! `NOMAD_DRIVER_ECS_BIN` (default: the release artifact
//! `target/dist/x86_64-unknown-linux-musl/nomad-driver-ecs`, else the first of the other builds
//! found, with a note), `GO_FLOOR_BIN` (default `target/go-floor/go-floor-plugin`, built with
//! build.sh when missing), `FLOOR_HANDSHAKES` (samples per binary, default 20),
//! `FLOOR_IDLE_SECS` (default 2), `FLOOR_IDLE_RUNS` (default 5). `--write` (or `FLOOR_WRITE=1`)
//! replaces the section of BENCHMARKS.md between its `floor-bench` markers.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use nomad_driver_ecs::plugin::handshake::{COOKIE_KEY, COOKIE_VALUE};

#[path = "shared.rs"]
mod shared;
use shared::{env_or, mem, rel, Mem};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const RUST_ARTIFACT: &str = "target/dist/x86_64-unknown-linux-musl/nomad-driver-ecs";
/// Other builds of the plugin, in the order they are tried when the release artifact is missing.
const RUST_FALLBACKS: &[&str] = &[
    "target/x86_64-unknown-linux-musl/release/nomad-driver-ecs",
    "target/musl/x86_64-unknown-linux-musl/release/nomad-driver-ecs",
    "target/release/nomad-driver-ecs",
];
const GO_FLOOR: &str = "target/go-floor/go-floor-plugin";
const GO_BUILD: &str = "tests/bench/go-floor/build.sh";

const BEGIN: &str = "<!-- floor-bench:begin -->";
const END: &str = "<!-- floor-bench:end -->";

struct Opts {
    handshakes: usize,
    idle: Duration,
    idle_runs: usize,
    write: bool,
}

fn num(name: &str, default: &str) -> usize {
    env_or(name, default)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{name} must be a number"))
}

impl Opts {
    fn from_env() -> Opts {
        Opts {
            handshakes: num("FLOOR_HANDSHAKES", "20").max(1),
            idle: Duration::from_secs(num("FLOOR_IDLE_SECS", "2") as u64),
            idle_runs: num("FLOOR_IDLE_RUNS", "5").max(1),
            write: std::env::args().any(|a| a == "--write")
                || std::env::var_os("FLOOR_WRITE").is_some_and(|v| v == "1"),
        }
    }
}

fn root_path(rel: &str) -> PathBuf {
    Path::new(ROOT).join(rel)
}

fn run(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

// ---- the two binaries ----------------------------------------------------------------------------

/// The Rust plugin to measure, and a note when it is not the release artifact.
fn rust_binary() -> (PathBuf, Option<String>) {
    if let Some(p) = std::env::var_os("NOMAD_DRIVER_ECS_BIN").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(p.exists(), "NOMAD_DRIVER_ECS_BIN: no file at {}", p.display());
        return (p, None);
    }
    let artifact = root_path(RUST_ARTIFACT);
    if artifact.exists() {
        return (artifact, None);
    }
    let found = RUST_FALLBACKS
        .iter()
        .map(|r| root_path(r))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "no plugin binary: neither the release artifact {RUST_ARTIFACT} (`.ci/release x86_64-unknown-linux-musl`) nor any of {RUST_FALLBACKS:?}"
            )
        });
    let note = format!(
        "The release artifact `{RUST_ARTIFACT}` was missing; measured `{}` instead.",
        rel(&found)
    );
    eprintln!("note: {note}");
    (found, Some(note))
}

/// The Go floor, built with build.sh when missing.
fn go_binary() -> PathBuf {
    let p = std::env::var_os("GO_FLOOR_BIN")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| root_path(GO_FLOOR));
    if !p.exists() {
        eprintln!("building the Go floor: {GO_BUILD} {}", p.display());
        let status = Command::new(root_path(GO_BUILD))
            .arg(&p)
            .status()
            .expect("run build.sh");
        assert!(status.success(), "{GO_BUILD} failed ({status})");
    }
    p
}

/// What one binary is, before running it.
struct Binary {
    name: &'static str,
    path: PathBuf,
    size: u64,
    /// `static`/`dynamic` and `stripped`/`not stripped`, from `file`.
    file: String,
    /// The toolchain, read from the binary (.comment for rustc, the build info for Go).
    toolchain: String,
}

fn describe(name: &'static str, path: &Path) -> Binary {
    let size = std::fs::metadata(path).expect("stat binary").len();
    let f = run("file", &["-b", &path.display().to_string()]);
    let file = if f.is_empty() {
        "? (no `file`)".to_string()
    } else {
        let linking = if f.contains("statically linked") || f.contains("static-pie linked") {
            "static"
        } else if f.contains("dynamically linked") {
            "dynamic"
        } else {
            "?"
        };
        let stripped = if f.contains("not stripped") {
            "not stripped"
        } else if f.contains("stripped") {
            "stripped"
        } else {
            "?"
        };
        format!("{linking}, {stripped}")
    };
    let bytes = std::fs::read(path).expect("read binary");
    let toolchain = go_version(&bytes)
        .or_else(|| rustc_version(&bytes))
        .unwrap_or_else(|| "?".into());
    Binary {
        name,
        path: path.to_path_buf(),
        size,
        file,
        toolchain,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `rustc version 1.95.0 (…)` from the .comment section (kept by `strip`).
fn rustc_version(bytes: &[u8]) -> Option<String> {
    let at = find(bytes, b"rustc version ")?;
    let rest = &bytes[at..bytes.len().min(at + 100)];
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    Some(format!(
        "rustc {}",
        String::from_utf8_lossy(&rest[b"rustc version ".len()..end])
    ))
}

/// The Go version from the build info (Go ≥ 1.18 layout: a 32-byte header whose flags byte
/// says the strings follow inline, then the length-prefixed version string), which `-s -w`
/// keeps.
fn go_version(bytes: &[u8]) -> Option<String> {
    let at = find(bytes, b"\xff Go buildinf:")?;
    let hdr = bytes.get(at..at + 32)?;
    if hdr[15] & 2 == 0 {
        return None;
    }
    let mut i = at + 32;
    let (mut len, mut shift) = (0usize, 0);
    loop {
        let b = *bytes.get(i)?;
        i += 1;
        len |= ((b & 0x7f) as usize) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    let v = bytes.get(i..i + len)?;
    Some(String::from_utf8_lossy(v).to_string())
}

fn deb_version(package: &str) -> String {
    let v = run("dpkg-query", &["-W", "-f", "${Version}", package]);
    if v.is_empty() {
        "?".into()
    } else {
        v
    }
}

// ---- spawning as go-plugin does --------------------------------------------------------------------

/// A plugin process whose handshake line was read; its stdout stays open while it lives.
struct Launched {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    line: String,
    elapsed: Duration,
}

/// Spawns the binary with only go-plugin's variables in its environment and reads the
/// handshake line; `elapsed` runs from just before the spawn to the line read.
fn launch(binary: &Path) -> Launched {
    let mut cmd = Command::new(binary);
    cmd.env_clear()
        .env(COOKIE_KEY, COOKIE_VALUE)
        .env("PLUGIN_PROTOCOL_VERSIONS", "2")
        .env("PLUGIN_MIN_PORT", "10000")
        .env("PLUGIN_MAX_PORT", "25000")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let t0 = Instant::now();
    let mut child = cmd.spawn().expect("spawn plugin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("handshake line");
    let elapsed = t0.elapsed();
    let fields: Vec<&str> = line.trim().split('|').collect();
    assert!(
        fields.len() >= 5 && fields[0] == "1" && fields[1] == "2" && fields[2] == "unix" && fields[4] == "grpc",
        "{}: unexpected handshake line {line:?}",
        binary.display()
    );
    Launched {
        child,
        _stdout: stdout,
        line,
        elapsed,
    }
}

impl Launched {
    /// Kills the plugin and removes the socket it leaves behind (and its private directory,
    /// when it made one).
    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(sock) = self.line.trim().split('|').nth(3) {
            let sock = PathBuf::from(sock);
            let _ = std::fs::remove_file(&sock);
            if let Some(dir) = sock.parent() {
                if dir != std::env::temp_dir() && dir != Path::new("/tmp") {
                    let _ = std::fs::remove_dir(dir);
                }
            }
        }
    }
}

// ---- measurements ----------------------------------------------------------------------------------

/// `n` handshake samples of each binary, alternating (which one goes first alternates too),
/// after one unmeasured warm-up each (page cache).
fn handshakes(bins: [&Path; 2], n: usize) -> [Vec<Duration>; 2] {
    for b in bins {
        launch(b).stop();
    }
    let mut out = [Vec::new(), Vec::new()];
    for i in 0..n {
        let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
        for j in order {
            let l = launch(bins[j]);
            out[j].push(l.elapsed);
            l.stop();
        }
    }
    for s in &mut out {
        s.sort();
    }
    out
}

/// Memory `idle` after the handshake line: the median launch (by VmRSS) of `runs`, and the
/// lowest and highest VmRSS seen.
fn idle_mem(binary: &Path, idle: Duration, runs: usize) -> (Mem, (u64, u64)) {
    let mut samples: Vec<Mem> = (0..runs)
        .map(|_| {
            let l = launch(binary);
            std::thread::sleep(idle);
            let m = mem(l.child.id());
            l.stop();
            m
        })
        .collect();
    samples.sort_by_key(|m| m.rss_kb);
    let range = (samples[0].rss_kb, samples[samples.len() - 1].rss_kb);
    (samples[(samples.len() - 1) / 2], range)
}

/// Nearest-rank percentile of sorted samples.
fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

// ---- report ----------------------------------------------------------------------------------------

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn mib_kb(kb: u64) -> String {
    format!("{:.1} MiB ({kb} kB)", kb as f64 / 1024.0)
}

struct Measured {
    bin: Binary,
    handshakes: Vec<Duration>,
    mem: Mem,
    /// Lowest and highest idle VmRSS over the launches, kB.
    rss_range: (u64, u64),
}

fn report(opts: &Opts, m: &[Measured; 2], note: Option<&str>) -> String {
    let [r, g] = m;
    let mut o = String::new();
    let date = run("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let kernel = format!(
        "Linux {}",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "?".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let _ = writeln!(
        o,
        "Measured by `cargo bench --bench floor` ({cpu}, {cores} cores). Handshake: {} spawns of each \
binary, alternating, after one warm-up each; idle: `/proc/<pid>/status` {} s after the handshake line, median of {} launches. \
Ratio = Rust / Go; the targets are reported, not asserted.\n",
        opts.handshakes,
        opts.idle.as_secs(),
        opts.idle_runs
    );
    if let Some(note) = note {
        let _ = writeln!(o, "{note}\n");
    }
    let _ = writeln!(o, "| metric | Rust plugin | Go floor | ratio | target | met? |");
    let _ = writeln!(o, "|---|---|---|---|---|---|");
    let mut row = |metric: &str, rv: String, gv: String, ratio: Option<f64>, target: Option<f64>| {
        let ratio_s = ratio.map(|x| format!("{x:.3}")).unwrap_or_default();
        let (target_s, met) = match (ratio, target) {
            (Some(x), Some(t)) => (format!("≤ {t:.2}"), if x <= t { "yes" } else { "**no**" }),
            _ => (String::new(), ""),
        };
        let _ = writeln!(o, "| {metric} | {rv} | {gv} | {ratio_s} | {target_s} | {met} |");
    };
    let both = |s: &str| (s.to_string(), s.to_string());
    let (d1, d2) = both(&date);
    row("date", d1, d2, None, None);
    let (k1, k2) = both(&kernel);
    row("kernel", k1, k2, None, None);
    row(
        "binary",
        format!("`{}`", rel(&r.bin.path)),
        format!("`{}`", rel(&g.bin.path)),
        None,
        None,
    );
    row(
        "built with",
        r.bin.toolchain.clone(),
        format!(
            "{}, go-plugin {}, grpc-go {} (Debian)",
            g.bin.toolchain,
            deb_version("golang-github-hashicorp-go-plugin-dev"),
            deb_version("golang-google-grpc-dev")
        ),
        None,
        None,
    );
    row("`file`", r.bin.file.clone(), g.bin.file.clone(), None, None);
    let ratio = |a: f64, b: f64| if b > 0.0 { Some(a / b) } else { None };
    row(
        "size",
        format!("{:.2} MiB ({} B)", r.bin.size as f64 / 1048576.0, r.bin.size),
        format!("{:.2} MiB ({} B)", g.bin.size as f64 / 1048576.0, g.bin.size),
        ratio(r.bin.size as f64, g.bin.size as f64),
        Some(0.75),
    );
    row(
        "idle RSS (VmRSS)",
        mib_kb(r.mem.rss_kb),
        mib_kb(g.mem.rss_kb),
        ratio(r.mem.rss_kb as f64, g.mem.rss_kb as f64),
        Some(0.75),
    );
    row(
        "… lowest – highest launch",
        format!("{} – {} kB", r.rss_range.0, r.rss_range.1),
        format!("{} – {} kB", g.rss_range.0, g.rss_range.1),
        None,
        None,
    );
    row(
        "… anonymous (RssAnon)",
        mib_kb(r.mem.anon_kb),
        mib_kb(g.mem.anon_kb),
        ratio(r.mem.anon_kb as f64, g.mem.anon_kb as f64),
        None,
    );
    row(
        "… file-backed (RssFile)",
        mib_kb(r.mem.file_kb),
        mib_kb(g.mem.file_kb),
        ratio(r.mem.file_kb as f64, g.mem.file_kb as f64),
        None,
    );
    row(
        "threads, idle",
        r.mem.threads.to_string(),
        g.mem.threads.to_string(),
        None,
        None,
    );
    let secs = |d: Duration| d.as_secs_f64();
    for (label, p, target) in [
        ("exec → handshake, median", 50.0, Some(1.0)),
        ("exec → handshake, p90", 90.0, None),
    ] {
        let (a, b) = (pct(&r.handshakes, p), pct(&g.handshakes, p));
        row(label, ms(a), ms(b), ratio(secs(a), secs(b)), target);
    }
    row(
        "exec → handshake, min – max",
        format!(
            "{} – {}",
            ms(r.handshakes.first().copied().unwrap_or_default()),
            ms(r.handshakes.last().copied().unwrap_or_default())
        ),
        format!(
            "{} – {}",
            ms(g.handshakes.first().copied().unwrap_or_default()),
            ms(g.handshakes.last().copied().unwrap_or_default())
        ),
        None,
        None,
    );
    let env_prefix = std::env::var_os("NOMAD_DRIVER_ECS_BIN")
        .filter(|p| !p.is_empty())
        .map(|p| format!("NOMAD_DRIVER_ECS_BIN={} ", rel(Path::new(&p))))
        .unwrap_or_default();
    let _ = writeln!(
        o,
        "\nCommand: `{GO_BUILD} && .ci/release x86_64-unknown-linux-musl && {env_prefix}FLOOR_HANDSHAKES={} FLOOR_IDLE_SECS={} FLOOR_IDLE_RUNS={} cargo bench --bench floor -- --write`",
        opts.handshakes,
        opts.idle.as_secs(),
        opts.idle_runs
    );
    o
}

fn write_benchmarks_md(section: &str) {
    let path = root_path("BENCHMARKS.md");
    let old = std::fs::read_to_string(&path).expect("read BENCHMARKS.md");
    let (b, e) = match (old.find(BEGIN), old.find(END)) {
        (Some(b), Some(e)) if e > b => (b, e),
        _ => panic!("BENCHMARKS.md has no {BEGIN} … {END} section to replace"),
    };
    let new = format!("{}{BEGIN}\n{section}{END}{}", &old[..b], &old[e + END.len()..]);
    std::fs::write(&path, new).expect("write BENCHMARKS.md");
    eprintln!("wrote {}", path.display());
}

fn main() {
    let opts = Opts::from_env();
    let (rust, note) = rust_binary();
    let go = go_binary();
    eprintln!("Rust plugin: {}\nGo floor:    {}", rust.display(), go.display());
    let t0 = Instant::now();
    let [hr, hg] = handshakes([&rust, &go], opts.handshakes);
    let (rm, rr) = idle_mem(&rust, opts.idle, opts.idle_runs);
    let (gm, gr) = idle_mem(&go, opts.idle, opts.idle_runs);
    let measured = [
        Measured {
            bin: describe("Rust plugin", &rust),
            handshakes: hr,
            mem: rm,
            rss_range: rr,
        },
        Measured {
            bin: describe("Go floor", &go),
            handshakes: hg,
            mem: gm,
            rss_range: gr,
        },
    ];
    for m in &measured {
        eprintln!("{}: {} ({} B)", m.bin.name, m.bin.path.display(), m.bin.size);
    }
    let section = report(&opts, &measured, note.as_deref());
    println!("{section}");
    eprintln!("bench took {:.0} s", t0.elapsed().as_secs_f64());
    if opts.write {
        write_benchmarks_md(&section);
    }
}
