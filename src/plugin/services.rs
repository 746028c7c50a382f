//! The services every go-plugin gRPC server offers besides the application's own
//! (PROTOCOL.md §2): health, controller (Shutdown), stdio and broker.

use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use futures_channel::mpsc;

use futures_util::{FutureExt, SinkExt, StreamExt};
use grpcio::{MethodType, Service, ServiceBuilder};

use crate::plugin::rpc::{pb_method, reply, status};
use crate::proto::goplugin::{ConnInfo, Empty, StdioData};
use crate::proto::health::health_check_response::ServingStatus;
use crate::proto::health::{HealthCheckRequest, HealthCheckResponse};

pub const HEALTH_CHECK: grpcio::Method<HealthCheckRequest, HealthCheckResponse> =
    pb_method(MethodType::Unary, "/grpc.health.v1.Health/Check");
pub const CONTROLLER_SHUTDOWN: grpcio::Method<Empty, Empty> =
    pb_method(MethodType::Unary, "/plugin.GRPCController/Shutdown");
pub const STDIO_STREAM: grpcio::Method<protobuf::well_known_types::empty::Empty, StdioData> =
    pb_method(MethodType::ServerStreaming, "/plugin.GRPCStdio/StreamStdio");
pub const BROKER_START_STREAM: grpcio::Method<ConnInfo, ConnInfo> =
    pb_method(MethodType::Duplex, "/plugin.GRPCBroker/StartStream");

/// The service name go-plugin hosts ask the health service about.
pub const HEALTH_SERVICE_NAME: &str = "plugin";

pub fn health() -> Service {
    ServiceBuilder::new()
        .add_unary_handler(&HEALTH_CHECK, |ctx, req: HealthCheckRequest, sink| {
            let result = if req.service.is_empty() || req.service == HEALTH_SERVICE_NAME {
                let mut resp = HealthCheckResponse::new();
                resp.status = ServingStatus::SERVING.into();
                Ok(resp)
            } else {
                Err(status(
                    grpcio::RpcStatusCode::NOT_FOUND,
                    format!("unknown service {:?}", req.service),
                ))
            };
            reply(&ctx, sink, result);
        })
        .build()
}

/// Shutdown replies first, then tells the main thread (which exits within 2 s).
pub fn controller(shutdown: Sender<()>) -> Service {
    ServiceBuilder::new()
        .add_unary_handler(&CONTROLLER_SHUTDOWN, move |ctx, _req: Empty, sink| {
            log::info!("shutdown requested by the plugin host");
            let tx = shutdown.clone();
            ctx.spawn(sink.success(Empty::new()).map(move |_| {
                let _ = tx.send(());
            }));
        })
        .build()
}

/// Nomad discards whatever arrives here; the stream stays open (sending nothing) until the
/// host cancels it or the server shuts down. A spawned future must be woken by something to be
/// kept alive, so each stream waits on a channel whose sender the service holds.
pub fn stdio() -> Service {
    let holders: Arc<Mutex<Vec<mpsc::Sender<()>>>> = Arc::default();
    ServiceBuilder::new()
        .add_server_streaming_handler(&STDIO_STREAM, move |ctx, _req, sink| {
            let (tx, mut rx) = mpsc::channel::<()>(0);
            if let Ok(mut h) = holders.lock() {
                h.retain(|s| !s.is_closed());
                h.push(tx);
            }
            ctx.spawn(async move {
                let _keep_open = sink;
                while rx.next().await.is_some() {}
            });
        })
        .build()
}

/// Nomad never uses the broker: accept the stream, drain it, and end when the host does.
pub fn broker() -> Service {
    ServiceBuilder::new()
        .add_duplex_streaming_handler(&BROKER_START_STREAM, |ctx, mut incoming, mut sink| {
            ctx.spawn(async move {
                while let Some(Ok(info)) = incoming.next().await {
                    log::debug!("ignoring broker connection info for service {}", info.service_id);
                }
                let _ = sink.close().await;
            });
        })
        .build()
}
