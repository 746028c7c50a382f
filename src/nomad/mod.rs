//! Nomad's side of the wire: the generated proto types' services, cty-msgpack decoding, the
//! HCL schemas, typed configs with validation, conversions, and one handler per RPC.

pub mod config;
pub mod convert;
pub mod methods;
pub mod msgpack;
pub mod server;
pub mod spec;
