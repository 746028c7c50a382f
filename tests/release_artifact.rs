//! Checks on a release artifact (`.ci/release`, see README.md "Release builds"): a static musl
//! binary for x86_64 or arm64.
//!
//! The artifact is named by `NOMAD_DRIVER_ECS_RELEASE_BIN`; `NOMAD_DRIVER_ECS_RELEASE_RUNNER`
//! names a program to run it with (`qemu-aarch64-static` for the arm64 artifact on an x86_64
//! machine), and `NOMAD_DRIVER_ECS_RELEASE_ARCH` what `file` must call its architecture
//! (`x86-64`, `ARM aarch64`), e.g.
//!
//! ```sh
//! .ci/release
//! NOMAD_DRIVER_ECS_RELEASE_BIN=target/dist/aarch64-unknown-linux-musl/nomad-driver-ecs \
//! NOMAD_DRIVER_ECS_RELEASE_RUNNER=qemu-aarch64-static NOMAD_DRIVER_ECS_RELEASE_ARCH="ARM aarch64" \
//!     cargo test --locked --test release_artifact
//! ```
//!
//! CI sets them. When `NOMAD_DRIVER_ECS_RELEASE_BIN` is unset, every test here prints a
//! "skipped" line and passes, so a plain `cargo test` does not need the release build.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use grpcio::{CallOption, ChannelBuilder, Client, EnvBuilder};
use nomad_driver_ecs::nomad::methods as m;
use nomad_driver_ecs::proto::base as pbb;
use nomad_driver_ecs::proto::driver::fingerprint_response::HealthState;
use support::emulator::Emulator;
use support::host::{self, Launch, COOKIE, COOKIE_KEY};
use support::{World, WAIT};

const ENV: &str = "NOMAD_DRIVER_ECS_RELEASE_BIN";
const RUNNER_ENV: &str = "NOMAD_DRIVER_ECS_RELEASE_RUNNER";
const ARCH_ENV: &str = "NOMAD_DRIVER_ECS_RELEASE_ARCH";

fn env_value(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

/// The command that starts the artifact: the binary itself, or the runner with it.
fn command(bin: &Path) -> Command {
    match env_value(RUNNER_ENV) {
        Some(runner) => {
            let mut c = Command::new(runner);
            c.arg(bin);
            c
        }
        None => Command::new(bin),
    }
}

/// The release artifact, or `None` (with a "skipped" line) when `NOMAD_DRIVER_ECS_RELEASE_BIN`
/// is unset.
fn release_bin(test: &str) -> Option<PathBuf> {
    match std::env::var_os(ENV).filter(|v| !v.is_empty()) {
        None => {
            // Straight to stderr: libtest captures println!/eprintln! of passing tests.
            let line = format!("release_artifact::{test}: skipped: set {ENV} to a release binary (.ci/release)\n");
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
            None
        }
        Some(v) => {
            // Relative paths are taken from the package root (where `cargo test` runs tests).
            let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(v);
            assert!(p.is_file(), "{ENV}={} is not a file", p.display());
            Some(p)
        }
    }
}

/// Launch options for the release binary, with the tests' static credentials.
fn launch(bin: &Path) -> Launch {
    Launch {
        runner: env_value(RUNNER_ENV).map(PathBuf::from),
        ..Launch::test_credentials().with_binary(bin)
    }
}

#[test]
fn is_statically_linked() {
    let Some(bin) = release_bin("is_statically_linked") else {
        return;
    };
    let out = Command::new("file")
        .arg("-L")
        .arg(&bin)
        .output()
        .expect("run `file` (apt-get install file)");
    assert!(out.status.success(), "file failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{}", text.trim());
    assert!(
        text.contains("statically linked") || text.contains("static-pie linked"),
        "not a static binary: {text}"
    );
    assert!(!text.contains("dynamically linked"), "{text}");
    assert!(
        !text.contains("interpreter"),
        "a static binary names no ELF interpreter: {text}"
    );
    if let Some(arch) = env_value(ARCH_ENV) {
        assert!(text.contains(&format!(", {arch},")), "not a {arch} binary: {text}");
    }
}

/// The dependency list cargo-auditable embeds (section `.dep-v0`: zlib-compressed JSON), which
/// `cargo audit bin` and SBOM scanners read: it names the plugin and the crates it is built
/// from, at the versions Cargo.lock pins.
#[test]
fn carries_its_dependency_list() {
    let Some(bin) = release_bin("carries_its_dependency_list") else {
        return;
    };
    // Only artifacts of `.ci/release` (cargo auditable) carry the list; a plain `cargo build` does not.
    if env_value("NOMAD_DRIVER_ECS_RELEASE_AUDITABLE").as_deref() != Some("1") {
        let line = "release_artifact::carries_its_dependency_list: skipped: set NOMAD_DRIVER_ECS_RELEASE_AUDITABLE=1 for a .ci/release artifact\n";
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
        return;
    }
    let elf = std::fs::read(&bin).unwrap();
    let compressed = elf_section(&elf, ".dep-v0").expect("a .dep-v0 section (built with cargo auditable)");
    let mut py = Command::new("python3")
        .args([
            "-c",
            "import sys, zlib; sys.stdout.buffer.write(zlib.decompress(sys.stdin.buffer.read()))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    py.stdin.take().unwrap().write_all(compressed).unwrap();
    let out = py.wait_with_output().unwrap();
    assert!(out.status.success(), "not zlib data");
    let deps: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let packages = deps["packages"].as_array().expect("packages");
    let lock = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock")).unwrap();
    for name in [
        "nomad-driver-ecs",
        "grpcio",
        "grpcio-sys",
        "protobuf",
        "ureq",
        "aws-sigv4",
        "serde_json",
        "rustls",
    ] {
        let p = packages
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} is not in the embedded list"));
        let version = p["version"].as_str().unwrap();
        assert!(
            lock.contains(&format!("name = \"{name}\"\nversion = \"{version}\"\n")),
            "{name} {version} is not what Cargo.lock pins"
        );
    }
    let root: Vec<_> = packages.iter().filter(|p| p["root"] == true).collect();
    assert_eq!(root.len(), 1);
    assert_eq!(root[0]["name"], "nomad-driver-ecs");
    println!("{} packages embedded", packages.len());
}

/// The bytes of the section `name` of a little-endian ELF64 file.
fn elf_section<'a>(elf: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap()) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
    assert_eq!(&elf[..6], b"\x7fELF\x02\x01", "not a little-endian ELF64 file");
    let (shoff, shentsize, shnum, shstrndx) = (u64_at(0x28), u16_at(0x3a), u16_at(0x3c), u16_at(0x3e));
    let header = |i: usize| shoff + i * shentsize;
    let strtab = u64_at(header(shstrndx) + 0x18);
    (0..shnum).find_map(|i| {
        let h = header(i);
        let at = strtab + u32_at(h);
        let end = at + elf[at..].iter().position(|b| *b == 0)?;
        (&elf[at..end] == name.as_bytes()).then(|| {
            let (off, size) = (u64_at(h + 0x18), u64_at(h + 0x20));
            &elf[off..off + size]
        })
    })
}

#[test]
fn handshakes_from_an_empty_directory_with_only_the_go_plugin_environment() {
    let Some(bin) = release_bin("handshakes_from_an_empty_directory_with_only_the_go_plugin_environment") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("ecs-release-cwd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = command(&bin)
        .current_dir(&dir)
        .env_clear()
        .env(COOKIE_KEY, COOKIE)
        .env("PLUGIN_PROTOCOL_VERSIONS", "2")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the release binary");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut line = String::new();
        let _ = r.read_line(&mut line);
        let _ = tx.send(line);
        // Keep the pipe open and drained while the plugin lives.
        let mut rest = String::new();
        while r.read_line(&mut rest).map(|n| n > 0).unwrap_or(false) {
            rest.clear();
        }
    });
    let line = rx.recv_timeout(WAIT);
    let line = match line {
        Ok(l) => l,
        Err(_) => {
            let _ = child.kill();
            panic!("no handshake line within {WAIT:?}: {:?}", child.wait());
        }
    };
    let fields: Vec<&str> = line.trim_end_matches('\n').split('|').collect();
    assert_eq!(fields.len(), 6, "handshake line {line:?}");
    assert_eq!(&fields[..3], ["1", "2", "unix"], "{line:?}");
    assert_eq!(&fields[4..], ["grpc", ""], "{line:?}");
    let socket = PathBuf::from(fields[3]);
    assert!(socket.is_absolute(), "{line:?}");
    assert_eq!(line, format!("1|2|unix|{}|grpc|\n", socket.display()));

    // It answers gRPC on that socket.
    let env = Arc::new(EnvBuilder::new().cq_count(1).build());
    let ch = ChannelBuilder::new(env).connect(&format!("unix:{}", socket.display()));
    let client = Client::new(ch);
    let info: pbb::PluginInfoResponse = client
        .unary_call(
            &m::PLUGIN_INFO,
            &pbb::PluginInfoRequest::new(),
            CallOption::default().timeout(host::RPC_TIMEOUT),
        )
        .expect("PluginInfo over the handshake socket");
    assert_eq!(info.name, "ecs");
    assert_eq!(info.plugin_version, env!("CARGO_PKG_VERSION"));

    let _ = child.kill();
    let _ = child.wait();
    // Killed, the plugin leaves its private socket directory behind.
    if let Some(d) = socket.parent() {
        if d.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("nomad-driver-ecs-"))
        {
            let _ = std::fs::remove_dir_all(d);
        }
    }
    assert!(
        std::fs::read_dir(&dir).unwrap().next().is_none(),
        "the plugin wrote into its working directory"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn resolves_a_host_name_and_fingerprints_healthy() {
    let Some(bin) = release_bin("resolves_a_host_name_and_fingerprints_healthy") else {
        return;
    };
    // `localhost`, not 127.0.0.1: getaddrinfo runs inside the static binary.
    let emu = Emulator::start();
    let endpoint = format!("http://localhost:{}", emu.port);
    let w = World::with_launch_and_endpoint(emu, "rel-dns", launch(&bin), &endpoint);
    let fp = w.plugin.first_fingerprint();
    support::host::assert_health(&fp, HealthState::HEALTHY);
    assert!(fp.attributes["driver.ecs"].bool_val());
    assert!(w.emu.call_count("DescribeClusters") >= 1);
    w.plugin.assert_hclog_stderr();
}

#[test]
fn start_stop_wait_round_trip() {
    let Some(bin) = release_bin("start_stop_wait_round_trip") else {
        return;
    };
    let emu = Emulator::start();
    let endpoint = format!("http://localhost:{}", emu.port);
    let w = World::with_launch_and_endpoint(emu, "rel-life", launch(&bin), &endpoint);
    let (cfg, handle, arn) = w.start("7e1ea5e0-aaaa-4000-8000-000000000001", "web");
    assert!(!handle.driver_state.is_empty());
    assert_eq!(w.emu.task_status("rel-life", &arn).as_deref(), Some("RUNNING"));
    let waiting = w.plugin.wait_task_async(&cfg.id, WAIT);
    w.plugin
        .stop_task(&cfg.id, Duration::from_secs(10), "SIGTERM")
        .expect("StopTask");
    let res = waiting.recv_timeout(WAIT).unwrap().expect("WaitTask");
    assert!(res.result.is_some(), "WaitTask has a result");
    assert_eq!(w.emu.task_status("rel-life", &arn).as_deref(), Some("STOPPED"));
    assert_eq!(w.emu.call_count("StopTask"), 1);
    w.plugin.destroy_task(&cfg.id, false).expect("DestroyTask after exit");
    w.plugin.assert_hclog_stderr();
}
