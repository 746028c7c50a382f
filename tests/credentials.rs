//! The AWS credential chain as operators deploy it, each provider on loopback: web identity and
//! AssumeRole through the emulator's STS (auth mode on for the signed calls), roles and
//! credential_process in shared-config profiles, ECS/EKS container credentials and EC2
//! instance metadata (IMDSv2) played by small servers of ours, refresh of expiring credentials
//! while a task runs. Every test scans the plugin's whole output for the secrets it used.

mod support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nomad_driver_ecs::aws::timestamp;
use nomad_driver_ecs::proto::driver::fingerprint_response::HealthState;
use nomad_driver_ecs::proto::driver::FingerprintResponse;
use support::cty;
use support::emulator::{Emulator, REGION};
use support::host::{self, attr_str, Launch, Plugin};
use support::http_server::TestServer;
use support::{TEST_POLL, WAIT};

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ecs-creds-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join(".aws")).unwrap();
    d
}

/// Launch (no credentials in the environment unless `launch` has some) and configure.
fn configured(launch: &Launch, emu: &Emulator, cluster: &str, region: Option<&str>, extra: &[(&str, &str)]) -> Plugin {
    let p = Plugin::launch(launch);
    p.set_config(
        cty::plugin_config_with(
            Some(true),
            Some(cluster),
            region,
            Some(&emu.endpoint()),
            Some(TEST_POLL),
            extra,
        ),
        true,
    )
    .expect("SetConfig");
    p
}

fn healthy(p: &Plugin) -> FingerprintResponse {
    let fp = p.first_fingerprint();
    host::assert_health(&fp, HealthState::HEALTHY);
    fp
}

/// No secret the test used appears anywhere in the plugin's output.
fn assert_no_secrets(p: &Plugin, secrets: &[&str]) {
    let lines = p.stderr_lines();
    host::assert_hclog_lines(&lines);
    for line in &lines {
        for s in secrets {
            assert!(
                !s.is_empty() && !line.contains(s),
                "a secret reached the plugin's log: {line}"
            );
        }
    }
}

fn creds_json(key: &str, secret: &str, token: &str, expiry: SystemTime) -> String {
    serde_json::json!({
        "Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": key, "SecretAccessKey": secret, "Token": token,
        "Expiration": timestamp::format(expiry), "LastUpdated": timestamp::format(SystemTime::now()),
    })
    .to_string()
}

#[test]
fn web_identity_assumes_the_role_with_the_token_file() {
    let emu = Emulator::start();
    emu.setup("cr-webid");
    let role = emu.create_role("web-identity-role");
    let dir = temp_dir("webid");
    let token = "eyJ-web-identity-token-not-a-real-jwt";
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let launch = Launch::default()
        .with_env("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.to_str().unwrap())
        .with_env("AWS_ROLE_ARN", &role)
        .with_env("AWS_ROLE_SESSION_NAME", "nomad-client-1")
        .with_env("AWS_ENDPOINT_URL_STS", &emu.endpoint());
    let p = configured(&launch, &emu, "cr-webid", Some(REGION), &[]);
    let fp = healthy(&p);
    assert_eq!(
        attr_str(&fp, "driver.ecs.credentials").unwrap_or_default(),
        format!("web identity role {role}")
    );
    let calls = emu.requests("AssumeRoleWithWebIdentity");
    assert_eq!(calls.len(), 1, "assumed once, then cached");
    assert_eq!(calls[0]["WebIdentityToken"], token);
    assert_eq!(calls[0]["RoleArn"], role.as_str());
    assert_eq!(calls[0]["RoleSessionName"], "nomad-client-1");
    assert_eq!(emu.access_keys("AssumeRoleWithWebIdentity"), vec![None], "unsigned");
    let keys = emu.access_keys("DescribeClusters");
    assert!(
        keys.iter().all(|k| k.as_deref().is_some_and(|k| k.starts_with("ASIA"))),
        "ECS calls signed with the role's temporary key: {keys:?}"
    );
    assert_no_secrets(&p, &[token]);
}

#[test]
fn plugin_role_arn_is_assumed_on_top_of_the_chain() {
    let emu = Emulator::start_auth();
    let (user_key, user_secret) = emu.auth_user();
    emu.setup("cr-role");
    let role = emu.create_role("cross-account-role");
    let launch = Launch::default()
        .with_env("AWS_ACCESS_KEY_ID", &user_key)
        .with_env("AWS_SECRET_ACCESS_KEY", &user_secret);
    let p = configured(
        &launch,
        &emu,
        "cr-role",
        Some(REGION),
        &[
            ("role_arn", &role),
            ("external_id", "nomad-external-id"),
            ("role_session_name", "nomad-ecs-test"),
            ("sts_endpoint", &emu.endpoint()),
        ],
    );
    let fp = healthy(&p);
    assert_eq!(
        attr_str(&fp, "driver.ecs.credentials").unwrap_or_default(),
        format!("role {role} assumed with environment")
    );
    let calls = emu.requests("AssumeRole");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["ExternalId"], "nomad-external-id");
    assert_eq!(calls[0]["RoleSessionName"], "nomad-ecs-test");
    assert_eq!(
        emu.access_keys("AssumeRole"),
        vec![Some(user_key.clone())],
        "signed with the chain's key"
    );
    // A whole task on the assumed role (auth mode: every ECS call must carry a valid signature).
    let w_cfg = host::task_config(
        "cccccccc-0000-4000-8000-000000000001",
        "web",
        "a1b2c3d4",
        stanza(&emu, "cr-role"),
    );
    p.start_task(&w_cfg).expect("StartTask with assumed-role credentials");
    p.stop_task(&w_cfg.id, Duration::from_secs(10), "").expect("StopTask");
    for op in ["DescribeClusters", "RunTask", "StopTask"] {
        let keys = emu.access_keys(op);
        assert!(!keys.is_empty(), "{op} was called");
        assert!(
            keys.iter()
                .all(|k| k.as_deref().is_some_and(|k| k.starts_with("ASIA") && k != user_key)),
            "{op} signed with the assumed role: {keys:?}"
        );
    }
    assert_eq!(emu.requests("AssumeRole").len(), 1, "the role's credentials are cached");
    assert_no_secrets(&p, &[&user_secret]);
}

fn stanza(emu: &Emulator, cluster: &str) -> Vec<u8> {
    support::fargate_stanza(&emu.setup(cluster), "my-task-definition").encode()
}

#[test]
fn profile_with_role_arn_and_source_profile() {
    let emu = Emulator::start_auth();
    let (user_key, user_secret) = emu.auth_user();
    emu.setup("cr-profile");
    let role = emu.create_role("profile-role");
    let dir = temp_dir("profile");
    std::fs::write(
        dir.join(".aws/credentials"),
        format!("[base]\naws_access_key_id = {user_key}\naws_secret_access_key = {user_secret}\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join(".aws/config"),
        format!("[profile ecs]\nrole_arn = {role}\nsource_profile = base\nrole_session_name = from-profile\n"),
    )
    .unwrap();
    let launch = Launch::default()
        .with_env("HOME", dir.to_str().unwrap())
        .with_env("AWS_ENDPOINT_URL_STS", &emu.endpoint());
    let p = configured(&launch, &emu, "cr-profile", Some(REGION), &[("profile", "ecs")]);
    let fp = healthy(&p);
    assert!(
        attr_str(&fp, "driver.ecs.credentials")
            .unwrap_or_default()
            .starts_with(&format!("role {role} assumed with profile base")),
        "{}",
        attr_str(&fp, "driver.ecs.credentials").unwrap_or_default()
    );
    assert_eq!(emu.access_keys("AssumeRole"), vec![Some(user_key.clone())]);
    assert_eq!(emu.requests("AssumeRole")[0]["RoleSessionName"], "from-profile");
    assert_no_secrets(&p, &[&user_secret]);
}

#[test]
fn credential_process_of_the_profile() {
    let emu = Emulator::start_auth();
    let (user_key, user_secret) = emu.auth_user();
    emu.setup("cr-process");
    let dir = temp_dir("process");
    let script = dir.join("creds.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho started >&2\nprintf '{{\"Version\": 1, \"AccessKeyId\": \"{user_key}\", \"SecretAccessKey\": \"{user_secret}\"}}'\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join(".aws/config"),
        format!("[default]\ncredential_process = sh {}\n", script.display()),
    )
    .unwrap();
    let launch = Launch::default().with_env("HOME", dir.to_str().unwrap());
    let p = configured(&launch, &emu, "cr-process", Some(REGION), &[]);
    let fp = healthy(&p);
    assert_eq!(
        attr_str(&fp, "driver.ecs.credentials").unwrap_or_default(),
        "credential_process of profile default"
    );
    assert_eq!(
        emu.access_keys("DescribeClusters").last().cloned().flatten(),
        Some(user_key)
    );
    assert_no_secrets(&p, &[&user_secret]);
}

/// A credential_process helper that starts a background "agent" without redirecting its output
/// (so the agent holds the command's stdout and stderr open) and gives no Expiration: the
/// plugin neither hangs on it (the fingerprint is healthy, the agent is killed) nor runs it again
/// for each AWS call (once for the fingerprint, a StartTask and a stream of DescribeTasks).
#[test]
fn credential_process_runs_once_and_a_child_holding_its_output_does_not_hang_it() {
    let emu = Emulator::start_auth();
    let (user_key, user_secret) = emu.auth_user();
    emu.setup("cr-process-once");
    let dir = temp_dir("process-once");
    let (script, runs, agent) = (dir.join("creds.sh"), dir.join("runs"), dir.join("agent.pid"));
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho run >> {}\nsleep 1000 &\necho $! > {}\nprintf '{{\"Version\": 1, \"AccessKeyId\": \"{user_key}\", \"SecretAccessKey\": \"{user_secret}\"}}'\n",
            runs.display(),
            agent.display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join(".aws/config"),
        format!("[default]\ncredential_process = sh {}\n", script.display()),
    )
    .unwrap();
    let launch = Launch::default().with_env("HOME", dir.to_str().unwrap());
    let p = configured(&launch, &emu, "cr-process-once", Some(REGION), &[]);
    // Before the fix the fingerprint never came: the plugin waited for the agent to close stdout.
    healthy(&p);
    let cfg = host::task_config(
        "cccccccc-0000-4000-8000-000000000003",
        "web",
        "a1b2c3d4",
        stanza(&emu, "cr-process-once"),
    );
    p.start_task(&cfg).expect("StartTask");
    host::eventually(WAIT, "the task watched with several DescribeTasks", || {
        (emu.call_count("DescribeTasks") >= 3).then_some(())
    });
    for op in ["DescribeClusters", "RunTask", "DescribeTasks"] {
        let keys = emu.access_keys(op);
        assert!(
            !keys.is_empty() && keys.iter().all(|k| k.as_deref() == Some(user_key.as_str())),
            "{op} signed with the process's key: {keys:?}"
        );
    }
    let ran = std::fs::read_to_string(&runs).unwrap_or_default().lines().count();
    assert_eq!(ran, 1, "run once: its credentials have no Expiration");
    let pid = std::fs::read_to_string(&agent).unwrap().trim().to_string();
    host::eventually(WAIT, "the agent holding the output killed", || gone(&pid).then_some(()));
    assert!(
        p.stderr_lines().iter().any(|l| l.contains("kept its output open")),
        "the kill is logged"
    );
    assert_no_secrets(&p, &[&user_secret]);
}

/// Whether process `pid` is gone (or a zombie nobody reaps).
fn gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(") ").next().is_some_and(|s| s.starts_with('Z')),
    }
}

/// A container-credentials endpoint: checks the Authorization token, hands out key
/// `ASIACONTAINER<n>` expiring `life` from now; answers 500 while `failing`.
fn container_server(token: &'static str, life: Duration, failing: Arc<AtomicBool>) -> (TestServer, Arc<AtomicUsize>) {
    let served = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&served);
    let server = TestServer::start(move |req| {
        if req.path != "/v2/credentials/task" || req.method != "GET" {
            return (404, "no such path".into());
        }
        if req.headers.get("authorization").map(String::as_str) != Some(token) {
            return (401, "bad token".into());
        }
        if failing.load(Ordering::SeqCst) {
            return (500, "agent trouble".into());
        }
        let n = count.fetch_add(1, Ordering::SeqCst);
        (
            200,
            creds_json(
                &format!("ASIACONTAINER{n}"),
                &format!("container-secret-{n}"),
                &format!("container-session-token-{n}"),
                SystemTime::now() + life,
            ),
        )
    });
    (server, served)
}

#[test]
fn container_credentials_with_the_token_file() {
    let emu = Emulator::start();
    emu.setup("cr-container");
    let token = "container-auth-token-123";
    let (server, served) = container_server(token, Duration::from_secs(3600), Arc::default());
    let dir = temp_dir("container");
    let token_file = dir.join("token");
    std::fs::write(&token_file, token).unwrap();
    let uri = format!("{}/v2/credentials/task", server.url());
    let launch = Launch::default()
        .with_env("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri)
        .with_env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", token_file.to_str().unwrap());
    let p = configured(&launch, &emu, "cr-container", Some(REGION), &[]);
    let fp = healthy(&p);
    assert_eq!(
        attr_str(&fp, "driver.ecs.credentials").unwrap_or_default(),
        format!("container credentials ({uri})")
    );
    assert_eq!(
        emu.access_keys("DescribeClusters").last().cloned().flatten().as_deref(),
        Some("ASIACONTAINER0")
    );
    assert_eq!(served.load(Ordering::SeqCst), 1);
    assert_no_secrets(&p, &[token, "container-secret-0", "container-session-token-0"]);

    // The wrong token: refused, and the fingerprint says where and why, without the token.
    std::fs::write(&token_file, "wrong-token-456").unwrap();
    let launch = Launch::default()
        .with_env("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri)
        .with_env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", token_file.to_str().unwrap());
    let p = configured(&launch, &emu, "cr-container", Some(REGION), &[]);
    let fp = p.first_fingerprint();
    host::assert_health(&fp, HealthState::UNHEALTHY);
    assert!(
        fp.health_description.contains(&uri) && fp.health_description.contains("HTTP 401"),
        "{}",
        fp.health_description
    );
    assert_no_secrets(&p, &["wrong-token-456"]);
}

#[test]
fn imdsv2_credentials_and_region() {
    let emu = Emulator::start();
    emu.setup("cr-imds");
    const TOKEN: &str = "imds-session-token-abc";
    let server = TestServer::start(|req| {
        if req.method == "PUT" && req.path == "/latest/api/token" {
            return match req.headers.get("x-aws-ec2-metadata-token-ttl-seconds") {
                Some(ttl) if ttl.parse::<u32>().is_ok_and(|t| (1..=21_600).contains(&t)) => (200, TOKEN.into()),
                _ => (400, "missing or invalid TTL".into()),
            };
        }
        if req.headers.get("x-aws-ec2-metadata-token").map(String::as_str) != Some(TOKEN) {
            return (401, "IMDSv2 token required".into());
        }
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/latest/meta-data/iam/security-credentials/") => (200, "nomad-client-role\n".into()),
            ("GET", "/latest/meta-data/iam/security-credentials/nomad-client-role") => (
                200,
                creds_json(
                    "ASIAIMDSROLE",
                    "imds-secret-key",
                    "imds-session-token",
                    SystemTime::now() + Duration::from_secs(6 * 3600),
                ),
            ),
            ("GET", "/latest/meta-data/placement/region") => (200, REGION.into()),
            _ => (404, "not found".into()),
        }
    });
    let launch = Launch::default()
        .with_env("AWS_EC2_METADATA_DISABLED", "false")
        .with_env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &server.url());
    // No region anywhere but in instance metadata.
    let p = configured(&launch, &emu, "cr-imds", None, &[]);
    let fp = healthy(&p);
    assert_eq!(
        attr_str(&fp, "driver.ecs.region").unwrap_or_default(),
        REGION,
        "region from IMDS"
    );
    assert_eq!(
        attr_str(&fp, "driver.ecs.credentials").unwrap_or_default(),
        "EC2 instance metadata (role nomad-client-role)"
    );
    assert_eq!(
        emu.access_keys("DescribeClusters").last().cloned().flatten().as_deref(),
        Some("ASIAIMDSROLE")
    );
    let reqs = server.requests();
    let puts: Vec<_> = reqs.iter().filter(|r| r.method == "PUT").collect();
    assert!(!puts.is_empty());
    assert!(puts.iter().all(|r| r
        .headers
        .get("x-aws-ec2-metadata-token-ttl-seconds")
        .map(String::as_str)
        == Some("21600")));
    assert!(
        reqs.iter().filter(|r| r.method == "GET").all(|r| r
            .headers
            .get("x-aws-ec2-metadata-token")
            .map(String::as_str)
            == Some(TOKEN)),
        "every GET carries the IMDSv2 token (no IMDSv1)"
    );
    assert_no_secrets(&p, &[TOKEN, "imds-secret-key", "imds-session-token"]);
}

#[test]
fn no_region_anywhere_is_unhealthy_and_says_how_to_set_one() {
    let emu = Emulator::start();
    let p = configured(&Launch::test_credentials(), &emu, "cr-noregion", None, &[]);
    let fp = p.first_fingerprint();
    host::assert_health(&fp, HealthState::UNHEALTHY);
    assert!(fp.health_description.contains("region"), "{}", fp.health_description);
}

#[test]
fn expiring_credentials_are_refreshed_while_a_task_runs() {
    let emu = Emulator::start();
    emu.setup("cr-refresh");
    let token = "refresh-auth-token";
    let failing = Arc::new(AtomicBool::new(false));
    // Each set expires 5 min + 2 s after it is handed out: due for refresh after 2 s.
    let (server, served) = container_server(token, Duration::from_secs(302), Arc::clone(&failing));
    let launch = Launch::default()
        .with_env(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            &format!("{}/v2/credentials/task", server.url()),
        )
        .with_env("AWS_CONTAINER_AUTHORIZATION_TOKEN", token);
    let p = configured(&launch, &emu, "cr-refresh", Some(REGION), &[]);
    healthy(&p);
    let cfg = host::task_config(
        "cccccccc-0000-4000-8000-000000000002",
        "web",
        "a1b2c3d4",
        stanza(&emu, "cr-refresh"),
    );
    p.start_task(&cfg).expect("StartTask");
    host::eventually(WAIT, "three sets of credentials handed out", || {
        (served.load(Ordering::SeqCst) >= 3).then_some(())
    });
    host::eventually(WAIT, "DescribeTasks signed with a refreshed key", || {
        let keys = emu.access_keys("DescribeTasks");
        let distinct: std::collections::BTreeSet<_> = keys.iter().flatten().collect();
        (distinct.len() >= 2).then_some(())
    });
    // The endpoint fails now: the old (still valid) credentials keep the task watched.
    failing.store(true, Ordering::SeqCst);
    host::eventually(WAIT, "a logged refresh failure", || {
        p.stderr_lines()
            .iter()
            .any(|l| l.contains("could not refresh AWS credentials"))
            .then_some(())
    });
    let polls = emu.call_count("DescribeTasks");
    host::eventually(WAIT, "polling to go on", || {
        (emu.call_count("DescribeTasks") > polls + 2).then_some(())
    });
    let arn = emu.tasks("cr-refresh")[0]["arn"].as_str().unwrap().to_string();
    emu.exit_task("cr-refresh", &arn, Some(7), "Essential container in task exited");
    let r = p.wait_task(&cfg.id, WAIT).expect("WaitTask");
    assert_eq!(r.result.unwrap().exit_code, 7);
    let secrets: Vec<String> = (0..served.load(Ordering::SeqCst))
        .flat_map(|n| [format!("container-secret-{n}"), format!("container-session-token-{n}")])
        .collect();
    let mut all: Vec<&str> = secrets.iter().map(String::as_str).collect();
    all.push(token);
    assert_no_secrets(&p, &all);
}
