//! Small glue over grpcio shared by every service: method descriptors for protobuf messages,
//! and replying from a plain thread (grpcio handlers must not block their completion queue).

use crate::plugin::panic;
use futures_channel::{mpsc, oneshot};
use futures_util::{FutureExt, SinkExt, StreamExt};

use grpcio::{Marshaller, Method, MethodType, RpcContext, RpcStatus, ServerStreamingSink, UnarySink, WriteFlags};

/// A method descriptor for protobuf request/response types.
pub const fn pb_method<Req: protobuf::Message, Resp: protobuf::Message>(
    ty: MethodType,
    name: &'static str,
) -> Method<Req, Resp> {
    Method {
        ty,
        name,
        req_mar: Marshaller {
            ser: grpcio::pb_ser,
            de: grpcio::pb_de,
        },
        resp_mar: Marshaller {
            ser: grpcio::pb_ser,
            de: grpcio::pb_de,
        },
    }
}

/// Completes a unary call with `result` (already computed).
pub fn reply<T: Send + 'static>(ctx: &RpcContext<'_>, sink: UnarySink<T>, result: Result<T, RpcStatus>) {
    let f = match result {
        Ok(v) => sink.success(v),
        Err(s) => sink.fail(s),
    };
    ctx.spawn(f.map(|r| {
        if let Err(e) = r {
            log::debug!("could not deliver an RPC reply (the caller went away?): {e}");
        }
    }));
}

/// Runs `work` on its own thread (it may block: AWS calls, waiting for a task) and completes
/// the unary call with its result. A panic in `work` is contained (see [`crate::plugin::panic`]):
/// it is logged, the call fails with INTERNAL naming it, and the plugin keeps serving.
pub fn reply_blocking<T, F>(ctx: &RpcContext<'_>, sink: UnarySink<T>, name: &'static str, work: F)
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, RpcStatus> + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let spawned = std::thread::Builder::new().name(format!("rpc-{name}")).spawn(move || {
        let outcome = panic::contain(|| {
            panic::test_panic_point(panic::TestPanicPoint::RpcWorker);
            work()
        });
        let result = outcome.unwrap_or_else(|msg| Err(panicked_status(name, &msg)));
        let _ = tx.send(result);
    });
    if let Err(e) = spawned {
        reply(
            ctx,
            sink,
            Err(RpcStatus::with_message(
                grpcio::RpcStatusCode::RESOURCE_EXHAUSTED,
                format!("cannot start a thread for {name}: {e}"),
            )),
        );
        return;
    }
    reply_later(ctx, sink, rx);
}

/// The status of a call whose work panicked.
pub fn panicked_status(name: &str, msg: &str) -> RpcStatus {
    RpcStatus::with_message(
        grpcio::RpcStatusCode::INTERNAL,
        format!("the plugin panicked while answering {name} (a bug; please report it): {msg}"),
    )
}

/// Completes a unary call once `rx` yields (dropped sender → INTERNAL).
pub fn reply_later<T: Send + 'static>(
    ctx: &RpcContext<'_>,
    sink: UnarySink<T>,
    rx: oneshot::Receiver<Result<T, RpcStatus>>,
) {
    ctx.spawn(async move {
        let result = match rx.await {
            Ok(r) => r,
            Err(_) => Err(RpcStatus::with_message(
                grpcio::RpcStatusCode::INTERNAL,
                "the plugin dropped this call".into(),
            )),
        };
        let sent = match result {
            Ok(v) => sink.success(v).await,
            Err(s) => sink.fail(s).await,
        };
        if let Err(e) = sent {
            log::debug!("could not deliver an RPC reply (the caller went away?): {e}");
        }
    });
}

/// Feeds a server stream from a channel. The stream ends (OK) when every sender is dropped, or
/// with the status sent as the last item. When the caller cancels, sending fails and the
/// receiver is dropped, so the producing side sees its sends fail and stops.
pub fn stream_from_channel<T: Send + 'static>(
    ctx: &RpcContext<'_>,
    mut sink: ServerStreamingSink<T>,
    mut rx: mpsc::UnboundedReceiver<Result<T, RpcStatus>>,
) {
    ctx.spawn(async move {
        while let Some(item) = rx.next().await {
            match item {
                Ok(v) => {
                    if let Err(e) = sink.send((v, WriteFlags::default())).await {
                        log::trace!("stream ended by the caller: {e}");
                        return;
                    }
                }
                Err(status) => {
                    let _ = sink.fail(status).await;
                    return;
                }
            }
        }
        let _ = sink.close().await;
    });
}

/// Status helpers with operator-facing messages.
pub fn status(code: grpcio::RpcStatusCode, msg: impl Into<String>) -> RpcStatus {
    RpcStatus::with_message(code, msg.into())
}
