//! Compute units. Each unit is a plugin that registers itself in the SAB's module registry at
//! startup (through `RegisterUnitExt::register_unit`) and adds its systems, gated on the epochs it
//! consumes. Units never call each other or the supervisors: they meet only in the SAB.

pub mod boids;
pub mod crypto;
pub mod echo;
pub mod host;
pub mod matrices;
pub mod physics;
pub mod pool;

use bevy::prelude::*;

use crate::sab::{ModuleSpec, Owner, Sab};

/// Runs `tasks` in parallel on the [`pool::WorkerPool`]: as many at once as it has threads (this
/// one among them, taking tasks in turn), returning when all are done.
pub fn run_scoped<F: FnOnce() + Send>(tasks: impl IntoIterator<Item = F>) {
    let tasks: Vec<std::sync::Mutex<Option<F>>> = tasks.into_iter().map(|task| Some(task).into()).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    pool::WorkerPool::global().broadcast(tasks.len(), &|_| {
        while let Some(task) = tasks.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) {
            if let Some(task) = task.lock().unwrap_or_else(|e| e.into_inner()).take() {
                task();
            }
        }
    });
}

/// sin and cos of `x`: by Taylor polynomials, exact to f32 rounding, for |x| ≤ π/2 (the birds'
/// half-angles and wing, tip and tail angles), where they cost a fraction of a library call;
/// the library's beyond.
pub fn sin_cos(x: f32) -> (f32, f32) {
    if x.abs() > std::f32::consts::FRAC_PI_2 {
        return x.sin_cos();
    }
    // Horner on x²: the terms ±x^(2k+1)/(2k+1)! to k = 6 and ±x^(2k)/(2k)! to k = 7 (the first
    // terms left out are below 1e-9 at π/2).
    const SIN: [f32; 7] = [
        1.0,
        -1.0 / 6.0,
        1.0 / 120.0,
        -1.0 / 5040.0,
        1.0 / 362_880.0,
        -1.0 / 39_916_800.0,
        1.0 / 6_227_020_800.0,
    ];
    const COS: [f32; 8] = [
        1.0,
        -1.0 / 2.0,
        1.0 / 24.0,
        -1.0 / 720.0,
        1.0 / 40_320.0,
        -1.0 / 3_628_800.0,
        1.0 / 479_001_600.0,
        -1.0 / 87_178_291_200.0,
    ];
    let x2 = x * x;
    let horner = |c: &[f32]| c.iter().rev().fold(0.0, |acc, &k| acc * x2 + k);
    (x * horner(&SIN), horner(&COS))
}

/// Registrations that failed at startup, with the reason (shown by the inspector and the logs).
#[derive(Resource, Default, Debug)]
pub struct UnitRegistrationErrors(pub Vec<(String, String)>);

/// The one way a unit plugin registers itself: its registry entry, capabilities and dependencies
/// are written into the SAB at startup, which signals the registry epoch.
pub trait RegisterUnitExt {
    fn register_unit(&mut self, spec: ModuleSpec) -> &mut Self;
    /// Registers a unit that takes jobs: its registry record, and its entry point with the job
    /// host (`host::JobHostPlugin`) under the unit's id.
    fn register_job_unit(&mut self, spec: ModuleSpec, execute: host::JobExecutor) -> &mut Self {
        self.register_job_entry(spec, host::JobEntry::Immediate(execute))
    }
    /// Registers a unit that runs its jobs in its own systems: the host leaves them in its mailbox
    /// (`host::JobMailboxes`).
    fn register_mailbox_unit(&mut self, spec: ModuleSpec) -> &mut Self {
        self.register_job_entry(spec, host::JobEntry::Mailbox)
    }
    fn register_job_entry(&mut self, spec: ModuleSpec, entry: host::JobEntry) -> &mut Self;
}

impl RegisterUnitExt for App {
    fn register_job_entry(&mut self, spec: ModuleSpec, entry: host::JobEntry) -> &mut Self {
        let replaced = self
            .init_resource::<host::JobExecutors>()
            .world_mut()
            .resource_mut::<host::JobExecutors>()
            .0
            .insert(spec.id.clone(), entry);
        if replaced.is_some() {
            warn!("a second job entry point for unit {} replaces the first", spec.id);
        }
        self.register_unit(spec)
    }

    fn register_unit(&mut self, spec: ModuleSpec) -> &mut Self {
        if !self.world().contains_resource::<PendingUnits>() {
            self.init_resource::<PendingUnits>()
                .init_resource::<UnitRegistrationErrors>()
                .add_systems(Startup, register_pending_units);
        }
        self.world_mut().resource_mut::<PendingUnits>().0.push(spec);
        self
    }
}

/// Units added with `register_unit`, written into the registry at startup in the order they were
/// added (so each lands in the same slot on every run).
#[derive(Resource, Default)]
struct PendingUnits(Vec<ModuleSpec>);

fn register_pending_units(
    sab: Res<Sab>,
    mut pending: ResMut<PendingUnits>,
    mut errors: ResMut<UnitRegistrationErrors>,
) {
    for spec in pending.0.drain(..) {
        match sab.registry().register(&spec, Owner::Module) {
            Ok(slot) => info!("unit {} {:?} registered in slot {slot}", spec.id, spec.version),
            Err(e) => {
                error!("unit {} could not register: {e}", spec.id);
                errors.0.push((spec.id.clone(), e.to_string()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_polynomial_sin_cos_is_the_library_s_to_rounding(x in -3.0f32..3.0) {
            let (s, c) = super::sin_cos(x);
            let (s64, c64) = f64::from(x).sin_cos();
            prop_assert!((f64::from(s) - s64).abs() < 3e-7, "sin {x}: {s} vs {s64}");
            prop_assert!((f64::from(c) - c64).abs() < 3e-7, "cos {x}: {c} vs {c64}");
        }
    }
}
