#![no_main]
//! Fuzz target `session_book_open`: see `fuzz_checks::TARGETS` for the decoder and what is checked.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_checks::check_of("session_book_open").map_or((), |check| check(data)));
