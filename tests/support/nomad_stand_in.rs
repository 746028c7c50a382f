//! A stand-in of Nomad's HTTP API (allocations, nodes, the agent) on loopback, with Nomad's
//! ACL behaviour (PROTOCOL.md §9) when started with a token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::http_server::{Request, TestServer};

#[derive(Debug, Clone)]
pub struct AllocSpec {
    pub id: String,
    pub namespace: String,
    pub job_id: String,
    pub task_group: String,
    pub index: u32,
    pub node_id: String,
    pub client_status: String,
    pub desired_status: String,
    pub migrate: bool,
}

#[derive(Default)]
struct State {
    /// Allocation, "answer 500", ModifyIndex.
    allocs: HashMap<String, (AllocSpec, bool, u64)>,
    nodes: HashMap<String, String>,
    index: u64,
}

pub struct NomadStandIn {
    server: TestServer,
    state: Arc<Mutex<State>>,
}

impl NomadStandIn {
    /// `token`: when Some, ACLs are on: a request with another token gets 403 "ACL token not
    /// found"; one without a token gets 404 for a missing allocation, 500 `Unknown allocation
    /// "<id>"` for an existing one, and 403 "Permission denied" from the other endpoints.
    pub fn start(token: Option<&str>) -> NomadStandIn {
        let state = Arc::new(Mutex::new(State::default()));
        let (shared, token) = (Arc::clone(&state), token.map(str::to_string));
        let server = TestServer::start(move |req| answer(&shared.lock().unwrap(), token.as_deref(), req));
        NomadStandIn { server, state }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Insert or replace an allocation.
    pub fn put_alloc(&self, a: AllocSpec) {
        let mut s = self.state.lock().unwrap();
        s.index += 1;
        let index = s.index;
        s.allocs.insert(a.id.clone(), (a, false, index));
    }

    fn update(&self, alloc_id: &str, f: impl FnOnce(&mut AllocSpec, &mut bool)) {
        let mut s = self.state.lock().unwrap();
        s.index += 1;
        let index = s.index;
        let entry = s
            .allocs
            .get_mut(alloc_id)
            .unwrap_or_else(|| panic!("no allocation {alloc_id}"));
        f(&mut entry.0, &mut entry.1);
        entry.2 = index;
    }

    pub fn set_client_status(&self, alloc_id: &str, status: &str) {
        self.update(alloc_id, |a, _| a.client_status = status.to_string());
    }

    /// `false` removes the DesiredTransition key entirely, like Nomad.
    pub fn set_migrate(&self, alloc_id: &str, migrate: bool) {
        self.update(alloc_id, |a, _| a.migrate = migrate);
    }

    pub fn set_desired_status(&self, alloc_id: &str, status: &str) {
        self.update(alloc_id, |a, _| a.desired_status = status.to_string());
    }

    /// Garbage-collected: 404 from now on.
    pub fn remove_alloc(&self, alloc_id: &str) {
        self.state.lock().unwrap().allocs.remove(alloc_id);
    }

    /// Answer 500 for this allocation (an unreadable one).
    pub fn fail_alloc(&self, alloc_id: &str, on: bool) {
        self.update(alloc_id, |_, failing| *failing = on);
    }

    pub fn set_node(&self, node_id: &str, status: &str) {
        self.state
            .lock()
            .unwrap()
            .nodes
            .insert(node_id.to_string(), status.to_string());
    }

    pub fn requests(&self) -> Vec<Request> {
        self.server.requests()
    }

    /// How many GET /v1/allocation/<id> requests were made (any id).
    pub fn alloc_reads(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.starts_with("/v1/allocation/"))
            .count()
    }
}

fn answer(s: &State, token: Option<&str>, req: &Request) -> (u16, String) {
    let sent = req
        .headers
        .get("x-nomad-token")
        .map(String::as_str)
        .filter(|t| !t.is_empty());
    let anonymous = match (token, sent) {
        (None, _) => false,
        (Some(want), Some(got)) if want == got => false,
        (Some(_), Some(_)) => return (403, "ACL token not found".into()),
        (Some(_), None) => true,
    };
    let path = req.path.split('?').next().unwrap_or_default();
    let denied = (403, "Permission denied".to_string());
    if req.method != "GET" {
        return (404, "404 page not found".into());
    }
    if let Some(id) = path.strip_prefix("/v1/allocation/").map(decode) {
        return match s.allocs.get(&id) {
            None => (404, "alloc not found".into()),
            Some(_) if anonymous => (500, format!("Unknown allocation \"{id}\"")),
            Some((_, true, _)) => (500, "rpc error: stand-in: allocation unreadable".into()),
            Some((a, false, modify)) => (200, alloc_json(a, *modify)),
        };
    }
    if let Some(id) = path.strip_prefix("/v1/node/").map(decode) {
        return match s.nodes.get(&id) {
            _ if anonymous => denied,
            None => (404, "node not found".into()),
            Some(status) => {
                let node = json!({"ID": id, "Name": format!("node-{id}"), "Status": status,
                    "Drain": false, "SchedulingEligibility": "eligible"});
                (200, node.to_string())
            }
        };
    }
    match path {
        "/v1/agent/self" if anonymous => denied,
        // Real Nomad's version.VersionInfo field names.
        "/v1/agent/self" => (
            200,
            json!({"config": {"Version": {"Revision": "stand-in", "Version": "1.10.3",
                    "VersionPrerelease": "", "VersionMetadata": ""}},
                "member": {"Name": "stand-in.global", "Addr": "127.0.0.1", "Port": 4648, "Status": "alive"}})
            .to_string(),
        ),
        _ => (404, "404 page not found".into()),
    }
}

fn alloc_json(a: &AllocSpec, modify_index: u64) -> String {
    let mut v = json!({
        "ID": a.id, "Namespace": a.namespace, "EvalID": format!("eval-{}", a.id),
        "Name": format!("{}.{}[{}]", a.job_id, a.task_group, a.index),
        "NodeID": a.node_id, "JobID": a.job_id, "TaskGroup": a.task_group,
        "DesiredStatus": a.desired_status, "ClientStatus": a.client_status,
        "CreateIndex": 1, "ModifyIndex": modify_index, "TaskStates": {},
    });
    if a.migrate {
        v["DesiredTransition"] = json!({"Migrate": true, "Reschedule": null, "ForceReschedule": null});
    }
    v.to_string()
}

/// Percent-decoding of a path segment.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let (mut out, mut i) = (Vec::new(), 0);
    while i < b.len() {
        let hex = (b[i] == b'%').then(|| s.get(i + 1..i + 3)).flatten();
        if let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            out.push(byte);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
