#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| qsfs::internals::fuzz::shard_header(data));
