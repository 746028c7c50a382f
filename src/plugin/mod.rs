//! The go-plugin host protocol: handshake, socket, the go-plugin services (health,
//! controller, stdio, broker), the gRPC server's life, and the hclog JSON logger. Knows
//! nothing about ECS or Nomad's driver API: the application services come in from `main`.

pub mod handshake;
pub mod log;
pub mod panic;
pub mod rpc;
pub mod services;

use std::io::Write;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use grpcio::{EnvBuilder, ServerBuilder, ServerCredentials, Service};

/// How long the server may take to wind down after Shutdown before the process exits anyway
/// (the host SIGKILLs after 2 s).
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

/// Why serving failed before the handshake.
#[derive(Debug)]
pub enum ServeError {
    Socket(std::io::Error),
    Grpc(grpcio::Error),
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServeError::Socket(e) => write!(f, "cannot create the plugin socket: {e}"),
            ServeError::Grpc(e) => write!(f, "cannot start the gRPC server: {e}"),
        }
    }
}

impl std::error::Error for ServeError {}

/// Serves `app_services` (plus the go-plugin services) on a private unix socket, prints the
/// handshake line, and returns once the host asked for Shutdown. The caller exits afterwards.
pub fn serve(app_services: Vec<Service>) -> Result<(), ServeError> {
    let version = handshake::negotiate_version(std::env::var("PLUGIN_PROTOCOL_VERSIONS").ok().as_deref());
    let group = match handshake::socket_group(std::env::var("PLUGIN_UNIX_SOCKET_GROUP").ok().as_deref()) {
        Ok(g) => g,
        Err(msg) => {
            ::log::warn!("{msg}");
            None
        }
    };
    let base = std::env::var_os("PLUGIN_UNIX_SOCKET_DIR")
        .filter(|v| !v.is_empty())
        .map(Into::into);
    let dir = handshake::SocketDir::create(base).map_err(ServeError::Socket)?;

    let (shutdown_tx, shutdown_rx) = mpsc::channel();
    // One completion queue (one polling thread) is plenty: handlers never block it (blocking
    // work runs on its own threads), and each extra queue costs a thread and ~0.3 MiB of RSS.
    // A panic on its thread ends the process (see `panic`): with the queue gone, nothing
    // would be answered again.
    let env = Arc::new(EnvBuilder::new().cq_count(1).name_prefix("grpc").build());
    let mut builder = ServerBuilder::new(env)
        .register_service(services::health())
        .register_service(services::controller(shutdown_tx))
        .register_service(services::stdio())
        .register_service(services::broker());
    for s in app_services {
        builder = builder.register_service(s);
    }
    let mut server = builder.build().map_err(ServeError::Grpc)?;
    let addr = format!("unix:{}", dir.socket_path().display());
    server
        .add_listening_port(addr, ServerCredentials::insecure())
        .map_err(ServeError::Grpc)?;
    dir.secure_socket(group).map_err(ServeError::Socket)?;
    server.start();

    // The one and only stdout output. A host that is gone is not our problem to panic over.
    let line = handshake::handshake_line(version, dir.socket_path());
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes()).and_then(|_| out.flush());
    drop(out);
    ::log::debug!(socket = dir.socket_path().display().to_string(), protocol_version = version; "plugin serving");

    // Wait for Controller.Shutdown. (A dropped host connection is not a reason to stop:
    // Nomad reattaches to a surviving plugin.)
    let _ = shutdown_rx.recv();
    std::thread::spawn(|| {
        std::thread::sleep(SHUTDOWN_GRACE);
        ::log::warn!("server did not stop in time; exiting anyway");
        std::process::exit(0);
    });
    server.cancel_all_calls();
    let _ = futures_executor::block_on(server.shutdown());
    drop(dir);
    Ok(())
}
