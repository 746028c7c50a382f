//! A stand-in of one Nomad cluster's HTTP API (allocations, nodes, agents) on loopback, with
//! Nomad's ACL behaviour (PROTOCOL.md §9) when started with a token.
//!
//! Each Nomad client has an agent of its own (`agent_url(node)`): `/v1/agent/self` answers
//! with that node's id, every other path with the cluster's shared state, as a client agent
//! forwards them to the servers. Nodes carry the ecs driver's fingerprint as the Nomad client
//! stores it ([`NomadStandIn::register_fingerprint`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use nomad_driver_ecs::proto::driver::fingerprint_response::HealthState;
use nomad_driver_ecs::proto::driver::FingerprintResponse;

use super::http_server::{Request, TestServer};

#[derive(Debug, Clone, Default)]
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
    /// `PreviousAllocation`: the allocation this one replaces ("" for none).
    pub previous: String,
}

#[derive(Debug, Clone)]
struct NodeState {
    status: String,
    /// A drain is under way (the node has a `DrainStrategy`).
    draining: bool,
    /// `Drivers`: name → DriverInfo as JSON.
    drivers: BTreeMap<String, Value>,
}

#[derive(Default)]
struct State {
    /// Allocation, "answer 500", ModifyIndex.
    allocs: HashMap<String, (AllocSpec, bool, u64)>,
    nodes: BTreeMap<String, NodeState>,
    index: u64,
    /// `Job.Type` by allocation (service when absent).
    job_types: HashMap<String, String>,
}

pub struct NomadStandIn {
    region: String,
    token: Option<String>,
    state: Arc<Mutex<State>>,
    /// The cluster-wide endpoint, then one agent per node.
    servers: Mutex<Vec<TestServer>>,
    agents: Mutex<HashMap<String, String>>,
}

impl NomadStandIn {
    /// `token`: when Some, ACLs are on: a request with another token gets 403 "ACL token not
    /// found"; one without a token gets 404 for a missing allocation, 500 `Unknown allocation
    /// "<id>"` for an existing one, and 403 "Permission denied" from the other endpoints.
    /// The region is Nomad's default, "global".
    pub fn start(token: Option<&str>) -> NomadStandIn {
        NomadStandIn::start_in_region(token, "global")
    }

    pub fn start_in_region(token: Option<&str>, region: &str) -> NomadStandIn {
        let stand_in = NomadStandIn {
            region: region.to_string(),
            token: token.map(str::to_string),
            state: Arc::new(Mutex::new(State::default())),
            servers: Mutex::new(Vec::new()),
            agents: Mutex::new(HashMap::new()),
        };
        let server = stand_in.serve(None);
        stand_in.servers.lock().unwrap().push(server);
        stand_in
    }

    fn serve(&self, node: Option<String>) -> TestServer {
        let (shared, token, region) = (Arc::clone(&self.state), self.token.clone(), self.region.clone());
        TestServer::start(move |req| answer(&shared.lock().unwrap(), token.as_deref(), &region, node.as_deref(), req))
    }

    /// The cluster's address (a server agent: its `/v1/agent/self` names no node).
    pub fn url(&self) -> String {
        self.servers.lock().unwrap()[0].url()
    }

    /// The address of node `node_id`'s client agent (made on first use; the node is
    /// registered, `ready`, without drivers).
    pub fn agent_url(&self, node_id: &str) -> String {
        if let Some(u) = self.agents.lock().unwrap().get(node_id) {
            return u.clone();
        }
        self.state
            .lock()
            .unwrap()
            .nodes
            .entry(node_id.to_string())
            .or_insert_with(|| NodeState {
                status: "ready".into(),
                draining: false,
                drivers: BTreeMap::new(),
            });
        let server = self.serve(Some(node_id.to_string()));
        let url = server.url();
        self.servers.lock().unwrap().push(server);
        self.agents.lock().unwrap().insert(node_id.to_string(), url.clone());
        url
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

    /// A node's status (ready, down, …); the node is made if it does not exist.
    pub fn set_node(&self, node_id: &str, status: &str) {
        let mut s = self.state.lock().unwrap();
        let node = s.nodes.entry(node_id.to_string()).or_insert_with(|| NodeState {
            status: status.to_string(),
            draining: false,
            drivers: BTreeMap::new(),
        });
        node.status = status.to_string();
    }

    /// A node drain as Nomad runs it: `nomad node drain -enable` gives the node a
    /// `DrainStrategy` (nomad/node_endpoint.go UpdateDrain, v1.10.0), and the drainer marks the
    /// node's allocations `DesiredTransition.Migrate` (nomad/drainer/drainer.go, v1.10.0; system
    /// jobs' allocations are stopped at the end instead, draining_node.go). This marks the
    /// given allocation and its node.
    pub fn drain(&self, alloc_id: &str) {
        let mut s = self.state.lock().unwrap();
        let node_id = match s.allocs.get(alloc_id) {
            Some((a, _, _)) => a.node_id.clone(),
            None => panic!("stand-in: drain of unknown allocation {alloc_id}"),
        };
        s.nodes
            .entry(node_id)
            .or_insert_with(|| NodeState {
                status: "ready".into(),
                draining: false,
                drivers: BTreeMap::new(),
            })
            .draining = true;
        drop(s);
        self.set_migrate(alloc_id, true);
    }

    /// `nomad alloc stop` (and `nomad job restart -reschedule`, which calls it): the
    /// allocation gets `DesiredTransition.Migrate` and an eval, its node is not drained
    /// (nomad/alloc_endpoint.go Stop, v1.10.0).
    pub fn stop_alloc(&self, alloc_id: &str) {
        self.set_migrate(alloc_id, true);
    }

    /// The type of the allocation's job (`Job.Type`: service unless set).
    pub fn set_job_type(&self, alloc_id: &str, job_type: &str) {
        self.state
            .lock()
            .unwrap()
            .job_types
            .insert(alloc_id.to_string(), job_type.to_string());
    }

    /// What a Nomad client does with a driver plugin's fingerprint: the driver manager turns
    /// it into a `DriverInfo` (attributes as `Attribute.GoString()`, Detected unless
    /// UNDETECTED, Healthy when HEALTHY: client/pluginmanager/drivermanager/instance.go
    /// `handleFingerprint` at v1.10.0) and the node updater stores it under `Drivers.<name>`
    /// (client/node_updater.go `applyNodeUpdatesFromDriver`).
    pub fn register_fingerprint(&self, node_id: &str, driver: &str, fp: &FingerprintResponse) {
        let attributes: BTreeMap<String, String> =
            fp.attributes.iter().map(|(k, a)| (k.clone(), go_string(a))).collect();
        let health = fp.health.enum_value_or_default();
        let info = json!({
            "Attributes": attributes,
            "Detected": health != HealthState::UNDETECTED,
            "Healthy": health == HealthState::HEALTHY,
            "HealthDescription": fp.health_description,
            "UpdateTime": "2026-12-04T00:00:00Z",
        });
        let mut s = self.state.lock().unwrap();
        let node = s.nodes.entry(node_id.to_string()).or_insert_with(|| NodeState {
            status: "ready".into(),
            draining: false,
            drivers: BTreeMap::new(),
        });
        node.drivers.insert(driver.to_string(), info);
    }

    /// Every request any of this cluster's agents received.
    pub fn requests(&self) -> Vec<Request> {
        self.servers.lock().unwrap().iter().flat_map(|s| s.requests()).collect()
    }

    /// How many GET /v1/allocation/<id> requests were made (any id).
    pub fn alloc_reads(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.starts_with("/v1/allocation/"))
            .count()
    }

    /// How many GET /v1/nodes requests were made.
    pub fn node_list_reads(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.split('?').next() == Some("/v1/nodes"))
            .count()
    }
}

/// `structs.Attribute.GoString()`: the value as Go prints it, then the unit.
fn go_string(a: &nomad_driver_ecs::proto::attribute::Attribute) -> String {
    use nomad_driver_ecs::proto::attribute::attribute::Value as V;
    let value = match &a.value {
        Some(V::FloatVal(f)) => format!("{f}"),
        Some(V::IntVal(i)) => i.to_string(),
        Some(V::BoolVal(b)) => b.to_string(),
        Some(V::StringVal(s)) => s.clone(),
        _ => String::new(),
    };
    format!("{value}{}", a.unit)
}

fn answer(s: &State, token: Option<&str>, region: &str, node: Option<&str>, req: &Request) -> (u16, String) {
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
    let (path, query) = req.path.split_once('?').unwrap_or((req.path.as_str(), ""));
    let denied = (403, "Permission denied".to_string());
    if req.method != "GET" {
        return (404, "404 page not found".into());
    }
    if let Some(id) = path.strip_prefix("/v1/allocation/").map(decode) {
        return match s.allocs.get(&id) {
            None => (404, "alloc not found".into()),
            Some(_) if anonymous => (500, format!("Unknown allocation \"{id}\"")),
            Some((_, true, _)) => (500, "rpc error: stand-in: allocation unreadable".into()),
            Some((a, false, modify)) => {
                let job_type = s.job_types.get(&id).map_or("service", String::as_str);
                (200, alloc_json(a, *modify, job_type))
            }
        };
    }
    if let Some(id) = path.strip_prefix("/v1/node/").map(decode) {
        return match s.nodes.get(&id) {
            _ if anonymous => denied,
            None => (404, "node not found".into()),
            Some(n) => {
                let drain = n
                    .draining
                    .then(|| json!({"Deadline": 3_600_000_000_000_i64, "IgnoreSystemJobs": false, "ForceDeadline": "0001-01-01T00:00:00Z", "StartedAt": "2026-12-04T00:00:00Z"}));
                let node = json!({"ID": id, "Name": format!("node-{id}"), "Status": n.status,
                    "Drain": n.draining, "DrainStrategy": drain,
                    "SchedulingEligibility": if n.draining { "ineligible" } else { "eligible" }, "Drivers": n.drivers});
                (200, node.to_string())
            }
        };
    }
    match path {
        "/v1/nodes" if anonymous => denied,
        "/v1/nodes" => node_list(s, query),
        "/v1/agent/self" if anonymous => denied,
        // Real Nomad's field names (command/agent/agent_endpoint.go `AgentSelfRequest`:
        // config, member, stats; a client agent's stats.client.node_id from client/client.go
        // `Stats`; version.VersionInfo under config.Version).
        "/v1/agent/self" => {
            let mut stats = json!({});
            if let Some(node) = node {
                stats = json!({"client": {"node_id": node, "known_servers": "127.0.0.1:4647"}});
            }
            (
                200,
                json!({"config": {"Region": region, "Datacenter": "dc1",
                        "Version": {"Revision": "stand-in", "Version": "1.10.3", "VersionPrerelease": "", "VersionMetadata": ""}},
                    "member": {"Name": "stand-in.global", "Addr": "127.0.0.1", "Port": 4648, "Status": "alive"},
                    "stats": stats})
                .to_string(),
            )
        }
        _ => (404, "404 page not found".into()),
    }
}

/// `GET /v1/nodes`: node stubs (nomad/structs/structs.go `NodeListStub` at v1.10.0: Drivers
/// always present). The one `filter` expression modelled is `Drivers.<name>.Detected == true`
/// (go-bexpr evaluated on the full node, api-docs "Filtering"); any other is refused with 400
/// so a test notices the plugin sending something unmodelled.
fn node_list(s: &State, query: &str) -> (u16, String) {
    let mut driver_filter: Option<String> = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k != "filter" {
            continue;
        }
        let expr = decode(&v.replace('+', " "));
        let name = expr
            .strip_prefix("Drivers.")
            .and_then(|r| r.strip_suffix(".Detected == true"))
            .filter(|n| n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        match name {
            Some(n) => driver_filter = Some(n.to_string()),
            None => return (400, format!("stand-in: unmodelled filter expression {expr:?}")),
        }
    }
    let nodes: Vec<Value> = s
        .nodes
        .iter()
        .filter(|(_, n)| match &driver_filter {
            None => true,
            Some(d) => n.drivers.get(d).is_some_and(|i| i["Detected"] == true),
        })
        .map(|(id, n)| {
            json!({"Address": "127.0.0.1", "ID": id, "Datacenter": "dc1", "Name": format!("node-{id}"),
                "NodePool": "default", "NodeClass": "", "Version": "1.10.3", "Drain": false,
                "SchedulingEligibility": "eligible", "Status": n.status, "StatusDescription": "",
                "Drivers": n.drivers, "HostVolumes": {}, "LastDrain": null, "CreateIndex": 1, "ModifyIndex": 1})
        })
        .collect();
    (200, Value::Array(nodes).to_string())
}

fn alloc_json(a: &AllocSpec, modify_index: u64, job_type: &str) -> String {
    let mut v = json!({
        "ID": a.id, "Namespace": a.namespace, "EvalID": format!("eval-{}", a.id),
        "Job": {"ID": a.job_id, "Name": a.job_id, "Namespace": a.namespace, "Type": job_type},
        "Name": format!("{}.{}[{}]", a.job_id, a.task_group, a.index),
        "NodeID": a.node_id, "JobID": a.job_id, "TaskGroup": a.task_group,
        "DesiredStatus": a.desired_status, "ClientStatus": a.client_status,
        "PreviousAllocation": a.previous, "NextAllocation": "",
        "CreateIndex": 1, "ModifyIndex": modify_index, "TaskStates": {},
    });
    if a.migrate {
        v["DesiredTransition"] = json!({"Migrate": true, "Reschedule": null, "ForceReschedule": null});
    }
    v.to_string()
}

/// Percent-decoding of a path segment or query value.
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

/// Keeps node `node`'s ecs driver in the stand-in's node list as the plugin fingerprints it (a
/// Nomad client stores every fingerprint it receives): the first at once, the rest from a thread.
pub fn follow_fingerprints(nomad: &Arc<NomadStandIn>, node: &str, p: &super::host::Plugin) {
    let rx = p.fingerprint();
    let first = rx
        .recv_timeout(super::WAIT)
        .expect("a fingerprint")
        .expect("fingerprint ok");
    nomad.register_fingerprint(node, "ecs", &first);
    let (nomad, node) = (Arc::clone(nomad), node.to_string());
    std::thread::spawn(move || {
        while let Ok(Ok(fp)) = rx.recv() {
            nomad.register_fingerprint(&node, "ecs", &fp);
        }
    });
}
