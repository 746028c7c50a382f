//! The library's ECS calls against the emulator, without the plugin: ListTasks filters and
//! paging, DescribeTasks with tags, TagResource and UntagResource.

mod support;

use std::collections::HashSet;
use std::sync::Arc;

use nomad_driver_ecs::aws::credentials::{Credentials, StaticCredentials};
use nomad_driver_ecs::aws::ecs::{
    AwsVpcConfiguration, EcsClient, ListTasksInput, RunTaskInput, Task, MAX_LIST_PAGES, MAX_TAGS_PER_RESOURCE,
};
use nomad_driver_ecs::aws::http::HttpConfig;
use nomad_driver_ecs::aws::ErrorKind;
use serde_json::{json, Value};
use support::emulator::{Emulator, REGION};

/// The emulator set up with `cluster`, and a client for it.
fn setup(cluster: &str) -> (Emulator, EcsClient, Value) {
    let emu = Emulator::start();
    let setup = emu.setup(cluster);
    let creds = StaticCredentials(Credentials::new(
        "AKIDTESTTESTTEST",
        "test-secret-not-real",
        None,
        None,
        "test",
    ));
    let ecs = EcsClient::new(Some(&emu.endpoint()), REGION, Arc::new(creds), &HttpConfig::default()).unwrap();
    (emu, ecs, setup)
}

fn run(ecs: &EcsClient, setup: &Value, cluster: &str, started_by: &str, tags: &[(&str, &str)]) -> String {
    let input = RunTaskInput {
        cluster: cluster.into(),
        task_definition: "my-task-definition".into(),
        launch_type: Some("FARGATE".into()),
        network: Some(AwsVpcConfiguration {
            subnets: vec![setup["subnets"][0].as_str().unwrap().to_string()],
            security_groups: vec![setup["security_group"].as_str().unwrap().to_string()],
            assign_public_ip: None,
        }),
        started_by: Some(started_by.into()),
        tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Default::default()
    };
    let out = ecs.run_task(&input).unwrap();
    assert!(out.failures.is_empty(), "{:?}", out.failures);
    out.tasks[0].task_arn.clone()
}

fn set(arns: &[String]) -> HashSet<String> {
    arns.iter().cloned().collect()
}

fn described(ecs: &EcsClient, cluster: &str, arn: &str) -> Task {
    let out = ecs.describe_tasks_with_tags(cluster, &[arn.to_string()]).unwrap();
    assert_eq!(out.tasks.len(), 1, "{out:?}");
    out.tasks[0].clone()
}

#[test]
fn list_tasks_filters_and_pages() {
    let cluster = "calls-list";
    let (emu, ecs, setup) = setup(cluster);
    let slot_a: Vec<String> = (0..3)
        .map(|i| run(&ecs, &setup, cluster, "slot-a", &[("slot", "a"), ("n", &i.to_string())]))
        .collect();
    let slot_b: Vec<String> = (0..2)
        .map(|i| run(&ecs, &setup, cluster, "slot-b", &[("slot", "b"), ("n", &i.to_string())]))
        .collect();
    let all: HashSet<String> = slot_a.iter().chain(&slot_b).cloned().collect();
    let base = ListTasksInput {
        cluster: cluster.into(),
        ..Default::default()
    };

    // startedBy filters, on one page.
    let a = ecs
        .list_tasks(&ListTasksInput {
            started_by: Some("slot-a".into()),
            ..base.clone()
        })
        .unwrap();
    assert_eq!(set(&a.task_arns), set(&slot_a));
    assert_eq!(a.task_arns.len(), 3);
    assert_eq!(a.next_token, None);

    // Pages of 2 followed by hand: 2 + 2 + 1, the last without nextToken.
    let mut page = ListTasksInput {
        max_results: Some(2),
        ..base.clone()
    };
    let mut by_hand = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let out = ecs.list_tasks(&page).unwrap();
        sizes.push(out.task_arns.len());
        by_hand.extend(out.task_arns);
        match out.next_token {
            Some(t) => page.next_token = Some(t),
            None => break,
        }
        assert!(sizes.len() < 10, "paging does not end: {sizes:?}");
    }
    assert_eq!(sizes, vec![2, 2, 1]);
    assert_eq!(by_hand.len(), 5, "no task twice: {by_hand:?}");
    assert_eq!(set(&by_hand), all);
    let requests = emu.requests("ListTasks");
    let last = requests.last().unwrap();
    assert_eq!(last["maxResults"], 2);
    assert_eq!(last["cluster"], cluster);
    assert!(last["nextToken"].is_string(), "{last}");
    assert!(
        requests[0].get("maxResults").is_none(),
        "absent fields are omitted: {}",
        requests[0]
    );

    // list_all_tasks pages with max_results and gets the same ARNs in the same order.
    let before = emu.call_count("ListTasks");
    let paged = ecs
        .list_all_tasks(&ListTasksInput {
            max_results: Some(2),
            ..base.clone()
        })
        .unwrap();
    assert_eq!(paged, by_hand);
    assert_eq!(emu.call_count("ListTasks") - before, 3, "three pages");
    let before = emu.call_count("ListTasks");
    assert_eq!(ecs.list_all_tasks(&base).unwrap(), by_hand);
    assert_eq!(emu.call_count("ListTasks") - before, 1, "one page of up to 100");
    assert_eq!(emu.requests("ListTasks").last().unwrap()["maxResults"], 100);
    let b = ecs
        .list_all_tasks(&ListTasksInput {
            started_by: Some("slot-b".into()),
            max_results: Some(1),
            ..base.clone()
        })
        .unwrap();
    assert_eq!(set(&b), set(&slot_b));
    assert_eq!(b.len(), 2);

    // desiredStatus filters.
    ecs.stop_task(cluster, &slot_b[0], "test stop").unwrap();
    let stopped = ecs
        .list_all_tasks(&ListTasksInput {
            desired_status: Some("STOPPED".into()),
            ..base.clone()
        })
        .unwrap();
    assert_eq!(stopped, vec![slot_b[0].clone()]);
    let running = ecs
        .list_all_tasks(&ListTasksInput {
            desired_status: Some("RUNNING".into()),
            ..base.clone()
        })
        .unwrap();
    assert_eq!(
        set(&running),
        all.iter().filter(|a| **a != slot_b[0]).cloned().collect()
    );

    // A token the service did not make is its error, not ours.
    let e = ecs
        .list_tasks(&ListTasksInput {
            next_token: Some("not-a-token".into()),
            ..base.clone()
        })
        .unwrap_err();
    assert_eq!(e.code, "InvalidParameterException", "{e}");
    assert_eq!(e.kind, ErrorKind::Client, "{e}");

    // An endpoint that keeps answering the same nextToken is not followed forever.
    emu.fault(json!({"operation": "ListTasks", "count": 5,
                     "body": {"taskArns": [slot_a[0]], "nextToken": "again"}}));
    let before = emu.call_count("ListTasks");
    let e = ecs.list_all_tasks(&base).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Decode, "{e}");
    assert!(e.to_string().contains("nextToken"), "{e}");
    assert_eq!(emu.call_count("ListTasks") - before, 2, "stops at the first repeat");
    emu.post("/_test/fault/clear", json!({}));

    // An empty nextToken ends the listing.
    emu.fault(json!({"operation": "ListTasks", "body": {"taskArns": [slot_a[0]], "nextToken": ""}}));
    assert_eq!(ecs.list_all_tasks(&base).unwrap(), vec![slot_a[0].clone()]);
}

#[test]
fn list_all_tasks_stops_after_max_pages() {
    let cluster = "calls-pages";
    let (_emu, ecs, setup) = setup(cluster);
    let mut arns: Vec<String> = (0..MAX_LIST_PAGES)
        .map(|_| run(&ecs, &setup, cluster, "many", &[]))
        .collect();
    let one_per_page = ListTasksInput {
        cluster: cluster.into(),
        max_results: Some(1),
        ..Default::default()
    };
    // Exactly MAX_LIST_PAGES pages: the last has no nextToken, so all is well.
    let listed = ecs.list_all_tasks(&one_per_page).unwrap();
    assert_eq!(set(&listed), set(&arns));
    assert_eq!(listed.len(), MAX_LIST_PAGES);

    arns.push(run(&ecs, &setup, cluster, "many", &[]));
    let e = ecs.list_all_tasks(&one_per_page).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Decode, "{e}");
    assert!(e.to_string().contains(&format!("{MAX_LIST_PAGES} pages")), "{e}");
    // With the default page size the same tasks fit on two pages.
    let all = ecs
        .list_all_tasks(&ListTasksInput {
            max_results: None,
            ..one_per_page
        })
        .unwrap();
    assert_eq!(set(&all), set(&arns));
}

#[test]
fn tags_are_described_added_replaced_and_removed() {
    let cluster = "calls-tags";
    let (emu, ecs, setup) = setup(cluster);
    let arn = run(&ecs, &setup, cluster, "slot-a", &[("nomad:alloc", "a1"), ("slot", "a")]);

    let t = described(&ecs, cluster, &arn);
    assert_eq!(
        t.tags,
        vec![
            ("nomad:alloc".to_string(), "a1".to_string()),
            ("slot".to_string(), "a".to_string())
        ]
    );
    assert_eq!(t.tag("slot"), Some("a"));
    assert_eq!(t.group.as_deref(), Some("family:my-task-definition"));
    assert_eq!(
        emu.requests("DescribeTasks").last().unwrap()["include"],
        json!(["TAGS"])
    );
    // Without include TAGS there are none.
    let plain = ecs.describe_tasks(cluster, std::slice::from_ref(&arn)).unwrap();
    assert!(plain.tasks[0].tags.is_empty(), "{:?}", plain.tasks[0].tags);
    assert!(emu.requests("DescribeTasks").last().unwrap().get("include").is_none());

    // TagResource adds and replaces.
    ecs.tag_resource(&arn, &[("slot".into(), "moved".into()), ("new".into(), "1".into())])
        .unwrap();
    assert_eq!(
        emu.requests("TagResource").last().unwrap(),
        &json!({"resourceArn": arn, "tags": [{"key": "slot", "value": "moved"}, {"key": "new", "value": "1"}]})
    );
    let t = described(&ecs, cluster, &arn);
    assert_eq!(t.tag("slot"), Some("moved"));
    assert_eq!(t.tag("new"), Some("1"));
    assert_eq!(t.tag("nomad:alloc"), Some("a1"));
    assert_eq!(t.tags.len(), 3, "{:?}", t.tags);
    let mut held = emu.task_tags(cluster, &arn);
    held.sort();
    let mut seen = t.tags.clone();
    seen.sort();
    assert_eq!(held, seen);

    // UntagResource removes only the named keys; unknown keys are ignored.
    ecs.untag_resource(&arn, &["new".into(), "never-set".into()]).unwrap();
    assert_eq!(
        emu.requests("UntagResource").last().unwrap(),
        &json!({"resourceArn": arn, "tagKeys": ["new", "never-set"]})
    );
    let t = described(&ecs, cluster, &arn);
    assert_eq!(t.tag("new"), None);
    assert_eq!(t.tag("slot"), Some("moved"));
    assert_eq!(t.tag("nomad:alloc"), Some("a1"));
    assert_eq!(emu.task_tags(cluster, &arn).len(), 2);

    // More than ECS allows is refused before any call.
    let before = emu.call_count("TagResource");
    let many: Vec<(String, String)> = (0..=MAX_TAGS_PER_RESOURCE)
        .map(|i| (format!("k{i}"), "v".to_string()))
        .collect();
    let e = ecs.tag_resource(&arn, &many).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Client, "{e}");
    assert!(e.to_string().contains("51"), "{e}");
    assert_eq!(emu.call_count("TagResource"), before);
}
