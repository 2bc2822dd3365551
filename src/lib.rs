//! INOS on Bevy: a shared-memory operating system whose parts talk only through one byte arena
//! (the SAB, `sab`) and atomic epoch counters.
//!
//! - `CorePlugins`: the headless core (the SAB and the pulse); runs anywhere, no window or GPU.
//! - `render::VisualPlugins` (feature `render`): what is drawn in the window, and the inspector.
//! - The entry points assemble these from a typed [`RunConfig`] that `cli` builds from the command
//!   line: `headless` (no window), `window` (the simulator's window), `bench`, `soak`, `inspect`.

pub mod bench;
pub mod cli;
pub mod engines;
#[cfg(not(target_arch = "wasm32"))]
pub mod fuzz;
pub mod headless;
pub mod inspect;
#[cfg(feature = "render")]
pub mod inspector;
pub mod protocol;
pub mod pulse;
#[cfg(feature = "render")]
pub mod render;
pub mod sab;
#[cfg(not(target_arch = "wasm32"))]
pub mod soak;
pub mod submit;
pub mod supervisors;
pub mod timing;
pub mod units;
#[cfg(target_arch = "wasm32")]
pub mod web;
#[cfg(feature = "render")]
pub mod window;

use std::path::PathBuf;

use bevy::app::{PluginGroup, PluginGroupBuilder};
use bevy::prelude::{App, FixedUpdate, IntoScheduleConfigs, Plugin};

use crate::engines::{EngineSystems, EnginesPlugin};
use crate::pulse::PulsePlugin;
use crate::sab::{SabLayout, SabPlugin};
use crate::supervisors::DiscoveryPlugin;
use crate::supervisors::clients::ClientPlugin;
use crate::supervisors::evolution::{EvolutionPlugin, EvolutionSystems};
use crate::supervisors::jobs::{JobPipelinePlugin, JobPipelineSystems};
use crate::supervisors::syscalls::SyscallPlugin;
use crate::supervisors::tree::{SupervisorTreePlugin, SupervisorTreeSystems};
use crate::supervisors::workflows::WorkflowPlugin;
use crate::units::boids::{BoidsPlugin, BoidsSystems, FlockParams, World};
use crate::units::crypto::CryptoPlugin;
use crate::units::echo::EchoPlugin;
use crate::units::host::{JobHostMode, JobHostPlugin, JobHostSystems};
use crate::units::matrices::{MatricesPlugin, MatricesSystems};
use crate::units::physics::{PhysicsPlugin, PhysicsSystems};

/// Why a command of `inos` failed (printed as `error: …` with exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Layout(#[from] sab::layout::LayoutError),
    #[error(transparent)]
    Flock(#[from] units::boids::FlockError),
    #[error(transparent)]
    Snapshot(#[from] sab::snapshot::SnapshotError),
    #[error("cannot print the report as JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[cfg(not(target_arch = "wasm32"))]
    #[error(transparent)]
    Shared(#[from] sab::shared::SharedError),
    #[error(transparent)]
    Process(#[from] sab::processes::ProcessError),
    #[error(transparent)]
    Client(#[from] sab::clients::ClientError),
    #[cfg(all(feature = "render", not(target_arch = "wasm32")))]
    #[error(transparent)]
    Display(#[from] render::display::DisplayError),
    #[error("cannot save the screenshot to {path}: {reason}")]
    Screenshot { path: PathBuf, reason: String },
    #[error("the simulator exited with code {0}")]
    Exited(std::num::NonZero<u8>),
    #[error("the soak failed: a job or workflow went unanswered or failed, or resident memory grew past the limit")]
    Soak,
    #[error("this build has no renderer (built without the `render` feature); use --headless")]
    NoRenderer,
    #[error("this browser has no WebGL2, which the simulator draws with; enable WebGL or hardware acceleration")]
    NoWebGl2,
    #[error("{0}")]
    Usage(String),
}

/// A run of the simulator, headless or in a window, as the command line asked for it.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub layout: SabLayout,
    pub pulse_hz: f64,
    pub flock: FlockPlugins,
    pub job_host: JobHostMode,
    /// Fixed ticks of a headless run.
    pub ticks: u64,
    /// Serve outside clients for this long instead (`--serve`): ticks at the pulse rate, and at
    /// once when a client submits.
    pub serve: Option<std::time::Duration>,
    /// Where to write a snapshot of the whole SAB when the run ends.
    pub snapshot: Option<PathBuf>,
    /// The SAB to run on, if not a new private one of `layout`: a shared mapping (`--sab`, the
    /// native default), and with `--resume` a snapshot's SAB, whose whole system the run takes up
    /// (jobs, workflows, chunks, the supervisor tree, the engines' models, the flock).
    pub sab: Option<sab::Sab>,
    /// Print the headless report as JSON.
    pub json: bool,
    /// Render this many frames, save a screenshot to the path, and exit.
    pub screenshot: Option<(PathBuf, u32)>,
}

/// The headless core of INOS: the SAB resource, the pulse that drives everything else, the
/// supervisors' discovery of registered units, and the job pipeline with the units that take jobs
/// (crypto, echo).
pub struct CorePlugins {
    pub layout: SabLayout,
    /// Pulse rate in Hz (the fixed timestep).
    pub pulse_hz: f64,
}

impl PluginGroup for CorePlugins {
    fn build(self) -> PluginGroupBuilder {
        PluginGroupBuilder::start::<Self>()
            .add(SabPlugin { layout: self.layout })
            .add(PulsePlugin { hz: self.pulse_hz })
            .add(DiscoveryPlugin)
            .add(JobPipelinePlugin)
            .add(ClientPlugin)
            .add(SupervisorTreePlugin)
            .add(WorkflowPlugin)
            .add(SyscallPlugin)
            .add(EnginesPlugin)
            .add(JobHostPlugin)
            .add(CryptoPlugin)
            .add(EchoPlugin)
            .add(KernelOrderPlugin)
    }
}

/// The order of the kernel's parts in one tick, which meet only in the SAB and so do not order
/// themselves: a job's round trip (the kernel dispatches, the units' host runs the jobs, the kernel
/// resolves their results), then the supervisor tree, then the engines, so that the jobs resolved
/// in a tick reach both in the same tick.
struct KernelOrderPlugin;

impl Plugin for KernelOrderPlugin {
    fn build(&self, app: &mut App) {
        app.configure_sets(
            FixedUpdate,
            (
                JobHostSystems::Run.after(JobPipelineSystems::Dispatch),
                JobHostSystems::Send.before(JobPipelineSystems::Resolve),
                JobHostSystems::Stats.after(JobPipelineSystems::Resolve),
                EngineSystems.after(SupervisorTreeSystems),
            ),
        );
    }
}

/// The flock: the boids unit and the matrix unit stepping on the pulse, the boids supervisor's
/// evolution every `evolve_every` bird epochs (0 = never), and, with `obstacles`, the physics
/// unit's Rapier scene that the birds steer around.
#[derive(Clone, Copy, Debug)]
pub struct FlockPlugins {
    pub birds: usize,
    pub params: FlockParams,
    pub seed: u64,
    pub evolve_every: u32,
    pub obstacles: bool,
}

/// The reference's generation cadence: every 180 bird epochs (about 3 s).
pub const EVOLVE_EVERY: u32 = 180;

impl PluginGroup for FlockPlugins {
    fn build(self) -> PluginGroupBuilder {
        let group = PluginGroupBuilder::start::<Self>()
            .add(BoidsPlugin {
                birds: self.birds,
                params: self.params,
            })
            .add(MatricesPlugin)
            .add(EvolutionPlugin {
                seed: self.seed,
                every: self.evolve_every,
            })
            .add(FlockOrderPlugin);
        if self.obstacles {
            group.add(PhysicsPlugin {
                bounds: World::new(self.birds, self.params.world_scale).bounds,
            })
        } else {
            group
        }
    }
}

/// Stage order of one tick: pulse, the Rapier step and its obstacle table, the flock's physics,
/// matrices, then the supervisor tree and evolution (which reads this tick's birds; its genes
/// reach the physics of the next tick).
struct FlockOrderPlugin;

impl Plugin for FlockOrderPlugin {
    fn build(&self, app: &mut App) {
        app.configure_sets(
            FixedUpdate,
            (
                PhysicsSystems::Publish.before(BoidsSystems),
                MatricesSystems.after(BoidsSystems),
                EvolutionSystems.after(MatricesSystems),
                // The tree judges heartbeats after this tick's units have beaten.
                SupervisorTreeSystems.after(MatricesSystems),
                // The engines read the units' stage times.
                EngineSystems.after(EvolutionSystems),
            ),
        );
    }
}
