//! nomad-driver-ecs: a HashiCorp Nomad task-driver plugin that runs each Nomad task as an AWS
//! ECS task.
//!
//! Layers (each only calls the one below it):
//! - [`plugin`]: the go-plugin host protocol (handshake, socket, go-plugin services, logging);
//! - [`nomad`]: Nomad's wire contract (protos, msgpack configs, schemas, one handler per RPC);
//! - [`driver`]: the driver core (task store, one thread per task, events, status poller);
//! - [`aws`]: AWS access (credentials, SigV4, JSON transport, typed ECS calls).
#![forbid(unsafe_code)]

pub mod aws;
pub mod driver;
pub mod encoding;
pub mod nomad;
pub mod nomad_api;
pub mod plugin;
pub mod redact;

/// Protobuf message types generated from `proto/` by build.rs.
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/proto/mod.rs"));
}
