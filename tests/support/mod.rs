//! Test support shared by the integration tests: the Nomad-side plugin host, Nomad's
//! cty-msgpack encoding, and the ECS emulator launcher.
#![allow(dead_code)]

pub mod connect_proxy;
pub mod cty;
pub mod emulator;
pub mod host;
pub mod http_server;
pub mod logmon;
pub mod nomad_stand_in;
pub mod proxy;
pub mod task_runner;
pub mod volume_hook;

use std::time::Duration;

use serde_json::Value;

use cty::TaskStanza;
use emulator::{Emulator, REGION};
use host::{Launch, Plugin};

/// Poll interval the tests configure (the default is 5 s).
pub const TEST_POLL: &str = "200ms";
pub const WAIT: Duration = Duration::from_secs(30);

/// An emulator with a cluster, and a configured plugin pointed at it.
pub struct World {
    pub emu: Emulator,
    pub plugin: Plugin,
    pub cluster: String,
    pub setup: Value,
}

impl World {
    pub fn new(cluster: &str) -> World {
        World::with_launch(cluster, Launch::test_credentials())
    }

    /// As [`World::new`], with the plugin started from `launch` (e.g. another binary).
    pub fn with_launch(cluster: &str, launch: Launch) -> World {
        let emu = Emulator::start();
        let endpoint = emu.endpoint();
        World::with_launch_and_endpoint(emu, cluster, launch, &endpoint)
    }

    /// As [`World::with_launch`], on a started emulator, with the plugin's `endpoint` given
    /// (e.g. `http://localhost:<port>`, so the plugin has to resolve a host name).
    pub fn with_launch_and_endpoint(emu: Emulator, cluster: &str, launch: Launch, endpoint: &str) -> World {
        let setup = emu.setup(cluster);
        let plugin = Plugin::launch(&launch);
        plugin
            .set_config(test_plugin_config(cluster, endpoint, Vec::new()), true)
            .expect("SetConfig");
        World {
            emu,
            plugin,
            cluster: cluster.to_string(),
            setup,
        }
    }

    pub fn subnets(&self) -> Vec<String> {
        self.setup["subnets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    }

    pub fn security_group(&self) -> String {
        self.setup["security_group"].as_str().unwrap().to_string()
    }

    /// A valid FARGATE task stanza with the emulator's subnets.
    pub fn stanza(&self) -> Vec<u8> {
        self.stanza_with(Some("FARGATE"), Vec::new())
    }

    /// The emulator's network, the given launch type, and more task-block attributes.
    pub fn stanza_with(&self, launch_type: Option<&str>, extra: Vec<(&str, cty::Cty)>) -> Vec<u8> {
        TaskStanza {
            launch_type,
            ..fargate_stanza(&self.setup, "my-task-definition")
        }
        .encode_with(extra)
    }

    /// Starts a task through the plugin; returns (task config, handle, ARN).
    pub fn start(
        &self,
        alloc: &str,
        task: &str,
    ) -> (
        nomad_driver_ecs::proto::driver::TaskConfig,
        nomad_driver_ecs::proto::driver::TaskHandle,
        String,
    ) {
        let cfg = host::task_config(alloc, task, "a1b2c3d4", self.stanza());
        let resp = self.plugin.start_task(&cfg).expect("StartTask");
        let handle = resp.handle.into_option().expect("handle");
        let arn = handle_arn(&handle);
        assert!(
            self.emu.tasks(&self.cluster).iter().any(|t| t["arn"] == arn.as_str()),
            "ECS task {arn} exists"
        );
        (cfg, handle, arn)
    }
}

/// The plugin stanza the tests use: enabled, `cluster` in the emulator's region at `endpoint`,
/// polled every [`TEST_POLL`], with more attributes set by `extra`.
pub fn test_plugin_config(cluster: &str, endpoint: &str, extra: Vec<(&str, cty::Cty)>) -> Vec<u8> {
    cty::plugin_config_values(
        Some(true),
        Some(cluster),
        Some(REGION),
        Some(endpoint),
        Some(TEST_POLL),
        extra,
    )
}

/// A FARGATE task stanza for `task_definition` on the network of an emulator's setup answer.
pub fn fargate_stanza<'a>(setup: &Value, task_definition: &'a str) -> TaskStanza<'a> {
    let subnets = setup["subnets"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    TaskStanza {
        launch_type: Some("FARGATE"),
        task_definition: Some(task_definition),
        assign_public_ip: Some("ENABLED"),
        security_groups: Some(vec![setup["security_group"].as_str().unwrap_or_default().to_string()]),
        subnets: Some(subnets),
        network: true,
    }
}

/// The handle as Nomad persists it: no msgpack_driver_config after an agent restart.
pub fn persisted(handle: &nomad_driver_ecs::proto::driver::TaskHandle) -> nomad_driver_ecs::proto::driver::TaskHandle {
    let mut h = handle.clone();
    if let Some(cfg) = h.config.as_mut() {
        cfg.msgpack_driver_config.clear();
    }
    h
}

/// The ECS task ARN a handle's driver_state names.
pub fn handle_arn(handle: &nomad_driver_ecs::proto::driver::TaskHandle) -> String {
    let state: Value = serde_json::from_slice(&handle.driver_state).expect("driver_state is JSON");
    state["task_arn"].as_str().expect("task_arn").to_string()
}

/// The ARN of the ECS task tagged with allocation `alloc` in `cluster`.
pub fn arn_of_alloc(emu: &Emulator, cluster: &str, alloc: &str) -> String {
    emu.tasks(cluster)
        .into_iter()
        .filter_map(|t| t["arn"].as_str().map(str::to_string))
        .find(|arn| {
            emu.task_tags(cluster, arn)
                .iter()
                .any(|(k, v)| k == "nomad:alloc-id" && v == alloc)
        })
        .unwrap_or_else(|| panic!("no ECS task tagged with allocation {alloc}"))
}
