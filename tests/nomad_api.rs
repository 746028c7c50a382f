//! The Nomad HTTP API client against the stand-in of Nomad's API (ACLs on): allocations found,
//! gone or unreadable, nodes, the agent's version, wrong or missing tokens, a rotated token
//! file, and an agent that is not there.

mod support;

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use nomad_driver_ecs::nomad_api::{ApiErrorKind, ApiSettings, NomadApi};
use support::nomad_stand_in::{AllocSpec, NomadStandIn};

const TOKEN: &str = "0b5e3e94-0a6f-4bd9-a3d4-token-secret";
const ALLOC: &str = "5456bd7a-9fc0-c0dd-6131-cbee77f57577";

fn client(url: &str, token: Option<&str>, token_file: Option<PathBuf>) -> NomadApi {
    let settings = ApiSettings::resolve(
        Some(url.to_string()),
        token.map(str::to_string),
        token_file,
        None,
        Duration::from_secs(5),
        &|_| None,
    );
    NomadApi::new(settings).expect("client")
}

fn spec(id: &str, migrate: bool) -> AllocSpec {
    AllocSpec {
        id: id.to_string(),
        namespace: "default".into(),
        job_id: "web".into(),
        task_group: "app".into(),
        index: 2,
        node_id: "node-1".into(),
        client_status: "running".into(),
        desired_status: "run".into(),
        migrate,
        previous: String::new(),
    }
}

#[test]
fn allocations_with_a_token() {
    let nomad = NomadStandIn::start(Some(TOKEN));
    nomad.put_alloc(spec(ALLOC, false));
    let api = client(&nomad.url(), Some(TOKEN), None);

    let a = api.allocation(ALLOC).unwrap().expect("found");
    assert_eq!(a.id, ALLOC);
    assert_eq!(a.name, "web.app[2]");
    assert_eq!(
        (a.namespace.as_str(), a.job_id.as_str(), a.task_group.as_str()),
        ("default", "web", "app")
    );
    assert_eq!(
        (a.client_status.as_str(), a.desired_status.as_str()),
        ("running", "run")
    );
    assert_eq!(a.node_id, "node-1");
    assert!(!a.migrate);
    assert!(!a.is_client_terminal());
    let req = nomad.requests().pop().unwrap();
    assert_eq!(req.headers.get("x-nomad-token").map(String::as_str), Some(TOKEN));
    assert_eq!(req.path, format!("/v1/allocation/{ALLOC}"));

    nomad.set_migrate(ALLOC, true);
    nomad.set_desired_status(ALLOC, "stop");
    let a = api.allocation(ALLOC).unwrap().expect("found");
    assert!(a.migrate);
    assert_eq!(a.desired_status, "stop");
    nomad.set_migrate(ALLOC, false);
    nomad.set_client_status(ALLOC, "complete");
    let a = api.allocation(ALLOC).unwrap().expect("found");
    assert!(!a.migrate);
    assert!(a.is_client_terminal());

    // Unreadable: 500 is "cannot tell", never "gone".
    nomad.fail_alloc(ALLOC, true);
    let e = api.allocation(ALLOC).unwrap_err();
    assert_eq!(e.kind, ApiErrorKind::Server, "{e}");
    assert!(e.to_string().contains("HTTP 500"), "{e}");
    nomad.fail_alloc(ALLOC, false);

    // Garbage-collected, or never existed.
    nomad.remove_alloc(ALLOC);
    assert_eq!(api.allocation(ALLOC).unwrap(), None);
    assert_eq!(api.allocation("00000000-0000-0000-0000-000000000000").unwrap(), None);
    assert_eq!(nomad.alloc_reads(), 6);

    // An id cannot change the path: '/' and '?' are encoded (and this one exists).
    let odd = "a/b?c";
    nomad.put_alloc(spec(odd, false));
    assert_eq!(api.allocation(odd).unwrap().expect("found").id, odd);
    assert_eq!(nomad.requests().pop().unwrap().path, "/v1/allocation/a%2Fb%3Fc");
}

#[test]
fn wrong_and_missing_tokens() {
    let nomad = NomadStandIn::start(Some(TOKEN));
    nomad.put_alloc(spec(ALLOC, false));
    nomad.set_node("node-1", "ready");

    let wrong = "ffffffff-wrong-token-secret";
    let api = client(&nomad.url(), Some(wrong), None);
    for e in [
        api.allocation(ALLOC).unwrap_err(),
        api.node("node-1").unwrap_err(),
        api.agent_self().unwrap_err(),
    ] {
        assert_eq!(e.kind, ApiErrorKind::Denied, "{e}");
        assert!(e.to_string().contains("ACL token not found"), "{e}");
        assert!(!e.to_string().contains(wrong), "{e}");
    }

    // No token against ACLs: a missing allocation is 404, an existing one 500.
    let api = client(&nomad.url(), None, None);
    assert_eq!(api.allocation("00000000-0000-0000-0000-000000000000").unwrap(), None);
    let e = api.allocation(ALLOC).unwrap_err();
    assert_eq!(e.kind, ApiErrorKind::Server, "{e}");
    assert!(e.to_string().contains("Unknown allocation"), "{e}");
    let e = api.node("node-1").unwrap_err();
    assert_eq!(e.kind, ApiErrorKind::Denied, "{e}");
    assert!(e.to_string().contains("no token was sent"), "{e}");
    // Reachable, but not allowed to read the agent (or the node list).
    assert_eq!(api.agent_self().unwrap(), Default::default());
    assert_eq!(api.nodes_with_driver("ecs").unwrap_err().kind, ApiErrorKind::Denied);
    assert!(nomad
        .requests()
        .iter()
        .all(|r| !r.headers.contains_key("x-nomad-token") || r.headers["x-nomad-token"] == wrong));
}

#[test]
fn nodes_and_agent() {
    let nomad = NomadStandIn::start(Some(TOKEN));
    nomad.set_node("node-1", "ready");
    let api = client(&format!("{}/", nomad.url()), Some(TOKEN), None);
    assert_eq!(api.address(), nomad.url());

    let n = api.node("node-1").unwrap().expect("found");
    assert_eq!((n.id.as_str(), n.status.as_str()), ("node-1", "ready"));
    nomad.set_node("node-1", "down");
    assert_eq!(api.node("node-1").unwrap().unwrap().status, "down");
    assert_eq!(api.node("node-2").unwrap(), None);
    // A server agent names no node; a client agent names its own.
    let me = api.agent_self().unwrap();
    assert_eq!(me.version.as_deref(), Some("1.10.3"));
    assert_eq!(me.region.as_deref(), Some("global"));
    assert_eq!(me.node_id, None);
    let agent = client(&nomad.agent_url("node-7"), Some(TOKEN), None);
    assert_eq!(agent.agent_self().unwrap().node_id.as_deref(), Some("node-7"));

    // The node list, filtered by Nomad to the nodes whose ecs driver is detected, with the
    // driver's attributes as the client stored them.
    let mut fp = nomad_driver_ecs::proto::driver::FingerprintResponse::new();
    fp.health = nomad_driver_ecs::proto::driver::fingerprint_response::HealthState::HEALTHY.into();
    let mut attr = nomad_driver_ecs::proto::attribute::Attribute::new();
    attr.set_string_val("scope-1".into());
    fp.attributes.insert("driver.ecs.sweep_scope".into(), attr);
    nomad.register_fingerprint("node-7", "ecs", &fp);
    let nodes = api.nodes_with_driver("ecs").unwrap();
    assert_eq!(nodes.len(), 1, "node-1 has no ecs driver: {nodes:?}");
    let driver = nodes[0].driver.as_ref().expect("Drivers.ecs");
    assert_eq!((nodes[0].id.as_str(), nodes[0].status.as_str()), ("node-7", "ready"));
    assert!(driver.detected && driver.healthy);
    assert_eq!(driver.attributes["driver.ecs.sweep_scope"], "scope-1");
    assert!(nomad
        .requests()
        .iter()
        .any(|r| r.path == "/v1/nodes?filter=Drivers.ecs.Detected%20%3D%3D%20true"));

    // Without ACLs, no token is needed (and none is sent).
    let open = NomadStandIn::start(None);
    open.put_alloc(spec(ALLOC, true));
    let api = client(&open.url(), None, None);
    assert!(api.allocation(ALLOC).unwrap().expect("found").migrate);
    assert_eq!(api.agent_self().unwrap().version.as_deref(), Some("1.10.3"));
    assert!(open.requests().iter().all(|r| !r.headers.contains_key("x-nomad-token")));
}

#[test]
fn a_closed_port_is_unreachable() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let api = client(&format!("http://127.0.0.1:{port}"), Some(TOKEN), None);
    for e in [api.allocation(ALLOC).unwrap_err(), api.agent_self().unwrap_err()] {
        assert_eq!(e.kind, ApiErrorKind::Unreachable, "{e}");
        assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
        assert!(!e.to_string().contains(TOKEN), "{e}");
    }
}

#[test]
fn a_rotated_token_file_is_read_at_each_request() {
    let nomad = NomadStandIn::start(Some(TOKEN));
    nomad.put_alloc(spec(ALLOC, false));
    let dir = std::env::temp_dir().join(format!("nomad-api-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    std::fs::write(&file, "old-token-secret\n").unwrap();
    let api = client(&nomad.url(), None, Some(file.clone()));

    let e = api.allocation(ALLOC).unwrap_err();
    assert_eq!(e.kind, ApiErrorKind::Denied, "{e}");
    assert!(!e.to_string().contains("old-token-secret"), "{e}");

    std::fs::write(&file, format!("  {TOKEN}\n")).unwrap();
    assert!(api.allocation(ALLOC).unwrap().is_some());
    let tokens: Vec<String> = nomad
        .requests()
        .iter()
        .map(|r| r.headers["x-nomad-token"].clone())
        .collect();
    assert_eq!(tokens, ["old-token-secret", TOKEN]);

    std::fs::remove_file(&file).unwrap();
    let e = api.allocation(ALLOC).unwrap_err();
    assert_eq!(e.kind, ApiErrorKind::Config, "{e}");
    assert!(e.to_string().contains("nomad_token_file"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
