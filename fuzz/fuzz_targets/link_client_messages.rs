#![no_main]
//! Fuzz target `link_client_messages`: see `fuzz_checks::TARGETS` for the decoder and what is checked.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_checks::check_of("link_client_messages").map_or((), |check| check(data)));
