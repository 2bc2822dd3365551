//! The one integration-test binary (each extra binary would link Bevy again).

mod app;
mod codegen;
mod epochs;
mod guards;
mod layout;
mod rings;
mod snapshots;
mod streams;
