//! gRPC method descriptors of Nomad's BasePlugin and Driver services (used by the server
//! here and by the test host in `tests/`).

use grpcio::{Method, MethodType};

use crate::plugin::rpc::pb_method;
use crate::proto::base::*;
use crate::proto::driver::*;

macro_rules! methods {
    ($($(#[$doc:meta])* $name:ident: $ty:ident, $path:literal, $req:ty => $resp:ty;)*) => {
        $($(#[$doc])* pub const $name: Method<$req, $resp> = pb_method(MethodType::$ty, $path);)*
    };
}

methods! {
    PLUGIN_INFO: Unary, "/hashicorp.nomad.plugins.base.proto.BasePlugin/PluginInfo", PluginInfoRequest => PluginInfoResponse;
    CONFIG_SCHEMA: Unary, "/hashicorp.nomad.plugins.base.proto.BasePlugin/ConfigSchema", ConfigSchemaRequest => ConfigSchemaResponse;
    SET_CONFIG: Unary, "/hashicorp.nomad.plugins.base.proto.BasePlugin/SetConfig", SetConfigRequest => SetConfigResponse;

    TASK_CONFIG_SCHEMA: Unary, "/hashicorp.nomad.plugins.drivers.proto.Driver/TaskConfigSchema", TaskConfigSchemaRequest => TaskConfigSchemaResponse;
    CAPABILITIES: Unary, "/hashicorp.nomad.plugins.drivers.proto.Driver/Capabilities", CapabilitiesRequest => CapabilitiesResponse;
    FINGERPRINT: ServerStreaming, "/hashicorp.nomad.plugins.drivers.proto.Driver/Fingerprint", FingerprintRequest => FingerprintResponse;
    RECOVER_TASK: Unary, "/hashicorp.nomad.plugins.drivers.proto.Driver/RecoverTask", RecoverTaskRequest => RecoverTaskResponse;
    START_TASK: Unary, "/hashicorp.nomad.plugins.drivers.proto.Driver/StartTask", StartTaskRequest => StartTaskResponse;
    WAIT_TASK: Unary, "/hashicorp.nomad.plugins.drivers.proto.Driver/WaitTask", WaitTaskRequest => WaitTaskResponse;
    STOP_TASK: Unary, "/hashicorp.nomad.plugins.drivers.proto.Driver/StopTask", StopTaskRequest => StopTaskResponse;
    DESTROY_TASK: Unary, "/hashicorp.nomad.plugins.drivers.proto.Driver/DestroyTask", DestroyTaskRequest => DestroyTaskResponse;
    INSPECT_TASK: Unary, "/hashicorp.nomad.plugins.drivers.proto.Driver/InspectTask", InspectTaskRequest => InspectTaskResponse;
    TASK_STATS: ServerStreaming, "/hashicorp.nomad.plugins.drivers.proto.Driver/TaskStats", TaskStatsRequest => TaskStatsResponse;
    TASK_EVENTS: ServerStreaming, "/hashicorp.nomad.plugins.drivers.proto.Driver/TaskEvents", TaskEventsRequest => DriverTaskEvent;
    SIGNAL_TASK: Unary, "/hashicorp.nomad.plugins.drivers.proto.Driver/SignalTask", SignalTaskRequest => SignalTaskResponse;
    EXEC_TASK: Unary, "/hashicorp.nomad.plugins.drivers.proto.Driver/ExecTask", ExecTaskRequest => ExecTaskResponse;
    EXEC_TASK_STREAMING: Duplex, "/hashicorp.nomad.plugins.drivers.proto.Driver/ExecTaskStreaming", ExecTaskStreamingRequest => ExecTaskStreamingResponse;
    CREATE_NETWORK: Unary, "/hashicorp.nomad.plugins.drivers.proto.Driver/CreateNetwork", CreateNetworkRequest => CreateNetworkResponse;
    DESTROY_NETWORK: Unary, "/hashicorp.nomad.plugins.drivers.proto.Driver/DestroyNetwork", DestroyNetworkRequest => DestroyNetworkResponse;
}
