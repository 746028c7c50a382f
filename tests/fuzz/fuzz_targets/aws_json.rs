//! The bodies of 2xx AWS JSON answers, as the JSON client reads them (lossy UTF-8, an empty
//! body being `{}`), fed to every response parser: ECS DescribeClusters, RunTask/DescribeTasks,
//! DescribeTaskDefinition and StopTask's `task`; CloudWatch Logs GetLogEvents; and the
//! credentials JSON of instance metadata and container endpoints.
//!
//! Checked besides "never panics": a parse that succeeds keeps one entry per array element,
//! and a refusal names the field it did not like.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nomad_driver_ecs::aws::ecs::{
    parse_describe_clusters, parse_task, parse_task_definition, parse_tasks_and_failures, Missing,
};
use nomad_driver_ecs::aws::credentials::imds::credentials_from_json;
use nomad_driver_ecs::aws::logs::parse_get_log_events;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let v: Value = if text.trim().is_empty() {
        Value::Object(Default::default())
    } else {
        match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(_) => return,
        }
    };
    let len_of = |key: &str| v.get(key).and_then(Value::as_array).map_or(0, Vec::len);

    if let Ok(events) = parse_get_log_events(&v) {
        assert_eq!(events.events.len(), len_of("events"));
    }
    if let Ok(c) = credentials_from_json(&v, "fuzz") {
        assert!(!c.access_key_id.is_empty() && !c.secret_access_key().is_empty());
    }

    match parse_describe_clusters(&v) {
        Ok(out) => {
            assert_eq!(out.clusters.len(), len_of("clusters"));
            assert_eq!(out.failures.len(), len_of("failures"));
        }
        Err(m) => named(&m),
    }
    match parse_tasks_and_failures(&v) {
        Ok((tasks, failures)) => {
            assert_eq!(tasks.len(), len_of("tasks"));
            assert_eq!(failures.len(), len_of("failures"));
            for t in &tasks {
                assert!(t.launch_type.as_deref() != Some(""));
            }
        }
        Err(m) => named(&m),
    }
    // StopTask and DescribeTaskDefinition answers wrap one object; try the wrapped one and
    // the whole body as that object.
    for (key, inner) in [("task", v.get("task")), ("taskDefinition", v.get("taskDefinition"))] {
        for candidate in [inner, Some(&v)].into_iter().flatten() {
            if key == "task" {
                match parse_task(candidate, key) {
                    Ok(t) => assert_eq!(
                        t.containers.len(),
                        candidate
                            .get("containers")
                            .and_then(Value::as_array)
                            .map_or(0, Vec::len)
                    ),
                    Err(m) => named(&m),
                }
            } else {
                match parse_task_definition(candidate, key) {
                    Ok(td) => assert_eq!(
                        td.containers.len(),
                        candidate
                            .get("containerDefinitions")
                            .and_then(Value::as_array)
                            .map_or(0, Vec::len)
                    ),
                    Err(m) => named(&m),
                }
            }
        }
    }
});

fn named(m: &Missing) {
    assert!(!m.0.is_empty(), "a refusal must name the field");
}
