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
mod shared;
mod snapshots;
mod streams;
mod supervision;
mod supervisors;
mod syscalls;
mod workflows;

/// Tests that measure time, and tests that keep both cores busy (processes spinning on shared
/// memory), take this lock, so that the latter do not skew the former's figures.
pub fn exclusive_cores() -> std::sync::MutexGuard<'static, ()> {
    static CORES: std::sync::Mutex<()> = std::sync::Mutex::new(());
    CORES.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
