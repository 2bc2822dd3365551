//! The one integration-test binary (each extra binary would link Bevy again).

mod app;
mod architecture;
mod arena;
mod chunks;
mod codegen;
mod engines;
mod epochs;
mod flock;
mod fuzz_corpus;
mod guards;
mod jobs;
mod layout;
mod physics;
mod pipeline;
mod protocol;
mod registry;
#[cfg(feature = "render")]
mod render;
mod resume;
mod rings;
mod snapshots;
mod streams;
mod supervision;
mod supervisors;
mod syscalls;
mod workflows;
