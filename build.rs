//! Generates the protobuf message types from `proto/` with protobuf-codegen's pure-Rust parser
//! (no protoc). gRPC service registration is written by hand in `src/nomad/methods.rs` and
//! `src/plugin/services.rs`; see vendor-notes.md for why.

fn main() {
    let inputs = [
        "proto/attribute.proto",
        "proto/base.proto",
        "proto/driver.proto",
        "proto/goplugin.proto",
        "proto/hclspec.proto",
        "proto/health.proto",
        "proto/recoverable_error.proto",
        "proto/rpc_status.proto",
    ];
    for i in inputs {
        println!("cargo:rerun-if-changed={i}");
    }
    protobuf_codegen::Codegen::new()
        .pure()
        .include("proto")
        .inputs(inputs)
        .cargo_out_dir("proto")
        .run_from_script();
}
