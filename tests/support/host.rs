//! The Nomad side of the wire, for tests and the local demo: launches the real plugin binary
//! as go-plugin does (cookie, version env, stdout handshake line), talks gRPC to it over its
//! unix socket, and collects its stderr to check that every line is hclog JSON.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use grpcio::{CallOption, ChannelBuilder, Client, EnvBuilder, Environment, RpcStatus, RpcStatusCode};
use protobuf::Message;

use nomad_driver_ecs::nomad::methods as m;
use nomad_driver_ecs::plugin::services as gp;
use nomad_driver_ecs::proto::base as pbb;
use nomad_driver_ecs::proto::driver as pb;
use nomad_driver_ecs::proto::recoverable_error::RecoverableError;
use nomad_driver_ecs::proto::rpc_status;

pub const COOKIE_KEY: &str = "NOMAD_PLUGIN_MAGIC_COOKIE";
pub const COOKIE: &str = "e4327c2e01eabfd75a8a67adb114fb34a757d57eee7728d857a8cec6e91a7255";
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
pub const RPC_TIMEOUT: Duration = Duration::from_secs(30);

/// The plugin binary: `NOMAD_DRIVER_ECS_BIN` if set, else the one Cargo built for the tests.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("NOMAD_DRIVER_ECS_BIN") {
        return PathBuf::from(p);
    }
    match option_env!("CARGO_BIN_EXE_nomad-driver-ecs") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/nomad-driver-ecs")),
    }
}

/// A running plugin process and a gRPC client connected to it.
pub struct Plugin {
    pub child: Child,
    pub socket: PathBuf,
    pub handshake: String,
    pub stderr: Arc<Mutex<Vec<String>>>,
    /// Anything written to stdout after the handshake line (must stay empty).
    pub extra_stdout: Arc<Mutex<String>>,
    env: Arc<Environment>,
    pub client: Client,
    /// Held so the plugin's stdout never sees EPIPE while we live (go-plugin keeps draining).
    _stdout: Option<std::thread::JoinHandle<()>>,
}

/// Launch options: extra environment on top of a clean one.
#[derive(Default, Clone)]
pub struct Launch {
    pub env: Vec<(String, String)>,
    /// Close our ends of the plugin's stdout and stderr right after the handshake (as after
    /// an agent restart: the old pipes are gone and writes fail with EPIPE).
    pub broken_pipes: bool,
    /// The plugin binary to run instead of [`binary()`] (e.g. the static release artifact).
    pub binary: Option<PathBuf>,
    /// A program that runs the binary (its first argument), e.g. `qemu-aarch64-static` for
    /// an arm64 release artifact on an x86_64 machine.
    pub runner: Option<PathBuf>,
}

impl Launch {
    pub fn with_env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Static test credentials and nothing else from the caller's environment.
    pub fn test_credentials() -> Self {
        Launch::default()
            .with_env("AWS_ACCESS_KEY_ID", "AKIDTESTTESTTEST")
            .with_env("AWS_SECRET_ACCESS_KEY", "test-secret-not-real")
    }

    pub fn with_binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }
}

impl Plugin {
    /// Starts the binary as go-plugin does and waits for its handshake line.
    pub fn launch(opts: &Launch) -> Plugin {
        // No shared credential files: only what the test puts in the environment counts.
        let home = "/nonexistent/ecs-test-home";
        let program = opts.binary.clone().unwrap_or_else(binary);
        let mut cmd = match &opts.runner {
            Some(runner) => {
                let mut c = Command::new(runner);
                c.arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", home)
            .env(COOKIE_KEY, COOKIE)
            .env("PLUGIN_MIN_PORT", "10000")
            .env("PLUGIN_MAX_PORT", "25000")
            .env("PLUGIN_PROTOCOL_VERSIONS", "2")
            .env("NOMAD_DRIVER_ECS_LOG", "trace")
            // Tests never leave loopback: no EC2 instance metadata unless a test points it at
            // a server of its own.
            .env("AWS_EC2_METADATA_DISABLED", "true")
            // Nor a Nomad agent that happens to run on this machine: Nomad's API is a closed
            // port unless a test gives the plugin its stand-in.
            .env("NOMAD_ADDR", format!("http://127.0.0.1:{}", closed_port()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn plugin");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        if opts.broken_pipes {
            let mut first = String::new();
            BufReader::new(stdout).read_line(&mut first).expect("handshake line");
            drop(stderr);
            let socket = PathBuf::from(first.trim().split('|').nth(3).expect("socket field"));
            let env = Arc::new(EnvBuilder::new().cq_count(1).build());
            let client = connect(&env, &socket);
            return Plugin {
                child,
                socket,
                handshake: first,
                stderr: lines,
                extra_stdout: Arc::default(),
                env,
                client,
                _stdout: None,
            };
        }
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("ECS_TEST_SHOW_PLUGIN_LOG").is_some() {
                    eprintln!("plugin: {line}");
                }
                sink.lock().unwrap().push(line);
            }
        });
        let (tx, rx) = mpsc::channel();
        let extra_stdout = Arc::new(Mutex::new(String::new()));
        let extra = Arc::clone(&extra_stdout);
        let reader = std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut first = String::new();
            let _ = r.read_line(&mut first);
            let _ = tx.send(first);
            // Keep draining like go-plugin does; anything here is a protocol violation we record.
            let mut rest = String::new();
            while r.read_line(&mut rest).map(|n| n > 0).unwrap_or(false) {
                extra.lock().unwrap().push_str(&rest);
                rest.clear();
            }
        });
        let line = rx
            .recv_timeout(HANDSHAKE_TIMEOUT)
            .expect("no handshake line from the plugin");
        let fields: Vec<&str> = line.trim().split('|').collect();
        assert!(fields.len() >= 5, "unrecognised handshake line {line:?}");
        assert_eq!(fields[0], "1", "core protocol version");
        assert_eq!(fields[1], "2", "app protocol version");
        assert_eq!(fields[2], "unix");
        assert_eq!(fields[4], "grpc");
        let socket = PathBuf::from(fields[3]);
        let env = Arc::new(EnvBuilder::new().cq_count(1).build());
        let client = connect(&env, &socket);
        Plugin {
            child,
            socket,
            handshake: line,
            stderr: lines,
            extra_stdout,
            env,
            client,
            _stdout: Some(reader),
        }
    }

    /// A fresh connection to the same plugin (as after an agent restart: reattach).
    pub fn reconnect(&mut self) {
        self.client = connect(&self.env, &self.socket);
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn opt() -> CallOption {
        CallOption::default().timeout(RPC_TIMEOUT)
    }

    pub fn plugin_info(&self) -> pbb::PluginInfoResponse {
        self.client
            .unary_call(&m::PLUGIN_INFO, &pbb::PluginInfoRequest::new(), Self::opt())
            .expect("PluginInfo")
    }

    pub fn config_schema(&self) -> pbb::ConfigSchemaResponse {
        self.client
            .unary_call(&m::CONFIG_SCHEMA, &pbb::ConfigSchemaRequest::new(), Self::opt())
            .expect("ConfigSchema")
    }

    /// SetConfig as the agent's long-lived instance does (with nomad_config) or as its
    /// validation pass does (without).
    pub fn set_config(&self, msgpack: Vec<u8>, with_agent_config: bool) -> Result<(), RpcStatus> {
        let mut req = pbb::SetConfigRequest::new();
        req.msgpack_config = msgpack;
        req.plugin_api_version = "0.1.0".into();
        if with_agent_config {
            let mut drv = pbb::NomadDriverConfig::new();
            drv.ClientMinPort = 14000;
            drv.ClientMaxPort = 14512;
            let mut nc = pbb::NomadConfig::new();
            nc.driver = Some(drv).into();
            req.nomad_config = Some(nc).into();
        }
        self.client
            .unary_call(&m::SET_CONFIG, &req, Self::opt())
            .map(|_| ())
            .map_err(status)
    }

    pub fn task_config_schema(&self) -> pb::TaskConfigSchemaResponse {
        self.client
            .unary_call(&m::TASK_CONFIG_SCHEMA, &pb::TaskConfigSchemaRequest::new(), Self::opt())
            .expect("TaskConfigSchema")
    }

    pub fn capabilities(&self) -> pb::DriverCapabilities {
        let r = self
            .client
            .unary_call(&m::CAPABILITIES, &pb::CapabilitiesRequest::new(), Self::opt())
            .expect("Capabilities");
        r.capabilities.into_option().expect("capabilities set")
    }

    /// Opens the Fingerprint stream; responses arrive on the returned channel.
    pub fn fingerprint(&self) -> Receiver<Result<pb::FingerprintResponse, RpcStatus>> {
        let stream = self
            .client
            .server_streaming(&m::FINGERPRINT, &pb::FingerprintRequest::new(), CallOption::default())
            .expect("Fingerprint");
        pump(stream)
    }

    /// First fingerprint response.
    pub fn first_fingerprint(&self) -> pb::FingerprintResponse {
        self.fingerprint()
            .recv_timeout(RPC_TIMEOUT)
            .expect("a fingerprint within the timeout")
            .expect("fingerprint ok")
    }

    pub fn task_events(&self) -> Receiver<Result<pb::DriverTaskEvent, RpcStatus>> {
        let stream = self
            .client
            .server_streaming(&m::TASK_EVENTS, &pb::TaskEventsRequest::new(), CallOption::default())
            .expect("TaskEvents");
        pump(stream)
    }

    pub fn task_stats(&self, task_id: &str, interval: Duration) -> Receiver<Result<pb::TaskStatsResponse, RpcStatus>> {
        let mut req = pb::TaskStatsRequest::new();
        req.task_id = task_id.into();
        let mut d = protobuf::well_known_types::duration::Duration::new();
        d.seconds = interval.as_secs() as i64;
        d.nanos = interval.subsec_nanos() as i32;
        req.collection_interval = Some(d).into();
        let stream = self
            .client
            .server_streaming(&m::TASK_STATS, &req, CallOption::default())
            .expect("TaskStats");
        pump(stream)
    }

    pub fn start_task(&self, cfg: &pb::TaskConfig) -> Result<pb::StartTaskResponse, RpcStatus> {
        let mut req = pb::StartTaskRequest::new();
        req.task = Some(cfg.clone()).into();
        self.client
            .unary_call(
                &m::START_TASK,
                &req,
                CallOption::default().timeout(Duration::from_secs(120)),
            )
            .map_err(status)
    }

    pub fn recover_task(&self, handle: &pb::TaskHandle) -> Result<(), RpcStatus> {
        self.recover_task_within(handle, RPC_TIMEOUT)
    }

    /// RecoverTask with a deadline: DEADLINE_EXCEEDED when the plugin takes longer.
    pub fn recover_task_within(&self, handle: &pb::TaskHandle, timeout: Duration) -> Result<(), RpcStatus> {
        let mut req = pb::RecoverTaskRequest::new();
        req.task_id = handle.config.id.clone();
        req.handle = Some(handle.clone()).into();
        self.client
            .unary_call(&m::RECOVER_TASK, &req, CallOption::default().timeout(timeout))
            .map(|_| ())
            .map_err(status)
    }

    /// WaitTask with a deadline (Nomad waits forever; a test must not).
    pub fn wait_task(&self, task_id: &str, timeout: Duration) -> Result<pb::WaitTaskResponse, RpcStatus> {
        let mut req = pb::WaitTaskRequest::new();
        req.task_id = task_id.into();
        self.client
            .unary_call(&m::WAIT_TASK, &req, CallOption::default().timeout(timeout))
            .map_err(status)
    }

    /// WaitTask started in the background (as Nomad's task runner keeps one open).
    pub fn wait_task_async(
        &self,
        task_id: &str,
        timeout: Duration,
    ) -> Receiver<Result<pb::WaitTaskResponse, RpcStatus>> {
        let mut req = pb::WaitTaskRequest::new();
        req.task_id = task_id.into();
        let call = self
            .client
            .unary_call_async(&m::WAIT_TASK, &req, CallOption::default().timeout(timeout))
            .expect("WaitTask");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(futures_executor::block_on(call).map_err(status));
        });
        rx
    }

    pub fn stop_task(&self, task_id: &str, timeout: Duration, signal: &str) -> Result<(), RpcStatus> {
        let mut req = pb::StopTaskRequest::new();
        req.task_id = task_id.into();
        let mut d = protobuf::well_known_types::duration::Duration::new();
        d.seconds = timeout.as_secs() as i64;
        d.nanos = timeout.subsec_nanos() as i32;
        req.timeout = Some(d).into();
        req.signal = signal.into();
        self.client
            .unary_call(
                &m::STOP_TASK,
                &req,
                CallOption::default().timeout(timeout + Duration::from_secs(30)),
            )
            .map(|_| ())
            .map_err(status)
    }

    pub fn destroy_task(&self, task_id: &str, force: bool) -> Result<(), RpcStatus> {
        let mut req = pb::DestroyTaskRequest::new();
        req.task_id = task_id.into();
        req.force = force;
        self.client
            .unary_call(
                &m::DESTROY_TASK,
                &req,
                CallOption::default().timeout(Duration::from_secs(60)),
            )
            .map(|_| ())
            .map_err(status)
    }

    pub fn inspect_task(&self, task_id: &str) -> Result<pb::InspectTaskResponse, RpcStatus> {
        let mut req = pb::InspectTaskRequest::new();
        req.task_id = task_id.into();
        self.client
            .unary_call(&m::INSPECT_TASK, &req, Self::opt())
            .map_err(status)
    }

    /// go-plugin's Kill: Controller.Shutdown, then wait up to 2 s for the process to exit.
    /// Returns how long the exit took (None: it did not exit in 2 s and was SIGKILLed).
    pub fn shutdown(mut self) -> Option<Duration> {
        let start = Instant::now();
        let _ = self.client.unary_call(
            &gp::CONTROLLER_SHUTDOWN,
            &nomad_driver_ecs::proto::goplugin::Empty::new(),
            Self::opt(),
        );
        let exited = wait_exit(&mut self.child, Duration::from_secs(2));
        if !exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
            return None;
        }
        Some(start.elapsed())
    }

    /// SIGKILL, as when the plugin crashes.
    pub fn kill(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr_lines()
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Asserts every stderr line so far is hclog JSON with string values and a valid level.
    pub fn assert_hclog_stderr(&self) {
        assert_hclog_lines(&self.stderr_lines());
        let extra = self.extra_stdout.lock().unwrap().clone();
        assert!(
            extra.is_empty(),
            "plugin wrote to stdout after the handshake: {extra:?}"
        );
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A killed plugin cannot remove its socket directory; do it for it.
        let _ = std::fs::remove_file(&self.socket);
        if let Some(dir) = self.socket.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

pub fn assert_hclog_lines(lines: &[String]) {
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("stderr line is not JSON ({e}): {line}"));
        let obj = v
            .as_object()
            .unwrap_or_else(|| panic!("stderr line is not an object: {line}"));
        for (k, val) in obj {
            assert!(val.is_string(), "key {k} is not a string in {line}");
        }
        let level = obj
            .get("@level")
            .and_then(|l| l.as_str())
            .unwrap_or_else(|| panic!("no @level: {line}"));
        assert!(
            ["trace", "debug", "info", "warn", "error"].contains(&level),
            "bad level in {line}"
        );
        assert!(obj.get("@message").is_some(), "no @message: {line}");
        let ts = obj
            .get("@timestamp")
            .and_then(|t| t.as_str())
            .unwrap_or_else(|| panic!("no @timestamp: {line}"));
        // 2006-01-02T15:04:05.000000Z07:00
        assert_eq!(
            ts.len(),
            "2006-01-02T15:04:05.000000+00:00".len(),
            "timestamp layout: {ts}"
        );
        assert_eq!(&ts[19..20], ".", "timestamp layout: {ts}");
        assert!(
            ts[20..26].chars().all(|c| c.is_ascii_digit()),
            "six fractional digits: {ts}"
        );
        assert!(obj.get("@module").is_some(), "no @module: {line}");
    }
}

fn connect(env: &Arc<Environment>, socket: &Path) -> Client {
    let ch = ChannelBuilder::new(Arc::clone(env))
        .max_receive_message_len(i32::MAX)
        .max_send_message_len(i32::MAX)
        .connect(&format!("unix:{}", socket.display()));
    Client::new(ch)
}

fn wait_exit(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    matches!(child.try_wait(), Ok(Some(_)))
}

fn status(e: grpcio::Error) -> RpcStatus {
    match e {
        grpcio::Error::RpcFailure(s) => s,
        other => RpcStatus::with_message(RpcStatusCode::UNKNOWN, other.to_string()),
    }
}

fn pump<T: Send + 'static>(mut stream: grpcio::ClientSStreamReceiver<T>) -> Receiver<Result<T, RpcStatus>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        futures_executor::block_on(async move {
            while let Some(item) = stream.next().await {
                let end = item.is_err();
                if tx.send(item.map_err(status)).is_err() || end {
                    return;
                }
            }
        })
    });
    rx
}

/// Asserts a fingerprint's health, showing its description when it differs.
pub fn assert_health(fp: &pb::FingerprintResponse, want: pb::fingerprint_response::HealthState) {
    assert_eq!(fp.health.enum_value(), Ok(want), "{}", fp.health_description);
}

/// A string attribute of a fingerprint.
pub fn attr_str(fp: &pb::FingerprintResponse, key: &str) -> Option<String> {
    fp.attributes.get(key).map(|a| a.string_val().to_string())
}

/// A loopback port nothing listens on (connections are refused at once).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// The RecoverableError detail of a status, if any.
pub fn recoverable(s: &RpcStatus) -> Option<bool> {
    if s.details().is_empty() {
        return None;
    }
    let st = rpc_status::Status::parse_from_bytes(s.details()).ok()?;
    let any = st.details.first()?;
    assert_eq!(
        any.type_url,
        "type.googleapis.com/hashicorp.nomad.plugins.shared.structs.RecoverableError"
    );
    assert_eq!(st.code, i32::from(s.code()), "detail code must equal the status code");
    Some(RecoverableError::parse_from_bytes(&any.value).ok()?.recoverable)
}

/// A TaskConfig as Nomad's task runner builds it.
pub fn task_config(alloc_id: &str, task: &str, suffix: &str, driver_config: Vec<u8>) -> pb::TaskConfig {
    let mut c = pb::TaskConfig::new();
    c.id = format!("{alloc_id}/{task}/{suffix}");
    c.name = task.into();
    c.alloc_id = alloc_id.into();
    c.job_name = "ecs-remote".into();
    c.job_id = "ecs-remote".into();
    c.task_group_name = "ecs-remote".into();
    c.namespace = "default".into();
    c.node_id = "node-1".into();
    c.node_name = "client-1".into();
    c.alloc_dir = format!("/tmp/nomad/alloc/{alloc_id}");
    c.stdout_path = format!("/tmp/nomad/alloc/{alloc_id}/alloc/logs/.{task}.stdout.fifo");
    c.stderr_path = format!("/tmp/nomad/alloc/{alloc_id}/alloc/logs/.{task}.stderr.fifo");
    // The variables Nomad's task environment always carries (client/taskenv/env.go at v1.10.0,
    // `Builder.buildEnv`); the job is "ecs-remote", group "ecs-remote", index 0, in region
    // "global" and datacenter "dc1" (Nomad's defaults). Tests of other slots change
    // NOMAD_ALLOC_INDEX / NOMAD_ALLOC_NAME.
    let short = alloc_id.get(..8).unwrap_or(alloc_id);
    let alloc_name = "ecs-remote.ecs-remote[0]";
    let env: HashMap<String, String> = [
        ("NOMAD_ALLOC_DIR", "/alloc"),
        ("NOMAD_TASK_DIR", "/local"),
        ("NOMAD_SECRETS_DIR", "/secrets"),
        ("NOMAD_ALLOC_ID", alloc_id),
        ("NOMAD_SHORT_ALLOC_ID", short),
        ("NOMAD_ALLOC_NAME", alloc_name),
        ("NOMAD_GROUP_NAME", "ecs-remote"),
        ("NOMAD_ALLOC_INDEX", "0"),
        ("NOMAD_TASK_NAME", task),
        ("NOMAD_JOB_ID", "ecs-remote"),
        ("NOMAD_JOB_NAME", "ecs-remote"),
        ("NOMAD_DC", "dc1"),
        ("NOMAD_NAMESPACE", "default"),
        ("NOMAD_REGION", "global"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    c.env = env;
    c.msgpack_driver_config = driver_config;
    c
}

/// Polls `f` until it returns Some or `timeout` passes.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits on an event channel for an event whose message contains `needle`.
pub fn wait_event(
    rx: &Receiver<Result<pb::DriverTaskEvent, RpcStatus>>,
    needle: &str,
    timeout: Duration,
) -> pb::DriverTaskEvent {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Ok(ev)) if ev.message.contains(needle) => return ev,
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => panic!("event stream failed: {e:?}"),
            Err(_) => panic!("no event containing {needle:?} within {timeout:?}"),
        }
    }
}
