//! The AWS demo's files (demo/terraform, demo/nomad) cannot be run here (no AWS, no Nomad), so
//! this checks what can be checked without them:
//! - every `.tf`, `.hcl` and `.nomad` file under demo/ parses as HCL (python-hcl2, through
//!   tests/support/hcl_to_json.py and the emulator's Python, `ECS_EMULATOR_PYTHON`);
//! - every container definitions file under demo/terraform/files is JSON;
//! - the Terraform side matches the story (cluster name, task definition file, IAM actions);
//! - the job uses exactly the `ecs` driver and its `config` block fits the schema the plugin
//!   itself reports (TaskConfigSchema), then decodes with the plugin's own decoder once encoded
//!   as Nomad would;
//! - the clients' plugin blocks fit ConfigSchema and decode with `decode_plugin_config`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Map, Value};

use nomad_driver_ecs::driver::config::LaunchType;
use nomad_driver_ecs::nomad::config::{decode_plugin_config, decode_task_config};
use nomad_driver_ecs::proto::hclspec::spec::Block as S;
use nomad_driver_ecs::proto::hclspec::Spec;
use support::cty::{self, TaskStanza};
use support::emulator::python;
use support::host::{Launch, Plugin};

const CLUSTER: &str = "nomad-remote-driver-demo";

fn demo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("demo")
}

/// Files under `dir` whose extension is one of `exts`, sorted; Terraform's `.terraform` skipped.
fn files(dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("read {}: {e}", d.display())) {
            let p = entry.expect("dir entry").path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if p.is_dir() {
                if name != ".terraform" && name != "target" {
                    todo.push(p);
                }
            } else if p
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| exts.contains(&e))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn rel(p: &Path) -> String {
    p.strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(p)
        .display()
        .to_string()
}

/// The file as python-hcl2 parses it (see tests/support/hcl_to_json.py for the shape).
fn hcl(path: &Path) -> Result<Value, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/hcl_to_json.py");
    let out = Command::new(python())
        .arg(script)
        .arg(path)
        .output()
        .map_err(|e| format!("cannot run {} {script}: {e} (set ECS_EMULATOR_PYTHON)", python()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => serde_json::from_slice(&out.stdout).map_err(|e| format!("{}: bad JSON from the helper: {e}", rel(path))),
        Some(2) => panic!(
            "python-hcl2 is missing for {} (run demo/local/ensure-deps.sh, or set ECS_EMULATOR_PYTHON to .venv/bin/python): {stderr}",
            python()
        ),
        _ => Err(format!("{} does not parse: {}", rel(path), stderr.trim())),
    }
}

fn parsed(rel_path: &str) -> Value {
    hcl(&demo_dir().join(rel_path)).unwrap_or_else(|e| panic!("{e}"))
}

// ---------------------------------------------------------------------------------------------
// Reading python-hcl2's output

/// A string literal (`"text"` in HCL, kept with its quotes by python-hcl2); None for an
/// expression or a template with interpolations.
fn literal(v: &Value) -> Option<String> {
    let s = v.as_str()?;
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains("${") || inner.contains("%{") {
        return None;
    }
    Some(inner.replace("\\\"", "\"").replace("\\\\", "\\"))
}

fn literal_list(v: &Value) -> Option<Vec<String>> {
    v.as_array()?.iter().map(literal).collect()
}

fn is_block_body(v: &Value) -> bool {
    v.get("__is_block__") == Some(&Value::Bool(true))
}

/// The bodies of the unlabelled blocks `name { ... }` in `body`.
fn blocks<'a>(body: &'a Value, name: &str) -> Vec<&'a Map<String, Value>> {
    match body.get(name) {
        Some(Value::Array(items)) => items
            .iter()
            .filter(|b| is_block_body(b))
            .filter_map(Value::as_object)
            .collect(),
        _ => Vec::new(),
    }
}

/// The labelled blocks `name "label" { ... }` in `body`: (label, body).
fn labelled<'a>(body: &'a Value, name: &str) -> Vec<(String, &'a Value)> {
    let mut out = Vec::new();
    if let Some(Value::Array(items)) = body.get(name) {
        for item in items {
            for (label, inner) in item.as_object().into_iter().flatten() {
                if label != "__is_block__" {
                    out.push((
                        literal(&Value::String(label.clone())).unwrap_or_else(|| label.clone()),
                        inner,
                    ));
                }
            }
        }
    }
    out
}

fn one<T>(items: Vec<T>, what: &str) -> T {
    let n = items.len();
    assert_eq!(n, 1, "expected exactly one {what}, found {n}");
    items.into_iter().next().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Checking an HCL body against the plugin's hclspec

/// Checks `body` (the inside of a block) against an object spec: every key known, of a
/// compatible type, and every required attribute or block present. Errors go to `errs`.
fn check_body(spec: &Spec, body: &Map<String, Value>, path: &str, errs: &mut Vec<String>) {
    let Some(S::Object(obj)) = &spec.block else {
        errs.push(format!("{path}: the schema here is not an object: {:?}", spec.block));
        return;
    };
    // The HCL name of each entry is the attr's or block's own name.
    let mut by_name: BTreeMap<String, &Spec> = BTreeMap::new();
    for (key, s) in &obj.attributes {
        let name = match &s.block {
            Some(S::Attr(a)) => a.name.clone(),
            Some(S::BlockValue(b)) => b.name.clone(),
            Some(S::Default(d)) => match d.primary.as_ref().and_then(|p| p.block.as_ref()) {
                Some(S::Attr(a)) => a.name.clone(),
                _ => key.clone(),
            },
            _ => key.clone(),
        };
        by_name.insert(name, s);
    }
    for (key, value) in body {
        if key == "__is_block__" {
            continue;
        }
        let here = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        match by_name.get(key) {
            None => errs.push(format!(
                "{here}: not in the driver's schema (known here: {:?})",
                by_name.keys().collect::<Vec<_>>()
            )),
            Some(s) => check_value(s, value, &here, errs),
        }
    }
    for (name, s) in &by_name {
        let required = match &s.block {
            Some(S::Attr(a)) => a.required,
            Some(S::BlockValue(b)) => b.required,
            _ => false,
        };
        if required && !body.contains_key(name) {
            errs.push(format!("{path}.{name}: required by the driver's schema but missing"));
        }
    }
}

fn check_value(spec: &Spec, value: &Value, path: &str, errs: &mut Vec<String>) {
    let as_block = value
        .as_array()
        .is_some_and(|items| !items.is_empty() && items.iter().all(is_block_body));
    match &spec.block {
        Some(S::Default(d)) => match d.primary.as_ref() {
            Some(p) => check_value(p, value, path, errs),
            None => errs.push(format!("{path}: default without a primary spec")),
        },
        Some(S::Attr(a)) => {
            if as_block {
                errs.push(format!(
                    "{path}: written as a block, but the schema has an attribute of type {}",
                    a.type_
                ));
                return;
            }
            let ok = match a.type_.as_str() {
                "string" => literal(value).is_some(),
                "list(string)" => literal_list(value).is_some(),
                "bool" => value.is_boolean(),
                "number" => value.is_number(),
                other => {
                    errs.push(format!("{path}: schema type {other} is not handled by this test"));
                    return;
                }
            };
            if !ok {
                errs.push(format!("{path}: {value} is not a {} literal", a.type_));
            }
        }
        Some(S::BlockValue(b)) => {
            let items = value.as_array().filter(|_| as_block);
            match items.map(Vec::as_slice) {
                Some([one]) => match (one.as_object(), b.nested.as_ref()) {
                    (Some(inner), Some(nested)) => check_body(nested, inner, path, errs),
                    _ => errs.push(format!("{path}: block without a nested schema")),
                },
                Some(many) => errs.push(format!(
                    "{path}: the schema allows one {} block, found {}",
                    b.name,
                    many.len()
                )),
                None => errs.push(format!("{path}: the schema has a block here, the file has {value}")),
            }
        }
        other => errs.push(format!("{path}: schema kind {other:?} is not handled by this test")),
    }
}

// ---------------------------------------------------------------------------------------------

#[test]
fn every_hcl_file_under_demo_parses() {
    let found = files(&demo_dir(), &["tf", "hcl", "nomad"]);
    let names: BTreeSet<String> = found.iter().map(|p| rel(p)).collect();
    for expected in [
        "demo/terraform/main.tf",
        "demo/terraform/variables.tf",
        "demo/terraform/outputs.tf",
        "demo/nomad/server.hcl",
        "demo/nomad/client-1.hcl",
        "demo/nomad/client-2.hcl",
        "demo/nomad/demo-ecs.nomad",
    ] {
        assert!(names.contains(expected), "{expected} is missing (found {names:?})");
    }
    let failures: Vec<String> = found.iter().filter_map(|p| hcl(p).err()).collect();
    assert!(failures.is_empty(), "HCL parse errors:\n{}", failures.join("\n"));
}

#[test]
fn the_hcl_check_catches_a_broken_file() {
    let dir = std::env::temp_dir().join(format!("demo-files-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("broken.hcl");
    std::fs::write(&bad, "plugin \"x\" {\n  config {\n    enabled = \n").unwrap();
    let err = hcl(&bad).expect_err("a broken file must not parse");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(err.contains("broken.hcl"), "the error names the file: {err}");
}

#[test]
fn container_definition_files_are_json() {
    let dir = demo_dir().join("terraform/files");
    let found = files(&dir, &["json"]);
    let names: BTreeSet<String> = found
        .iter()
        .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
        .collect();
    assert!(
        names.contains("base-demo.json") && names.contains("updated-demo.json"),
        "{names:?}"
    );
    let mut defs = BTreeMap::new();
    for p in &found {
        let text = std::fs::read_to_string(p).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", rel(p)));
        let containers = v
            .as_array()
            .unwrap_or_else(|| panic!("{}: container definitions are a JSON array", rel(p)));
        assert!(!containers.is_empty(), "{}: no container", rel(p));
        for c in containers {
            assert!(
                c["name"].is_string() && c["image"].is_string(),
                "{}: every container needs name and image",
                rel(p)
            );
        }
        assert!(
            containers.iter().any(|c| c["essential"] == true),
            "{}: no essential container",
            rel(p)
        );
        defs.insert(p.file_name().unwrap().to_string_lossy().to_string(), v);
    }
    assert_ne!(
        defs["base-demo.json"], defs["updated-demo.json"],
        "the update must change the task definition, or Terraform registers no new revision"
    );
}

#[test]
fn terraform_matches_the_story() {
    let vars = parsed("terraform/variables.tf");
    let default = |name: &str| {
        let (_, v) = one(
            labelled(&vars, "variable")
                .into_iter()
                .filter(|(l, _)| l == name)
                .collect(),
            &format!("variable {name:?}"),
        );
        literal(&v["default"]).unwrap_or_else(|| panic!("variable {name} has no string default"))
    };
    assert_eq!(default("ecs_task_definition_file"), "./files/base-demo.json");
    assert_eq!(default("cluster_name"), CLUSTER);
    assert!(demo_dir()
        .join("terraform")
        .join(default("ecs_task_definition_file"))
        .is_file());

    let main = parsed("terraform/main.tf");
    // The client policy: exactly the calls the plugin makes, and PassRole only to ECS tasks.
    let (_, policy) = one(
        labelled(&main, "data")
            .into_iter()
            .flat_map(|(kind, body)| {
                let kind_ok = kind == "aws_iam_policy_document";
                body.as_object()
                    .into_iter()
                    .flatten()
                    .filter(move |(name, _)| {
                        kind_ok && literal(&Value::String((*name).clone())).as_deref() == Some("nomad_client")
                    })
                    .map(|(n, b)| (n.clone(), b))
            })
            .collect(),
        "data \"aws_iam_policy_document\" \"nomad_client\"",
    );
    let mut actions = BTreeSet::new();
    for st in blocks(policy, "statement") {
        let st = Value::Object(st.clone());
        let these = literal_list(&st["actions"]).expect("actions are a list of literals");
        if these.contains(&"iam:PassRole".to_string()) {
            let cond = one(blocks(&st, "condition"), "condition on iam:PassRole");
            let cond = Value::Object(cond.clone());
            assert_eq!(literal(&cond["variable"]).as_deref(), Some("iam:PassedToService"));
            assert_eq!(literal_list(&cond["values"]).unwrap(), ["ecs-tasks.amazonaws.com"]);
        }
        actions.extend(these);
    }
    let expected: BTreeSet<String> = [
        "ecs:RunTask",
        "ecs:DescribeTasks",
        "ecs:StopTask",
        "ecs:DescribeClusters",
        "ecs:DescribeTaskDefinition",
        "ecs:TagResource",
        "iam:PassRole",
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    assert_eq!(actions, expected, "the Nomad client policy");

    let outputs = parsed("terraform/outputs.tf");
    let names: BTreeSet<String> = labelled(&outputs, "output").into_iter().map(|(l, _)| l).collect();
    assert!(
        names.contains("subnet_ids") && names.contains("security_group_id"),
        "{names:?}"
    );
}

#[test]
fn the_job_config_fits_the_driver_schema_and_decodes() {
    let job = parsed("nomad/demo-ecs.nomad");
    let (job_name, job) = one(labelled(&job, "job"), "job");
    assert_eq!(job_name, "ecs-demo");
    let tasks: Vec<(String, &Value)> = labelled(job, "group")
        .into_iter()
        .flat_map(|(_, g)| labelled(g, "task"))
        .collect();
    assert!(!tasks.is_empty(), "the job has no task");
    let drivers: BTreeSet<String> = tasks.iter().filter_map(|(_, t)| literal(&t["driver"])).collect();
    assert_eq!(
        drivers,
        BTreeSet::from(["ecs".to_string()]),
        "the job uses exactly the ecs driver"
    );
    let (task_name, task) = one(tasks, "task");
    assert_eq!(task_name, "http-server");
    let config = one(blocks(task, "config"), "config block in the task");

    let plugin = Plugin::launch(&Launch::default());
    let schema = plugin
        .task_config_schema()
        .spec
        .into_option()
        .expect("TaskConfigSchema returns a spec");
    let mut errs = Vec::new();
    check_body(&schema, config, "config", &mut errs);
    assert!(
        errs.is_empty(),
        "demo-ecs.nomad does not fit the driver's schema:\n{}",
        errs.join("\n")
    );
    let _ = plugin.shutdown();

    // Encode it as Nomad would and run it through the plugin's own decoder.
    let t = Value::Object(one(blocks(&Value::Object(config.clone()), "task"), "task block").clone());
    let vpc = blocks(&t, "network_configuration").first().and_then(|n| {
        blocks(&Value::Object((*n).clone()), "aws_vpc_configuration")
            .first()
            .map(|v| Value::Object((*v).clone()))
    });
    let launch_type = literal(&t["launch_type"]);
    let task_definition = literal(&t["task_definition"]);
    let assign = vpc.as_ref().and_then(|v| literal(&v["assign_public_ip"]));
    let stanza = TaskStanza {
        launch_type: launch_type.as_deref(),
        task_definition: task_definition.as_deref(),
        assign_public_ip: assign.as_deref(),
        security_groups: vpc.as_ref().and_then(|v| literal_list(&v["security_groups"])),
        subnets: vpc.as_ref().and_then(|v| literal_list(&v["subnets"])),
        network: vpc.is_some(),
    };
    let spec =
        decode_task_config(&stanza.encode()).unwrap_or_else(|e| panic!("decode_task_config refuses the job: {e}"));
    assert_eq!(spec.task_definition, "nomad-remote-driver-demo:1");
    assert_eq!(spec.launch_type, Some(LaunchType::Fargate));
    let vpc = spec.vpc.expect("awsvpc configuration");
    assert_eq!(vpc.subnets, ["<subnet_id_1>", "<subnet_id_2>"]);
    assert_eq!(vpc.security_groups, ["<security_group_id>"]);
    assert_eq!(vpc.assign_public_ip.as_deref(), Some("ENABLED"));
}

#[test]
fn the_client_plugin_blocks_fit_the_schema_and_decode() {
    let plugin = Plugin::launch(&Launch::default());
    let schema = plugin
        .config_schema()
        .spec
        .into_option()
        .expect("ConfigSchema returns a spec");
    let _ = plugin.shutdown();
    let mut seen = BTreeSet::new();
    for file in ["nomad/client-1.hcl", "nomad/client-2.hcl"] {
        let agent = parsed(file);
        let (label, block) = one(labelled(&agent, "plugin"), &format!("plugin block in {file}"));
        assert_eq!(
            label, "nomad-driver-ecs",
            "{file}: the block must carry the binary's file name"
        );
        let config = one(blocks(block, "config"), &format!("config in {file}'s plugin block"));
        let mut errs = Vec::new();
        check_body(&schema, config, "config", &mut errs);
        assert!(
            errs.is_empty(),
            "{file}'s plugin block does not fit ConfigSchema:\n{}",
            errs.join("\n")
        );
        let get = |k: &str| config.get(k).and_then(literal);
        let bytes = cty::plugin_config(
            config.get("enabled").and_then(Value::as_bool),
            get("cluster").as_deref(),
            get("region").as_deref(),
            get("endpoint").as_deref(),
            get("poll_interval").as_deref(),
        );
        let cfg =
            decode_plugin_config(&bytes).unwrap_or_else(|e| panic!("{file}: decode_plugin_config refuses it: {e}"));
        assert!(cfg.enabled, "{file}: enabled = true");
        assert_eq!(cfg.cluster, CLUSTER, "{file}");
        assert_eq!(cfg.region.as_deref(), Some("us-east-1"), "{file}");

        // Two agents on one machine: their names, state directories and ports must differ.
        let ports = Value::Object(one(blocks(&agent, "ports"), &format!("ports in {file}")).clone());
        let key = format!(
            "{:?} {:?} {} {} {}",
            literal(&agent["name"]),
            literal(&agent["data_dir"]),
            ports["http"],
            ports["rpc"],
            ports["serf"]
        );
        assert!(
            seen.insert(key.clone()),
            "{file} repeats the other client's name/data_dir/ports: {key}"
        );
        let client = one(blocks(&agent, "client"), &format!("client block in {file}"));
        assert_eq!(
            client.get("enabled"),
            Some(&Value::Bool(true)),
            "{file}: client.enabled"
        );
    }
}
