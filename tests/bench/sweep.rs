//! Sweep load benchmark (figures, not a pass/fail test): what the orphan sweep costs Nomad's
//! HTTP API and ECS per round when N clients run the plugin against one ECS cluster of K tasks.
//!
//! Setup: the ECS emulator with K running tasks tagged as the driver tags them (spread over
//! the N nodes, allocations `running` in Nomad, a few `complete` so that the sweep has work),
//! a stand-in of Nomad's API (ACLs on; one agent per node; the node list carries each plugin's
//! fingerprint as a Nomad client stores it), and N plugin processes, one per node, each
//! configured with the same `nomad_cluster`, `reap_interval` and a grace of 1 h (nothing is
//! stopped; every round does the full read).
//!
//! Measured over R whole rounds after one warm-up round: Nomad API requests per round by
//! endpoint (`/v1/nodes`, `/v1/allocation/<id>`, `/v1/agent/self`, other), ECS calls per round
//! (ListTasks, DescribeTasks, TagResource), and how many clients swept (from their logs).
//!
//! Run: `ECS_EMULATOR_PYTHON=.venv/bin/python cargo bench --bench sweep`. Environment:
//! `SWEEP_CLIENTS` (N, default 50), `SWEEP_TASKS` (K, default 1000), `SWEEP_INTERVAL` (the
//! plugins' `reap_interval`, default `20s`), `SWEEP_ROUNDS` (R, default 3). `--write` puts the
//! figures into BENCHMARKS.md between its `sweep-bench` markers.

#[path = "../support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nomad_driver_ecs::aws::credentials::{Credentials, StaticCredentials};
use nomad_driver_ecs::aws::ecs::{AwsVpcConfiguration, EcsClient, RunTaskInput};
use nomad_driver_ecs::aws::http::HttpConfig;
use support::cty::{self, s};
use support::emulator::{Emulator, REGION};
use support::host::{Launch, Plugin};
use support::nomad_stand_in::{AllocSpec, NomadStandIn};

const TOKEN: &str = "bench-acl-token";
const CLUSTER: &str = "sweep-bench";
const NOMAD_CLUSTER: &str = "bench";
/// The plugin's own default log filter, plus the sweep's debug lines that say who swept.
const LOG_FILTER: &str = "warn,nomad_driver_ecs=debug";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Tags of a task the driver started for allocation `alloc` on `node` (slot index `index`).
fn tags(alloc: &str, node: &str, index: usize) -> Vec<(String, String)> {
    [
        ("nomad:managed-by", "nomad-driver-ecs".to_string()),
        ("nomad:namespace", "default".into()),
        ("nomad:job-id", "fleet".into()),
        ("nomad:task-group", "web".into()),
        ("nomad:task", "app".into()),
        ("nomad:alloc-id", alloc.into()),
        ("nomad:alloc-index", index.to_string()),
        ("nomad:node-id", node.into()),
        ("nomad:region", "global".into()),
        ("nomad:cluster", NOMAD_CLUSTER.into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Counts of the stand-in's requests by endpoint.
fn nomad_counts(nomad: &NomadStandIn) -> BTreeMap<&'static str, usize> {
    let mut c = BTreeMap::new();
    for r in nomad.requests() {
        let path = r.path.split('?').next().unwrap_or_default();
        let key = if path == "/v1/nodes" {
            "GET /v1/nodes"
        } else if path.starts_with("/v1/allocation/") {
            "GET /v1/allocation/<id>"
        } else if path == "/v1/agent/self" {
            "GET /v1/agent/self"
        } else {
            "other"
        };
        *c.entry(key).or_insert(0) += 1;
    }
    c
}

fn ecs_counts(emu: &Emulator) -> BTreeMap<String, u64> {
    ["ListTasks", "DescribeTasks", "TagResource", "StopTask"]
        .into_iter()
        .map(|op| (op.to_string(), emu.call_count(op)))
        .collect()
}

/// Sleeps until `at` (unix time).
fn sleep_until(at: Duration) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    if at > now {
        std::thread::sleep(at - now);
    }
}

fn main() {
    let clients: usize = env_or("SWEEP_CLIENTS", 50);
    let tasks: usize = env_or("SWEEP_TASKS", 1000);
    let interval_secs: u64 = env_or("SWEEP_INTERVAL", 20u64.to_string())
        .trim_end_matches('s')
        .parse()
        .unwrap_or(20);
    let rounds: u64 = env_or("SWEEP_ROUNDS", 3);
    let write = std::env::args().any(|a| a == "--write") || std::env::var_os("SWEEP_WRITE").is_some();
    let interval = Duration::from_secs(interval_secs);

    eprintln!("sweep bench: {clients} clients, {tasks} ECS tasks, reap_interval {interval_secs}s, {rounds} rounds");
    let emu = Emulator::start();
    let setup = emu.setup(CLUSTER);
    let nomad = Arc::new(NomadStandIn::start(Some(TOKEN)));
    let creds = StaticCredentials(Credentials::new("AKIDBENCH", "bench-secret", None, None, "bench"));
    let ecs = EcsClient::new(Some(&emu.endpoint()), REGION, Arc::new(creds), &HttpConfig::default()).expect("client");
    let subnet = setup["subnets"][0].as_str().expect("subnet").to_string();
    let sg = setup["security_group"].as_str().expect("sg").to_string();
    let started = Instant::now();
    for i in 0..tasks {
        let alloc = format!("{:08x}-0000-4000-8000-{:012x}", i, i);
        let node = format!("node-{:02}", i % clients);
        // 2% of the allocations are over: the sweep marks their tasks (and would stop them
        // after the 1 h grace).
        let status = if i % 50 == 7 { "complete" } else { "running" };
        nomad.put_alloc(AllocSpec {
            id: alloc.clone(),
            namespace: "default".into(),
            job_id: "fleet".into(),
            task_group: "web".into(),
            index: i as u32,
            node_id: node.clone(),
            client_status: status.into(),
            desired_status: "run".into(),
            ..Default::default()
        });
        let input = RunTaskInput {
            cluster: CLUSTER.into(),
            task_definition: "my-task-definition".into(),
            launch_type: Some("FARGATE".into()),
            network: Some(AwsVpcConfiguration {
                subnets: vec![subnet.clone()],
                security_groups: vec![sg.clone()],
                assign_public_ip: None,
            }),
            started_by: Some(format!("nomad/bench{i}")),
            tags: tags(&alloc, &node, i),
            ..Default::default()
        };
        let out = ecs.run_task(&input).expect("RunTask");
        assert_eq!(out.tasks.len(), 1, "{:?}", out.failures);
    }
    eprintln!("sweep bench: {tasks} tasks started in {:.1?}", started.elapsed());

    let mut plugins = Vec::with_capacity(clients);
    for n in 0..clients {
        let node = format!("node-{n:02}");
        let p = Plugin::launch(&Launch::test_credentials().with_env("NOMAD_DRIVER_ECS_LOG", LOG_FILTER));
        p.set_config(
            cty::plugin_config_values(
                Some(true),
                Some(CLUSTER),
                Some(REGION),
                Some(&emu.endpoint()),
                Some("5s"),
                vec![
                    ("nomad_address", s(&nomad.agent_url(&node))),
                    ("nomad_token", s(TOKEN)),
                    ("nomad_cluster", s(NOMAD_CLUSTER)),
                    ("reap_interval", s(&format!("{interval_secs}s"))),
                    ("reap_grace", s("1h")),
                ],
            ),
            true,
        )
        .expect("SetConfig");
        // As the Nomad client does with every fingerprint (see tests/handoff.rs).
        let rx = p.fingerprint();
        let first = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("fingerprint")
            .expect("ok");
        nomad.register_fingerprint(&node, "ecs", &first);
        let (stand_in, node_id) = (Arc::clone(&nomad), node.clone());
        std::thread::spawn(move || {
            while let Ok(Ok(fp)) = rx.recv() {
                stand_in.register_fingerprint(&node_id, "ecs", &fp);
            }
        });
        plugins.push(p);
    }
    eprintln!("sweep bench: {clients} plugins configured");

    // One warm-up round, then R measured rounds, from one round boundary to another.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let first_boundary = Duration::from_secs((now.as_secs() / interval_secs + 2) * interval_secs);
    sleep_until(first_boundary);
    let (nomad0, ecs0) = (nomad_counts(&nomad), ecs_counts(&emu));
    // Rounds swept so far, all clients together (each sweep logs one line).
    let swept = || -> usize {
        plugins
            .iter()
            .map(|p| {
                p.stderr_lines()
                    .iter()
                    .filter(|l| l.contains("swept by this node"))
                    .count()
            })
            .sum()
    };
    let swept0 = swept();
    sleep_until(first_boundary + interval * rounds as u32);
    let (nomad1, ecs1) = (nomad_counts(&nomad), ecs_counts(&emu));
    let swept1 = swept();
    let per_round = |a: usize, b: usize| (b - a) as f64 / rounds as f64;

    let mut out = String::new();
    let _ = writeln!(
        out,
        "Measured by `cargo bench --bench sweep` ({clients} clients, {tasks} ECS tasks of this Nomad cluster in one \
         ECS cluster, none watched by the sweeping client, reap_interval {interval_secs}s, {rounds} rounds after one \
         warm-up round):\n"
    );
    let _ = writeln!(out, "| per round | requests |\n|---|---|");
    let mut total = 0.0;
    for key in [
        "GET /v1/nodes",
        "GET /v1/allocation/<id>",
        "GET /v1/agent/self",
        "other",
    ] {
        let v = per_round(*nomad0.get(key).unwrap_or(&0), *nomad1.get(key).unwrap_or(&0));
        total += v;
        let _ = writeln!(out, "| Nomad `{key}` | {v:.1} |");
    }
    let _ = writeln!(out, "| **Nomad API, all** | **{total:.1}** |");
    for (op, before) in &ecs0 {
        let v = (ecs1[op] - before) as f64 / rounds as f64;
        let _ = writeln!(out, "| ECS `{op}` | {v:.1} |");
    }
    let _ = writeln!(out, "| clients that swept | {:.1} |", per_round(swept0, swept1));
    let before_design = clients * tasks;
    let _ = writeln!(
        out,
        "\nBefore the election (every client read the allocation of every unwatched task each round) the same \
         fleet cost {clients} × {tasks} = {before_design} allocation reads per round, and {clients} × {} ECS \
         ListTasks/DescribeTasks calls.",
        2 * tasks.div_ceil(100)
    );
    println!("{out}");
    if write {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/BENCHMARKS.md");
        let text = std::fs::read_to_string(path).expect("BENCHMARKS.md");
        let (begin, end) = ("<!-- sweep-bench:begin -->", "<!-- sweep-bench:end -->");
        let (Some(b), Some(e)) = (text.find(begin), text.find(end)) else {
            panic!("BENCHMARKS.md has no {begin} … {end} markers");
        };
        let updated = format!("{}{begin}\n{out}{}", &text[..b], &text[e..]);
        std::fs::write(path, updated).expect("write BENCHMARKS.md");
        eprintln!("sweep bench: BENCHMARKS.md updated");
    }
    drop(plugins);
}
