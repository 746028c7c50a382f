//! The task's address for Nomad services: StartTask waits for the ENI's private IPv4 address
//! and returns it as the DriverNetwork (network_override) with the task definition's ports;
//! InspectTask reports it too, also after a plugin restart.

mod support;

use std::time::Duration;

use serde_json::json;
use support::cty;
use support::emulator::REGION;
use support::host::{self, wait_event, Launch, Plugin};
use support::{World, TEST_POLL, WAIT};

fn world_with_ports(cluster: &str) -> World {
    let w = World::new(cluster);
    w.emu
        .setup_with(json!({"region": REGION, "cluster": cluster, "containers": [
        {"name": "web", "essential": true, "portMappings": [
            {"containerPort": 8080, "protocol": "tcp", "name": "http"},
            {"containerPort": 9100, "protocol": "tcp"}]}]}));
    w
}

fn ip_of(w: &World, arn: &str) -> String {
    w.emu
        .tasks(&w.cluster)
        .into_iter()
        .find(|t| t["arn"] == arn)
        .and_then(|t| t["private_ipv4"].as_str().map(str::to_string))
        .expect("the emulator gave the task an address")
}

#[test]
fn start_waits_for_the_eni_address_and_returns_it_with_the_ports() {
    let w = world_with_ports("net-wait");
    // The ENI gets its address only on the third DescribeTasks answer.
    w.emu.post("/_test/eni-delay", json!({"describe_tasks": 2}));
    let cfg = host::task_config("eeeeeeee-0000-4000-8000-000000000001", "web", "a1b2c3d4", w.stanza());
    let resp = w.plugin.start_task(&cfg).expect("StartTask");
    let arn = w.emu.tasks("net-wait")[0]["arn"].as_str().unwrap().to_string();
    let net = resp.network_override.as_ref().expect("a network override");
    assert_eq!(net.addr, ip_of(&w, &arn));
    assert_eq!(net.port_map.get("http"), Some(&8080));
    assert_eq!(
        net.port_map.get("9100"),
        Some(&9100),
        "an unnamed mapping is labelled by its port"
    );
    assert!(net.auto_advertise);
    assert!(w.emu.call_count("DescribeTasks") >= 3, "it waited for the address");

    let insp = w.plugin.inspect_task(&cfg.id).unwrap();
    assert_eq!(
        insp.network_override.as_ref().map(|n| n.addr.clone()),
        Some(net.addr.clone())
    );

    // After a plugin restart, RecoverTask from the persisted handle alone brings it back.
    let handle = resp.handle.clone().unwrap();
    let mut persisted = handle.clone();
    persisted.config.as_mut().unwrap().msgpack_driver_config.clear();
    let p = Plugin::launch(&Launch::test_credentials());
    p.set_config(
        cty::plugin_config(
            Some(true),
            Some("net-wait"),
            Some(REGION),
            Some(&w.emu.endpoint()),
            Some(TEST_POLL),
        ),
        true,
    )
    .unwrap();
    p.recover_task(&persisted).unwrap();
    let insp = p.inspect_task(&cfg.id).unwrap();
    let net2 = insp.network_override.as_ref().expect("network after recovery");
    assert_eq!(net2.addr, net.addr);
    assert_eq!(net2.port_map.get("http"), Some(&8080));
    p.stop_task(&cfg.id, Duration::from_secs(10), "").unwrap();
}

#[test]
fn no_address_in_time_starts_the_task_without_one_and_says_so() {
    let w = world_with_ports("net-late");
    w.plugin
        .set_config(
            cty::plugin_config_with(
                Some(true),
                Some("net-late"),
                Some(REGION),
                Some(&w.emu.endpoint()),
                Some(TEST_POLL),
                &[("address_timeout", "1s")],
            ),
            true,
        )
        .unwrap();
    w.emu.post("/_test/eni-delay", json!({"describe_tasks": 1000}));
    let events = w.plugin.task_events();
    let cfg = host::task_config("eeeeeeee-0000-4000-8000-000000000002", "web", "a1b2c3d4", w.stanza());
    let resp = w.plugin.start_task(&cfg).expect("StartTask still succeeds");
    assert!(resp.network_override.is_none());
    let ev = wait_event(&events, "no private IPv4 address", WAIT);
    assert!(ev.message.contains("address_timeout"), "{}", ev.message);
    w.plugin.stop_task(&cfg.id, Duration::from_secs(10), "").unwrap();
}

#[test]
fn tasks_without_an_eni_get_no_network_override() {
    let w = World::new("net-none");
    // A bridge/host-mode task (EC2) has no ENI attachment: nothing to wait for, no override.
    let arn = "arn:aws:ecs:us-east-1:123456789012:task/net-none/0123456789abcdef0123456789abcdef";
    w.emu
        .fault(json!({"operation": "RunTask", "count": 1, "body": {"tasks": [
        {"taskArn": arn, "lastStatus": "PENDING", "desiredStatus": "RUNNING", "containers": [], "attachments": []}],
        "failures": []}}));
    let cfg = host::task_config("eeeeeeee-0000-4000-8000-000000000003", "web", "a1b2c3d4", w.stanza());
    let resp = w.plugin.start_task(&cfg).unwrap();
    assert!(resp.network_override.is_none());
    assert!(w.plugin.inspect_task(&cfg.id).unwrap().network_override.is_none());
}
