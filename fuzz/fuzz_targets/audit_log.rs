#![no_main]
//! Fuzz target `audit_log`: see `fuzz_checks::TARGETS` for the decoder and what is checked.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_checks::check_of("audit_log").map_or((), |check| check(data)));
