//! The go-plugin side, as a Nomad agent drives it: handshake, socket, go-plugin services,
//! shutdown, reattach, signals, and the hclog JSON stderr.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use grpcio::CallOption;
use nomad_driver_ecs::plugin::services as gp;
use nomad_driver_ecs::proto::driver::driver_capabilities::{FSIsolation, MountConfigs};
use nomad_driver_ecs::proto::goplugin;
use nomad_driver_ecs::proto::health::{health_check_response::ServingStatus, HealthCheckRequest};
use support::cty;
use support::host::{self, Launch, Plugin};
use support::volume_hook::{self, VolumeMount};

#[test]
fn without_the_cookie_it_explains_and_exits_1_with_nothing_on_stdout() {
    let out = Command::new(host::binary())
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout.is_empty(),
        "stdout must stay empty: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("plugin") && err.contains("plugin_dir"), "{err}");
    let wrong = Command::new(host::binary())
        .env_clear()
        .env(host::COOKIE_KEY, "wrong")
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(1));
    assert!(wrong.stdout.is_empty());
}

#[test]
fn handshake_line_socket_and_shutdown() {
    let p = Plugin::launch(&Launch::default());
    assert_eq!(p.handshake, format!("1|2|unix|{}|grpc|\n", p.socket.display()));
    let dir = p.socket.parent().unwrap().to_path_buf();
    let dir_mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700, "socket dir mode");
    let sock_mode = std::fs::metadata(&p.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(sock_mode, 0o600, "socket mode");

    let info = p.plugin_info();
    assert_eq!(info.name, "ecs");
    assert_eq!(info.plugin_api_versions, vec!["0.1.0".to_string()]);
    assert_eq!(info.plugin_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(info.type_.value(), 2, "type DRIVER");

    let stderr = p.stderr.clone();
    let took = p.shutdown().expect("plugin exited within 2 s of Shutdown");
    assert!(took < Duration::from_secs(2));
    assert!(!dir.exists(), "socket directory removed on exit");
    host::assert_hclog_lines(&stderr.lock().unwrap());
}

#[test]
fn go_plugin_services_health_stdio_broker() {
    let p = Plugin::launch(&Launch::default());
    let mut req = HealthCheckRequest::new();
    req.service = "plugin".into();
    let r = p.client.unary_call(&gp::HEALTH_CHECK, &req, Plugin::opt()).unwrap();
    assert_eq!(r.status.enum_value(), Ok(ServingStatus::SERVING));

    // Stdio: the stream stays open (nothing arrives) until we cancel it.
    let mut stdio = p
        .client
        .server_streaming(
            &gp::STDIO_STREAM,
            &protobuf::well_known_types::empty::Empty::new(),
            CallOption::default(),
        )
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let first = futures_executor::block_on(stdio.next());
        let _ = tx.send(format!("{first:?}"));
    });
    if let Ok(got) = rx.recv_timeout(Duration::from_millis(500)) {
        panic!("stdio stream must stay open, got {got}");
    }

    // Broker: accepted and kept open; ends cleanly when we finish our side.
    let (mut sink, mut receiver) = p
        .client
        .duplex_streaming(&gp::BROKER_START_STREAM, CallOption::default())
        .unwrap();
    futures_executor::block_on(async {
        use futures_util::SinkExt;
        sink.send((goplugin::ConnInfo::new(), grpcio::WriteFlags::default()))
            .await
            .unwrap();
        sink.close().await.unwrap();
        assert!(
            receiver.next().await.is_none(),
            "broker stream ends after the host closes"
        );
    });

    // Still serving afterwards.
    assert_eq!(p.plugin_info().name, "ecs");
    p.assert_hclog_stderr();
}

#[test]
fn ignores_sigint_and_survives_a_dropped_connection() {
    let mut p = Plugin::launch(&Launch::default());
    let st = Command::new("kill")
        .arg("-INT")
        .arg(p.pid().to_string())
        .status()
        .unwrap();
    assert!(st.success());
    // A pending signal is acted on before the process runs user code again, so once the plugin
    // has answered a call after kill(2) returned, a SIGINT that would kill it has done so.
    assert_eq!(p.plugin_info().name, "ecs", "plugin answers after SIGINT");
    assert!(p.child.try_wait().unwrap().is_none(), "plugin exited on SIGINT");
    // Agent crash: the connection goes away; the next agent reattaches to the socket.
    p.reconnect();
    assert_eq!(p.plugin_info().name, "ecs");
    assert!(p.child.try_wait().unwrap().is_none());
}

#[test]
fn schemas_capabilities_and_config_as_nomad_sends_it() {
    // Process A: fingerprint the binary.
    let a = Plugin::launch(&Launch::default());
    let schema = a.config_schema();
    assert!(schema.spec.is_some());
    assert!(a.shutdown().is_some());

    // Process B: validate the agent's plugin config (no nomad_config).
    let b = Plugin::launch(&Launch::default());
    b.set_config(
        cty::plugin_config(
            Some(true),
            Some("nomad-remote-driver-cluster"),
            Some("us-east-1"),
            None,
            None,
        ),
        false,
    )
    .expect("seed plugin stanza accepted");
    assert!(b.shutdown().is_some());

    // Process C: the long-lived instance.
    let c = Plugin::launch(&Launch::default());
    c.set_config(
        cty::plugin_config(
            Some(true),
            Some("nomad-remote-driver-cluster"),
            Some("us-east-1"),
            None,
            None,
        ),
        true,
    )
    .expect("SetConfig with nomad_config");
    let caps = c.capabilities();
    assert!(!caps.send_signals);
    assert!(!caps.exec);
    assert_eq!(caps.fs_isolation.enum_value(), Ok(FSIsolation::IMAGE));
    assert!(caps.remote_tasks, "remote_tasks (field 7) for Nomad 1.1-1.9");
    assert_eq!(
        caps.mount_configs.enum_value(),
        Ok(MountConfigs::NO_MOUNTS),
        "mount_configs: unset (0) reads as ANY_MOUNTS"
    );
    assert!(c.task_config_schema().spec.is_some());

    // A config Nomad would send for a typo'd value: rejected with the field named.
    let err = c
        .set_config(
            cty::plugin_config(Some(true), Some("c"), Some("us-east-1"), Some("localhost:4566"), None),
            true,
        )
        .unwrap_err();
    assert_eq!(err.code(), grpcio::RpcStatusCode::INVALID_ARGUMENT);
    assert!(err.message().contains("endpoint"), "{}", err.message());
    let err = c.set_config(vec![0xc1], true).unwrap_err();
    assert_eq!(err.code(), grpcio::RpcStatusCode::INVALID_ARGUMENT);
    c.assert_hclog_stderr();
}

/// Host and CSI volume mounts cannot reach an ECS task: the capabilities say so, and a Nomad
/// client (modelled in `support::volume_hook`) then refuses such a task before StartTask,
/// with its own message, instead of starting it without its volumes.
#[test]
fn volume_mounts_are_refused_by_nomad_before_start() {
    let p = Plugin::launch(&Launch::default());
    let caps = p.capabilities();
    assert_eq!(caps.mount_configs.value(), volume_hook::MOUNT_CONFIG_SUPPORT_NONE);
    assert_eq!(
        volume_hook::prestart("ecs", "web", &caps, &[VolumeMount::host("data", "/srv/data")]),
        Err("task driver \"ecs\" for \"web\" does not support host volumes".to_string())
    );
    assert_eq!(
        volume_hook::prestart(
            "ecs",
            "web",
            &caps,
            &[
                VolumeMount::csi("ebs", "/srv/ebs"),
                VolumeMount::host("data", "/srv/data")
            ]
        ),
        Err("task driver \"ecs\" for \"web\" does not support host volumes".to_string()),
        "host volumes are checked first"
    );
    assert_eq!(
        volume_hook::prestart("ecs", "web", &caps, &[VolumeMount::csi("ebs", "/srv/ebs")]),
        Err("task driver \"ecs\" for \"web\" does not support CSI".to_string())
    );
    assert_eq!(
        volume_hook::validate_tasks_support_csi(&[&caps]),
        Err("no task supports CSI".to_string())
    );
    // A task without volume mounts is not affected.
    assert_eq!(volume_hook::prestart("ecs", "web", &caps, &[]), Ok(0));
    p.assert_hclog_stderr();
}

/// `nomad alloc exec` as Nomad's client drives it (plugins/drivers/client.go
/// `ExecTaskStreamingRaw` at v1.10.0): open the stream, send the setup message, then read. The
/// plugin must not end the call before the setup arrived (Nomad would report the failed send as
/// EOF), and the read must return the explanation, naming the task.
#[test]
fn exec_streaming_reads_the_setup_then_explains() {
    use futures_util::SinkExt;
    use nomad_driver_ecs::nomad::methods as m;
    use nomad_driver_ecs::proto::driver as pb;
    let p = Plugin::launch(&Launch::default());
    let (mut sink, mut rx) = p
        .client
        .duplex_streaming(&m::EXEC_TASK_STREAMING, Plugin::opt())
        .unwrap();
    // Nothing may come back before the setup: read in the background and check that the read
    // is still pending after a while (a status sent at once arrives within milliseconds).
    let (first_tx, first_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let first = futures_executor::block_on(rx.next());
        let _ = first_tx.send(first);
    });
    if let Ok(early) = first_rx.recv_timeout(Duration::from_millis(500)) {
        panic!("the call ended before the setup message was sent: {early:?}");
    }
    let task_id = "5e1a4f6c-0a8b-4c2d-9e3f-7a6b5c4d3e2f/web/a1b2c3d4";
    let mut setup = pb::exec_task_streaming_request::Setup::new();
    setup.task_id = task_id.into();
    setup.command = vec!["/bin/sh".into()];
    setup.tty = true;
    let mut req = pb::ExecTaskStreamingRequest::new();
    req.setup = Some(setup).into();
    // grpcio's send completes once the write is done, which may be after the server read the
    // message and ended the call; then it reports the call's status. (Go's Send hands the
    // message to the transport and returns; it fails only on a call that had already ended,
    // which the pending read above rules out.) Either way the status must be ours.
    match futures_executor::block_on(sink.send((req, grpcio::WriteFlags::default()))) {
        Ok(()) => {}
        Err(grpcio::Error::RpcFinished(Some(s))) => {
            assert_eq!(s.code(), grpcio::RpcStatusCode::UNIMPLEMENTED, "{}", s.message());
            assert!(s.message().contains(task_id), "names the task: {}", s.message());
        }
        Err(e) => panic!("sending the setup message failed: {e:?}"),
    }
    match first_rx
        .recv_timeout(host::RPC_TIMEOUT)
        .expect("an answer after the setup")
    {
        Some(Err(grpcio::Error::RpcFailure(s))) => {
            assert_eq!(s.code(), grpcio::RpcStatusCode::UNIMPLEMENTED, "{}", s.message());
            assert!(s.message().contains("nomad alloc exec"), "{}", s.message());
            assert!(
                s.message().contains("not supported by the ecs driver"),
                "{}",
                s.message()
            );
            assert!(s.message().contains(task_id), "names the task: {}", s.message());
        }
        other => panic!("expected UNIMPLEMENTED with the explanation, got {other:?}"),
    }
    assert_eq!(p.plugin_info().name, "ecs", "still serving");
    p.assert_hclog_stderr();
}

#[test]
fn unsupported_rpcs_say_so() {
    use nomad_driver_ecs::nomad::methods as m;
    use nomad_driver_ecs::proto::driver as pb;
    let p = Plugin::launch(&Launch::default());
    let expect_unimplemented = |r: Result<(), grpcio::Error>, what: &str| match r {
        Err(grpcio::Error::RpcFailure(s)) => {
            assert_eq!(s.code(), grpcio::RpcStatusCode::UNIMPLEMENTED, "{what}");
            assert!(
                s.message().contains("not supported by the ecs driver"),
                "{what}: {}",
                s.message()
            );
        }
        other => panic!("{what}: expected UNIMPLEMENTED, got {other:?}"),
    };
    expect_unimplemented(
        p.client
            .unary_call(&m::SIGNAL_TASK, &pb::SignalTaskRequest::new(), Plugin::opt())
            .map(|_| ()),
        "SignalTask",
    );
    expect_unimplemented(
        p.client
            .unary_call(&m::EXEC_TASK, &pb::ExecTaskRequest::new(), Plugin::opt())
            .map(|_| ()),
        "ExecTask",
    );
    expect_unimplemented(
        p.client
            .unary_call(&m::CREATE_NETWORK, &pb::CreateNetworkRequest::new(), Plugin::opt())
            .map(|_| ()),
        "CreateNetwork",
    );
    expect_unimplemented(
        p.client
            .unary_call(&m::DESTROY_NETWORK, &pb::DestroyNetworkRequest::new(), Plugin::opt())
            .map(|_| ()),
        "DestroyNetwork",
    );
    // ExecTaskStreaming from a caller that ends its side without a setup message: the
    // explanation all the same.
    let (mut sink, mut rx) = p
        .client
        .duplex_streaming(&m::EXEC_TASK_STREAMING, CallOption::default())
        .unwrap();
    futures_executor::block_on(futures_util::SinkExt::close(&mut sink)).unwrap();
    let first = futures_executor::block_on(rx.next());
    match first {
        Some(Err(grpcio::Error::RpcFailure(s))) => {
            assert_eq!(s.code(), grpcio::RpcStatusCode::UNIMPLEMENTED);
            assert!(s.message().contains("nomad alloc exec"), "{}", s.message());
        }
        other => panic!("ExecTaskStreaming: expected UNIMPLEMENTED, got {other:?}"),
    }
    // WaitTask/StopTask/InspectTask of an unknown task: NOT_FOUND, and still serving.
    let e = p.inspect_task("nope/none/0").unwrap_err();
    assert_eq!(e.code(), grpcio::RpcStatusCode::NOT_FOUND);
    let e = p.wait_task("nope/none/0", Duration::from_secs(5)).unwrap_err();
    assert_eq!(e.code(), grpcio::RpcStatusCode::NOT_FOUND);
    assert_eq!(p.plugin_info().name, "ecs");
}

#[test]
fn broken_stdout_and_stderr_do_not_kill_the_plugin() {
    let mut p = Plugin::launch(&Launch {
        broken_pipes: true,
        ..Launch::test_credentials()
    });
    // Every call logs; with both pipes gone those writes fail, and the plugin must shrug.
    for _ in 0..20 {
        p.set_config(
            cty::plugin_config(Some(true), Some("c"), Some("us-east-1"), None, None),
            true,
        )
        .unwrap();
        let _ = p.set_config(vec![0xc1], true);
        assert_eq!(p.plugin_info().name, "ecs");
    }
    let fp = p.first_fingerprint();
    assert!(!fp.health_description.is_empty());
    assert!(
        p.child.try_wait().is_ok_and(|s| s.is_none()),
        "plugin died on a broken pipe"
    );
    assert!(p.shutdown().is_some());
}

/// A plugin armed (through its test-only hook) to panic at `point`.
fn launch_armed_to_panic(point: &str) -> Plugin {
    Plugin::launch(&Launch::default().with_env(nomad_driver_ecs::plugin::panic::TEST_PANIC_ENV, point))
}

/// Polls until the process exits; fails the test if it has not within `timeout`.
fn exit_status_within(p: &mut Plugin, timeout: Duration) -> std::process::ExitStatus {
    host::eventually(timeout, "the plugin process to exit", || {
        p.child.try_wait().expect("try_wait")
    })
}

/// Waits for the hook's ERROR line about a panic on `thread` and returns it as JSON.
fn panic_line(p: &Plugin, thread: &str) -> serde_json::Value {
    host::eventually(Duration::from_secs(10), "the panic's ERROR line on stderr", || {
        p.stderr_lines().iter().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            (v["@level"] == "error" && v["thread"] == thread && v["@message"].as_str()?.contains("panic")).then_some(v)
        })
    })
}

/// A panic on the gRPC completion-queue thread would leave a live process that never answers
/// again (and Nomad relaunches only a plugin that exits): the process must end, non-zero and
/// promptly, saying why in an hclog ERROR line.
#[test]
fn a_panic_on_the_grpc_thread_ends_the_process() {
    let mut p = launch_armed_to_panic("grpc-thread");
    let r = p.client.unary_call(
        &nomad_driver_ecs::nomad::methods::PLUGIN_INFO,
        &nomad_driver_ecs::proto::base::PluginInfoRequest::new(),
        CallOption::default().timeout(Duration::from_secs(10)),
    );
    assert!(r.is_err(), "PluginInfo answered although it panicked: {r:?}");
    let status = exit_status_within(&mut p, Duration::from_secs(10));
    assert_eq!(
        status.code(),
        Some(nomad_driver_ecs::plugin::panic::PANIC_EXIT_CODE),
        "{status:?}"
    );
    let line = panic_line(&p, "grpc-0");
    let msg = line["@message"].as_str().unwrap();
    assert!(msg.contains("test-only panic at GrpcThread"), "{msg}");
    assert!(msg.contains("the plugin exits"), "{msg}");
    assert!(
        line["location"].as_str().unwrap().starts_with("src/nomad/server.rs:"),
        "{line}"
    );
    p.assert_hclog_stderr();
}

/// A panic in an RPC's own worker thread fails that RPC with INTERNAL (the caller does not
/// hang) and the plugin keeps serving.
#[test]
fn a_panic_in_an_rpc_worker_fails_that_rpc_with_internal() {
    let mut p = launch_armed_to_panic("rpc-worker");
    let e = p
        .destroy_task("5e1a4f6c-0a8b-4c2d-9e3f-7a6b5c4d3e2f/web/a1b2c3d4", true)
        .unwrap_err();
    assert_eq!(e.code(), grpcio::RpcStatusCode::INTERNAL, "{}", e.message());
    assert!(
        e.message().contains("panicked while answering destroy"),
        "{}",
        e.message()
    );
    assert!(e.message().contains("test-only panic at RpcWorker"), "{}", e.message());
    let line = panic_line(&p, "rpc-destroy");
    assert!(line["@message"].as_str().unwrap().contains("INTERNAL"), "{line}");
    // Still serving, on the gRPC thread and on new workers.
    assert_eq!(p.plugin_info().name, "ecs");
    let e = p.stop_task("a/b/c", Duration::from_secs(1), "").unwrap_err();
    assert_eq!(e.code(), grpcio::RpcStatusCode::INTERNAL);
    assert!(p.child.try_wait().unwrap().is_none(), "the plugin exited");
    p.assert_hclog_stderr();
    assert!(p.shutdown().is_some());
}

/// A panic on a background thread (here the fingerprint stream's; a task's watcher thread
/// falls under the same rule) ends the process, so Nomad relaunches the plugin and
/// re-attaches its tasks, instead of leaving that work silently undone.
#[test]
fn a_panic_on_a_background_thread_ends_the_process() {
    let mut p = launch_armed_to_panic("background-thread");
    let fingerprints = p.fingerprint();
    let status = exit_status_within(&mut p, Duration::from_secs(10));
    assert_eq!(
        status.code(),
        Some(nomad_driver_ecs::plugin::panic::PANIC_EXIT_CODE),
        "{status:?}"
    );
    // The stream ends with an error (the process is gone), never with a fingerprint.
    if let Ok(Ok(fp)) = fingerprints.recv_timeout(Duration::from_secs(10)) {
        panic!("a fingerprint although its thread panicked: {fp:?}");
    }
    let line = panic_line(&p, "fingerprint");
    assert!(
        line["@message"]
            .as_str()
            .unwrap()
            .contains("test-only panic at BackgroundThread"),
        "{line}"
    );
    p.assert_hclog_stderr();
}
