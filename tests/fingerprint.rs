//! Fingerprint health as an operator sees it, and SigV4 signing checked by the emulator.

mod support;

use std::sync::Arc;

use nomad_driver_ecs::aws::credentials::{Credentials, StaticCredentials};
use nomad_driver_ecs::aws::http::{HttpConfig, JsonClient};

use nomad_driver_ecs::proto::driver::fingerprint_response::HealthState;
use support::cty;
use support::emulator::{Emulator, REGION};
use support::host::{assert_health, attr_str, Launch, Plugin};

/// A plugin launched with `launch` and configured with a plugin stanza (as the agent's
/// long-lived instance is).
fn configured(
    launch: &Launch,
    enabled: Option<bool>,
    cluster: Option<&str>,
    region: Option<&str>,
    endpoint: Option<&str>,
    poll: Option<&str>,
) -> Plugin {
    let p = Plugin::launch(launch);
    p.set_config(cty::plugin_config(enabled, cluster, region, endpoint, poll), true)
        .expect("SetConfig");
    p
}

#[test]
fn healthy_with_attributes_when_the_cluster_is_active() {
    let emu = Emulator::start();
    emu.setup("fp-active");
    let p = configured(
        &Launch::test_credentials(),
        Some(true),
        Some("fp-active"),
        Some(REGION),
        Some(&emu.endpoint()),
        None,
    );
    let fp = p.first_fingerprint();
    assert_health(&fp, HealthState::HEALTHY);
    assert!(fp.attributes["driver.ecs"].bool_val());
    assert_eq!(attr_str(&fp, "driver.ecs.cluster").as_deref(), Some("fp-active"));
    assert_eq!(attr_str(&fp, "driver.ecs.region").as_deref(), Some(REGION));
    assert_eq!(
        attr_str(&fp, "driver.ecs.version").as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert!(emu.call_count("DescribeClusters") >= 1);
    p.assert_hclog_stderr();
}

#[test]
fn disabled_is_undetected() {
    let p = configured(
        &Launch::test_credentials(),
        Some(false),
        Some("x"),
        Some(REGION),
        Some("http://127.0.0.1:9"),
        None,
    );
    let fp = p.first_fingerprint();
    assert_health(&fp, HealthState::UNDETECTED);
    assert!(
        fp.health_description.contains("enabled = true"),
        "{}",
        fp.health_description
    );
}

#[test]
fn missing_or_inactive_cluster_is_unhealthy_and_says_so() {
    let emu = Emulator::start();
    emu.setup("fp-exists");
    let p = configured(
        &Launch::test_credentials(),
        Some(true),
        Some("fp-missing"),
        Some(REGION),
        Some(&emu.endpoint()),
        None,
    );
    let fp = p.first_fingerprint();
    assert_health(&fp, HealthState::UNHEALTHY);
    assert!(
        fp.health_description.contains("fp-missing") && fp.health_description.contains("not found"),
        "{}",
        fp.health_description
    );

    // A deleted cluster stays visible as INACTIVE: unhealthy, saying so.
    let creds = StaticCredentials(Credentials::new("AKIDTEST", "test", None, None, "test"));
    let ecs = JsonClient::new(
        &emu.endpoint(),
        REGION,
        "ecs",
        "AmazonEC2ContainerServiceV20141113",
        Arc::new(creds),
        &HttpConfig::default(),
    )
    .unwrap();
    ecs.call("DeleteCluster", &serde_json::json!({"cluster": "fp-exists"}))
        .unwrap();
    let p = configured(
        &Launch::test_credentials(),
        Some(true),
        Some("fp-exists"),
        Some(REGION),
        Some(&emu.endpoint()),
        None,
    );
    let fp = p.first_fingerprint();
    assert_health(&fp, HealthState::UNHEALTHY);
    assert!(fp.health_description.contains("INACTIVE"), "{}", fp.health_description);
}

#[test]
fn no_region_and_unreachable_endpoint_are_unhealthy_with_advice() {
    let p = configured(
        &Launch::test_credentials(),
        Some(true),
        Some("c"),
        None,
        Some("http://127.0.0.1:9"),
        None,
    );
    let fp = p.first_fingerprint();
    assert_health(&fp, HealthState::UNHEALTHY);
    assert!(fp.health_description.contains("region"), "{}", fp.health_description);

    let p = Plugin::launch(&Launch::test_credentials());
    // Port 9 (discard) on loopback: nothing listens there.
    p.set_config(
        cty::plugin_config(Some(true), Some("c"), Some(REGION), Some("http://127.0.0.1:9"), None),
        true,
    )
    .unwrap();
    let fp = p.first_fingerprint();
    assert_health(&fp, HealthState::UNHEALTHY);
    assert!(
        fp.health_description.contains("127.0.0.1:9"),
        "{}",
        fp.health_description
    );
}

#[test]
fn missing_credentials_are_unhealthy() {
    let emu = Emulator::start();
    emu.setup("fp-nocreds");
    let p = configured(
        &Launch::default(),
        Some(true),
        Some("fp-nocreds"),
        Some(REGION),
        Some(&emu.endpoint()),
        None,
    );
    let fp = p.first_fingerprint();
    assert_health(&fp, HealthState::UNHEALTHY);
    assert!(
        fp.health_description.contains("AWS_ACCESS_KEY_ID"),
        "{}",
        fp.health_description
    );
}

#[test]
fn signatures_are_checked_for_real_and_secrets_never_leak() {
    let emu = Emulator::start_auth();
    emu.setup("fp-auth");
    let (key, secret) = emu.auth_user();

    // The right key: healthy (moto recomputed our SigV4 signature).
    let good = configured(
        &Launch::default()
            .with_env("AWS_ACCESS_KEY_ID", &key)
            .with_env("AWS_SECRET_ACCESS_KEY", &secret),
        Some(true),
        Some("fp-auth"),
        Some(REGION),
        Some(&emu.endpoint()),
        None,
    );
    let fp = good.first_fingerprint();
    assert_health(&fp, HealthState::HEALTHY);

    // The right key id with a wrong secret: unhealthy, naming the signature problem.
    let wrong_secret = format!("{}WRONG", &secret[..secret.len() - 5]);
    let bad = configured(
        &Launch::default()
            .with_env("AWS_ACCESS_KEY_ID", &key)
            .with_env("AWS_SECRET_ACCESS_KEY", &wrong_secret),
        Some(true),
        Some("fp-auth"),
        Some(REGION),
        Some(&emu.endpoint()),
        None,
    );
    let fp = bad.first_fingerprint();
    assert_health(&fp, HealthState::UNHEALTHY);
    assert!(fp.health_description.contains("Signature"), "{}", fp.health_description);
    let all_output = format!(
        "{}\n{:?}\n{}",
        fp.health_description,
        fp.attributes,
        bad.stderr_lines().join("\n")
    );
    for s in [&wrong_secret, &secret, &"session-token-must-not-leak".to_string()] {
        assert!(!all_output.contains(s.as_str()), "a secret reached the output");
    }
    bad.assert_hclog_stderr();
    let lines = bad.kill();
    assert!(!lines.join("\n").contains(&wrong_secret));

    // A session token is a secret too: whatever AWS answers, it never shows.
    let token = "session-token-must-not-leak";
    let with_token = configured(
        &Launch::default()
            .with_env("AWS_ACCESS_KEY_ID", &key)
            .with_env("AWS_SECRET_ACCESS_KEY", &wrong_secret)
            .with_env("AWS_SESSION_TOKEN", token),
        Some(true),
        Some("fp-auth"),
        Some(REGION),
        Some(&emu.endpoint()),
        None,
    );
    let fp = with_token.first_fingerprint();
    assert_health(&fp, HealthState::UNHEALTHY);
    let out = format!("{}\n{}", fp.health_description, with_token.kill().join("\n"));
    if std::env::var_os("SHOW").is_some() {
        eprintln!("{out}");
    }
    assert!(
        !out.contains(token) && !out.contains(&wrong_secret),
        "a secret reached the output"
    );
}

#[test]
fn credentials_from_a_profile_and_region_from_the_environment() {
    let emu = Emulator::start_auth();
    emu.setup("fp-profile");
    let (key, secret) = emu.auth_user();
    let dir = std::env::temp_dir().join(format!("ecs-fp-profile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let creds = dir.join("credentials");
    std::fs::write(
        &creds,
        format!("[default]\naws_access_key_id = AKIDWRONGWRONG\naws_secret_access_key = wrong\n\n[nomad]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n"),
    )
    .unwrap();
    let p = Plugin::launch(
        &Launch::default()
            .with_env("AWS_SHARED_CREDENTIALS_FILE", creds.to_str().unwrap())
            .with_env("AWS_CONFIG_FILE", dir.join("config").to_str().unwrap())
            .with_env("AWS_PROFILE", "nomad")
            .with_env("AWS_REGION", REGION),
    );
    // No region in the plugin block: AWS_REGION applies.
    p.set_config(
        cty::plugin_config(Some(true), Some("fp-profile"), None, Some(&emu.endpoint()), None),
        true,
    )
    .unwrap();
    let fp = p.first_fingerprint();
    assert_health(&fp, HealthState::HEALTHY);
    assert_eq!(attr_str(&fp, "driver.ecs.region").as_deref(), Some(REGION));
    let out = format!("{}\n{}", fp.health_description, p.kill().join("\n"));
    assert!(!out.contains(&secret));
    let _ = std::fs::remove_dir_all(&dir);
}
