#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| inos::fuzz::Target::SabRecords.run(data));
