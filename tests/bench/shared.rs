//! Helpers shared by the benches `fleet.rs` and `floor.rs` (each includes this file as a
//! module): their knobs from the environment, what they read about a running plugin process,
//! and how they name files.

use std::path::Path;

/// A few fields of /proc/<pid>/status, in kB (threads: a count). Each bench reports the ones
/// it needs.
#[derive(Clone, Copy, Default)]
#[allow(dead_code)]
pub struct Mem {
    pub rss_kb: u64,
    pub anon_kb: u64,
    pub file_kb: u64,
    pub hwm_kb: u64,
    pub virt_kb: u64,
    pub threads: u64,
}

pub fn mem(pid: u32) -> Mem {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Mem {
        rss_kb: field("VmRSS:"),
        anon_kb: field("RssAnon:"),
        file_kb: field("RssFile:"),
        hwm_kb: field("VmHWM:"),
        virt_kb: field("VmSize:"),
        threads: field("Threads:"),
    }
}

/// `p` relative to the project root when it is below it.
pub fn rel(p: &Path) -> String {
    p.strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(p)
        .display()
        .to_string()
}

/// The environment variable `name`, or `default` when it is unset or blank.
pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_string())
}
