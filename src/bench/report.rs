//! The bench's text report: every figure of a [`BenchReport`] with what it timed.

use super::{BenchReport, Latency, Throughput};

/// Prints `r` as aligned tables, section by section.
pub(super) fn print(r: &BenchReport) {
    let lat = |name: &str, l: &Latency| {
        println!(
            "  {name:<40} p50 {:>8.2} µs   p99 {:>8.2} µs   max {:>9.2} µs   ({} samples)",
            l.p50_ns as f64 / 1e3,
            l.p99_ns as f64 / 1e3,
            l.max_ns as f64 / 1e3,
            l.samples
        )
    };
    let thr = |name: &str, t: &Throughput| {
        println!(
            "  {name:<40} {:>8.2} M frames/s   ({} frames in {:.3} s)",
            t.per_second / 1e6,
            t.items,
            t.seconds
        )
    };
    if let Some(s) = &r.signals {
        println!("epoch signal -> wake (one way, waiter present)");
        lat("epoch, waiter spinning", &s.epoch_wake_spin);
        lat("epoch, waiter parked", &s.epoch_wake_parked);
        lat("crossbeam channel, receiver blocked", &s.crossbeam_wake_parked);
        println!("round trip");
        lat("epoch ping-pong", &s.epoch_round_trip);
        lat("crossbeam channel ping-pong", &s.crossbeam_round_trip);
    }
    if let Some(rings) = &r.rings {
        println!("64-byte frames, producer thread -> consumer thread");
        thr("SAB ring (inbox)", &rings.ring_64b);
        thr("crossbeam ArrayQueue", &rings.array_queue_64b);
        println!("  ring / ArrayQueue: {:.2}x", rings.ring_vs_array_queue);
    }
    if let Some(b) = &r.bookkeeping {
        println!("bookkeeping (one thread)");
        println!(
            "  {:<40} {:>8.1} ns   (target < 100 ns)",
            "registry lookup by name", b.registry_lookup_ns
        );
        println!(
            "  {:<40} {:>8.2} µs   (target < 5 µs)",
            "registry re-registration", b.registry_register_us
        );
        println!("  {:<40} {:>8.1} ns", "arena alloc + free", b.arena_alloc_free_ns);
    }
    if let Some(f) = &r.flock {
        println!("flock, physics + matrices per tick (neighbours: per bird, within the perception radius)");
        for t in &f.flock {
            println!(
                "  {:>7} birds, {:<10} {:>5.1} neighbours, {} threads   median {:>8.2} ms (physics {:.2} + matrices {:.2})   p99 {:>8.2} ms",
                t.birds,
                t.layout.name(),
                t.mean_neighbours,
                t.threads,
                t.median_ms,
                t.physics_median_ms,
                t.matrices_median_ms,
                t.p99_ms
            );
        }
        println!("flock physics step: the grid against every bird checking every other (same birds, threads, model)");
        for c in &f.flock_vs_naive {
            println!(
                "  {:>7} birds, {:<10} {:>5.1} neighbours, {} threads   grid {:>8.3} ms   O(n²) {:>9.2} ms   {:.1}x",
                c.birds,
                c.layout.name(),
                c.mean_neighbours,
                c.threads,
                c.grid_median_ms,
                c.naive_median_ms,
                c.speedup
            );
        }
        let a = &f.flock_app;
        println!(
            "  {:>7} birds in the headless app (SAB streams, obstacles; {} ticks): physics stage {:.2} ms, matrix stage {:.2} ms (medians)",
            a.birds, a.ticks, a.physics_median_ms, a.matrices_median_ms
        );
    }
    if let Some(j) = &r.jobs {
        println!("job pipeline (echo, 16-byte input, headless app; target 1 M jobs/s)");
        let rate = |name: String, t: &Throughput| {
            println!(
                "  {name:<40} {:>8.3} M jobs/s   ({} jobs in {:.3} s)",
                t.per_second / 1e6,
                t.items,
                t.seconds
            );
        };
        for (host, at_once, steady, round_trip) in [
            ("in the tick", &j.echo_jobs, &j.echo_jobs_steady, &j.echo_job_round_trip),
            (
                "on its own thread",
                &j.echo_jobs_host_thread,
                &j.echo_jobs_steady_host_thread,
                &j.echo_job_round_trip_host_thread,
            ),
        ] {
            println!("  the job host {host}:");
            rate(format!("  throughput, {} submitted at once", at_once.items), at_once);
            rate(format!("  throughput, {} in flight", j.echo_window), steady);
            lat("  one job, submit to result", round_trip);
        }
    }
    if let Some(w) = &r.workflows {
        println!(
            "workflows ({} chains of {} echo steps, outputs passed by SAB offset, {} updates)",
            w.workflows,
            w.steps / w.workflows.max(1),
            w.updates
        );
        println!(
            "  {:<40} {:>8.2} µs   (target < 50 µs; submit {:.2} µs of it)",
            "coordination per step", w.coordination_per_step_us, w.submit_per_step_us
        );
        println!(
            "  {:<40} {:>8.2} µs",
            "wall time per step, pipeline included", w.wall_per_step_us
        );
    }
    if let Some(e) = &r.engines {
        println!(
            "engines ({} BLAKE3 jobs of 4-64 KiB, 10 per tick, ticks paced at 64 Hz, deadlines 50 ms out)",
            e.jobs
        );
        println!(
            "  {:<40} {:>7.1} %   within 20 %: {:.1} % of predictions (target: within 20 %)",
            "learning: latency prediction error",
            e.learning_mean_abs_error_pct,
            100.0 * e.learning_within_20pct
        );
        println!(
            "  {:<40} {:>7.1} %   (target ≥ 95 %)",
            "scheduling: deadlines met",
            100.0 * e.deadline_hit_rate
        );
    }
    #[cfg(not(target_arch = "wasm32"))]
    if let Some(p) = &r.processes {
        println!("across processes (each beside the same between two threads of one process, in this run)");
        lat("epoch wake, waiter spinning, threads", &p.epoch_wake_spin_threads);
        lat("epoch wake, waiter spinning, processes", &p.epoch_wake_spin_processes);
        lat("epoch wake, waiter parked, threads", &p.epoch_wake_parked_threads);
        lat("epoch wake, waiter parked, processes", &p.epoch_wake_parked_processes);
        thr("64-byte frames, inbox ring, threads", &p.ring_64b_threads);
        thr("64-byte frames, inbox ring, processes", &p.ring_64b_processes);
        println!(
            "  processes / threads: {:.2}x (target ≥ 0.5x)",
            p.ring_processes_vs_threads
        );
        for (name, t) in [
            ("echo jobs submitted in the kernel", &p.echo_in_kernel),
            ("echo jobs from an inos submit process", &p.echo_from_client),
        ] {
            println!(
                "  {name:<40} {:>8.3} M jobs/s   ({} jobs, {} in flight, host in the tick, in {:.3} s)",
                t.per_second / 1e6,
                t.items,
                p.echo_window,
                t.seconds
            );
        }
    }
}
