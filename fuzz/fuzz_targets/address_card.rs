#![no_main]
//! Fuzz target `address_card`: see `fuzz_checks::TARGETS` for the decoder and what is checked.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_checks::check_of("address_card").map_or((), |check| check(data)));
