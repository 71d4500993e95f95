#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| qsfs::internals::fuzz::namespace_records(data));
