#![no_main]
//! Fuzz target `e2ee_session`: see `fuzz_checks::TARGETS` for the decoder and what is checked.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_checks::check_of("e2ee_session").map_or((), |check| check(data)));
