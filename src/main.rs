//! The `nomad-driver-ecs` binary: checks that a go-plugin host launched it, then serves the
//! driver over go-plugin's gRPC protocol until the host asks it to shut down.
//!
//! `unsafe` is denied here and forbidden in the library; the two exceptions are ignoring
//! SIGINT and ending the process after a panic without running destructors (below), which
//! need libc calls.
#![deny(unsafe_code)]

use std::sync::Arc;

use nomad_driver_ecs::driver::Driver;
use nomad_driver_ecs::nomad::server;
use nomad_driver_ecs::plugin::{self, handshake};

fn main() {
    let cookie = std::env::var(handshake::COOKIE_KEY).ok();
    if !handshake::cookie_ok(cookie.as_deref()) {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "{}", handshake::NOT_A_COMMAND);
        std::process::exit(1);
    }
    plugin::log::init();
    // Before any other thread exists: a panic anywhere but in an RPC's own worker ends the
    // process, so that Nomad relaunches the plugin (see plugin::panic).
    plugin::panic::install(exit_now);
    plugin::panic::arm_test_panic_from_env();
    ignore_sigint();
    let driver = Arc::new(Driver::default());
    match plugin::serve(server::services(driver)) {
        Ok(()) => {
            log::debug!("plugin exiting");
            std::process::exit(0);
        }
        Err(e) => {
            log::error!("{e}");
            std::process::exit(1);
        }
    }
}

/// A Ctrl-C on a foreground Nomad agent reaches the plugin too (same process group); like
/// go-plugin servers, ignore it and let the host shut us down.
#[allow(unsafe_code)]
fn ignore_sigint() {
    // SAFETY: installing SIG_IGN for SIGINT has no preconditions and touches no Rust state.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
}

/// Ends the process at once with `code`: no destructors, no `atexit` handlers, no flushing of
/// Rust's stdout buffer (the handshake line was flushed long before). Used by the panic hook,
/// while other threads (gRPC's C core among them) still run and may hold what those handlers
/// would tear down.
#[allow(unsafe_code)]
fn exit_now(code: i32) -> ! {
    // SAFETY: _exit(2) has no preconditions; it does not return and touches no Rust state.
    unsafe { libc::_exit(code) }
}
