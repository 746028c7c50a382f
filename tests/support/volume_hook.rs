//! The part of a Nomad client that reads a driver's `mount_configs` capability, modelled for
//! the tests: what happens to a task that asks for a volume mount on a driver that says it
//! takes none.
//!
//! Modelled from Nomad v1.10.0 (same checks and messages at v1.9.7):
//! * `client/allocrunner/taskrunner/volume_hook.go`, `prepareHostVolumes` and
//!   `prepareCSIVolumes`: when the task has at least one host (resp. CSI) volume mount and
//!   the driver's `MountConfigs` is `MountConfigSupportNone`, the task's prestart fails with
//!   `task driver %q for %q does not support host volumes` (resp. `... does not support CSI`),
//!   formatted with the task's driver and the task's name.
//! * `client/allocrunner/csi_hook.go`, `validateTasksSupportCSI`: a group with a CSI volume
//!   fails with `no task supports CSI` unless some task's driver takes mounts.
//! * `plugins/drivers/driver.go`: `MountConfigSupportAll` is 0 and `MountConfigSupportNone`
//!   is 1 (iota); `plugins/drivers/client.go` `Capabilities` converts the proto's
//!   `mount_configs` number straight into that type, so an unset field (0) means "all".

use nomad_driver_ecs::proto::driver::DriverCapabilities;

/// Nomad's `drivers.MountConfigSupportNone`.
pub const MOUNT_CONFIG_SUPPORT_NONE: i32 = 1;

/// The kind of group volume a task's `volume_mount` refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VolumeType {
    Host,
    Csi,
}

/// A task's `volume_mount` block, with the type of the group volume it names.
#[derive(Clone, Debug)]
pub struct VolumeMount {
    pub volume: String,
    pub destination: String,
    pub volume_type: VolumeType,
}

impl VolumeMount {
    pub fn host(volume: &str, destination: &str) -> VolumeMount {
        VolumeMount {
            volume: volume.into(),
            destination: destination.into(),
            volume_type: VolumeType::Host,
        }
    }

    pub fn csi(volume: &str, destination: &str) -> VolumeMount {
        VolumeMount {
            volume: volume.into(),
            destination: destination.into(),
            volume_type: VolumeType::Csi,
        }
    }
}

/// Whether Nomad treats the driver as taking no mounts (`caps.MountConfigs ==
/// MountConfigSupportNone`).
pub fn supports_no_mounts(caps: &DriverCapabilities) -> bool {
    caps.mount_configs.value() == MOUNT_CONFIG_SUPPORT_NONE
}

/// The volume hook's prestart check for one task: Ok with the number of mounts Nomad would
/// hand the driver, or the error Nomad fails the task with. Host volumes are checked before
/// CSI volumes, as in `Prestart`. (The lookups that can fail before the capability check,
/// e.g. a host volume the client does not have, are outside this model: every volume
/// exists here.)
pub fn prestart(driver: &str, task: &str, caps: &DriverCapabilities, mounts: &[VolumeMount]) -> Result<usize, String> {
    let host = mounts.iter().filter(|m| m.volume_type == VolumeType::Host).count();
    if host > 0 && supports_no_mounts(caps) {
        return Err(format!(
            "task driver {} for {} does not support host volumes",
            go_quote(driver),
            go_quote(task)
        ));
    }
    let csi = mounts.iter().filter(|m| m.volume_type == VolumeType::Csi).count();
    if csi > 0 && supports_no_mounts(caps) {
        return Err(format!(
            "task driver {} for {} does not support CSI",
            go_quote(driver),
            go_quote(task)
        ));
    }
    Ok(host + csi)
}

/// The allocation-level CSI check (`csi_hook.go` `validateTasksSupportCSI`) for a group with a
/// CSI volume whose tasks have these driver capabilities.
pub fn validate_tasks_support_csi(task_caps: &[&DriverCapabilities]) -> Result<(), String> {
    if task_caps.iter().any(|c| !supports_no_mounts(c)) {
        Ok(())
    } else {
        Err("no task supports CSI".into())
    }
}

/// Go's `%q` for the plain names used here (letters, digits, `-`, `_`): the string in
/// double quotes. Anything else is escaped as Rust's `{:?}` does, which agrees with Go for
/// printable ASCII.
fn go_quote(s: &str) -> String {
    format!("{s:?}")
}
