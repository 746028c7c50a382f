//! The `nomad-driver-ecs` binary: checks that a go-plugin host launched it, then serves the
//! driver over go-plugin's gRPC protocol until the host asks it to shut down.
//!
//! `unsafe` is denied here and forbidden in the library; the one exception is ignoring
//! SIGINT (below), which needs a libc call.
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
