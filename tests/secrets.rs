//! Secrets never leave the plugin through its own words: proxy passwords, the user info of
//! `nomad_address`, the session token quoted back by AWS in an `InvalidSignatureException`, a
//! token that cannot be sent as an HTTP header, and the tokens Nomad puts into a task's
//! environment. Each test scans everything an operator or another user can read — the plugin's
//! whole stderr, gRPC error texts, task events, fingerprint attributes and health description,
//! and the RunTask request ECS receives — for the secrets it used.

mod support;

use std::sync::mpsc::Receiver;
use std::time::Duration;

use nomad_driver_ecs::proto::driver::fingerprint_response::HealthState;
use nomad_driver_ecs::proto::driver::{DriverTaskEvent, FingerprintResponse};
use support::cty::{self, s, Cty};
use support::host::{self, assert_health, attr_str, closed_port, Launch, Plugin};
use support::http_server::TestServer;
use support::World;

/// Does `text` hold `secret`, or (for a long secret) any 16 characters of it in a row: a
/// token cut short by a length limit leaks too.
fn leaks(text: &str, secret: &str) -> bool {
    const WINDOW: usize = 16;
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() <= WINDOW {
        return text.contains(secret);
    }
    chars
        .windows(WINDOW)
        .any(|w| text.contains(&w.iter().collect::<String>()))
}

fn assert_clean(what: &str, text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!leaks(text, secret), "a secret reached the {what}: {text}");
    }
}

/// The fingerprint's health description and every attribute.
fn fingerprint_text(fp: &FingerprintResponse) -> String {
    let mut text = fp.health_description.clone();
    for (k, v) in &fp.attributes {
        text.push_str(&format!("\n{k} = {v:?}"));
    }
    text
}

/// Every line of the plugin's stderr.
fn assert_clean_stderr(p: &Plugin, secrets: &[&str]) {
    let lines = p.stderr_lines();
    host::assert_hclog_lines(&lines);
    for line in &lines {
        assert_clean("plugin's log", line, secrets);
    }
}

/// Every task event received so far.
fn assert_clean_events(events: &Receiver<Result<DriverTaskEvent, grpcio::RpcStatus>>, secrets: &[&str]) {
    while let Ok(Ok(ev)) = events.recv_timeout(Duration::from_millis(500)) {
        assert_clean("task event", &format!("{} {:?}", ev.message, ev.annotations), secrets);
    }
}

/// An EC2 task of task definition `td`, no network block.
fn ec2_stanza() -> Vec<u8> {
    cty::TaskStanza {
        launch_type: Some("EC2"),
        task_definition: Some("td"),
        assign_public_ip: None,
        security_groups: None,
        subnets: None,
        network: false,
    }
    .encode()
}

fn configure(p: &Plugin, endpoint: &str, cluster: &str, extra: Vec<(&str, Cty)>) -> Result<(), grpcio::RpcStatus> {
    p.set_config(support::test_plugin_config(cluster, endpoint, extra), true)
}

#[test]
fn proxy_passwords_never_reach_errors_logs_or_the_fingerprint() {
    let password = "proxy-pw-5ecret-a1b2";
    let socks = format!("socks5://proxyuser:{password}@127.0.0.1:1080");
    let launch = Launch::test_credentials()
        .with_env("HTTPS_PROXY", &socks)
        .with_env("HTTP_PROXY", &socks);
    let p = Plugin::launch(&launch);
    let configured = configure(&p, "http://127.0.0.1:4566", "sec-proxy", vec![]);
    if let Err(e) = &configured {
        assert_clean("SetConfig error", e.message(), &[password]);
    }
    let fp = p.first_fingerprint();
    assert_health(&fp, HealthState::UNHEALTHY);
    let shown = fingerprint_text(&fp);
    assert_clean("fingerprint", &shown, &[password]);
    assert!(
        shown.contains("HTTPS_PROXY") || shown.contains("HTTP_PROXY"),
        "names the setting: {shown}"
    );
    let stanza = ec2_stanza();
    let e = p
        .start_task(&host::task_config(
            "eeeeeeee-0000-4000-8000-000000000001",
            "web",
            "a1b2c3d4",
            stanza,
        ))
        .unwrap_err();
    assert_clean("StartTask error", e.message(), &[password]);
    assert_clean_stderr(&p, &[password]);

    // A usable http:// proxy with a password, that does not answer.
    let closed = format!("http://proxyuser:{password}@127.0.0.1:{}", closed_port());
    let p = Plugin::launch(&Launch::test_credentials().with_env("HTTP_PROXY", &closed));
    configure(&p, "http://127.0.0.1:4566", "sec-proxy", vec![]).expect("SetConfig");
    let fp = p.first_fingerprint();
    assert_health(&fp, HealthState::UNHEALTHY);
    assert_clean("fingerprint", &fingerprint_text(&fp), &[password]);
    assert_clean_stderr(&p, &[password]);
}

#[test]
fn nomad_address_user_info_never_reaches_the_fingerprint_or_the_log() {
    let password = "nomad-pw-5ecret-c3d4";
    let p = Plugin::launch(&Launch::test_credentials());
    let address = format!("http://nomaduser:{password}@127.0.0.1:{}", closed_port());
    configure(
        &p,
        &format!("http://127.0.0.1:{}", closed_port()),
        "sec-nomad",
        vec![("nomad_address", s(&address))],
    )
    .expect("SetConfig");
    let fp = p.first_fingerprint();
    let api = attr_str(&fp, "driver.ecs.nomad_api").unwrap_or_default();
    assert!(api.starts_with("unavailable"), "{api}");
    assert!(api.contains("127.0.0.1"), "still says which address: {api}");
    assert_clean("fingerprint", &fingerprint_text(&fp), &[password, "nomaduser:"]);
    assert_clean_stderr(&p, &[password, "nomaduser:"]);
}

/// A long session token, as STS hands out (hundreds of characters).
fn long_token(tag: &str) -> String {
    let mut t = format!("IQoJb3JpZ2luX2VjE{tag}");
    while t.len() < 900 {
        t.push_str("AbCdEfGhIjKlMnOpQrStUvWxYz0123456789+/");
    }
    t
}

#[test]
fn the_session_token_quoted_in_an_invalid_signature_answer_is_redacted() {
    let token = long_token("InvalidSig");
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYsecretkey";
    // AWS's answer to a bad signature: the canonical request it expected, session token included,
    // and (here) the secret key and the token again where no header name announces them.
    let server = TestServer::start(move |req| {
        let echoed = req.headers.get("x-amz-security-token").cloned().unwrap_or_default();
        let target = req.headers.get("x-amz-target").cloned().unwrap_or_default();
        let message = format!(
            "The request signature we calculated does not match the signature you provided. Check your AWS \
             Secret Access Key and signing method. Consult the service documentation for details.\n\nThe \
             Canonical String for this request should have been\n'POST\n/\n\ncontent-type:application/\
             x-amz-json-1.1\nhost:127.0.0.1\nx-amz-date:20250101T000000Z\nx-amz-security-token:{echoed}\n\
             x-amz-target:{target}\n\ncontent-type;host;x-amz-date;x-amz-security-token;x-amz-target\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'\n\nThe String-to-Sign should \
             have been\n'AWS4-HMAC-SHA256\n20250101T000000Z\n20250101/us-east-1/ecs/aws4_request\n\
             0123456789abcdef'\n(token {echoed}; key {})",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYsecretkey"
        );
        (
            400,
            serde_json::json!({"__type": "InvalidSignatureException", "message": message}).to_string(),
        )
    });
    let launch = Launch::default()
        .with_env("AWS_ACCESS_KEY_ID", "ASIATESTTESTTEST")
        .with_env("AWS_SECRET_ACCESS_KEY", secret)
        .with_env("AWS_SESSION_TOKEN", &token);
    let p = Plugin::launch(&launch);
    configure(&p, &server.url(), "sec-sig", vec![]).expect("SetConfig");
    let events = p.task_events();
    let fp = p.first_fingerprint();
    assert_health(&fp, HealthState::UNHEALTHY);
    let shown = fingerprint_text(&fp);
    assert!(shown.contains("InvalidSignatureException"), "{shown}");
    assert_clean("fingerprint", &shown, &[&token, secret]);
    let stanza = ec2_stanza();
    let e = p
        .start_task(&host::task_config(
            "eeeeeeee-0000-4000-8000-000000000002",
            "web",
            "a1b2c3d4",
            stanza,
        ))
        .unwrap_err();
    assert!(e.message().contains("InvalidSignatureException"), "{}", e.message());
    assert_clean("StartTask error", e.message(), &[&token, secret]);
    assert_clean_events(&events, &[&token, secret]);
    assert_clean_stderr(&p, &[&token, secret]);
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.headers.get("x-amz-security-token") == Some(&token)),
        "the token was sent"
    );
}

#[test]
fn a_token_that_cannot_be_an_http_header_is_named_not_quoted() {
    // A control character in the session token: the HTTP library refuses the header and its
    // message quotes the whole header line.
    let token = format!("{}\u{1}tail-of-the-token", long_token("BadByte"));
    let server = TestServer::start(|_| (200, "{}".into()));
    let launch = Launch::default()
        .with_env("AWS_ACCESS_KEY_ID", "ASIATESTTESTTEST")
        .with_env("AWS_SECRET_ACCESS_KEY", "test-secret-not-real")
        .with_env("AWS_SESSION_TOKEN", &token);
    let p = Plugin::launch(&launch);
    configure(&p, &server.url(), "sec-hdr", vec![]).expect("SetConfig");
    let fp = p.first_fingerprint();
    assert_health(&fp, HealthState::UNHEALTHY);
    let shown = fingerprint_text(&fp);
    assert!(
        shown.contains("session token") && shown.contains("environment"),
        "names the token and its provider: {shown}"
    );
    assert_clean("fingerprint", &shown, &[&token, "tail-of-the-token"]);
    assert_clean_stderr(&p, &[&token, "tail-of-the-token"]);
    assert!(server.requests().is_empty(), "nothing was sent");

    // The same for the Nomad ACL token.
    let nomad_token = "5e1f0c2a-acl\u{7f}-secret-token";
    let p = Plugin::launch(&Launch::test_credentials());
    configure(
        &p,
        &format!("http://127.0.0.1:{}", closed_port()),
        "sec-hdr",
        vec![("nomad_address", s(&server.url())), ("nomad_token", s(nomad_token))],
    )
    .expect("SetConfig");
    let fp = p.first_fingerprint();
    let api = attr_str(&fp, "driver.ecs.nomad_api").unwrap_or_default();
    assert!(api.contains("nomad_token"), "{api}");
    assert_clean("fingerprint", &fingerprint_text(&fp), &["secret-token", "5e1f0c2a-acl"]);
    assert_clean_stderr(&p, &["secret-token", "5e1f0c2a-acl"]);
}

#[test]
fn workload_identity_vault_and_consul_tokens_stay_out_of_run_task() {
    let w = World::new("sec-env");
    let events = w.plugin.task_events();
    let mut cfg = host::task_config("eeeeeeee-0000-4000-8000-000000000003", "web", "a1b2c3d4", w.stanza());
    let secrets = [
        ("NOMAD_TOKEN", "default-identity-jwt-0001"),
        ("NOMAD_TOKEN_aws", "aws-identity-jwt-0002"),
        ("NOMAD_TOKEN_vault_default", "vault-identity-jwt-0003"),
        ("VAULT_TOKEN", "hvs.vault-token-0004"),
        ("CONSUL_TOKEN", "consul-token-0005"),
        ("CONSUL_HTTP_TOKEN", "consul-http-token-0006"),
    ];
    cfg.env
        .extend(secrets.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    cfg.env.insert("GREETING".into(), "hello".into());
    w.plugin.start_task(&cfg).expect("StartTask");
    let body = w.emu.requests("RunTask").last().cloned().expect("a RunTask was sent");
    let shown = body.to_string();
    assert!(
        shown.contains("GREETING") && shown.contains("NOMAD_ALLOC_ID"),
        "{shown}"
    );
    let values: Vec<&str> = secrets.iter().map(|(_, v)| *v).collect();
    assert_clean("RunTask request", &shown, &values);
    for (name, _) in secrets {
        assert!(!shown.contains(&format!("\"{name}\"")), "{name} withheld: {shown}");
    }
    assert_clean_events(&events, &values);
    assert_clean_stderr(&w.plugin, &values);
    w.plugin.stop_task(&cfg.id, Duration::from_secs(10), "").unwrap();
}
