//! One thin handler per Nomad RPC: decode the request, call the driver core, convert the
//! answer. Anything that may block (AWS calls, waiting for a task) runs off the gRPC threads.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_channel::mpsc;
use futures_util::{SinkExt, StreamExt};
use grpcio::{RpcContext, RpcStatus, RpcStatusCode, Service, ServiceBuilder, UnarySink, WriteFlags};

use crate::driver::Driver;
use crate::plugin::rpc::{reply, reply_blocking, reply_later, status, stream_from_channel};
use crate::proto::base as pbb;
use crate::proto::driver as pb;

use super::config::{decode_plugin_config, decode_task_config};
use super::{convert, methods as m, spec};

/// Nomad's driver plugin API version this plugin implements.
pub const PLUGIN_API_VERSION: &str = "0.1.0";
/// The driver name jobs use (`driver = "ecs"`).
pub const DRIVER_NAME: &str = "ecs";
/// Stack of the long-lived stream threads (one TaskStats stream per running task): the
/// fingerprint thread makes HTTPS calls, whose deepest measured stack was 100 KiB in a debug
/// build; the default 2 MiB would reserve 2 GiB of address space for a thousand tasks.
const STREAM_THREAD_STACK: usize = 256 * 1024;
/// How often the fingerprint is re-sent.
const FINGERPRINT_PERIOD: Duration = Duration::from_secs(30);
/// Default and minimum TaskStats interval.
const DEFAULT_STATS_INTERVAL: Duration = Duration::from_secs(1);
const MIN_STATS_INTERVAL: Duration = Duration::from_millis(100);

/// The BasePlugin and Driver services, bound to one driver.
pub fn services(driver: Arc<Driver>) -> Vec<Service> {
    vec![base_service(Arc::clone(&driver)), driver_service(driver)]
}

fn base_service(driver: Arc<Driver>) -> Service {
    ServiceBuilder::new()
        .add_unary_handler(&m::PLUGIN_INFO, |ctx, _req, sink| {
            crate::plugin::panic::test_panic_point(crate::plugin::panic::TestPanicPoint::GrpcThread);
            reply(&ctx, sink, Ok(plugin_info()))
        })
        .add_unary_handler(&m::CONFIG_SCHEMA, |ctx, _req, sink| {
            let mut r = pbb::ConfigSchemaResponse::new();
            r.spec = Some(spec::plugin_config_spec()).into();
            reply(&ctx, sink, Ok(r));
        })
        .add_unary_handler(&m::SET_CONFIG, move |ctx, req: pbb::SetConfigRequest, sink| {
            let result = match decode_plugin_config(&req.msgpack_config) {
                Ok(cfg) => {
                    log::info!(
                        enabled = cfg.enabled, cluster = cfg.cluster.as_str(), region = cfg.region.clone().unwrap_or_default(),
                        endpoint = cfg.endpoint.clone().unwrap_or_default(), agent = req.nomad_config.is_some();
                        "plugin configured"
                    );
                    let sweep = cfg.enabled && !cfg.handoff.reap_interval.is_zero();
                    driver.set_config(cfg);
                    if sweep {
                        driver.start_sweeper();
                    }
                    Ok(pbb::SetConfigResponse::new())
                }
                Err(e) => {
                    log::error!("rejected plugin config: {e}");
                    Err(status(RpcStatusCode::INVALID_ARGUMENT, format!("invalid plugin \"nomad-driver-ecs\" config {e}")))
                }
            };
            reply(&ctx, sink, result);
        })
        .build()
}

pub fn plugin_info() -> pbb::PluginInfoResponse {
    let mut r = pbb::PluginInfoResponse::new();
    r.type_ = pbb::PluginType::DRIVER.into();
    r.plugin_api_versions = vec![PLUGIN_API_VERSION.to_string()];
    r.plugin_version = env!("CARGO_PKG_VERSION").to_string();
    r.name = DRIVER_NAME.to_string();
    r
}

pub fn capabilities() -> pb::DriverCapabilities {
    let mut c = pb::DriverCapabilities::new();
    c.send_signals = false;
    c.exec = false;
    c.fs_isolation = pb::driver_capabilities::FSIsolation::IMAGE.into();
    c.remote_tasks = true;
    // The task runs in ECS, where no host or CSI volume of this client can be mounted. Left
    // at 0 this field reads as ANY_MOUNTS, and Nomad would hand such mounts to StartTask,
    // where they would be silently dropped; NO_MOUNTS makes Nomad's volume hook refuse the
    // task instead (client/allocrunner/taskrunner/volume_hook.go at v1.10.0: "task driver
    // ... does not support host volumes" / "... does not support CSI").
    c.mount_configs = pb::driver_capabilities::MountConfigs::NO_MOUNTS.into();
    c
}

fn unimplemented<T: Send + 'static>(ctx: &RpcContext<'_>, sink: UnarySink<T>, what: &str) {
    reply(ctx, sink, Err(unimplemented_status(what)));
}

fn unimplemented_status(what: &str) -> RpcStatus {
    status(
        RpcStatusCode::UNIMPLEMENTED,
        format!("{what} is not supported by the ecs driver: the task runs in AWS ECS, outside this Nomad client"),
    )
}

/// Why `nomad alloc exec` cannot work, naming the task when the setup message named it.
pub fn exec_streaming_status(task_id: &str) -> RpcStatus {
    let what = if task_id.is_empty() {
        "ExecTaskStreaming (nomad alloc exec)".to_string()
    } else {
        format!("ExecTaskStreaming (nomad alloc exec) into task {task_id:?}")
    };
    unimplemented_status(&what)
}

fn driver_service(driver: Arc<Driver>) -> Service {
    let (d1, d2, d3, d4, d5, d6, d7, d8, d9) = (
        Arc::clone(&driver),
        Arc::clone(&driver),
        Arc::clone(&driver),
        Arc::clone(&driver),
        Arc::clone(&driver),
        Arc::clone(&driver),
        Arc::clone(&driver),
        Arc::clone(&driver),
        driver,
    );
    ServiceBuilder::new()
        .add_unary_handler(&m::TASK_CONFIG_SCHEMA, |ctx, _req, sink| {
            let mut r = pb::TaskConfigSchemaResponse::new();
            r.spec = Some(spec::task_config_spec()).into();
            reply(&ctx, sink, Ok(r));
        })
        .add_unary_handler(&m::CAPABILITIES, |ctx, _req, sink| {
            let mut r = pb::CapabilitiesResponse::new();
            r.capabilities = Some(capabilities()).into();
            reply(&ctx, sink, Ok(r));
        })
        .add_server_streaming_handler(&m::FINGERPRINT, move |ctx, _req, sink| {
            let (tx, rx) = mpsc::unbounded();
            let driver = Arc::clone(&d1);
            let spawned = std::thread::Builder::new()
                .name("fingerprint".into())
                .stack_size(STREAM_THREAD_STACK)
                .spawn(move || loop {
                    crate::plugin::panic::test_panic_point(crate::plugin::panic::TestPanicPoint::BackgroundThread);
                    let fp = driver.fingerprint();
                    if tx.unbounded_send(Ok(convert::fingerprint(&fp))).is_err() {
                        return;
                    }
                    let mut slept = Duration::ZERO;
                    while slept < FINGERPRINT_PERIOD {
                        std::thread::sleep(Duration::from_millis(500));
                        slept += Duration::from_millis(500);
                        if tx.is_closed() {
                            return;
                        }
                    }
                });
            if let Err(e) = spawned {
                log::error!("cannot start the fingerprint thread: {e}");
            }
            stream_from_channel(&ctx, sink, rx);
        })
        .add_unary_handler(&m::START_TASK, move |ctx, req: pb::StartTaskRequest, sink| {
            let driver = Arc::clone(&d2);
            reply_blocking(&ctx, sink, "start", move || start_task(&driver, req))
        })
        .add_unary_handler(&m::RECOVER_TASK, move |ctx, req: pb::RecoverTaskRequest, sink| {
            let driver = Arc::clone(&d3);
            reply_blocking(&ctx, sink, "recover", move || {
                let Some(handle) = req.handle.as_ref() else {
                    return Err(status(
                        RpcStatusCode::INVALID_ARGUMENT,
                        "RecoverTask without a task handle",
                    ));
                };
                let mut identity = handle.config.as_ref().map(convert::identity).unwrap_or_default();
                if identity.id.is_empty() {
                    identity.id = req.task_id.clone();
                }
                driver
                    .recover_task(identity, &handle.driver_state)
                    .map(|_| pb::RecoverTaskResponse::new())
                    .map_err(|e| {
                        log::warn!(task_id = req.task_id.as_str(); "RecoverTask failed: {e}");
                        convert::driver_error_status(&e)
                    })
            })
        })
        .add_unary_handler(&m::WAIT_TASK, move |ctx, req: pb::WaitTaskRequest, sink| {
            match d4.wait_task(&req.task_id) {
                Err(e) => reply(&ctx, sink, Err(convert::driver_error_status(&e))),
                Ok(exit_rx) => {
                    let (tx, rx) = futures_channel::oneshot::channel();
                    ctx.spawn(async move {
                        let result = match exit_rx.await {
                            Ok(exit) => {
                                let mut r = pb::WaitTaskResponse::new();
                                r.result = Some(convert::exit_result(&exit)).into();
                                r.err = exit.err.unwrap_or_default();
                                Ok(r)
                            }
                            Err(_) => Err(status(RpcStatusCode::ABORTED, "the task was destroyed while waiting")),
                        };
                        let _ = tx.send(result);
                    });
                    reply_later(&ctx, sink, rx);
                }
            }
        })
        .add_unary_handler(&m::STOP_TASK, move |ctx, req: pb::StopTaskRequest, sink| {
            let driver = Arc::clone(&d5);
            reply_blocking(&ctx, sink, "stop", move || {
                let timeout = convert::duration(req.timeout.as_ref());
                driver
                    .stop_task(&req.task_id, timeout, &req.signal)
                    .map(|_| pb::StopTaskResponse::new())
                    .map_err(|e| convert::driver_error_status(&e))
            })
        })
        .add_unary_handler(&m::DESTROY_TASK, move |ctx, req: pb::DestroyTaskRequest, sink| {
            let driver = Arc::clone(&d6);
            reply_blocking(&ctx, sink, "destroy", move || {
                driver
                    .destroy_task(&req.task_id, req.force)
                    .map(|_| pb::DestroyTaskResponse::new())
                    .map_err(|e| convert::driver_error_status(&e))
            })
        })
        .add_unary_handler(&m::INSPECT_TASK, move |ctx, req: pb::InspectTaskRequest, sink| {
            let result = d7
                .inspect_task(&req.task_id)
                .map(|s| convert::inspect(&s))
                .map_err(|e| convert::driver_error_status(&e));
            reply(&ctx, sink, result);
        })
        .add_server_streaming_handler(&m::TASK_STATS, move |ctx, req: pb::TaskStatsRequest, sink| {
            let driver = Arc::clone(&d8);
            let (tx, rx) = mpsc::unbounded();
            if let Err(e) = driver.inspect_task(&req.task_id) {
                let _ = tx.unbounded_send(Err(convert::driver_error_status(&e)));
            } else {
                let mut interval = convert::duration(req.collection_interval.as_ref());
                if interval.is_zero() {
                    interval = DEFAULT_STATS_INTERVAL;
                }
                let interval = interval.max(MIN_STATS_INTERVAL);
                let spawned = std::thread::Builder::new()
                    .name("task-stats".into())
                    .stack_size(STREAM_THREAD_STACK)
                    .spawn(move || {
                        while driver.is_running(&req.task_id) {
                            if tx
                                .unbounded_send(Ok(convert::empty_stats(&req.task_id, SystemTime::now())))
                                .is_err()
                            {
                                return;
                            }
                            std::thread::sleep(interval);
                        }
                    });
                if let Err(e) = spawned {
                    log::error!("cannot start a task stats thread: {e}");
                }
            }
            stream_from_channel(&ctx, sink, rx);
        })
        .add_server_streaming_handler(&m::TASK_EVENTS, move |ctx, _req: pb::TaskEventsRequest, mut sink| {
            let mut events = d9.subscribe_events();
            ctx.spawn(async move {
                while let Some(ev) = events.next().await {
                    if sink
                        .send((convert::task_event(&ev), WriteFlags::default()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                let _ = sink.close().await;
            });
        })
        .add_unary_handler(&m::SIGNAL_TASK, |ctx, _req, sink| {
            unimplemented(&ctx, sink, "SignalTask")
        })
        .add_unary_handler(&m::EXEC_TASK, |ctx, _req, sink| {
            unimplemented(&ctx, sink, "ExecTask (script checks)")
        })
        .add_duplex_streaming_handler(&m::EXEC_TASK_STREAMING, |ctx, mut stream, sink| {
            // Nomad's client sends the setup message (task id, command, tty) before it reads
            // anything (plugins/drivers/client.go ExecTaskStreamingRaw at v1.10.0), and a failed
            // send is reported to `nomad alloc exec` as a bare EOF. So the call is ended only
            // after that first message arrived: the client's send succeeds and its first read
            // gets our status. A caller that closes its side or goes away first ends the wait
            // (the stream yields its end or an error; the status then goes nowhere, harmlessly);
            // nothing blocks a thread meanwhile.
            ctx.spawn(async move {
                let task_id = match stream.next().await {
                    Some(Ok(req)) => req.setup.as_ref().map(|s| s.task_id.clone()).unwrap_or_default(),
                    Some(Err(e)) => {
                        log::trace!("ExecTaskStreaming: no setup message: {e}");
                        String::new()
                    }
                    None => String::new(),
                };
                let _ = sink.fail(exec_streaming_status(&task_id)).await;
            });
        })
        .add_unary_handler(&m::CREATE_NETWORK, |ctx, _req, sink| {
            unimplemented(&ctx, sink, "CreateNetwork")
        })
        .add_unary_handler(&m::DESTROY_NETWORK, |ctx, _req, sink| {
            unimplemented(&ctx, sink, "DestroyNetwork")
        })
        .build()
}

fn start_task(driver: &Driver, req: pb::StartTaskRequest) -> Result<pb::StartTaskResponse, RpcStatus> {
    let Some(task) = req.task.into_option() else {
        return Err(status(
            RpcStatusCode::INVALID_ARGUMENT,
            "StartTask without a task config",
        ));
    };
    if task.id.is_empty() {
        return Err(status(
            RpcStatusCode::INVALID_ARGUMENT,
            "StartTask with an empty task id",
        ));
    }
    let spec = decode_task_config(&task.msgpack_driver_config).map_err(|e| {
        log::warn!(task_id = task.id.as_str(); "rejected task config: {e}");
        convert::config_error_status(&e)
    })?;
    let env: std::collections::BTreeMap<String, String> =
        task.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let started = driver.start_task(convert::identity(&task), spec, &env).map_err(|e| {
        log::warn!(task_id = task.id.as_str(); "StartTask failed: {e}");
        convert::driver_error_status(&e)
    })?;
    let mut handle = pb::TaskHandle::new();
    handle.version = crate::driver::state::STATE_VERSION as i32;
    handle.state = pb::TaskState::RUNNING.into();
    handle.driver_state = started.driver_state;
    handle.config = Some(task).into();
    let mut r = pb::StartTaskResponse::new();
    r.result = pb::start_task_response::Result::SUCCESS.into();
    r.handle = Some(handle).into();
    if let Some(net) = &started.network {
        r.network_override = Some(convert::network_override(net)).into();
    }
    Ok(r)
}
