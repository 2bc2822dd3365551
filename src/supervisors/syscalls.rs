//! The kernel's side of syscalls: units send `Syscall` envelopes on the outbox-kernel ring (beside
//! job results; the resolver tells them apart by the envelope's magic, as the original did) and
//! get each `SyscallResponse` back on the outbox-host ring, signalled by `OUTBOX_HOST_DIRTY`.
//!
//! - The source module must be registered (`sourceModuleId` = CRC32C of its id).
//! - `storeChunk` / `fetchChunk` go to the chunk store (BLAKE3-keyed, ranges checked at both ends).
//! - `spawnThread` / `killThread` become lifecycle requests (the SAB's lifecycle ring) for the
//!   named unit's supervisor.
//! - `sendMessage` delivers the payload to the target module's mailbox (`ModuleMessages`).
//! - `noop` succeeds; `hostCall` has no host services natively and is refused with a reason.

use bevy::platform::collections::HashMap;

use bevy::platform::cell::SyncCell;
use bevy::prelude::*;

use crate::protocol::{Syscall, SyscallBody, SyscallResponse, SyscallResult, SyscallStatus};
use crate::sab::lifecycle::{LifecycleAction, LifecycleRequest};
use crate::sab::ring::RingProducer;
use crate::sab::{Owner, RingId, Sab, now_ms};
use crate::supervisors::chunks::ChunkStore;
use crate::supervisors::jobs::JobPipelineSystems;
use crate::supervisors::tree::SupervisorTreeSystems;

/// Syscalls read from the outbox-kernel ring, waiting to be served.
#[derive(Resource, Default, Debug)]
pub struct SyscallInbox(pub Vec<Syscall>);

/// Messages a module's mailbox holds before `sendMessage` to it is refused.
pub const MAX_MESSAGES: usize = 1024;

/// Payloads sent with `sendMessage`, by target module (CRC32C of its id), oldest first.
#[derive(Resource, Default, Debug)]
pub struct ModuleMessages(pub HashMap<u32, Vec<(u32, Vec<u8>)>>);

impl ModuleMessages {
    /// Takes the messages for module `id`, as (sender hash, payload).
    pub fn take(&mut self, id: &str) -> Vec<(u32, Vec<u8>)> {
        self.0.remove(&crc32c::crc32c(id.as_bytes())).unwrap_or_default()
    }
}

/// The kernel's end of the outbox-host ring and the responses that did not fit yet.
#[derive(Resource)]
struct ResponseRing {
    producer: SyncCell<RingProducer>,
    waiting: Vec<Vec<u8>>,
}

pub struct SyscallPlugin;

impl Plugin for SyscallPlugin {
    fn build(&self, app: &mut App) {
        let producer = app
            .world()
            .resource::<Sab>()
            .ring(RingId::OutboxHost)
            .producer(Owner::Kernel)
            .expect("the kernel writes the outbox-host ring");
        app.init_resource::<SyscallInbox>()
            .init_resource::<ChunkStore>()
            .init_resource::<ModuleMessages>()
            .insert_resource(ResponseRing {
                producer: SyncCell::new(producer),
                waiting: Vec::new(),
            })
            .add_systems(
                FixedUpdate,
                serve
                    .after(JobPipelineSystems::Resolve)
                    .before(SupervisorTreeSystems)
                    .run_if(|inbox: Res<SyscallInbox>, ring: Res<ResponseRing>| {
                        !inbox.0.is_empty() || !ring.waiting.is_empty()
                    }),
            );
    }
}

fn serve(
    sab: Res<Sab>,
    mut inbox: ResMut<SyscallInbox>,
    mut chunks: ResMut<ChunkStore>,
    mut messages: ResMut<ModuleMessages>,
    mut ring: ResMut<ResponseRing>,
) {
    let now = now_ms();
    for call in std::mem::take(&mut inbox.0) {
        let response = answer(&sab, &call, now, &mut chunks, &mut messages);
        ring.waiting.push(response.encode());
    }
    let ring = &mut *ring;
    let sent = ring.producer.get().push_all(&ring.waiting);
    ring.waiting.drain(..sent);
}

fn answer(
    sab: &Sab,
    call: &Syscall,
    now: u64,
    chunks: &mut ChunkStore,
    messages: &mut ModuleMessages,
) -> SyscallResponse {
    let respond = |status, result, error: String| SyscallResponse {
        call_id: call.call_id,
        status,
        result,
        error,
    };
    let refuse = |error: String| respond(SyscallStatus::InvalidRequest, SyscallResult::None, error);
    if sab.registry().lookup_hash(call.source_module).is_none() {
        return refuse(format!("source module {:#010x} is not registered", call.source_module));
    }
    match &call.body {
        SyscallBody::Noop => respond(SyscallStatus::Success, SyscallResult::None, String::new()),
        SyscallBody::StoreChunk { .. } | SyscallBody::FetchChunk { .. } => chunks.handle(sab, call, now),
        SyscallBody::SpawnThread { unit } | SyscallBody::KillThread { unit } => {
            if sab.registry().lookup(unit).is_none() {
                return respond(
                    SyscallStatus::NotFound,
                    SyscallResult::None,
                    format!("no unit {unit:?} is registered"),
                );
            }
            let action = match call.body {
                SyscallBody::SpawnThread { .. } => LifecycleAction::Spawn,
                _ => LifecycleAction::Kill,
            };
            match sab.request_lifecycle(Owner::Kernel, LifecycleRequest::new(unit, action)) {
                Ok(()) => respond(SyscallStatus::Success, SyscallResult::None, String::new()),
                Err(e) => respond(
                    SyscallStatus::InternalError,
                    SyscallResult::None,
                    format!("the lifecycle request was not made: {e}"),
                ),
            }
        }
        SyscallBody::SendMessage { target, payload, .. } => {
            if sab.registry().lookup_hash(*target).is_none() {
                return respond(
                    SyscallStatus::NotFound,
                    SyscallResult::SendMessage { delivered: false },
                    format!("target module {target:#010x} is not registered"),
                );
            }
            let mailbox = messages.0.entry(*target).or_default();
            if mailbox.len() >= MAX_MESSAGES {
                return respond(
                    SyscallStatus::InvalidRequest,
                    SyscallResult::SendMessage { delivered: false },
                    format!("the mailbox of module {target:#010x} is full ({MAX_MESSAGES} messages)"),
                );
            }
            mailbox.push((call.source_module, payload.clone()));
            respond(
                SyscallStatus::Success,
                SyscallResult::SendMessage { delivered: true },
                String::new(),
            )
        }
        SyscallBody::HostCall { service, .. } => refuse(format!(
            "host service {service:?} is not available: the native kernel has no host services"
        )),
    }
}
