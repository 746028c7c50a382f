//! What a panic does to the plugin.
//!
//! A plugin that is alive but cannot answer is the worst state for Nomad: go-plugin relaunches a
//! plugin only when its process exits, so a wedged one is kept forever, and with it every task it
//! runs. grpcio does not catch panics: one on the gRPC completion-queue thread (a handler body, or
//! a future spawned on the queue) ends that thread, and with the one queue this plugin uses, every
//! RPC then hangs while the process lives on. A panic on a background thread (a task's watcher,
//! the status poller, the sweep, a fingerprint or stats stream) silently ends what that thread
//! was doing: a task nobody watches, a stream that closes as if all were well.
//!
//! The policy, installed by [`install`] as the process's panic hook:
//!
//! * **Every panic is logged** as one hclog JSON line at ERROR on stderr (message, thread,
//!   source location), written directly, whatever the log filter says, so that the Nomad agent
//!   shows why the plugin went away. Rust's default hook (plain text) is replaced, not chained.
//! * **A panic inside [`contain`] is not fatal.** Only the per-RPC worker threads
//!   ([`super::rpc::reply_blocking`]) run their work inside it; the RPC is answered with
//!   INTERNAL naming the panic, and the plugin keeps serving. This is safe enough because such a
//!   worker owns its request and its reply channel and nothing else: the driver's shared state
//!   is behind mutexes that the driver enters through a poisoned lock too (taking the data as
//!   it is), and what one call may have left half-done concerns that call's task, which Nomad's
//!   task runner retries or fails by its own rules. Exiting instead would fail every other RPC
//!   in flight, for a bug in one call. Threads spawned from inside a contained call are not
//!   contained: containment is per thread.
//! * **Any other panic ends the process at once** (exit status [`PANIC_EXIT_CODE`], through the
//!   `terminate` function given to [`install`], which must not run destructors or `atexit`
//!   handlers: other threads, gRPC's C core among them, are still running). go-plugin sees the
//!   plugin exit, Nomad launches it again, and each task runner re-attaches its task with
//!   RecoverTask from the handle Nomad kept (PROTOCOL.md §1.5 and §6). Unwinding a thread that
//!   nobody joins would gain nothing, and a half-dead plugin costs more than a restart.
//!
//! A panic that happens while another one unwinds (in a `Drop`) aborts the process, as Rust
//! always does; that also ends it.
//!
//! **Test hook.** The integration tests must make the real binary panic on each kind of thread.
//! [`arm_test_panic_from_env`] reads [`TEST_PANIC_ENV`] once, at start-up (later changes of the
//! environment do nothing); unset (as Nomad always leaves it), no panic point is armed and
//! [`test_panic_point`] is a no-op. When set, the plugin says so in a WARN line. Its only
//! effect is a crash of this plugin, which whoever controls the plugin's environment can cause
//! anyway (e.g. by killing it), so it opens nothing; a cfg feature would not do, because Cargo
//! builds the binary the integration tests run without the tests' features.

use std::any::Any;
use std::cell::Cell;
use std::io::Write;
use std::panic::{AssertUnwindSafe, PanicHookInfo};
use std::sync::OnceLock;
use std::time::SystemTime;

/// The exit status of a plugin that ended itself after a panic (Rust's status for a panicked
/// program).
pub const PANIC_EXIT_CODE: i32 = 101;

/// Test hook (see the module documentation): where the plugin panics on purpose. Values:
/// `grpc-thread`, `rpc-worker`, `background-thread` (see [`TestPanicPoint`]).
pub const TEST_PANIC_ENV: &str = "NOMAD_DRIVER_ECS_TEST_ONLY_PANIC_AT";

thread_local! {
    /// How many [`contain`] calls are active on this thread.
    static CONTAINED: Cell<u32> = const { Cell::new(0) };
}

/// Installs the panic hook. `terminate` ends the process at once with the given status.
pub fn install(terminate: fn(i32) -> !) {
    std::panic::set_hook(Box::new(move |info| {
        let contained = CONTAINED.with(|c| c.get() > 0);
        let line = panic_line(info, contained, SystemTime::now());
        let mut err = std::io::stderr().lock();
        // A host that is gone (broken pipe) must not keep us from ending.
        let _ = writeln!(err, "{line}").and_then(|_| err.flush());
        drop(err);
        if !contained {
            terminate(PANIC_EXIT_CODE);
        }
    }));
}

/// Runs `work`; a panic in it is logged by the hook and returned as its message instead of
/// ending the process. For per-RPC work only (see the module documentation).
pub fn contain<T>(work: impl FnOnce() -> T) -> Result<T, String> {
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            CONTAINED.with(|c| c.set(c.get().saturating_sub(1)));
        }
    }
    CONTAINED.with(|c| c.set(c.get().saturating_add(1)));
    let _leave = Leave;
    std::panic::catch_unwind(AssertUnwindSafe(work)).map_err(|payload| payload_message(payload.as_ref()))
}

/// A panic's message: the `&str` or `String` it was raised with.
pub fn payload_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_string()
    }
}

/// The hclog JSON line the hook writes for a panic.
fn panic_line(info: &PanicHookInfo<'_>, contained: bool, now: SystemTime) -> String {
    let message = payload_message(info.payload());
    let thread = std::thread::current().name().unwrap_or("(unnamed)").to_string();
    let location = info
        .location()
        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
        .unwrap_or_default();
    let what = if contained {
        "the RPC it was answering fails with INTERNAL; the plugin keeps serving"
    } else {
        "the plugin exits so that Nomad starts it again and re-attaches its tasks"
    };
    let backtrace = std::backtrace::Backtrace::capture();
    let mut kvs: Vec<(&str, String)> = vec![("thread", thread.clone()), ("location", location)];
    if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
        kvs.push(("backtrace", backtrace.to_string()));
    }
    let record_args = format!("panic on thread {thread:?}: {message}; {what}");
    crate::plugin::log::format_record(
        &::log::Record::builder()
            .level(::log::Level::Error)
            .target(module_path!())
            .args(format_args!("{record_args}"))
            .key_values(&kvs)
            .build(),
        now,
    )
}

/// Where the test hook makes the plugin panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestPanicPoint {
    /// The PluginInfo handler, on the gRPC completion-queue thread.
    GrpcThread,
    /// Every per-RPC worker thread, before its work.
    RpcWorker,
    /// The fingerprint stream's thread, before its first fingerprint.
    BackgroundThread,
}

impl TestPanicPoint {
    fn parse(value: &str) -> Option<TestPanicPoint> {
        match value {
            "grpc-thread" => Some(TestPanicPoint::GrpcThread),
            "rpc-worker" => Some(TestPanicPoint::RpcWorker),
            "background-thread" => Some(TestPanicPoint::BackgroundThread),
            _ => None,
        }
    }
}

static TEST_PANIC: OnceLock<Option<TestPanicPoint>> = OnceLock::new();

/// Reads [`TEST_PANIC_ENV`], once: the first call decides for the life of the process.
pub fn arm_test_panic_from_env() -> Option<TestPanicPoint> {
    *TEST_PANIC.get_or_init(|| {
        let value = std::env::var(TEST_PANIC_ENV).ok()?;
        let point = TestPanicPoint::parse(&value);
        match point {
            Some(p) => {
                ::log::warn!("{TEST_PANIC_ENV} is set: this plugin will panic on purpose at {p:?} (a test hook)")
            }
            None => ::log::warn!("{TEST_PANIC_ENV} has an unknown value {value:?}; no test panic is armed"),
        }
        point
    })
}

/// Panics if the test hook armed this point at start-up; otherwise does nothing. The panic's
/// location is the caller's.
#[track_caller]
pub fn test_panic_point(at: TestPanicPoint) {
    if TEST_PANIC.get().copied().flatten() == Some(at) {
        panic!("test-only panic at {at:?} ({TEST_PANIC_ENV} is set)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contain_returns_the_panic_message_and_leaves_the_thread_uncontained() {
        let r: Result<(), String> = contain(|| panic!("boom {}", 7));
        assert_eq!(r, Err("boom 7".to_string()));
        let r: Result<(), String> = contain(|| std::panic::panic_any(5_u8));
        assert_eq!(r, Err("(a panic without a message)".to_string()));
        assert_eq!(contain(|| 3), Ok(3));
        assert_eq!(CONTAINED.with(|c| c.get()), 0);
    }

    #[test]
    fn unknown_test_panic_values_arm_nothing() {
        assert_eq!(TestPanicPoint::parse("grpc-thread"), Some(TestPanicPoint::GrpcThread));
        assert_eq!(TestPanicPoint::parse("rpc-worker"), Some(TestPanicPoint::RpcWorker));
        assert_eq!(
            TestPanicPoint::parse("background-thread"),
            Some(TestPanicPoint::BackgroundThread)
        );
        assert_eq!(TestPanicPoint::parse(""), None);
        assert_eq!(TestPanicPoint::parse("1"), None);
        // Never armed in unit tests: a no-op.
        test_panic_point(TestPanicPoint::RpcWorker);
    }
}
