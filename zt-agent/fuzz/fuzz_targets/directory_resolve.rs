//! Any directory document must parse and resolve without a panic or a stack
//! overflow, and resolve's output must always be a snapshot the writer accepts:
//! directory data is hostile, and a sync that fails on it freezes revocation.
//! The checks live in `zt_agent::fuzzing`, shared with the corpus replay test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| zt_agent::fuzzing::exercise_directory(bytes));
