//! Re-attaching after the plugin died (SIGKILL) or the agent restarted: RecoverTask from the
//! saved handle alone.

mod support;

use std::time::Duration;

use grpcio::RpcStatusCode;
use nomad_driver_ecs::proto::driver::TaskState;
use support::host::{Launch, Plugin};
use support::{persisted, World, WAIT};

fn relaunch(w: &World) -> Plugin {
    let p = Plugin::launch(&Launch::test_credentials());
    p.set_config(
        support::test_plugin_config(&w.cluster, &w.emu.endpoint(), Vec::new()),
        true,
    )
    .unwrap();
    p
}

#[test]
fn recovers_after_sigkill_and_sees_the_exit() {
    let mut w = World::new("rc-kill");
    let (cfg, handle, arn) = w.start("aaaaaaaa-0000-4000-8000-000000000001", "web");
    let old = std::mem::replace(&mut w.plugin, Plugin::launch(&Launch::test_credentials()));
    old.kill();
    let p = relaunch(&w);
    w.plugin = p;
    let events = w.plugin.task_events();
    w.plugin.recover_task(&persisted(&handle)).expect("RecoverTask");
    w.plugin
        .recover_task(&persisted(&handle))
        .expect("RecoverTask is idempotent");
    support::host::wait_event(&events, "Re-attached", WAIT);
    let insp = w.plugin.inspect_task(&cfg.id).unwrap();
    assert_eq!(insp.driver.as_ref().unwrap().attributes["arn"], arn);
    w.emu
        .exit_task("rc-kill", &arn, Some(137), "Essential container in task exited");
    assert_eq!(
        w.plugin.wait_task(&cfg.id, WAIT).unwrap().result.unwrap().exit_code,
        137
    );
    assert_eq!(w.emu.call_count("RunTask"), 1, "recovery starts nothing");
    w.plugin.assert_hclog_stderr();
}

#[test]
fn a_task_that_stopped_while_nobody_watched_reports_its_exit() {
    let mut w = World::new("rc-gone");
    let (cfg, handle, arn) = w.start("aaaaaaaa-0000-4000-8000-000000000002", "web");
    let old = std::mem::replace(&mut w.plugin, Plugin::launch(&Launch::test_credentials()));
    old.kill();
    w.emu
        .exit_task("rc-gone", &arn, Some(3), "Essential container in task exited");
    w.plugin = relaunch(&w);
    w.plugin.recover_task(&persisted(&handle)).unwrap();
    let r = w.plugin.wait_task(&cfg.id, WAIT).unwrap();
    assert_eq!(r.result.unwrap().exit_code, 3);
    let insp = w.plugin.inspect_task(&cfg.id).unwrap();
    assert_eq!(insp.task.as_ref().unwrap().state.enum_value(), Ok(TaskState::EXITED));
}

#[test]
fn recovery_then_stop_uses_the_saved_cluster_and_arn() {
    let mut w = World::new("rc-stop");
    let (cfg, handle, arn) = w.start("aaaaaaaa-0000-4000-8000-000000000003", "web");
    let old = std::mem::replace(&mut w.plugin, Plugin::launch(&Launch::test_credentials()));
    old.kill();
    w.plugin = relaunch(&w);
    w.plugin.recover_task(&persisted(&handle)).unwrap();
    w.plugin.stop_task(&cfg.id, Duration::from_secs(10), "").unwrap();
    assert_eq!(w.emu.task_status("rc-stop", &arn).as_deref(), Some("STOPPED"));
}

#[test]
fn garbage_handles_are_refused_and_the_plugin_keeps_serving() {
    let w = World::new("rc-bad");
    let (_cfg, handle, _arn) = w.start("aaaaaaaa-0000-4000-8000-000000000004", "web");
    let mut bad = persisted(&handle);
    bad.config.as_mut().unwrap().id = "other/task/1".into();
    for state in [
        b"".to_vec(),
        b"\x81\xa3ARN\xa1x".to_vec(),
        b"{\"version\":99}".to_vec(),
        vec![0xff; 64],
    ] {
        bad.driver_state = state;
        let e = w.plugin.recover_task(&bad).unwrap_err();
        assert_eq!(e.code(), RpcStatusCode::INVALID_ARGUMENT, "{}", e.message());
        assert!(e.message().contains("driver_state"), "{}", e.message());
    }
    let mut no_config = handle.clone();
    no_config.config = protobuf::MessageField::none();
    let e = w.plugin.recover_task(&no_config).unwrap_err();
    assert_eq!(e.code(), RpcStatusCode::INVALID_ARGUMENT);
    assert_eq!(w.plugin.plugin_info().name, "ecs", "still serving");
    w.plugin.assert_hclog_stderr();
}
