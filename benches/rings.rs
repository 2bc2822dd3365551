//! 64-byte frames from a producer thread to a consumer thread: the SAB inbox ring, rtrb and
//! crossbeam's ArrayQueue, measured side by side in one run (`cargo bench --bench rings`).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use inos::sab::{Owner, RingError, RingId, Sab, Tier};

const FRAMES: u64 = 1_000_000;

fn sab_ring(iters: u64) -> Duration {
    // One SAB for every iteration: each iteration drains the ring it fills.
    let sab = Sab::for_tier(Tier::Light);
    let ring = sab.ring(RingId::Inbox);
    let mut consumer = ring.consumer().unwrap();
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let producer = ring.producer(Owner::Kernel).unwrap();
        let start = Instant::now();
        let thread = std::thread::spawn(move || {
            let frame = [7u8; 64];
            for _ in 0..FRAMES {
                while let Err(RingError::Full { .. }) = producer.push(&frame) {
                    std::hint::spin_loop();
                }
            }
        });
        let mut buf = [0u8; 64];
        let mut received = 0;
        while received < FRAMES {
            if consumer.read_into(&mut buf).unwrap().is_some() {
                received += 1;
            }
        }
        total += start.elapsed();
        thread.join().unwrap();
        black_box(buf);
    }
    total
}

fn rtrb_ring(iters: u64) -> Duration {
    // Same capacity in frames as the inbox holds 64-byte frames (8-byte header each), allocated
    // once; the producer travels to each iteration's thread and back.
    let (mut tx, mut rx) = rtrb::RingBuffer::<[u8; 64]>::new((512 << 10) / 72);
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        let thread = std::thread::spawn(move || {
            for _ in 0..FRAMES {
                while tx.push([7u8; 64]).is_err() {
                    std::hint::spin_loop();
                }
            }
            tx
        });
        let mut received = 0;
        while received < FRAMES {
            if let Ok(frame) = rx.pop() {
                black_box(frame);
                received += 1;
            }
        }
        total += start.elapsed();
        tx = thread.join().unwrap();
    }
    total
}

fn array_queue(iters: u64) -> Duration {
    let queue = Arc::new(crossbeam::queue::ArrayQueue::<[u8; 64]>::new((512 << 10) / 72));
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        let thread = {
            let queue = Arc::clone(&queue);
            std::thread::spawn(move || {
                for _ in 0..FRAMES {
                    while queue.push([7u8; 64]).is_err() {
                        std::hint::spin_loop();
                    }
                }
            })
        };
        let mut received = 0;
        while received < FRAMES {
            if let Some(frame) = queue.pop() {
                black_box(frame);
                received += 1;
            }
        }
        total += start.elapsed();
        thread.join().unwrap();
    }
    total
}

fn rings(c: &mut Criterion) {
    let mut group = c.benchmark_group("spsc_64B_frames");
    group.throughput(Throughput::Elements(FRAMES));
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    group.bench_function("sab_ring", |b| b.iter_custom(sab_ring));
    group.bench_function("rtrb", |b| b.iter_custom(rtrb_ring));
    group.bench_function("crossbeam_array_queue", |b| b.iter_custom(array_queue));
    group.finish();
}

criterion_group!(benches, rings);
criterion_main!(benches);
