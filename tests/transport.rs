//! How the plugin reaches AWS: TLS trust (system store, `ca_file`, `AWS_CA_BUNDLE`, untrusted
//! certificates refused), proxies (`HTTPS_PROXY` with CONNECT, `HTTP_PROXY`, `NO_PROXY`), and
//! the endpoint conventions `AWS_ENDPOINT_URL_ECS` / `AWS_ENDPOINT_URL`. All on loopback: the
//! emulator serves HTTPS with a CA it makes at start.

mod support;

use std::path::PathBuf;

use nomad_driver_ecs::proto::driver::fingerprint_response::HealthState;
use nomad_driver_ecs::proto::driver::FingerprintResponse;
use support::connect_proxy::ConnectProxy;
use support::cty;
use support::emulator::{Emulator, REGION};
use support::host::{assert_health, closed_port, Launch, Plugin};
use support::TEST_POLL;

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ecs-transport-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn fingerprint(launch: &Launch, cluster: &str, endpoint: Option<&str>, extra: &[(&str, &str)]) -> FingerprintResponse {
    let p = Plugin::launch(launch);
    p.set_config(
        cty::plugin_config_with(
            Some(true),
            Some(cluster),
            Some(REGION),
            endpoint,
            Some(TEST_POLL),
            extra,
        ),
        true,
    )
    .expect("SetConfig");
    let fp = p.first_fingerprint();
    p.assert_hclog_stderr();
    fp
}

#[test]
fn https_endpoint_trusted_through_ca_file_or_aws_ca_bundle_and_refused_otherwise() {
    let dir = temp_dir("tls");
    let emu = Emulator::start_tls(&dir);
    emu.setup("tls-cluster");
    let ca = dir.join("ca.pem");
    let endpoint = emu.endpoint();
    assert!(endpoint.starts_with("https://"), "{endpoint}");

    let fp = fingerprint(
        &Launch::test_credentials(),
        "tls-cluster",
        Some(&endpoint),
        &[("ca_file", ca.to_str().unwrap())],
    );
    assert_health(&fp, HealthState::HEALTHY);

    let fp = fingerprint(
        &Launch::test_credentials().with_env("AWS_CA_BUNDLE", ca.to_str().unwrap()),
        "tls-cluster",
        Some(&endpoint),
        &[],
    );
    assert_health(&fp, HealthState::HEALTHY);

    // The system store does not know the test CA: the certificate is refused.
    let fp = fingerprint(&Launch::test_credentials(), "tls-cluster", Some(&endpoint), &[]);
    assert_health(&fp, HealthState::UNHEALTHY);
    let d = fp.health_description.to_ascii_lowercase();
    assert!(
        d.contains("tls") || d.contains("certificate"),
        "{}",
        fp.health_description
    );
    assert!(
        d.contains(&format!("127.0.0.1:{}", emu.port)),
        "{}",
        fp.health_description
    );
}

#[test]
fn a_ca_file_that_cannot_be_read_is_refused_at_set_config() {
    let p = Plugin::launch(&Launch::test_credentials());
    let e = p
        .set_config(
            cty::plugin_config_with(
                Some(true),
                Some("c"),
                Some(REGION),
                None,
                None,
                &[("ca_file", "/nonexistent/corp-ca.pem")],
            ),
            true,
        )
        .unwrap_err();
    assert!(
        e.message().contains("ca_file") && e.message().contains("/nonexistent/corp-ca.pem"),
        "{}",
        e.message()
    );
}

#[test]
fn https_proxy_tunnels_with_connect() {
    let dir = temp_dir("proxy-tls");
    let emu = Emulator::start_tls(&dir);
    emu.setup("proxy-tls");
    let proxy = ConnectProxy::start();
    let launch = Launch::test_credentials().with_env("HTTPS_PROXY", &proxy.url());
    let fp = fingerprint(
        &launch,
        "proxy-tls",
        Some(&emu.endpoint()),
        &[("ca_file", dir.join("ca.pem").to_str().unwrap())],
    );
    assert_health(&fp, HealthState::HEALTHY);
    let seen = proxy.seen();
    assert!(
        seen.iter()
            .any(|l| l == &format!("CONNECT 127.0.0.1:{} HTTP/1.1", emu.port)),
        "{seen:?}"
    );
}

#[test]
fn http_proxy_is_used_and_no_proxy_bypasses_it() {
    let emu = Emulator::start();
    emu.setup("proxy-http");
    let proxy = ConnectProxy::start();
    let fp = fingerprint(
        &Launch::test_credentials().with_env("http_proxy", &proxy.url()),
        "proxy-http",
        Some(&emu.endpoint()),
        &[],
    );
    assert_health(&fp, HealthState::HEALTHY);
    let seen = proxy.seen();
    assert!(
        seen.iter()
            .any(|l| l == &format!("POST http://127.0.0.1:{}/ HTTP/1.1", emu.port)),
        "{seen:?}"
    );

    // NO_PROXY: the proxy (a closed port here) is never tried.
    let closed = closed_port();
    let launch = Launch::test_credentials()
        .with_env("HTTP_PROXY", &format!("http://127.0.0.1:{closed}"))
        .with_env("NO_PROXY", "localhost,127.0.0.1");
    assert_health(
        &fingerprint(&launch, "proxy-http", Some(&emu.endpoint()), &[]),
        HealthState::HEALTHY,
    );
    // Without NO_PROXY the same closed proxy makes the endpoint unreachable.
    let launch = Launch::test_credentials().with_env("HTTP_PROXY", &format!("http://127.0.0.1:{closed}"));
    let fp = fingerprint(&launch, "proxy-http", Some(&emu.endpoint()), &[]);
    assert_health(&fp, HealthState::UNHEALTHY);
}

#[test]
fn endpoint_url_environment_conventions() {
    let emu = Emulator::start();
    emu.setup("env-endpoint");
    // No `endpoint` option: AWS_ENDPOINT_URL_ECS wins over AWS_ENDPOINT_URL.
    let closed = closed_port();
    let launch = Launch::test_credentials()
        .with_env("AWS_ENDPOINT_URL_ECS", &emu.endpoint())
        .with_env("AWS_ENDPOINT_URL", &format!("http://127.0.0.1:{closed}"));
    assert_health(&fingerprint(&launch, "env-endpoint", None, &[]), HealthState::HEALTHY);
    let launch = Launch::test_credentials().with_env("AWS_ENDPOINT_URL", &emu.endpoint());
    assert_health(&fingerprint(&launch, "env-endpoint", None, &[]), HealthState::HEALTHY);
    assert!(emu.call_count("DescribeClusters") >= 2);
}
