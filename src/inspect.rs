//! `inos inspect FILE`: what a snapshot holds, as tables or as JSON with the same content.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::sab::admission::AdmissionStats;
use crate::sab::arena::ArenaStats;
use crate::sab::clients::LaneState;
use crate::sab::engines::{AuditKind, AuditRecord, Engine};
use crate::sab::guard::{GuardEntry, GuardPolicy};
use crate::sab::kernel_state::{AreaSummary, JobTableSummary};
use crate::sab::layout::RegionNode;
use crate::sab::patterns::JobHistoryHeader;
use crate::sab::pipeline::PipelineRecord;
use crate::sab::processes::{ProcessEntry, ProcessHeader};
use crate::sab::registry::ModuleRecord;
use crate::sab::ring::RingStats;
use crate::sab::snapshot::SnapshotHeader;
use crate::sab::stream::StreamControl;
use crate::sab::{
    BirdRecord, EpochIndex, GuardRegion, Owner, RingId, Sab, SabHeader, StreamId, SupervisorHeader, SupervisorStatus,
    Tier,
};

#[derive(Debug, Serialize)]
pub struct EpochEntry {
    pub index: u32,
    pub name: Option<&'static str>,
    pub kind: Option<crate::sab::epochs::EpochKind>,
    pub value: u32,
}

#[derive(Debug, Serialize)]
pub struct GuardReport {
    #[serde(flatten)]
    pub policy: GuardPolicy,
    pub writer_names: String,
    #[serde(flatten)]
    pub entry: GuardEntry,
}

#[derive(Debug, Serialize)]
pub struct SupervisorReport {
    pub slot: usize,
    pub epoch: u32,
    pub name: String,
    pub status: Option<SupervisorStatus>,
    pub header: SupervisorHeader,
}

/// A record that no consistent read could copy: its writer was in the middle of writing it (or
/// died there, and the snapshot kept it so).
#[derive(Debug, Serialize)]
pub struct BeingWrittenReport {
    /// What the record is: "registry entry", "supervisor header", "engine record" or "audit log".
    pub record: &'static str,
    /// Its slot, or the engine's name.
    pub at: String,
}

/// One engine's state record, with its metrics named.
#[derive(Debug, Serialize)]
pub struct EngineReport {
    pub engine: Engine,
    pub runs: u32,
    pub last_run_ms: u64,
    pub metrics: Vec<(&'static str, f32)>,
}

#[derive(Debug, Serialize)]
pub struct StreamReport {
    pub stream: StreamId,
    #[serde(flatten)]
    pub control: StreamControl,
    /// The first record of the active buffer (bird stream only).
    pub sample_bird: Option<BirdRecord>,
}

/// A client lane in use, and whether its client runs.
#[derive(Debug, Serialize)]
pub struct LaneReport {
    #[serde(flatten)]
    pub state: LaneState,
    pub owner_alive: bool,
}

/// Everything `inos inspect` reports about one SAB.
#[derive(Debug, Serialize)]
pub struct SabReport {
    pub tier: Tier,
    pub sab_size: usize,
    pub layout_version: u32,
    pub body_blake3: Option<String>,
    pub header: SabHeader,
    /// Named epochs, then any other non-zero index.
    pub epochs: Vec<EpochEntry>,
    pub regions: Vec<RegionNode>,
    pub rings: Vec<RingStats>,
    pub streams: Vec<StreamReport>,
    pub guards: Vec<GuardReport>,
    pub modules: Vec<ModuleRecord>,
    pub supervisors: Vec<SupervisorReport>,
    pub arena: ArenaStats,
    pub live_patterns: usize,
    pub job_history: JobHistoryHeader,
    /// The job pipeline's counters (none while being written).
    pub pipeline: Option<PipelineRecord>,
    /// The admission table's settings and counters.
    pub admission: AdmissionStats,
    pub engines: Vec<EngineReport>,
    /// Audit records ever written, and the newest ones kept.
    pub audit_total: u64,
    pub audit: Vec<AuditRecord>,
    /// The kernel's state: the job table's jobs, and each area's entries and history cursor.
    pub jobs: JobTableSummary,
    pub kernel_state: Vec<AreaSummary>,
    /// The kernel lock and the processes sharing the SAB (a snapshot keeps those of its run).
    pub process_table: ProcessHeader,
    pub processes: Vec<ProcessEntry>,
    /// The client lanes in use.
    pub client_lanes: Vec<LaneReport>,
    /// Records left out above because they are being written.
    pub being_written: Vec<BeingWrittenReport>,
}

impl SabReport {
    pub fn new(sab: &Sab, snapshot: Option<&SnapshotHeader>) -> Self {
        let epochs = sab.epochs();
        let entries = (0..EpochIndex::COUNT as u32)
            .filter_map(EpochIndex::new)
            .filter_map(|index| {
                let named = EpochIndex::NAMED.iter().find(|(i, _, _)| *i == index);
                let value = epochs.load(index);
                (named.is_some() || value != 0).then(|| EpochEntry {
                    index: index.get(),
                    name: named.map(|n| n.1),
                    kind: named.map(|n| n.2),
                    value,
                })
            })
            .collect();
        let guards = sab.guards();
        let layout = sab.layout();
        let table = sab.supervisors();
        let mut being_written: Vec<BeingWrittenReport> = sab
            .registry()
            .being_written()
            .into_iter()
            .map(|slot| BeingWrittenReport {
                record: "registry entry",
                at: format!("slot {slot}"),
            })
            .collect();
        let supervisors = table
            .allocated()
            .into_iter()
            .filter_map(|s| {
                let Ok(header) = table.header(s.slot) else {
                    being_written.push(BeingWrittenReport {
                        record: "supervisor header",
                        at: format!("slot {}", s.slot),
                    });
                    return None;
                };
                Some(SupervisorReport {
                    slot: s.slot,
                    epoch: s.epoch.get(),
                    name: header.name(),
                    status: SupervisorStatus::from_u8(header.status),
                    header,
                })
            })
            .collect();
        let engines = Engine::ALL
            .into_iter()
            .filter_map(|engine| {
                let Ok(record) = sab.engines().read(engine) else {
                    being_written.push(BeingWrittenReport {
                        record: "engine record",
                        at: engine.name().to_owned(),
                    });
                    return None;
                };
                Some(EngineReport {
                    engine,
                    runs: record.runs,
                    last_run_ms: record.last_run_ms,
                    metrics: record.named(engine),
                })
            })
            .collect();
        let audit = sab.audit_log().records().unwrap_or_else(|_| {
            being_written.push(BeingWrittenReport {
                record: "audit log",
                at: "header".to_owned(),
            });
            Vec::new()
        });
        let pipeline = sab.pipeline().read().ok();
        if pipeline.is_none() {
            being_written.push(BeingWrittenReport {
                record: "pipeline record",
                at: "coordination".to_owned(),
            });
        }
        let (jobs, kernel_state) = sab.kernel_summary();
        Self {
            tier: layout.tier,
            sab_size: layout.sab_size,
            layout_version: sab.header().layout_version,
            body_blake3: snapshot.map(|h| blake3::Hash::from_bytes(h.body_hash).to_hex().to_string()),
            header: sab.header(),
            epochs: entries,
            regions: layout.regions(),
            rings: RingId::ALL.map(|id| sab.ring(id).stats()).into_iter().collect(),
            streams: StreamId::ALL
                .map(|id| {
                    let stream = sab.stream(id);
                    let control = stream.control();
                    let sample_bird = (id == StreamId::Birds).then(|| first_bird(sab, &control)).flatten();
                    StreamReport {
                        stream: id,
                        control,
                        sample_bird,
                    }
                })
                .into_iter()
                .collect(),
            guards: GuardRegion::ALL
                .map(|region| {
                    let policy = region.policy();
                    GuardReport {
                        policy,
                        writer_names: Owner::mask_names(policy.writers),
                        entry: guards.entry(region),
                    }
                })
                .into_iter()
                .collect(),
            modules: sab.registry().modules(),
            supervisors,
            arena: sab.arena().stats(),
            live_patterns: sab.patterns().count(),
            job_history: sab.job_history().header(),
            pipeline,
            admission: sab.admission().stats(),
            engines,
            audit_total: sab.audit_log().total(),
            audit,
            jobs,
            kernel_state,
            process_table: sab.processes().header(),
            processes: sab.processes().entries(),
            client_lanes: sab
                .clients()
                .states()
                .into_iter()
                .filter(|l| l.owner != 0)
                .map(|state| LaneReport {
                    owner_alive: sab.clients().owner_alive(state.lane),
                    state,
                })
                .collect(),
            being_written,
        }
    }

    /// The report as aligned text tables.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let w = &mut out;
        let _ = writeln!(
            w,
            "SAB: tier {}, {} bytes ({} MiB), layout version {}",
            self.tier,
            self.sab_size,
            self.sab_size >> 20,
            self.layout_version
        );
        if let Some(hash) = &self.body_blake3 {
            let _ = writeln!(w, "body blake3: {hash}");
        }
        let _ = writeln!(
            w,
            "\nEPOCHS\n  {:>3}  {:<20} {:<8} {:>10}",
            "idx", "name", "kind", "value"
        );
        for e in &self.epochs {
            let kind = e.kind.map(|k| format!("{k:?}").to_lowercase()).unwrap_or_default();
            let _ = writeln!(
                w,
                "  {:>3}  {:<20} {:<8} {:>10}",
                e.index,
                e.name.unwrap_or("-"),
                kind,
                e.value
            );
        }
        let _ = writeln!(
            w,
            "\nREGIONS\n  {:<24} {:>10} {:>10} {:>10}  parent",
            "name", "offset", "size", "end"
        );
        for n in &self.regions {
            let r = n.region;
            let _ = writeln!(
                w,
                "  {:<24} {:>#10x} {:>10} {:>#10x}  {}",
                r.name,
                r.offset,
                r.size,
                r.end(),
                n.parent.unwrap_or("-")
            );
        }
        self.rings_text(w);
        let _ = writeln!(
            w,
            "\nSTREAMS\n  {:<9} {:>10} {:>6} {:>8} {:>12} {:>12}",
            "stream", "generation", "active", "capacity", "A count/gen", "B count/gen"
        );
        for s in &self.streams {
            let c = &s.control;
            let _ = writeln!(
                w,
                "  {:<9} {:>10} {:>6} {:>8} {:>12} {:>12}",
                format!("{:?}", s.stream),
                c.generation,
                ["A", "B"][(c.active & 1) as usize],
                c.capacity,
                format!("{}/{}", c.buffers[0].count, c.buffers[0].generation),
                format!("{}/{}", c.buffers[1].count, c.buffers[1].generation)
            );
            if let Some(b) = &s.sample_bird {
                let _ = writeln!(
                    w,
                    "    bird 0: position {:?} velocity {:?} energy {} fitness {}",
                    b.position, b.velocity, b.energy, b.fitness
                );
            }
        }
        let _ = writeln!(
            w,
            "\nGUARDS\n  {:<20} {:<13} {:<14} {:>5} {:<14} {:>10} {:>10}",
            "region", "mode", "writers", "epoch", "lock", "last epoch", "violations"
        );
        for g in &self.guards {
            let _ = writeln!(
                w,
                "  {:<20} {:<13} {:<14} {:>5} {:<14} {:>10} {:>10}",
                format!("{:?}", g.policy.region),
                format!("{:?}", g.policy.mode),
                g.writer_names,
                g.policy.epoch.map_or("-".into(), |e| e.get().to_string()),
                Owner::mask_names(g.entry.lock),
                g.entry.last_epoch,
                g.entry.violations
            );
        }
        let _ = writeln!(w, "\nMODULES ({} registered)", self.modules.len());
        for m in &self.modules {
            let v = m.version;
            let _ = writeln!(
                w,
                "  slot {:>2}  {:<12} {}.{}.{}  caps {:>3}  deps {}",
                m.slot,
                m.id,
                v[0],
                v[1],
                v[2],
                m.capabilities.len(),
                m.dependencies.len()
            );
            for c in &m.capabilities {
                let gpu = if c.requires_gpu { ", GPU" } else { "" };
                let _ = writeln!(w, "      capability {} ({} MB{gpu})", c.id, c.min_memory_mb);
            }
            for d in &m.dependencies {
                let (a, b) = (d.min, d.max);
                let optional = if d.optional { " (optional)" } else { "" };
                let _ = writeln!(
                    w,
                    "      needs {} {}.{}.{} ..= {}.{}.{}{optional}",
                    d.module_id, a[0], a[1], a[2], b[0], b[1], b[2]
                );
            }
        }
        let _ = writeln!(
            w,
            "\nSUPERVISORS ({} allocated)\n  {:>4} {:>5} {:<16} {:<9} {:>9} {:>7} {:>8} {:>6} {:>15}",
            self.supervisors.len(),
            "slot",
            "epoch",
            "name",
            "status",
            "processed",
            "failed",
            "avg µs",
            "health",
            "heartbeat ms"
        );
        for s in &self.supervisors {
            let h = &s.header;
            let _ = writeln!(
                w,
                "  {:>4} {:>5} {:<16} {:<9} {:>9} {:>7} {:>8.1} {:>6.2} {:>15}",
                s.slot,
                s.epoch,
                s.name,
                s.status
                    .map_or_else(|| format!("?{}", h.status), |st| format!("{st:?}")),
                h.jobs_processed,
                h.jobs_failed,
                h.avg_job_time_us,
                h.health_score,
                h.last_heartbeat_ms
            );
        }
        let a = &self.arena;
        let _ = writeln!(
            w,
            "\nARENA\n  capacity {} B, used {} B, free {} B, largest free block {} B, fragmentation {:.3}, {} allocations",
            a.capacity, a.used, a.free, a.largest_free_block, a.fragmentation, a.allocations
        );
        let _ = writeln!(
            w,
            "\nPATTERNS AND JOB HISTORY\n  {} live patterns; job history holds {} of {} records ({} written in all)",
            self.live_patterns, self.job_history.count, self.job_history.capacity, self.job_history.total
        );
        if let Some(p) = &self.pipeline {
            let _ = writeln!(
                w,
                "\nJOB PIPELINE\n  {} submitted, {} dispatched, {} resolved ({} timed out); {} queued, {} in flight; {} unmatched results, {} malformed frames",
                p.submitted, p.dispatched, p.resolved, p.timed_out, p.queued, p.in_flight, p.unmatched, p.malformed
            );
        }
        let a = &self.admission;
        let _ = writeln!(
            w,
            "\nADMISSION\n  burst {}, {} per second per source; {} admitted, {} rate limited, {} too large, {} malformed; {} sources",
            a.burst, a.per_second, a.admitted, a.rate_limited, a.too_large, a.malformed, a.sources
        );
        let j = &self.jobs;
        let _ = writeln!(
            w,
            "\nKERNEL STATE\n  job table: {} queued, {} sent, {} answered and not taken; last wire id {}\n  {:<20} {:>8} {:>10} {:>6}",
            j.queued, j.sent, j.answered, j.sequence, "area", "entries", "history", "lost"
        );
        for a in &self.kernel_state {
            let (next, lost) = a.history.map_or(("-".to_owned(), "-".to_owned()), |c| {
                (c.next.to_string(), c.lost.to_string())
            });
            let _ = writeln!(w, "  {:<20} {:>8} {:>10} {:>6}", a.area, a.entries, next, lost);
        }
        self.processes_text(w);
        let _ = writeln!(w, "\nENGINES");
        for e in &self.engines {
            let metrics: Vec<String> = e
                .metrics
                .iter()
                .map(|(name, value)| format!("{name} {value}"))
                .collect();
            let _ = writeln!(
                w,
                "  {:<13} {:>7} runs  {}",
                e.engine.name(),
                e.runs,
                metrics.join(", ")
            );
        }
        let _ = writeln!(
            w,
            "\nAUDIT LOG\n  {} records written, {} kept",
            self.audit_total,
            self.audit.len()
        );
        for r in self.audit.iter().rev().take(10) {
            let kind = AuditKind::from_u32(r.kind).map_or_else(|| format!("?{}", r.kind), |k| format!("{k:?}"));
            let _ = writeln!(
                w,
                "  job {:>8} {:<16} source {:08x} unit {:08x} value {} limit {}",
                r.job_id, kind, r.source_hash, r.unit_hash, r.value, r.limit
            );
        }
        if !self.being_written.is_empty() {
            let _ = writeln!(w, "\nBEING WRITTEN (no consistent copy could be read; left out above)");
            for b in &self.being_written {
                let _ = writeln!(w, "  {} {}", b.record, b.at);
            }
        }
        out
    }
}

impl SabReport {
    /// The RINGS section.
    fn rings_text(&self, w: &mut String) {
        let _ = writeln!(
            w,
            "\nRINGS\n  {:<14} {:>9} {:>9} {:>7} {:>9} {:>9} {:>8}",
            "ring", "capacity", "used", "frames", "consumed", "rejected", "consumer"
        );
        for r in &self.rings {
            let _ = writeln!(
                w,
                "  {:<14} {:>9} {:>9} {:>7} {:>9} {:>9} {:>8}{}",
                format!("{:?}", r.ring),
                r.control.capacity,
                r.used_bytes,
                r.pending_frames,
                r.control.consumed,
                r.control.rejected_full,
                if r.control.consumer != 0 { "held" } else { "free" },
                if r.uncommitted_frame {
                    "  (a reserved frame is uncommitted)"
                } else {
                    ""
                }
            );
        }
    }

    /// The PROCESSES section: the kernel lock, the process table and the client lanes.
    fn processes_text(&self, w: &mut String) {
        let t = &self.process_table;
        let _ = writeln!(
            w,
            "\nPROCESSES\n  kernel lock: pid {} ({} claims, {} taken over from dead kernels); client lanes reclaimed {}, frames abandoned {}",
            t.kernel_pid, t.kernel_claims, t.locks_recovered, t.lanes_reclaimed, t.frames_abandoned
        );
        let _ = writeln!(
            w,
            "  {:>4} {:>8}  {:<10} {:<24} {:>6} {:>14}",
            "slot", "pid", "role", "name", "alive", "heartbeat age"
        );
        let now = crate::sab::now_ms();
        for p in &self.processes {
            let role = p.role.map_or("?".to_owned(), |r| format!("{r:?}").to_lowercase());
            let age = format!("{} ms", now.saturating_sub(p.heartbeat_ms));
            let alive = if p.alive { "yes" } else { "no" };
            let _ = writeln!(
                w,
                "  {:>4} {:>8}  {:<10} {:<24} {:>6} {:>14}",
                p.slot, p.pid, role, p.name, alive, age
            );
        }
        for LaneReport { state: l, owner_alive } in &self.client_lanes {
            let _ = writeln!(
                w,
                "  lane {}: pid {}{}, generation {}, {} requests taken, {} results sent{}",
                l.lane,
                l.owner,
                if *owner_alive { "" } else { " (gone)" },
                l.generation,
                l.frames_taken,
                l.results_sent,
                if l.closing { ", closing" } else { "" }
            );
        }
    }
}

/// Bird 0 of the active bird buffer, if the stream holds any bird.
fn first_bird(sab: &Sab, control: &StreamControl) -> Option<BirdRecord> {
    let active = (control.active & 1) as usize;
    if control.buffers[active].count == 0 {
        return None;
    }
    let region = sab.layout().spec().bird_buffers[active];
    sab.read(region.offset).ok()
}

pub fn run(path: &Path, json: bool) -> Result<(), crate::RunError> {
    let (sab, header) = Sab::read_snapshot(path)?;
    let report = SabReport::new(&sab, Some(&header));
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}

/// `inos inspect --live`: the report of a running kernel's SAB, read through its seqlocks, once
/// or (`--watch`) every `watch` seconds with the epochs' rates, until the kernel is gone, Ctrl-C,
/// or `count` refreshes.
#[cfg(not(target_arch = "wasm32"))]
pub fn run_live(
    path: Option<&Path>,
    json: bool,
    watch: Option<f64>,
    count: Option<u64>,
) -> Result<(), crate::RunError> {
    let path = match path {
        Some(path) => path.to_owned(),
        None => crate::sab::shared::running(Path::new(crate::sab::shared::SHM_DIR))?,
    };
    let sab = Sab::attach(&path)?;
    let Some(interval) = watch else {
        let report = SabReport::new(&sab, None);
        if json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", report.to_text());
        }
        return Ok(());
    };
    let process = sab
        .processes()
        .register(crate::sab::processes::Role::Inspector, "inos inspect --watch", None)?;
    let interval = std::time::Duration::from_secs_f64(interval);
    let mut before = (std::time::Instant::now(), epoch_values(&sab));
    let mut refreshes = 0u64;
    let result = loop {
        std::thread::sleep(interval);
        sab.processes().beat(process);
        let now = (std::time::Instant::now(), epoch_values(&sab));
        let report = SabReport::new(&sab, None);
        let rates = epoch_rates(&before, &now);
        if json {
            let frame = serde_json::json!({ "epoch_rates": rates, "report": report });
            println!("{}", serde_json::to_string(&frame)?);
        } else {
            // Clear the screen and draw from the top, like `top`.
            print!("\x1b[2J\x1b[H{}", watch_text(&path, &report, &rates));
        }
        before = now;
        refreshes += 1;
        if count.is_some_and(|count| refreshes >= count) {
            break Ok(());
        }
        if let Err(e) = sab.processes().check_kernel() {
            break Err(e.into());
        }
    };
    sab.processes().unregister(process);
    result
}

#[cfg(not(target_arch = "wasm32"))]
fn epoch_values(sab: &Sab) -> Vec<u32> {
    let epochs = sab.epochs();
    (0..EpochIndex::COUNT as u32)
        .filter_map(EpochIndex::new)
        .map(|i| epochs.load(i))
        .collect()
}

/// An epoch that moved between two looks, and how fast.
#[derive(Debug, Serialize)]
pub struct EpochRate {
    pub index: u32,
    pub name: Option<&'static str>,
    pub value: u32,
    pub per_second: f64,
}

#[cfg(not(target_arch = "wasm32"))]
fn epoch_rates(
    (t0, before): &(std::time::Instant, Vec<u32>),
    (t1, now): &(std::time::Instant, Vec<u32>),
) -> Vec<EpochRate> {
    let seconds = t1.duration_since(*t0).as_secs_f64().max(f64::MIN_POSITIVE);
    let mut rates: Vec<EpochRate> = before
        .iter()
        .zip(now)
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .filter_map(|(i, (a, b))| {
            let index = EpochIndex::new(i as u32)?;
            Some(EpochRate {
                index: i as u32,
                name: index.name(),
                value: *b,
                per_second: f64::from(b.wrapping_sub(*a)) / seconds,
            })
        })
        .collect();
    rates.sort_by(|a, b| b.per_second.total_cmp(&a.per_second));
    rates
}

#[cfg(not(target_arch = "wasm32"))]
/// The `--watch` screen: what moves, the pipeline, the processes and the rings.
fn watch_text(path: &Path, r: &SabReport, rates: &[EpochRate]) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "{}: tier {}, {} MiB, layout {}; kernel pid {}",
        path.display(),
        r.tier,
        r.sab_size >> 20,
        r.layout_version,
        r.process_table.kernel_pid
    );
    let _ = writeln!(
        w,
        "\nEPOCHS THAT MOVED\n  {:>3}  {:<22} {:>12} {:>12}",
        "idx", "name", "value", "per second"
    );
    for e in rates.iter().take(16) {
        let _ = writeln!(
            w,
            "  {:>3}  {:<22} {:>12} {:>12.1}",
            e.index,
            e.name.unwrap_or("-"),
            e.value,
            e.per_second
        );
    }
    if let Some(p) = &r.pipeline {
        let _ = writeln!(
            w,
            "\nJOBS  submitted {}, resolved {}, queued {}, in flight {}, timed out {}",
            p.submitted, p.resolved, p.queued, p.in_flight, p.timed_out
        );
    }
    r.processes_text(w);
    r.rings_text(w);
    out
}

/// `inos shm`: the SAB files in /dev/shm with their kernels; `--clean` removes the stale ones.
#[cfg(not(target_arch = "wasm32"))]
pub fn run_shm(clean: bool, json: bool) -> Result<(), crate::RunError> {
    use crate::sab::shared::{SHM_DIR, list};
    let files = list(Path::new(SHM_DIR)).map_err(|e| crate::RunError::Usage(format!("cannot list {SHM_DIR}: {e}")))?;
    let mut removed = Vec::new();
    if clean {
        for f in files.iter().filter(|f| f.stale()) {
            std::fs::remove_file(&f.path)
                .map_err(|e| crate::RunError::Usage(format!("cannot remove {}: {e}", f.path.display())))?;
            removed.push(f.path.clone());
        }
    }
    if json {
        let report = serde_json::json!({ "files": files, "removed": removed });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    if files.is_empty() {
        println!("no SAB files in {SHM_DIR}");
    }
    for f in &files {
        let state = match (&f.error, f.stale()) {
            (Some(e), _) => format!("not a SAB of this build: {e}"),
            (None, true) if removed.contains(&f.path) => "stale: removed".to_owned(),
            (None, true) => "stale (its processes are gone; --clean removes it)".to_owned(),
            (None, false) => format!(
                "kernel pid {}, {} process(es) running",
                f.kernel_pid.unwrap_or(0),
                f.live_processes
            ),
        };
        println!("{}  {} MiB  {state}", f.path.display(), f.bytes >> 20);
    }
    Ok(())
}
