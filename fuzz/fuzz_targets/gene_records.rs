#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| inos::fuzz::Target::GeneRecords.run(data));
