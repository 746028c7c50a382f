//! Starts the ECS emulator (moto in-process behind our control middleware,
//! `tests/support/ecs_emulator.py`) on a free loopback port, one per test, and wraps its
//! control endpoints.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

pub const REGION: &str = "us-east-1";

pub struct Emulator {
    child: Child,
    /// Kept open: the emulator exits when its stdin closes (our process died).
    _stdin: ChildStdin,
    pub port: u16,
    agent: ureq::Agent,
    /// `https` when started with [`Emulator::start_tls`].
    scheme: &'static str,
}

/// The Python interpreter that has moto (CI points this at its venv).
pub fn python() -> String {
    std::env::var("ECS_EMULATOR_PYTHON").unwrap_or_else(|_| "python3".into())
}

impl Emulator {
    pub fn start() -> Emulator {
        Self::start_with(false, None)
    }

    pub fn start_auth() -> Emulator {
        Self::start_with(true, None)
    }

    /// Serving HTTPS with a certificate from a CA made at start; its certificate is written
    /// to `dir/ca.pem`.
    pub fn start_tls(dir: &std::path::Path) -> Emulator {
        Self::start_with(false, Some(dir))
    }

    fn start_with(auth: bool, tls_dir: Option<&std::path::Path>) -> Emulator {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/ecs_emulator.py");
        let mut cmd = Command::new(python());
        cmd.arg(script).arg("--port").arg("0");
        if auth {
            cmd.arg("--auth");
        }
        if let Some(d) = tls_dir {
            cmd.arg("--tls-dir").arg(d);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(if std::env::var_os("ECS_EMULATOR_VERBOSE").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start the ECS emulator with {}: {e} (set ECS_EMULATOR_PYTHON to a Python with moto)",
                    python()
                )
            });
        let stdin = child.stdin.take().expect("stdin");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read READY");
        let port: u16 = line
            .trim()
            .strip_prefix("READY ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "emulator did not start (printed {line:?}); is moto installed for {}?",
                    python()
                )
            });
        let mut agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30));
        if let Some(d) = tls_dir {
            agent = agent.tls_config(std::sync::Arc::new(trusting(&d.join("ca.pem"))));
        }
        Emulator {
            child,
            _stdin: stdin,
            port,
            agent: agent.build(),
            scheme: if tls_dir.is_some() { "https" } else { "http" },
        }
    }

    pub fn endpoint(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.port)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint())
    }

    pub fn post(&self, path: &str, body: Value) -> Value {
        let req = self.agent.post(&self.url(path)).set("Content-Type", "application/json");
        match req.send_string(&body.to_string()) {
            Ok(r) => serde_json::from_str(&r.into_string().expect("body")).expect("json"),
            Err(ureq::Error::Status(code, r)) => {
                panic!("{path} failed with {code}: {}", r.into_string().unwrap_or_default())
            }
            Err(e) => panic!("{path} failed: {e}"),
        }
    }

    /// An ECS API call made by the test itself (only on an emulator started without signature
    /// checks), e.g. to register a revision by hand or read revisions' status.
    pub fn ecs(&self, operation: &str, body: Value) -> Value {
        // moto routes by the credential scope (service, region); the signature is not checked.
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential=AKIDTESTONLY/20260101/{REGION}/ecs/aws4_request, SignedHeaders=host, Signature=0"
        );
        let req = self
            .agent
            .post(&self.url("/"))
            .set("Content-Type", "application/x-amz-json-1.1")
            .set(
                "X-Amz-Target",
                &format!("AmazonEC2ContainerServiceV20141113.{operation}"),
            )
            .set("Authorization", &authorization);
        match req.send_string(&body.to_string()) {
            Ok(r) => {
                let text = r.into_string().expect("body");
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{operation}: not JSON ({e}): {text}"))
            }
            Err(ureq::Error::Status(code, r)) => {
                panic!(
                    "{operation} failed with {code}: {}",
                    r.into_string().unwrap_or_default()
                )
            }
            Err(e) => panic!("{operation} failed: {e}"),
        }
    }

    pub fn get(&self, path: &str) -> Value {
        match self.agent.get(&self.url(path)).call() {
            Ok(r) => serde_json::from_str(&r.into_string().expect("body")).expect("json"),
            Err(ureq::Error::Status(404, _)) => Value::Null,
            Err(e) => panic!("{path} failed: {e}"),
        }
    }

    /// Creates the cluster and the task definition; returns the setup answer (subnets, ...).
    pub fn setup(&self, cluster: &str) -> Value {
        self.post("/_test/setup", json!({"region": REGION, "cluster": cluster}))
    }

    pub fn setup_with(&self, body: Value) -> Value {
        self.post("/_test/setup", body)
    }

    /// Makes the task stop as if its essential container exited with `code`.
    pub fn exit_task(&self, cluster: &str, task_arn: &str, code: Option<i64>, reason: &str) -> Value {
        self.post(
            "/_test/stop-task",
            json!({"region": REGION, "cluster": cluster, "task": task_arn, "exit_code": code,
                   "stop_code": "EssentialContainerExited", "stopped_reason": reason}),
        )
    }

    pub fn stop_task_raw(&self, body: Value) -> Value {
        self.post("/_test/stop-task", body)
    }

    pub fn fault(&self, body: Value) {
        self.post("/_test/fault", body);
    }

    pub fn calls(&self) -> Value {
        self.get("/_test/calls")
    }

    pub fn call_count(&self, op: &str) -> u64 {
        self.calls().get(op).and_then(Value::as_u64).unwrap_or(0)
    }

    pub fn requests(&self, op: &str) -> Vec<Value> {
        self.get(&format!("/_test/requests?operation={op}"))
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn tasks(&self, cluster: &str) -> Vec<Value> {
        self.get(&format!("/_test/tasks?region={REGION}&cluster={cluster}"))
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn task_status(&self, cluster: &str, arn: &str) -> Option<String> {
        self.tasks(cluster)
            .into_iter()
            .find(|t| t["arn"] == arn)
            .and_then(|t| t["last_status"].as_str().map(str::to_string))
    }

    /// The task's tags (key, value) as the emulator holds them, straight from its memory
    /// (`GET /_test/task-tags`). Panics if the task is unknown.
    pub fn task_tags(&self, cluster: &str, arn: &str) -> Vec<(String, String)> {
        let v = self.get(&format!(
            "/_test/task-tags?region={REGION}&cluster={cluster}&task={arn}"
        ));
        let list = v
            .as_array()
            .unwrap_or_else(|| panic!("task {arn} not found in cluster {cluster}: {v}"));
        list.iter()
            .map(|t| {
                (
                    t["key"].as_str().expect("tag key").to_string(),
                    t["value"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// The access key id that signed each recorded call of `op` (None: unsigned).
    pub fn access_keys(&self, op: &str) -> Vec<Option<String>> {
        self.get(&format!("/_test/access-keys?operation={op}"))
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    }

    /// An IAM role anyone may assume, with an allow-all policy; returns its ARN.
    pub fn create_role(&self, name: &str) -> String {
        self.post("/_test/role", json!({"role_name": name}))["role_arn"]
            .as_str()
            .expect("role_arn")
            .to_string()
    }

    /// (access key id, secret) of an IAM user allowed everything (auth mode).
    pub fn auth_user(&self) -> (String, String) {
        let v = self.post("/_test/auth-user", json!({}));
        (
            v["access_key_id"].as_str().expect("key").to_string(),
            v["secret_access_key"].as_str().expect("secret").to_string(),
        )
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TLS client config that trusts only the CA certificate at `ca`.
fn trusting(ca: &std::path::Path) -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).expect("ca.pem") {
        roots.add(cert.expect("CA certificate")).expect("usable CA");
    }
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}
