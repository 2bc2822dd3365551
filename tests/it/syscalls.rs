//! Syscalls end to end in a headless app: units send envelopes on the outbox-kernel ring beside
//! job results, the kernel serves them (chunk store, lifecycle, messages) and answers on the
//! outbox-host ring.

use bevy::prelude::*;
use inos::headless::{HeadlessConfig, build_app};
use inos::protocol::{Job, JobStatus, Payload, SabRange, SyscallBody, SyscallResponse, SyscallResult, SyscallStatus};
use inos::sab::{Owner, Sab};
use inos::supervisors::jobs::JobQueue;
use inos::supervisors::syscalls::ModuleMessages;
use inos::supervisors::tree::{Lifecycle, SupervisorTree};
use inos::units::host::{SyscallReplies, send_syscall};

fn app() -> App {
    build_app(HeadlessConfig::kernel())
}

fn call(app: &mut App, module: &str, call_id: u64, body: SyscallBody) -> SyscallResponse {
    let sab = app.world().resource::<Sab>().clone();
    send_syscall(&sab, module, call_id, body).unwrap();
    for _ in 0..10 {
        app.update();
        if let Some(response) = app.world_mut().resource_mut::<SyscallReplies>().take(call_id) {
            return response;
        }
    }
    panic!("syscall {call_id} has no response");
}

#[test]
fn a_chunk_stored_from_one_arena_block_is_fetched_into_another() {
    let mut app = app();
    let sab = app.world().resource::<Sab>().clone();
    let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 256) as u8).collect();
    let source = sab.arena().alloc(1000, Owner::Module).unwrap();
    sab.write(source.offset, &data).unwrap();
    let hash = blake3::hash(&data).as_bytes().to_vec();
    let range = |offset: usize| SabRange {
        offset: offset as u64,
        length: 1000,
    };
    let stored = call(
        &mut app,
        "echo",
        1,
        SyscallBody::StoreChunk {
            hash: hash.clone(),
            source: range(source.offset),
            ttl: 0,
        },
    );
    assert_eq!(stored.status, SyscallStatus::Success, "{}", stored.error);
    assert!(matches!(&stored.result, SyscallResult::StoreChunk { hash: h, .. } if *h == hash));

    let destination = sab.arena().alloc(1000, Owner::Module).unwrap();
    let fetched = call(
        &mut app,
        "echo",
        2,
        SyscallBody::FetchChunk {
            hash: hash.clone(),
            priority: 0,
            destination: range(destination.offset),
        },
    );
    assert_eq!(fetched.status, SyscallStatus::Success, "{}", fetched.error);
    assert_eq!(
        fetched.result,
        SyscallResult::FetchChunk {
            bytes: 1000,
            hash_verified: true
        }
    );
    let mut copy = vec![0u8; 1000];
    sab.copy_out(destination.offset, &mut copy).unwrap();
    assert_eq!(copy, data);

    // Unknown hash, and a destination outside the arena's data pages.
    let missing = call(
        &mut app,
        "echo",
        3,
        SyscallBody::FetchChunk {
            hash: vec![0; 32],
            priority: 0,
            destination: range(destination.offset),
        },
    );
    assert_eq!(missing.status, SyscallStatus::NotFound);
    let outside = call(
        &mut app,
        "echo",
        4,
        SyscallBody::FetchChunk {
            hash,
            priority: 0,
            destination: range(0x1000),
        },
    );
    assert_eq!(outside.status, SyscallStatus::OutOfBounds);
}

#[test]
fn spawn_and_kill_syscalls_drive_the_supervisor_tree() {
    let mut app = app();
    let lifecycle = |app: &App| {
        app.world()
            .resource::<SupervisorTree>()
            .unit("echo")
            .map(|u| u.lifecycle)
    };
    app.update();
    assert_eq!(lifecycle(&app), Some(Lifecycle::Running));
    let killed = call(&mut app, "crypto", 1, SyscallBody::KillThread { unit: "echo".into() });
    assert_eq!(killed.status, SyscallStatus::Success);
    app.update();
    assert_eq!(lifecycle(&app), Some(Lifecycle::Stopped));
    let spawned = call(&mut app, "crypto", 2, SyscallBody::SpawnThread { unit: "echo".into() });
    assert_eq!(spawned.status, SyscallStatus::Success);
    app.update();
    assert_eq!(lifecycle(&app), Some(Lifecycle::Running));
    let nobody = call(&mut app, "crypto", 3, SyscallBody::KillThread { unit: "nobody".into() });
    assert_eq!(nobody.status, SyscallStatus::NotFound);
}

#[test]
fn messages_noops_host_calls_and_strangers() {
    let mut app = app();
    let crypto = crc32c::crc32c(b"crypto");
    let sent = call(
        &mut app,
        "echo",
        1,
        SyscallBody::SendMessage {
            target: crypto,
            payload: b"hello".to_vec(),
            priority: 0,
        },
    );
    assert_eq!(sent.result, SyscallResult::SendMessage { delivered: true });
    let inbox = app.world_mut().resource_mut::<ModuleMessages>().take("crypto");
    assert_eq!(inbox, [(crc32c::crc32c(b"echo"), b"hello".to_vec())]);
    let lost = call(
        &mut app,
        "echo",
        2,
        SyscallBody::SendMessage {
            target: 7,
            payload: vec![],
            priority: 0,
        },
    );
    assert_eq!(
        (lost.status, lost.result),
        (SyscallStatus::NotFound, SyscallResult::SendMessage { delivered: false })
    );
    assert_eq!(
        call(&mut app, "echo", 3, SyscallBody::Noop).status,
        SyscallStatus::Success
    );
    let host = call(
        &mut app,
        "echo",
        4,
        SyscallBody::HostCall {
            service: "fs".into(),
            payload: vec![],
        },
    );
    assert_eq!(host.status, SyscallStatus::InvalidRequest);
    assert!(host.error.contains("fs"));
    let stranger = call(&mut app, "stranger", 5, SyscallBody::Noop);
    assert_eq!(stranger.status, SyscallStatus::InvalidRequest);
    assert!(stranger.error.contains("not registered"));
}

#[test]
fn syscalls_and_job_results_share_the_outbox_kernel_ring() {
    let mut app = app();
    let sab = app.world().resource::<Sab>().clone();
    for id in 1..=20u64 {
        let job = Job::new(id, "echo", "echo", Payload::Inline(vec![id as u8; 8]));
        app.world_mut().resource_mut::<JobQueue>().submit(&sab, &job).unwrap();
        send_syscall(&sab, "echo", 100 + id, SyscallBody::Noop).unwrap();
    }
    for _ in 0..5 {
        app.update();
    }
    let mut queue = app.world_mut().resource_mut::<JobQueue>();
    for id in 1..=20u64 {
        assert_eq!(queue.take_result(id).unwrap().status, JobStatus::Success);
    }
    assert_eq!(queue.stats.malformed, 0);
    let mut replies = app.world_mut().resource_mut::<SyscallReplies>();
    for id in 101..=120u64 {
        assert_eq!(replies.take(id).unwrap().status, SyscallStatus::Success);
    }
}
