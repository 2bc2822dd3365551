//! `inos inspect FILE`: what a snapshot holds, as tables or as JSON with the same content.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::sab::admission::AdmissionStats;
use crate::sab::arena::ArenaStats;
use crate::sab::engines::{AuditKind, AuditRecord, Engine};
use crate::sab::guard::{GuardEntry, GuardPolicy};
use crate::sab::kernel_state::{AreaSummary, JobTableSummary};
use crate::sab::layout::RegionNode;
use crate::sab::patterns::JobHistoryHeader;
use crate::sab::pipeline::PipelineRecord;
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
