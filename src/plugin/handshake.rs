//! The go-plugin server handshake (PROTOCOL.md §1): cookie check, protocol version negotiation,
//! a unix socket in a fresh private directory, and the one line announced on stdout.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const COOKIE_KEY: &str = "NOMAD_PLUGIN_MAGIC_COOKIE";
pub const COOKIE_VALUE: &str = "e4327c2e01eabfd75a8a67adb114fb34a757d57eee7728d857a8cec6e91a7255";
/// go-plugin's own protocol version (the first handshake field).
pub const CORE_PROTOCOL_VERSION: u32 = 1;
/// Application protocol versions this plugin speaks (Nomad's is 2).
pub const APP_PROTOCOL_VERSIONS: &[u32] = &[2];

/// What a person running the binary by hand sees.
pub const NOT_A_COMMAND: &str = "This binary is a plugin for HashiCorp Nomad (task driver \"ecs\"). \
It is not meant to be executed directly: put it in the Nomad client's plugin_dir and add a \
plugin \"nomad-driver-ecs\" block to the agent configuration.";

/// True when the host's magic cookie is present and right.
pub fn cookie_ok(value: Option<&str>) -> bool {
    value == Some(COOKIE_VALUE)
}

/// Picks the highest application version both sides speak from `PLUGIN_PROTOCOL_VERSIONS`
/// (comma-separated). Without overlap our lowest version is announced and the host decides.
pub fn negotiate_version(host_versions: Option<&str>) -> u32 {
    let ours_lowest = APP_PROTOCOL_VERSIONS.iter().copied().min().unwrap_or(2);
    host_versions
        .unwrap_or("")
        .split(',')
        .filter_map(|v| v.trim().parse::<u32>().ok())
        .filter(|v| APP_PROTOCOL_VERSIONS.contains(v))
        .max()
        .unwrap_or(ours_lowest)
}

/// The handshake line. The sixth field (server certificate) stays empty: Nomad never enables
/// AutoMTLS and a non-empty field would crash it (PROTOCOL.md §1.4). No seventh field.
pub fn handshake_line(app_version: u32, socket: &Path) -> String {
    format!(
        "{CORE_PROTOCOL_VERSION}|{app_version}|unix|{}|grpc|\n",
        socket.display()
    )
}

/// A private directory (mode 0700) holding the plugin's socket; removed when dropped.
#[derive(Debug)]
pub struct SocketDir {
    dir: PathBuf,
    socket: PathBuf,
}

/// Longest unix socket path the kernel takes (sun_path is 108 bytes including the NUL).
const MAX_SOCKET_PATH: usize = 107;

impl SocketDir {
    /// Creates `<base>/nomad-driver-ecs-<pid>-<n>` with mode 0700. `base` is
    /// `PLUGIN_UNIX_SOCKET_DIR` or the temp dir; if that path would be too long for a socket,
    /// `/tmp` is used.
    pub fn create(base: Option<PathBuf>) -> io::Result<SocketDir> {
        let base = base.unwrap_or_else(std::env::temp_dir);
        let candidates = [base, PathBuf::from("/tmp")];
        let mut last_err = io::Error::other("no usable directory");
        for base in candidates {
            for attempt in 0..32u32 {
                let dir = base.join(format!("nomad-driver-ecs-{}-{}", std::process::id(), unique(attempt)));
                let socket = dir.join("plugin.sock");
                if socket.as_os_str().len() > MAX_SOCKET_PATH {
                    last_err = io::Error::new(io::ErrorKind::InvalidInput, "socket path too long");
                    break;
                }
                match fs::DirBuilder::new().mode(0o700).create(&dir) {
                    Ok(()) => {
                        // The umask cannot widen 0700, but make it exact anyway.
                        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
                        return Ok(SocketDir { dir, socket });
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                    Err(e) => {
                        last_err = e;
                        break;
                    }
                }
            }
        }
        Err(last_err)
    }

    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Restricts the bound socket to the owner (0600), or owner and group (0660) with a group.
    pub fn secure_socket(&self, gid: Option<u32>) -> io::Result<()> {
        let mode = match gid {
            Some(gid) => {
                std::os::unix::fs::chown(&self.socket, None, Some(gid))?;
                0o660
            }
            None => 0o600,
        };
        fs::set_permissions(&self.socket, fs::Permissions::from_mode(mode))
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.socket);
        let _ = fs::remove_dir(&self.dir);
    }
}

/// A per-process random-ish suffix without a random-number crate.
fn unique(attempt: u32) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(attempt);
    h.finish() & 0xffff_ffff
}

/// `PLUGIN_UNIX_SOCKET_GROUP`: only a numeric gid is honoured. Looking a group name up would
/// need NSS, which is unsafe in a static binary (vendor-notes.md); names are reported.
pub fn socket_group(value: Option<&str>) -> Result<Option<u32>, String> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse::<u32>().map(Some).map_err(|_| {
            format!("PLUGIN_UNIX_SOCKET_GROUP={v:?} is not a numeric group id; group names are not resolved, the socket stays owner-only (0600)")
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie() {
        assert!(cookie_ok(Some(COOKIE_VALUE)));
        assert!(!cookie_ok(Some("nope")));
        assert!(!cookie_ok(None));
    }

    #[test]
    fn negotiation() {
        assert_eq!(negotiate_version(Some("2")), 2);
        assert_eq!(negotiate_version(Some("1, 2,3")), 2);
        assert_eq!(negotiate_version(Some("5")), 2);
        assert_eq!(negotiate_version(None), 2);
    }

    #[test]
    fn line_has_empty_cert_field_and_no_mux_field() {
        let l = handshake_line(2, Path::new("/tmp/x/plugin.sock"));
        assert_eq!(l, "1|2|unix|/tmp/x/plugin.sock|grpc|\n");
        assert_eq!(l.trim().split('|').count(), 6);
    }

    #[test]
    fn socket_dir_is_private_and_removed() {
        let d = SocketDir::create(None).unwrap();
        let path = d.dir().to_path_buf();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        drop(d);
        assert!(!path.exists());
    }

    #[test]
    fn group_must_be_numeric() {
        assert_eq!(socket_group(None), Ok(None));
        assert_eq!(socket_group(Some("1000")), Ok(Some(1000)));
        assert!(socket_group(Some("nomad")).is_err());
    }
}
