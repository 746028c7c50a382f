//! `driver_state`, the bytes Nomad keeps in a TaskHandle and hands back to RecoverTask.
//!
//! Checked besides "never panics": an accepted state survives encode → decode unchanged, and
//! its encoding is stable (encoding the decoded copy gives the same bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nomad_driver_ecs::driver::state::TaskState;

fuzz_target!(|data: &[u8]| {
    match TaskState::decode(data) {
        Ok(state) => {
            assert!(!state.task_arn.is_empty(), "{state:?}");
            let bytes = state.encode();
            let again = TaskState::decode(&bytes).unwrap_or_else(|e| panic!("re-decoding {state:?} failed: {e}"));
            assert_eq!(again, state);
            assert_eq!(again.encode(), bytes);
        }
        Err(e) => assert!(!e.is_empty()),
    }
});
