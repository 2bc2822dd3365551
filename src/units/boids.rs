//! The boids unit: every rule, constant and formula of reference §4, stepping the flock once per
//! pulse and publishing it on the bird stream.
//!
//! - Default (correct) mode: Jacobi. Every bird reads the start-of-step flock and writes the next
//!   one, so the result does not depend on update order or on the number of worker threads; birds
//!   bank about their own forward axis (q = Ry(heading) · Rx(pitch) · Rz(bank)).
//! - `faithful` mode reproduces the original: birds are updated in place in index order (later
//!   birds see earlier birds' new state) and bank about the world Z axis
//!   (q = Rz(bank) · Ry(heading) · Rx(pitch)).
//! - The world grows with the bird count so that the density stays that of the original's 1000
//!   birds in 80 × 60 × 80 (cell size and perception radius 10), unless a world scale is fixed:
//!   horizontally by √(birds / 1000), which also keeps the golden-angle start disk in the same
//!   proportion to the world.
//! - Neighbour search uses a counting-sort uniform grid with cell-ordered position and velocity
//!   arrays (one array per coordinate). The Jacobi step first sums each bird's neighbours in slot
//!   order, cell by cell: the 27 cells' runs are listed once per cell as groups of slots, and
//!   every bird of the cell takes the same groups in SIMD lanes, without branches that depend on
//!   where it sits: groups of 16 with AVX-512 lane masks where the CPU has them (checked at run
//!   time), of 4 otherwise. The two widths add the same neighbours in different orders, so a
//!   run's bits (and stream hash) are the same for any thread count on one machine, but can
//!   differ between a CPU with AVX-512 and one without. Then each bird steps in index order, and
//!   stages its cell, position and velocity for the next step's grid, which therefore never
//!   rereads the records. All buffers are reused, so a steady-state step allocates no
//!   flock-sized memory. Both passes split their work into chunks taken by the threads of the
//!   units' worker pool ([`crate::units::pool`]).
//! - Per-bird trigonometry is replaced by identities that give the reference's values to f32
//!   rounding: the noise and wing-beat sines by angle addition with each bird's phases (computed
//!   once, in f64), the heading's half-angle from the velocity itself, the small pitch and bank
//!   half-angles by polynomial.
//! - Birds steer away from the physics unit's obstacles, read from the SAB's obstacle table on the
//!   physics epoch ([`steer`], weight [`W_AVOID`]): an addition to the reference's forces.

use bevy::math::{DQuat, Vec3, Vec4};
use bevy::platform::time::Instant;
use bevy::prelude::*;
use serde::Serialize;

use crate::pulse::PulseSystems;
use crate::sab::engines::Engine;
use crate::sab::genes::{GENE_LIMIT, GeneError, GeneRecord};
use crate::sab::stream::StreamWriter;
use crate::sab::supervisors::unit_running;
use crate::sab::{
    BirdRecord, EpochIndex, ModuleSpec, ObstacleRecord, Owner, Sab, SabLayout, StreamId, Tier, epoch_changed,
};
use crate::supervisors::evolution::{SplitMix64, breed};
use crate::timing::StageTimes;
use crate::units::{RegisterUnitExt, run_scoped, sin_cos};

/// Reference §4.3.
pub const SEPARATION_DISTANCE: f32 = 3.0;
pub const PERCEPTION_RADIUS: f32 = 10.0;
pub const CELL_SIZE: f32 = 10.0;
pub const W_SEP: f32 = 1.5;
pub const W_ALI: f32 = 0.05;
pub const W_COH: f32 = 0.02;
pub const W_BOUNDARY: f32 = 0.5;
pub const MIN_SPEED: f32 = 2.0;
pub const MAX_SPEED: f32 = 6.0;
/// The original's soft bounds and grid, for 1000 birds.
pub const BASE_BOUNDS: Vec3 = Vec3::new(38.0, 28.0, 38.0);
pub const BASE_CELLS: [f32; 3] = [8.0, 6.0, 8.0];
pub const BASE_BIRDS: f32 = 1000.0;
/// Birds closer than this to an obstacle's surface steer away from it.
pub const AVOID_RADIUS: f32 = 4.0;
/// Velocity change per frame (1/60 s) at an obstacle's surface, fading linearly to zero at
/// [`AVOID_RADIUS`]. It has to beat the swirl, which near the pillars adds about 0.9 per frame
/// along their circle.
pub const W_AVOID: f32 = 3.0;

/// How the flock is stepped.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct FlockParams {
    pub faithful: bool,
    /// World scale relative to the original's 80 × 60 × 80; `None` scales with the bird count.
    pub world_scale: Option<f32>,
    /// Worker threads for Jacobi steps (1 = this thread only).
    pub threads: usize,
    /// Work items per thread in a Jacobi step: the threads take items from a shared queue, so
    /// more items balance the load better and cost more handing out. The optimisation engine
    /// tunes it (`EPOCH_OPTIMIZATION`).
    pub chunks_per_thread: usize,
}

/// The default work items per thread, before the optimisation engine has tuned it.
pub const DEFAULT_CHUNKS_PER_THREAD: usize = 4;

impl Default for FlockParams {
    fn default() -> Self {
        Self {
            faithful: false,
            world_scale: None,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            chunks_per_thread: DEFAULT_CHUNKS_PER_THREAD,
        }
    }
}

/// The world for `birds` birds: soft bounds and grid dimensions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct World {
    pub bounds: Vec3,
    pub dims: [usize; 3],
    pub half: Vec3,
}

impl World {
    /// With `scale` fixed, every axis is scaled by it. Otherwise the horizontal axes grow with
    /// √(birds / 1000) and the height stays: the volume then grows with the bird count (constant
    /// density), and the golden-angle start disk, whose radius grows with √i, covers the same share
    /// of the world as the original's 1000 birds did.
    pub fn new(birds: usize, scale: Option<f32>) -> Self {
        let scales = match scale {
            Some(s) => Vec3::splat(s),
            None => {
                let h = (birds.max(1) as f32 / BASE_BIRDS).sqrt().max(1.0);
                Vec3::new(h, 1.0, h)
            }
        };
        let dims = [
            (BASE_CELLS[0] * scales.x).ceil().max(1.0) as usize,
            (BASE_CELLS[1] * scales.y).ceil().max(1.0) as usize,
            (BASE_CELLS[2] * scales.z).ceil().max(1.0) as usize,
        ];
        Self {
            bounds: BASE_BOUNDS * scales,
            dims,
            half: Vec3::new(dims[0] as f32, dims[1] as f32, dims[2] as f32) * (CELL_SIZE / 2.0),
        }
    }

    fn cell_of(&self, p: Vec3) -> usize {
        // Truncation is the floor here: negative values (and NaN) are clamped to 0 first.
        let c = |v: f32, half: f32, dim: usize| (((v + half) / CELL_SIZE).max(0.0) as usize).min(dim - 1);
        let (x, y, z) = (
            c(p.x, self.half.x, self.dims[0]),
            c(p.y, self.half.y, self.dims[1]),
            c(p.z, self.half.z, self.dims[2]),
        );
        (x * self.dims[1] + y) * self.dims[2] + z
    }

    fn cell_coords(&self, cell: usize) -> [usize; 3] {
        let z = cell % self.dims[2];
        let y = (cell / self.dims[2]) % self.dims[1];
        [cell / (self.dims[1] * self.dims[2]), y, z]
    }

    pub fn cell_count(&self) -> usize {
        self.dims.iter().product()
    }
}

/// A uniform grid rebuilt every step by counting sort, into buffers that are reused.
///
/// Cells are numbered with z fastest, so the three z-neighbouring cells of a row are one
/// contiguous run of `items` (birds in index order within a cell). Positions and velocities are
/// copied out in that order as separate x, y, z arrays (structure of arrays), so the neighbour
/// pass reads contiguous memory four candidates at a time.
#[derive(Default)]
pub struct Grid {
    starts: Vec<u32>,
    fill: Vec<u32>,
    items: Vec<u32>,
    /// Where each bird sits in `items`.
    slot_of_bird: Vec<u32>,
    cell_of_bird: Vec<u32>,
    /// [position, velocity] by bird.
    staged: Vec<[[f32; 3]; 2]>,
    /// [x, y, z, vx, vy, vz] in `items` order, each padded with `MAX_LANES - 1` far-away entries
    /// so a load of a whole group at any slot stays in bounds.
    soa: [Vec<f32>; 6],
}

/// The chunk length that splits the grid's work over `threads` threads, if `n` birds are enough
/// to be worth it.
fn parallel_chunk(n: usize, threads: usize) -> Option<usize> {
    (threads > 1 && n >= 4096).then(|| n.div_ceil(threads))
}

/// The grid's input, by bird: each bird's cell, and its [position, velocity].
type StagedBirds = (Vec<u32>, Vec<[[f32; 3]; 2]>);

/// Candidates per step of the neighbour pass (SSE or the web's 128-bit vectors).
const LANES: usize = 4;
/// The widest group of candidates (AVX-512), for the padding.
const MAX_LANES: usize = 16;

/// How the neighbour pass takes its candidates: four at a time on every CPU, or sixteen at a time
/// with AVX-512. The AVX-512 variant holds a token that only a successful CPU check makes, so no
/// caller can reach the intrinsics on a CPU without them.
#[derive(Clone, Copy, Debug)]
enum Width {
    /// Four candidates per group (SSE, or the web's 128-bit vectors).
    Four,
    /// Sixteen candidates per group, on AVX-512.
    #[cfg(target_arch = "x86_64")]
    Avx512(wide::Avx512),
    /// Sixteen candidates per group in portable code: the AVX-512 lane arithmetic, lane by lane,
    /// so that the 16-lane logic is tested on every CPU.
    #[cfg(test)]
    SixteenPortable,
}

impl Width {
    /// The widest pass this CPU runs.
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if let Some(cpu) = wide::Avx512::detect() {
            return Self::Avx512(cpu);
        }
        Self::Four
    }

    /// Candidates per group.
    fn lanes(self) -> usize {
        match self {
            Self::Four => LANES,
            #[cfg(target_arch = "x86_64")]
            Self::Avx512(_) => wide::LANES,
            #[cfg(test)]
            Self::SixteenPortable => wide::LANES,
        }
    }
}

/// 1 in the lanes whose bit is set, by bit pattern.
const LANE_WEIGHTS: [Vec4; 16] = {
    let mut weights = [Vec4::ZERO; 16];
    let mut bits = 0;
    while bits < 16 {
        weights[bits] = Vec4::new(
            (bits & 1) as f32,
            ((bits >> 1) & 1) as f32,
            ((bits >> 2) & 1) as f32,
            ((bits >> 3) & 1) as f32,
        );
        bits += 1;
    }
    weights
};
/// Padding coordinates: far from every bird, yet finite when squared and multiplied by zero.
const FAR: f32 = 1e18;

impl Grid {
    /// Rebuilds the grid over `birds` (reusing its buffers).
    pub fn build(&mut self, world: &World, birds: &[BirdRecord]) {
        self.build_threads(world, birds, 1);
    }

    /// [`Grid::build`], reading the records on up to `threads` threads: each bird's cell, and its
    /// position and velocity staged compactly, so the serial counting sort that follows reads
    /// 28 bytes per bird instead of its 236-byte record. (A Jacobi step stages the next step's
    /// birds as it writes them, and skips this.)
    pub fn build_threads(&mut self, world: &World, birds: &[BirdRecord], threads: usize) {
        self.cell_of_bird.resize(birds.len(), 0);
        self.staged.resize(birds.len(), [[0.0; 3]; 2]);
        let stage = |birds: &[BirdRecord], cell_of: &mut [u32], staged: &mut [[[f32; 3]; 2]]| {
            for ((b, c), s) in birds.iter().zip(cell_of).zip(staged) {
                *c = world.cell_of(Vec3::from(b.position)) as u32;
                *s = [b.position, b.velocity];
            }
        };
        if let Some(chunk) = parallel_chunk(birds.len(), threads) {
            let stage = &stage;
            run_scoped(
                birds
                    .chunks(chunk)
                    .zip(self.cell_of_bird.chunks_mut(chunk))
                    .zip(self.staged.chunks_mut(chunk))
                    .map(|((b, c), s)| move || stage(b, c, s)),
            );
        } else {
            stage(birds, &mut self.cell_of_bird, &mut self.staged);
        }
        self.sort(world, threads);
    }

    /// The counting sort of the staged birds by cell, and their coordinates gathered into slot
    /// order.
    fn sort(&mut self, world: &World, threads: usize) {
        let (cells, n) = (world.cell_count(), self.staged.len());
        self.starts.clear();
        self.starts.resize(cells + 1, 0);
        for &c in &self.cell_of_bird {
            self.starts[c as usize + 1] += 1;
        }
        for c in 0..cells {
            self.starts[c + 1] += self.starts[c];
        }
        self.items.resize(n, 0);
        self.slot_of_bird.resize(n, 0);
        for column in &mut self.soa {
            column.resize(n, 0.0);
            column.extend([FAR; MAX_LANES - 1]);
        }
        // Stable: birds of a cell stay in index order, so neighbour sums have a fixed order. Only
        // the indices are scattered here; the coordinates are gathered in slot order next.
        self.fill.clear();
        self.fill.extend_from_slice(&self.starts[..cells]);
        for (i, &c) in self.cell_of_bird.iter().enumerate() {
            let slot = self.fill[c as usize] as usize;
            self.fill[c as usize] += 1;
            self.items[slot] = i as u32;
            self.slot_of_bird[i] = slot as u32;
        }
        let staged = &self.staged;
        let gather = |items: &[u32], [xs, ys, zs, vxs, vys, vzs]: [&mut [f32]; 6]| {
            for (k, &i) in items.iter().enumerate() {
                let [[x, y, z], [vx, vy, vz]] = staged[i as usize];
                (xs[k], ys[k], zs[k]) = (x, y, z);
                (vxs[k], vys[k], vzs[k]) = (vx, vy, vz);
            }
        };
        if let Some(chunk) = parallel_chunk(n, threads) {
            let gather = &gather;
            let mut columns = self.soa.each_mut().map(|column| column[..n].chunks_mut(chunk));
            let tasks: Vec<_> = self
                .items
                .chunks(chunk)
                .map(|items| {
                    let columns = columns.each_mut().map(|c| c.next().expect("as many chunks as items"));
                    move || gather(items, columns)
                })
                .collect();
            run_scoped(tasks);
        } else {
            gather(&self.items, self.soa.each_mut().map(|column| &mut column[..n]));
        }
    }

    /// The rows (x, y) around `cell`, with the index of each row's first cell (z = 0).
    fn rows(world: &World, cell: usize) -> impl Iterator<Item = (usize, usize, usize)> {
        let dims = world.dims;
        let [cx, cy, _] = world.cell_coords(cell);
        let range = |c: usize, dim: usize| c.saturating_sub(1)..=(c + 1).min(dim - 1);
        range(cx, dims[0]).flat_map(move |x| range(cy, dims[1]).map(move |y| (x, y, (x * dims[1] + y) * dims[2])))
    }

    /// Every bird in the 27 cells around `cell`, in cell order and index order within a cell.
    fn visit_near_indices(&self, world: &World, cell: usize, mut f: impl FnMut(usize)) {
        let cz = world.cell_coords(cell)[2];
        let (z0, z1) = (cz.saturating_sub(1), (cz + 1).min(world.dims[2] - 1));
        for (_, _, row) in Self::rows(world, cell) {
            for &j in &self.items[self.starts[row + z0] as usize..self.starts[row + z1 + 1] as usize] {
                f(j as usize);
            }
        }
    }

    /// The runs of the 27 cells around `cell` (each row's z-neighbouring cells are contiguous in
    /// `items`), cut into groups of `lanes` slots: the same for every bird of the cell.
    fn groups_around(&self, world: &World, cell: usize, lanes: usize, out: &mut Vec<Group>) {
        out.clear();
        let cz = world.cell_coords(cell)[2];
        let (z0, z1) = (cz.saturating_sub(1), (cz + 1).min(world.dims[2] - 1));
        for (_, _, row) in Self::rows(world, cell) {
            let (lo, hi) = (self.starts[row + z0], self.starts[row + z1 + 1]);
            out.extend((lo..hi).step_by(lanes).map(|first| Group {
                first,
                live: (1 << (hi - first).min(lanes as u32)) - 1,
            }));
        }
    }

    /// The neighbour sums of the bird in `slot` over `groups` of `width.lanes()` slots.
    fn sums(&self, slot: usize, groups: &[Group], width: Width) -> NeighbourSums {
        match width {
            Width::Four => self.sums4(slot, groups),
            #[cfg(target_arch = "x86_64")]
            Width::Avx512(cpu) => cpu.sums(&self.soa, slot, groups),
            #[cfg(test)]
            Width::SixteenPortable => wide::sums_portable(&self.soa, slot, groups),
        }
    }

    /// The neighbour sums of the bird in `slot` over `groups` (its cell's
    /// [`Grid::groups_around`] of four slots), four candidates at a time. Every group costs the
    /// same few branch-free vector operations; only a group with a candidate inside the
    /// separation distance pays for square roots and divisions.
    fn sums4(&self, slot: usize, groups: &[Group]) -> NeighbourSums {
        let [xs, ys, zs, vxs, vys, vzs] = &self.soa;
        let (px, py, pz) = (Vec4::splat(xs[slot]), Vec4::splat(ys[slot]), Vec4::splat(zs[slot]));
        let reach = Vec4::splat(PERCEPTION_RADIUS * PERCEPTION_RADIUS);
        let mut sums = [Vec4::ZERO; 10];
        for group in groups {
            let k = group.first as usize;
            let load = |column: &[f32]| Vec4::from_slice(&column[k..k + LANES]);
            let (x, y, z) = (load(xs), load(ys), load(zs));
            let (dx, dy, dz) = (px - x, py - y, pz - z);
            let d2 = dx * dx + dy * dy + dz * dz;
            // Candidates within reach, in the run, and not the bird itself.
            let mut bits = d2.cmplt(reach).bitmask() & group.live;
            let own = slot.wrapping_sub(k);
            if own < LANES {
                bits &= !(1 << own);
            }
            let w = LANE_WEIGHTS[bits as usize];
            let terms = [w, w * x, w * y, w * z, w * load(vxs), w * load(vys), w * load(vzs)];
            for (sum, term) in sums.iter_mut().zip(terms) {
                *sum += term;
            }
            if d2
                .cmplt(Vec4::splat(SEPARATION_DISTANCE * SEPARATION_DISTANCE))
                .bitmask()
                & bits
                != 0
            {
                let d2c = d2.max(Vec4::splat(0.01));
                let d = d2c.sqrt();
                let near = d.cmplt(Vec4::splat(SEPARATION_DISTANCE));
                let push = Vec4::select(near, (Vec4::splat(SEPARATION_DISTANCE) - d) / d2c, Vec4::ZERO) * w;
                for (sum, term) in sums[7..].iter_mut().zip([dx * push, dy * push, dz * push]) {
                    *sum += term;
                }
            }
        }
        let total = |s: Vec4| ((s.x + s.y) + s.z) + s.w;
        let [n, x, y, z, vx, vy, vz, sx, sy, sz] = sums.map(total);
        NeighbourSums {
            neighbours: n as u32,
            positions: Vec3::new(x, y, z),
            velocities: Vec3::new(vx, vy, vz),
            separation: Vec3::new(sx, sy, sz),
        }
    }

    /// [`NeighbourSums`] of the birds in slots `first..first + out.len()`, in slot order: cell by
    /// cell, so each cell's groups are listed once (into `groups`, reused).
    fn sums_for_slots(&self, world: &World, first: usize, out: &mut [NeighbourSums], groups: &mut Vec<Group>) {
        let (mut cell, width) = (u32::MAX, Width::detect());
        for (slot, sums) in (first..).zip(out) {
            let here = self.cell_of_bird[self.items[slot] as usize];
            if here != cell {
                cell = here;
                self.groups_around(world, cell as usize, width.lanes(), groups);
            }
            *sums = self.sums(slot, groups, width);
        }
    }

    /// The forces on bird `i` from its [`NeighbourSums`].
    fn finish(&self, i: usize, sums: &NeighbourSums, world: &World) -> BirdForces {
        let slot = self.slot_of_bird[i] as usize;
        let [xs, ys, zs, vxs, vys, vzs] = &self.soa;
        finish_forces(
            Vec3::new(xs[slot], ys[slot], zs[slot]),
            Vec3::new(vxs[slot], vys[slot], vzs[slot]),
            sums.neighbours,
            sums.velocities,
            sums.positions,
            sums.separation,
            world,
        )
    }

    /// The flocking forces on bird `i` from the positions and velocities the grid was built from
    /// (the Jacobi step): the same sums as [`forces`] over the 27 cells around the bird, taken a
    /// group of candidates at a time.
    pub fn forces(&self, i: usize, world: &World) -> BirdForces {
        let (mut groups, width) = (Vec::new(), Width::detect());
        self.groups_around(world, self.cell_of_bird[i] as usize, width.lanes(), &mut groups);
        self.finish(i, &self.sums(self.slot_of_bird[i] as usize, &groups, width), world)
    }
}

/// Consecutive slots of a run: the first, and a bit for each that is in the run.
#[derive(Clone, Copy, Debug)]
struct Group {
    first: u32,
    live: u32,
}

/// The neighbour pass sixteen candidates per group: on AVX-512 with lane masks instead of weights,
/// and the same lane arithmetic in portable code for tests. Both add each lane's terms in group
/// order and then the sixteen lanes in one fixed order ([`reduce`]), so they agree to the bit.
#[cfg(any(test, target_arch = "x86_64"))]
mod wide {
    use bevy::math::Vec3;

    use super::{Group, NeighbourSums, PERCEPTION_RADIUS, SEPARATION_DISTANCE};

    pub const LANES: usize = 16;

    /// The sum of sixteen lanes, halves first: lane i + lane i + 8, then i + 4, i + 2, i + 1.
    fn reduce(mut lanes: [f32; LANES]) -> f32 {
        for half in [8, 4, 2, 1] {
            for i in 0..half {
                lanes[i] += lanes[i + half];
            }
        }
        lanes[0]
    }

    /// The group's live lanes, less the bird's own slot.
    fn live_lanes(group: &Group, slot: usize) -> u16 {
        let mut live = group.live as u16;
        let own = slot.wrapping_sub(group.first as usize);
        if own < LANES {
            live &= !(1 << own);
        }
        live
    }

    /// [`Avx512::sums`], one lane at a time.
    #[cfg(test)]
    pub fn sums_portable(soa: &[Vec<f32>; 6], slot: usize, groups: &[Group]) -> NeighbourSums {
        let [xs, ys, zs, vxs, vys, vzs] = soa;
        let (px, py, pz) = (xs[slot], ys[slot], zs[slot]);
        let mut n = 0;
        // x, y, z, vx, vy, vz, then the separation's x, y, z, by lane.
        let mut sums = [[0.0f32; LANES]; 9];
        for group in groups {
            let live = live_lanes(group, slot);
            for lane in 0..LANES {
                let k = group.first as usize + lane;
                let (dx, dy, dz) = (px - xs[k], py - ys[k], pz - zs[k]);
                let d2 = dx * dx + dy * dy + dz * dz;
                let inside = live & (1 << lane) != 0 && d2 < PERCEPTION_RADIUS * PERCEPTION_RADIUS;
                if !inside {
                    continue;
                }
                n += 1;
                for (sum, term) in sums.iter_mut().zip([xs[k], ys[k], zs[k], vxs[k], vys[k], vzs[k]]) {
                    sum[lane] += term;
                }
                if d2 < SEPARATION_DISTANCE * SEPARATION_DISTANCE {
                    let d2c = d2.max(0.01);
                    let push = (SEPARATION_DISTANCE - d2c.sqrt()) / d2c;
                    for (sum, term) in sums[6..].iter_mut().zip([dx * push, dy * push, dz * push]) {
                        sum[lane] += term;
                    }
                }
            }
        }
        let [x, y, z, vx, vy, vz, sx, sy, sz] = sums.map(reduce);
        NeighbourSums {
            neighbours: n,
            positions: Vec3::new(x, y, z),
            velocities: Vec3::new(vx, vy, vz),
            separation: Vec3::new(sx, sy, sz),
        }
    }

    /// Proof that this CPU has AVX-512F and POPCNT: made only by [`Avx512::detect`].
    #[cfg(target_arch = "x86_64")]
    #[derive(Clone, Copy, Debug)]
    pub struct Avx512(());

    #[cfg(target_arch = "x86_64")]
    impl Avx512 {
        /// The token, if this CPU runs the 16-lane pass (the check is cached by the standard
        /// library).
        pub fn detect() -> Option<Self> {
            (std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("popcnt"))
                .then_some(Self(()))
        }

        /// `Grid::sums4` sixteen candidates at a time: the same neighbours and the same sums,
        /// added in another order.
        pub fn sums(self, soa: &[Vec<f32>; 6], slot: usize, groups: &[Group]) -> NeighbourSums {
            // SAFETY: `self` exists only where `detect` found AVX-512F and POPCNT on this CPU.
            unsafe { sums_avx512(soa, slot, groups) }
        }
    }

    /// # Safety
    /// The CPU must have AVX-512F and POPCNT.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,popcnt")]
    unsafe fn sums_avx512(soa: &[Vec<f32>; 6], slot: usize, groups: &[Group]) -> NeighbourSums {
        use std::arch::x86_64::*;
        let [xs, ys, zs, vxs, vys, vzs] = soa;
        let (px, py, pz) = (
            _mm512_set1_ps(xs[slot]),
            _mm512_set1_ps(ys[slot]),
            _mm512_set1_ps(zs[slot]),
        );
        let reach = _mm512_set1_ps(PERCEPTION_RADIUS * PERCEPTION_RADIUS);
        let near = _mm512_set1_ps(SEPARATION_DISTANCE * SEPARATION_DISTANCE);
        let mut n = 0;
        let [mut x_sum, mut y_sum, mut z_sum, mut vx_sum, mut vy_sum, mut vz_sum] = [_mm512_setzero_ps(); 6];
        let [mut sep_x, mut sep_y, mut sep_z] = [_mm512_setzero_ps(); 3];
        for group in groups {
            let k = group.first as usize;
            // SAFETY: a bounds-checked slice of 16 floats (the columns are padded for it).
            macro_rules! load {
                ($column:expr) => {
                    unsafe { _mm512_loadu_ps($column[k..k + LANES].as_ptr()) }
                };
            }
            let (x, y, z) = (load!(xs), load!(ys), load!(zs));
            let (dx, dy, dz) = (_mm512_sub_ps(px, x), _mm512_sub_ps(py, y), _mm512_sub_ps(pz, z));
            let d2 = _mm512_add_ps(
                _mm512_add_ps(_mm512_mul_ps(dx, dx), _mm512_mul_ps(dy, dy)),
                _mm512_mul_ps(dz, dz),
            );
            // Candidates within reach, in the run, and not the bird itself.
            let inside = _mm512_mask_cmp_ps_mask::<_CMP_LT_OQ>(live_lanes(group, slot), d2, reach);
            n += inside.count_ones();
            x_sum = _mm512_mask_add_ps(x_sum, inside, x_sum, x);
            y_sum = _mm512_mask_add_ps(y_sum, inside, y_sum, y);
            z_sum = _mm512_mask_add_ps(z_sum, inside, z_sum, z);
            vx_sum = _mm512_mask_add_ps(vx_sum, inside, vx_sum, load!(vxs));
            vy_sum = _mm512_mask_add_ps(vy_sum, inside, vy_sum, load!(vys));
            vz_sum = _mm512_mask_add_ps(vz_sum, inside, vz_sum, load!(vzs));
            let close = _mm512_mask_cmp_ps_mask::<_CMP_LT_OQ>(inside, d2, near);
            if close != 0 {
                let d2c = _mm512_max_ps(d2, _mm512_set1_ps(0.01));
                let d = _mm512_sqrt_ps(d2c);
                let push = _mm512_div_ps(_mm512_sub_ps(_mm512_set1_ps(SEPARATION_DISTANCE), d), d2c);
                sep_x = _mm512_mask_add_ps(sep_x, close, sep_x, _mm512_mul_ps(dx, push));
                sep_y = _mm512_mask_add_ps(sep_y, close, sep_y, _mm512_mul_ps(dy, push));
                sep_z = _mm512_mask_add_ps(sep_z, close, sep_z, _mm512_mul_ps(dz, push));
            }
        }
        let total = |v: __m512| {
            let mut lanes = [0.0f32; LANES];
            // SAFETY: stores 16 floats into an array of 16 floats.
            unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), v) };
            reduce(lanes)
        };
        NeighbourSums {
            neighbours: n,
            positions: Vec3::new(total(x_sum), total(y_sum), total(z_sum)),
            velocities: Vec3::new(total(vx_sum), total(vy_sum), total(vz_sum)),
            separation: Vec3::new(total(sep_x), total(sep_y), total(sep_z)),
        }
    }
}

/// A bird's sums over its neighbours: what [`finish_forces`] turns into forces.
#[derive(Clone, Copy, Debug, Default)]
struct NeighbourSums {
    neighbours: u32,
    positions: Vec3,
    velocities: Vec3,
    separation: Vec3,
}

/// The golden-angle initial population with deterministic genes (reference §4.9).
pub fn initial_population(count: usize) -> Vec<BirdRecord> {
    (0..count)
        .map(|i| {
            let fi = i as f32;
            let (r, theta) = (1.5 * fi.sqrt(), 2.39996 * fi);
            let mut b: BirdRecord = bytemuck::Zeroable::zeroed();
            b.position = [r * theta.cos(), 3.0 * (0.1 * fi).sin(), r * theta.sin()];
            b.velocity = [0.1, 0.0, 0.1];
            for (w, g) in b.genes.iter_mut().enumerate() {
                *g = ((137 * i + 997 * w) % 1000) as f32 * 0.002 - 0.001;
            }
            b
        })
        .collect()
}

/// Time inputs of one step.
#[derive(Clone, Copy, Debug)]
pub struct StepClock {
    /// Simulation time after this step's advance (the first step runs at t = dt).
    pub t: f32,
    pub dt: f32,
    /// The hover counter before its increment (0 on the first step).
    pub step: u32,
    // Terms shared by every bird of the step, computed once (the same f32 operations).
    sep_pulse: f32,
    coh_pulse: f32,
    ali_pulse: f32,
    damping: f32,
    spiral_bank: f32,
    hover: f32,
    trick_epoch: f32,
    /// sin and cos of 0.5t, 0.8t and 0.3t: the noise's time terms (angle addition with
    /// [`BirdPhases`]).
    noise: [f32; 6],
    /// sin and cos of f·t for the wing-beat frequencies f = 5 … 12.
    flap: [(f32, f32); 8],
}

impl StepClock {
    pub fn new(t: f32, dt: f32, step: u32) -> Self {
        Self {
            t,
            dt,
            step,
            sep_pulse: 2.0 * (0.6 * t).sin(),
            coh_pulse: 2.0 * (0.6 * t).cos(),
            ali_pulse: 0.5 * (2.0 * t).sin(),
            damping: 0.97f32.powf(dt * 60.0),
            spiral_bank: 0.8 + 0.15 * (3.5 * t).sin(),
            hover: 0.05 * (0.1 * step as f32).sin(),
            trick_epoch: (t / 10.0).floor(),
            noise: {
                let [a, b, c] = [0.5, 0.8, 0.3].map(|f| sin_cos64(f * f64::from(t)));
                [a.0, a.1, b.0, b.1, c.0, c.1]
            },
            flap: std::array::from_fn(|k| sin_cos64((5 + k) as f64 * f64::from(t))),
        }
    }
}

fn sin_cos64(angle: f64) -> (f32, f32) {
    let (s, c) = angle.sin_cos();
    (s as f32, c as f32)
}

/// A bird's phase offsets, as sines and cosines: the noise's φ = 0.73·i, 1.5φ and 0.9φ and the
/// wing beat's 2.1·i (reference §4.6, §4.8). With the step's [`StepClock`] terms, each of the
/// four per-bird sines of the reference is one angle addition, computed in f64 once per bird.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BirdPhases([(f32, f32); 4]);

impl BirdPhases {
    pub fn of(i: usize) -> Self {
        let (fi, phi) = (i as f64, 0.73 * i as f64);
        Self([phi, 1.5 * phi, 0.9 * phi, 2.1 * fi].map(sin_cos64))
    }
}

/// (cos, sin) of half the heading atan2(x, z), without an arc tangent: the unit bisector of +z
/// and (z, x), taken from whichever of two equal forms does not cancel.
fn half_heading(x: f32, z: f32) -> (f32, f32) {
    let len = (x * x + z * z).sqrt();
    if len == 0.0 {
        // atan2(±0, +0) = ±0 and atan2(±0, −0) = ±π.
        return if z.is_sign_negative() {
            (0.0, 1.0f32.copysign(x))
        } else {
            (1.0, 0.0f32.copysign(x))
        };
    }
    // (1 + cos h, sin h) and (sin h, 1 − cos h)·sign(h) both point along (cos h/2, sin h/2).
    let (c, s) = if z >= 0.0 {
        (len + z, x)
    } else {
        (x.abs(), (len - z).copysign(x))
    };
    let norm = (c * c + s * s).sqrt();
    (c / norm, s / norm)
}

/// ⌊x⌋ without a library call (baseline x86-64 has no rounding instruction), for |x| < 2⁶³.
fn floor(x: f32) -> f32 {
    let t = x as i64 as f32;
    if t > x { t - 1.0 } else { t }
}

/// What the step computed for one bird besides its record.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BirdForces {
    pub separation: Vec3,
    pub alignment: Vec3,
    pub cohesion: Vec3,
    pub boundary: Vec3,
    /// Steering away from the physics unit's obstacles ([`steer`]).
    pub avoidance: Vec3,
    pub neighbours: u32,
}

fn neighbour_score(n: u32) -> f32 {
    match n {
        0 => 0.0,
        1..=2 => 0.1,
        3..=7 => 0.35,
        8..=15 => 0.15,
        _ => 0.0,
    }
}

fn speed_score(speed: f32) -> f32 {
    if speed < 1.5 {
        0.0
    } else if speed <= 4.0 {
        0.3
    } else if speed <= 5.5 {
        0.15
    } else {
        0.0
    }
}

/// The flocking forces on bird `i` from the current records of `flock` (reference §4.3);
/// `candidates` is any superset of the birds within the perception radius, in a fixed order.
pub fn forces(i: usize, flock: &[BirdRecord], candidates: impl Iterator<Item = usize>, world: &World) -> BirdForces {
    let (p, v) = (Vec3::from(flock[i].position), Vec3::from(flock[i].velocity));
    let (mut sep, mut vel_sum, mut pos_sum, mut n) = (Vec3::ZERO, Vec3::ZERO, Vec3::ZERO, 0u32);
    for j in candidates.filter(|&j| j != i) {
        let (other_p, other_v) = (Vec3::from(flock[j].position), Vec3::from(flock[j].velocity));
        let diff = p - other_p;
        // Spelled out (not `length_squared`) so the grid's four-wide pass includes exactly the
        // same neighbours.
        let d2 = diff.x * diff.x + diff.y * diff.y + diff.z * diff.z;
        if d2 >= PERCEPTION_RADIUS * PERCEPTION_RADIUS {
            continue;
        }
        n += 1;
        vel_sum += other_v;
        pos_sum += other_p;
        let d2 = d2.max(0.01);
        let d = d2.sqrt();
        if d < SEPARATION_DISTANCE {
            sep += diff * ((SEPARATION_DISTANCE - d) / d2);
        }
    }
    finish_forces(p, v, n, vel_sum, pos_sum, sep, world)
}

/// The forces from a bird's neighbour sums: alignment and cohesion towards the neighbours' mean
/// velocity and position, the separation sum, and the boundary spring.
fn finish_forces(p: Vec3, v: Vec3, n: u32, vel_sum: Vec3, pos_sum: Vec3, sep: Vec3, world: &World) -> BirdForces {
    let (alignment, cohesion) = if n > 0 {
        let inv = 1.0 / n as f32;
        (vel_sum * inv - v, pos_sum * inv - p)
    } else {
        (Vec3::ZERO, Vec3::ZERO)
    };
    let b = world.bounds;
    let axis = |x: f32, bound: f32| {
        if x > bound {
            -(x - bound)
        } else if x < -bound {
            -bound - x
        } else {
            0.0
        }
    };
    BirdForces {
        separation: sep,
        alignment,
        cohesion,
        boundary: Vec3::new(axis(p.x, b.x), axis(p.y, b.y), axis(p.z, b.z)),
        avoidance: Vec3::ZERO,
        neighbours: n,
    }
}

/// One bird's step from its own start-of-step record and its forces (reference §4.3–§4.8, in the
/// order of §4.10b). `intensity` is the bird's private trick intensity.
pub fn step_bird(
    i: usize,
    me: &BirdRecord,
    f: &BirdForces,
    intensity: &mut f32,
    clock: StepClock,
    faithful: bool,
) -> BirdRecord {
    let mut out = *me;
    step_into(
        i,
        me,
        &BirdPhases::of(i),
        f,
        intensity,
        clock,
        faithful,
        false,
        &mut out,
    );
    out
}

/// [`step_bird`] written into `out`, which may hold anything but the bird's genes: those are
/// copied only with `copy_genes` (the caller knows when `out` holds stale ones), so a steady
/// step reads and writes only the bytes that move.
#[allow(clippy::too_many_arguments)]
fn step_into(
    i: usize,
    me: &BirdRecord,
    phases: &BirdPhases,
    f: &BirdForces,
    intensity: &mut f32,
    clock: StepClock,
    faithful: bool,
    copy_genes: bool,
    out: &mut BirdRecord,
) {
    let StepClock {
        t,
        dt,
        sep_pulse,
        coh_pulse,
        ali_pulse,
        damping,
        spiral_bank,
        hover,
        trick_epoch,
        noise: [sin_a, cos_a, sin_b, cos_b, sin_c, cos_c],
        flap: beats,
        ..
    } = clock;
    let BirdPhases(
        [
            (sin_phi, cos_phi),
            (sin_phi_b, cos_phi_b),
            (sin_phi_c, cos_phi_c),
            (sin_beat, cos_beat),
        ],
    ) = *phases;
    let frame = dt * 60.0;
    let fi = i as f32;
    let p0 = Vec3::from(me.position);
    let mut v = Vec3::from(me.velocity);
    let genes = &me.genes;

    // Forces with breathing modulation.
    let w_sep = W_SEP * (1.0 + genes[0] + sep_pulse).max(0.01);
    let w_ali = W_ALI * (1.0 + genes[1] + ali_pulse).max(0.01);
    let w_coh = W_COH * (1.0 + genes[2] + coh_pulse).max(0.01);
    v += (f.separation * w_sep
        + f.alignment * w_ali
        + f.cohesion * w_coh
        + f.boundary * W_BOUNDARY
        + f.avoidance * W_AVOID)
        * frame;

    // Energy, judged on the velocity right after the forces.
    let mut energy = me.energy;
    if energy <= 0.0 || energy > 1.0 {
        energy = 0.85 + (i % 10) as f32 * 0.01;
    }
    let speed = v.length();
    energy += if v.y > 0.3 {
        -0.12 * dt
    } else if speed > 5.0 {
        -0.05 * dt
    } else {
        0.25 * dt
    };
    energy = energy.clamp(0.4, 1.0);

    // Tricks.
    let trick_phase = 0.13 * fi + trick_epoch;
    let w_trick = if trick_phase - floor(trick_phase) < 0.05 {
        if i.is_multiple_of(2) { -5.0 } else { 5.0 }
    } else {
        genes[3]
    };
    let target = if w_trick < -2.0 { 1.0 } else { 0.0 };
    *intensity += (target - *intensity) * dt;
    let roll = *intensity;
    if w_trick > 2.0 {
        v *= 0.9;
        v.y += hover;
    }
    if roll > 0.01 {
        v.x *= 1.0 + 0.02 * roll;
        v.z *= 1.0 + 0.02 * roll;
        v.y += 0.02 * roll;
        let old_x = v.x;
        v.x += v.z * 0.08 * roll;
        v.z -= old_x * 0.08 * roll;
    }

    // Swirl about the world Y axis (start-of-step position), noise, damping.
    v.x += -p0.z * 3.0 * dt;
    v.z += p0.x * 3.0 * dt;
    // sin(0.5t + φ), cos(0.8t + 1.5φ) and sin(0.3t + 0.9φ), φ = 0.73·i: faithful mode takes the
    // sines of the f32 sums as the original did; the default adds the angles exactly (f64 phases).
    let noise = if faithful {
        let phi = 0.73 * fi;
        [
            (0.5 * t + phi).sin(),
            (0.8 * t + 1.5 * phi).cos(),
            (0.3 * t + 0.9 * phi).sin(),
        ]
    } else {
        [
            sin_a * cos_phi + cos_a * sin_phi,
            cos_b * cos_phi_b - sin_b * sin_phi_b,
            sin_c * cos_phi_c + cos_c * sin_phi_c,
        ]
    };
    v.x += 0.4 * noise[0] * frame;
    v.y += 0.25 * noise[1] * frame;
    v.z += 0.4 * noise[2] * frame;
    v *= damping;

    // Speed band, then semi-implicit Euler.
    let speed = v.length();
    v = if speed > 1e-6 {
        v * (speed.clamp(MIN_SPEED, MAX_SPEED) / speed)
    } else {
        Vec3::new(0.0, 0.0, MIN_SPEED)
    };
    let p = p0 + v * dt;

    // Orientation: heading atan2(v.x, v.z), nudged while rolling.
    let nudge = if roll > 0.01 { roll * 0.008 * frame } else { 0.0 };
    let pitch = (-0.2 * v.y).clamp(-0.35, 0.35);
    let physics_bank = (-0.2 * v.x).clamp(-0.4, 0.4);
    let bank = physics_bank * (1.0 - roll) + spiral_bank * roll;
    // Faithful mode composes in f64 as the original's JavaScript did. The default composes
    // Ry(heading)·Rx(pitch)·Rz(bank) from half-angle sines and cosines: the heading's from the
    // velocity itself (rotated by the nudge), the pitch and bank angles' by polynomial.
    let q = if faithful {
        let heading = v.x.atan2(v.z) + nudge;
        let (pitch, heading, bank) = (f64::from(pitch), f64::from(heading), f64::from(bank));
        let q = DQuat::from_rotation_z(bank) * DQuat::from_rotation_y(heading) * DQuat::from_rotation_x(pitch);
        Quat::from_xyzw(q.x as f32, q.y as f32, q.z as f32, q.w as f32)
    } else {
        let (mut cos_h, mut sin_h) = half_heading(v.x, v.z);
        if nudge != 0.0 {
            let (s, c) = sin_cos(0.5 * nudge);
            (cos_h, sin_h) = (cos_h * c - sin_h * s, sin_h * c + cos_h * s);
        }
        let (sin_p, cos_p) = sin_cos(0.5 * pitch);
        let (sin_b, cos_b) = sin_cos(0.5 * bank);
        Quat::from_xyzw(0.0, sin_h, 0.0, cos_h)
            * Quat::from_xyzw(sin_p, 0.0, 0.0, cos_p)
            * Quat::from_xyzw(0.0, 0.0, sin_b, cos_b)
    };

    // Animation.
    let flight = if energy < 0.5 {
        0.6 + (energy - 0.4) * 0.4
    } else if energy < 0.75 {
        0.7 + (energy - 0.5) * 0.6
    } else {
        0.85 + (energy - 0.75) * 0.6
    };
    let amplitude = 0.6 * flight * (1.0 + 0.3 * roll);
    // sin(f·t + 2.1·i) for the bird's frequency f = 5 + i mod 8 (faithful: of the f32 sum).
    let flap = if faithful {
        amplitude * (t * (5 + i % 8) as f32 + 2.1 * fi).sin()
    } else {
        let (sin_f, cos_f) = beats[i % 8];
        amplitude * (sin_f * cos_beat + cos_f * sin_beat)
    };

    let speed = v.length();
    let energy_score = if energy > 0.5 { 0.25 } else { 0.4 * energy };
    out.position = p.to_array();
    out.velocity = v.to_array();
    out.orientation = q.to_array();
    out.energy = energy;
    out.left_wing = -flap + 0.4 * roll;
    out.right_wing = flap - 0.4 * roll;
    out.tail_yaw = (-0.1 * v.x).clamp(-0.15, 0.15);
    out.fitness = 0.1 + neighbour_score(f.neighbours) + speed_score(speed) + energy_score;
    if copy_genes {
        out.genes = me.genes;
    }
}

/// The flock: its state between steps, and the buffers a step reuses.
#[derive(Resource)]
pub struct Flock {
    pub params: FlockParams,
    pub world: World,
    /// The state as last published (read-only outside: the step keeps two buffers in step).
    birds: Vec<BirdRecord>,
    next: Vec<BirdRecord>,
    /// Private trick intensities (reference §4.5: not in the SAB).
    pub intensity: Vec<f32>,
    /// Each bird's [`BirdPhases`], by index.
    phases: Vec<BirdPhases>,
    grid: Grid,
    /// The Jacobi step's neighbour sums, by slot.
    sums: Vec<NeighbourSums>,
    /// Each worker thread's list of groups.
    workers: Vec<Vec<Group>>,
    /// The grid's input for the next step (each bird's cell, position and velocity), written by
    /// a Jacobi step with its birds; `staged_ready` until the birds change otherwise.
    next_staged: StagedBirds,
    staged_ready: bool,
    /// Faithful mode's candidate list, reused.
    candidates: Vec<usize>,
    genes: Vec<GeneRecord>,
    /// Jacobi steps still to copy the genes into their output buffer: 2 after new genes (one
    /// per buffer), so steady steps write only what moves.
    stale_genes: u8,
    pub t: f32,
    pub steps: u32,
}

impl Flock {
    /// The reference's initial population of `count` birds.
    pub fn new(count: usize, params: FlockParams) -> Self {
        Self::from_records(initial_population(count), params)
    }

    /// A flock that continues from `birds` (for example a snapshot's bird stream).
    pub fn from_records(birds: Vec<BirdRecord>, params: FlockParams) -> Self {
        let count = birds.len();
        Self {
            world: World::new(count, params.world_scale),
            params,
            birds,
            next: Vec::with_capacity(count),
            intensity: vec![0.0; count],
            phases: (0..count).map(BirdPhases::of).collect(),
            grid: Grid::default(),
            sums: Vec::new(),
            workers: Vec::new(),
            next_staged: Default::default(),
            staged_ready: false,
            candidates: Vec::new(),
            genes: Vec::new(),
            stale_genes: 2,
            t: 0.0,
            steps: 0,
        }
    }

    /// One physics step of `dt` seconds among `obstacles`.
    pub fn step(&mut self, dt: f32, obstacles: &[ObstacleRecord]) {
        self.t += dt;
        let clock = StepClock::new(self.t, dt, self.steps);
        self.steps += 1;
        let threads = self.params.threads.clamp(1, 64);
        if std::mem::take(&mut self.staged_ready) {
            std::mem::swap(&mut self.grid.cell_of_bird, &mut self.next_staged.0);
            std::mem::swap(&mut self.grid.staged, &mut self.next_staged.1);
            self.grid.sort(&self.world, threads);
        } else {
            self.grid.build_threads(&self.world, &self.birds, threads);
        }
        let (world, grid) = (&self.world, &self.grid);
        if self.params.faithful {
            // In place, in index order: later birds see earlier birds' new state.
            let candidates = &mut self.candidates;
            for i in 0..self.birds.len() {
                // The grid's candidates, but their current records (already moved if j < i).
                candidates.clear();
                grid.visit_near_indices(world, grid.cell_of_bird[i] as usize, |j| candidates.push(j));
                let mut f = forces(i, &self.birds, candidates.iter().copied(), world);
                let me = self.birds[i];
                f.avoidance = steer(obstacles, Vec3::from(me.position));
                step_into(
                    i,
                    &me,
                    &self.phases[i],
                    &f,
                    &mut self.intensity[i],
                    clock,
                    true,
                    false,
                    &mut self.birds[i],
                );
            }
            return;
        }
        let (birds, phases) = (&self.birds, &self.phases);
        // Every record is rewritten; its genes only while that buffer's are stale.
        self.next.resize(birds.len(), bytemuck::Zeroable::zeroed());
        let copy_genes = self.stale_genes > 0;
        self.stale_genes = self.stale_genes.saturating_sub(1);
        self.sums.resize(birds.len(), NeighbourSums::default());
        let threads = if birds.len() < 256 { 1 } else { threads };
        self.workers.resize_with(threads, Vec::new);
        let workers = &mut self.workers[..threads];
        let chunk = birds
            .len()
            .div_ceil(threads * self.params.chunks_per_thread.clamp(1, 256))
            .max(1);
        // The neighbour sums in slot order, cell by cell; then each bird's step in index order.
        run_queued(self.sums.chunks_mut(chunk).enumerate(), workers, |groups, (n, out)| {
            grid.sums_for_slots(world, n * chunk, out, groups);
        });
        let sums = &self.sums;
        let (cells, staged) = &mut self.next_staged;
        cells.resize(birds.len(), 0);
        staged.resize(birds.len(), Default::default());
        let items = self
            .next
            .chunks_mut(chunk)
            .zip(self.intensity.chunks_mut(chunk))
            .zip(cells.chunks_mut(chunk).zip(staged.chunks_mut(chunk)))
            .enumerate();
        run_queued(items, workers, |_, (n, ((out, intensity), (cells, staged)))| {
            let next = out.iter_mut().zip(intensity).zip(cells.iter_mut().zip(staged));
            for (i, ((slot, ease), (cell, staged))) in (n * chunk..).zip(next) {
                let me = &birds[i];
                let mut f = grid.finish(i, &sums[grid.slot_of_bird[i] as usize], world);
                f.avoidance = steer(obstacles, Vec3::from(me.position));
                step_into(i, me, &phases[i], &f, ease, clock, false, copy_genes, slot);
                *cell = world.cell_of(Vec3::from(slot.position)) as u32;
                *staged = [slot.position, slot.velocity];
            }
        });
        self.staged_ready = true;
        std::mem::swap(&mut self.birds, &mut self.next);
    }

    /// Takes the genes of the latest generation from the gene buffer (record k for bird k); the
    /// children start with fitness 0.
    pub fn merge_genes(&mut self, sab: &Sab) -> Result<(), GeneError> {
        let count = self.birds.len();
        self.genes.resize(count, bytemuck::Zeroable::zeroed());
        sab.genes().read_into(&mut self.genes)?;
        // All or nothing: a generation with one impossible record is not merged at all.
        if let Some(index) = self.genes.iter().position(|r| !r.is_valid()) {
            return Err(GeneError::Invalid { index });
        }
        self.stale_genes = 2;
        for record in &self.genes {
            if let Some(bird) = self.birds.get_mut(record.bird_id as usize) {
                bird.genes = record.genes;
                bird.fitness = record.fitness as f32;
            }
        }
        Ok(())
    }

    /// The state as last published.
    pub fn birds(&self) -> &[BirdRecord] {
        &self.birds
    }

    pub fn into_birds(self) -> Vec<BirdRecord> {
        self.birds
    }

    pub fn mean_fitness(&self) -> f32 {
        self.birds.iter().map(|b| b.fitness).sum::<f32>() / self.birds.len().max(1) as f32
    }

    pub fn best_fitness(&self) -> f32 {
        self.birds.iter().map(|b| b.fitness).fold(0.0, f32::max)
    }
}

/// Runs `work` on every item, on as many threads as there are `workers` (this one among them),
/// each taking items from a shared queue with its own worker state: more items than threads
/// balance the load.
fn run_queued<T: Send, W: Send>(items: impl Iterator<Item = T>, workers: &mut [W], work: impl Fn(&mut W, T) + Sync) {
    if let [worker] = workers {
        items.for_each(|item| work(worker, item));
        return;
    }
    let queue = crossbeam::queue::SegQueue::new();
    items.for_each(|item| queue.push(item));
    let (queue, work) = (&queue, &work);
    run_scoped(workers.iter_mut().map(|worker| {
        move || {
            while let Some(item) = queue.pop() {
                work(worker, item);
            }
        }
    }));
}

/// The steering away from every obstacle whose surface is within [`AVOID_RADIUS`] of `p`: for
/// each, the unit direction from the nearest surface point to the bird (out of the shape, if the
/// bird is inside it) times `1 - distance / AVOID_RADIUS` (1 inside).
pub fn steer(obstacles: &[ObstacleRecord], p: Vec3) -> Vec3 {
    let mut steer = Vec3::ZERO;
    for o in obstacles {
        if p.distance_squared(Vec3::from(o.centre)) > (o.bound + AVOID_RADIUS).powi(2) {
            continue;
        }
        let Some((surface, inside)) = o.closest_point(p) else {
            continue;
        };
        let to_bird = p - surface;
        let d = to_bird.length();
        if inside {
            steer += (-to_bird).normalize_or(Vec3::Y);
        } else if d < AVOID_RADIUS {
            steer += to_bird / d.max(1e-6) * (1.0 - d / AVOID_RADIUS);
        }
    }
    steer
}

/// The unit's registry record.
pub fn spec() -> ModuleSpec {
    ModuleSpec::cpu_unit(
        "boids",
        8,
        &[
            "boids:step_physics",
            "boids:init_population",
            "boids:evolve_batch",
            crate::supervisors::tree::PULSE_HEARTBEAT,
        ],
    )
}

/// The most gene records one `evolve_batch` job may carry.
pub const MAX_BATCH: usize = 100_000;

/// The `evolve_batch` job: one generation of the genetic algorithm (reference §4.10, the same as
/// the boids supervisor's) over a batch of 188-byte gene records (u32 id, f64 fitness, 44 × f32
/// genes; inline or a SAB range). The output is one record per input record, in the input's
/// order of ids: the elites' genes first, then the children's, fitness 0 (not yet evaluated).
/// The seed is the 8-byte little-endian `Binary` parameter, or the job id.
pub fn evolve_batch(sab: &Sab, job: &crate::protocol::Job) -> crate::protocol::JobOutcome {
    use crate::protocol::{JobOutcome, JobParams, JobStatus, Payload};
    let invalid = |reason: String| JobOutcome::failed(job.id, JobStatus::InvalidParams, reason);
    if job.method != "evolve_batch" {
        return invalid(format!("boids takes evolve_batch jobs, not {:?}", job.method));
    }
    let bytes = match job.input.bytes(sab) {
        Ok(bytes) => bytes,
        Err(e) => return invalid(e.to_string()),
    };
    let size = size_of::<GeneRecord>();
    let n = bytes.len() / size;
    if !bytes.len().is_multiple_of(size) || !(2..=MAX_BATCH).contains(&n) {
        return invalid(format!(
            "the input is {} bytes: 2 to {MAX_BATCH} gene records of {size} bytes expected",
            bytes.len()
        ));
    }
    // Packed records (alignment 1): the bytes are the records.
    let records: &[GeneRecord] = bytemuck::cast_slice(&bytes);
    if let Some(i) = records.iter().position(|r| !r.is_valid()) {
        return invalid(format!(
            "gene record {i} holds a gene outside ±{GENE_LIMIT} or a value that is not finite"
        ));
    }
    let seed = match &job.params {
        JobParams::Binary(b) if b.len() == 8 => u64::from_le_bytes(b[..].try_into().expect("8 bytes")),
        JobParams::None => job.id,
        other => return invalid(format!("the seed is an 8-byte Binary parameter, not {other:?}")),
    };
    let population: Vec<BirdRecord> = records
        .iter()
        .map(|r| BirdRecord {
            fitness: r.fitness as f32,
            genes: r.genes,
            ..bytemuck::Zeroable::zeroed()
        })
        .collect();
    let next = breed(&population, &mut SplitMix64::new(seed));
    let next: Vec<GeneRecord> = records
        .iter()
        .zip(next)
        .map(|(r, genes)| GeneRecord {
            bird_id: r.bird_id,
            fitness: 0.0,
            genes,
        })
        .collect();
    let output = bytemuck::cast_slice(&next).to_vec();
    let mut outcome = JobOutcome::new(job.id, JobStatus::Success, Payload::Inline(output));
    (outcome.input_bytes, outcome.output_bytes) = (bytes.len() as u64, bytes.len() as u64);
    outcome
}

/// Why a flock cannot be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlockError {
    #[error("{birds} birds exceed the {tier} tier's maximum of {max}; choose a larger --tier")]
    TooManyBirds { birds: usize, tier: String, max: u32 },
    #[error("bird {index} has a position, velocity or orientation that is not a finite number")]
    NotFinite { index: usize },
}

/// Checks records from outside (a snapshot) before they become the flock: one non-finite
/// coordinate would spread through every neighbour sum it takes part in.
pub fn check_records(birds: &[BirdRecord]) -> Result<(), FlockError> {
    match birds.iter().position(|b| {
        !b.position
            .iter()
            .chain(&b.velocity)
            .chain(&b.orientation)
            .all(|v| v.is_finite())
    }) {
        Some(index) => Err(FlockError::NotFinite { index }),
        None => Ok(()),
    }
}

/// Checks a bird count against a layout's tier.
pub fn check_capacity(layout: &SabLayout, birds: usize) -> Result<(), FlockError> {
    let spec = layout.spec();
    if birds > spec.max_birds as usize {
        return Err(FlockError::TooManyBirds {
            birds,
            tier: layout.tier.to_string(),
            max: spec.max_birds,
        });
    }
    Ok(())
}

/// The boids unit's place in `FixedUpdate` (after the pulse; `lib.rs` orders it among the
/// other units).
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub struct BoidsSystems;

/// Steps the flock on every pulse and publishes it on the bird stream.
pub struct BoidsPlugin {
    pub birds: usize,
    pub params: FlockParams,
}

/// Changes to the flock from outside the tick (the inspector), applied before the next step, even
/// while the pulse is paused.
#[derive(Resource, Default, Debug)]
pub struct FlockCommands(pub Vec<FlockCommand>);

#[derive(Debug, Clone, PartialEq)]
pub enum FlockCommand {
    /// A fresh initial population of this many birds (checked against the tier).
    Respawn(usize),
    /// Switch between the correct (Jacobi) and the faithful (in-place) step.
    SetFaithful(bool),
    /// Continue from these records (for example a snapshot's bird stream).
    Restore(Vec<BirdRecord>),
}

/// Why a snapshot's birds cannot become the flock.
#[derive(Debug, thiserror::Error)]
pub enum LoadFlockError {
    #[error(transparent)]
    Snapshot(#[from] crate::sab::snapshot::SnapshotError),
    #[error("{path} was taken from a {saved_tier} SAB of {saved_mib} MiB, not a {tier} SAB of {mib} MiB")]
    OtherLayout {
        path: std::path::PathBuf,
        saved_tier: Tier,
        saved_mib: usize,
        tier: Tier,
        mib: usize,
    },
    #[error("{path}: the bird stream cannot be read: {source}")]
    Stream {
        path: std::path::PathBuf,
        source: crate::sab::StreamError,
    },
    #[error("{0} holds no birds")]
    Empty(std::path::PathBuf),
    #[error("{path}: {source}")]
    Records {
        path: std::path::PathBuf,
        source: FlockError,
    },
}

/// The bird records in a snapshot file, if it was taken from a SAB with this layout (so that its
/// birds fit).
pub fn load_flock(path: &std::path::Path, layout: &SabLayout) -> Result<Vec<BirdRecord>, LoadFlockError> {
    let (saved, _) = Sab::read_snapshot(path)?;
    if saved.layout() != layout {
        return Err(LoadFlockError::OtherLayout {
            path: path.to_owned(),
            saved_tier: saved.layout().tier,
            saved_mib: saved.layout().sab_size >> 20,
            tier: layout.tier,
            mib: layout.sab_size >> 20,
        });
    }
    let stream = saved.stream(StreamId::Birds);
    let mut birds = vec![bytemuck::Zeroable::zeroed(); stream.capacity()];
    let read = stream.read_into(&mut birds).map_err(|source| LoadFlockError::Stream {
        path: path.to_owned(),
        source,
    })?;
    if read.count == 0 {
        return Err(LoadFlockError::Empty(path.to_owned()));
    }
    birds.truncate(read.count);
    check_records(&birds).map_err(|source| LoadFlockError::Records {
        path: path.to_owned(),
        source,
    })?;
    Ok(birds)
}

/// The bird stream's writer, held by the unit.
#[derive(Resource)]
pub struct BirdWriter(pub StreamWriter);

impl Plugin for BoidsPlugin {
    fn build(&self, app: &mut App) {
        let sab = app.world().resource::<Sab>().clone();
        // A plugin cannot return an error; the command line checks this first with a clear message.
        if let Err(e) = check_capacity(sab.layout(), self.birds) {
            panic!("{e}");
        }
        let mut writer = sab
            .stream(StreamId::Birds)
            .writer(Owner::Module)
            .expect("the boids unit is the bird stream's only writer");
        let flock = Flock::new(self.birds, self.params);
        // The initial population goes into both buffers (reference §4.9).
        for _ in 0..2 {
            writer.publish(flock.birds()).expect("the bird count fits the tier");
        }
        app.insert_resource(flock)
            .insert_resource(BirdWriter(writer))
            .init_resource::<FlockCommands>()
            .init_resource::<StageTimes>()
            .register_job_unit(spec(), evolve_batch)
            .configure_sets(FixedUpdate, BoidsSystems.after(PulseSystems))
            .add_systems(
                FixedUpdate,
                (
                    apply_commands,
                    step_flock
                        .run_if(epoch_changed(EpochIndex::SYSTEM_PULSE))
                        .run_if(unit_running("boids")),
                )
                    .chain()
                    .in_set(BoidsSystems),
            );
    }
}

fn apply_commands(
    sab: Res<Sab>,
    mut commands: ResMut<FlockCommands>,
    mut flock: ResMut<Flock>,
    mut writer: ResMut<BirdWriter>,
) {
    if commands.0.is_empty() {
        return;
    }
    for command in commands.0.drain(..) {
        let records = match command {
            FlockCommand::SetFaithful(faithful) => {
                flock.params.faithful = faithful;
                continue;
            }
            FlockCommand::Respawn(birds) => initial_population(birds),
            FlockCommand::Restore(records) => records,
        };
        if let Err(e) = check_capacity(sab.layout(), records.len()).and_then(|()| check_records(&records)) {
            error!("the flock was not replaced: {e}");
            continue;
        }
        *flock = Flock::from_records(records, flock.params);
        // Readers take the active buffer, so one publish shows the new flock.
        if let Err(e) = writer.0.publish(flock.birds()) {
            error!("the bird stream refused the new flock: {e}");
        }
    }
}

/// What the boids step keeps between runs: the epochs it last saw of what it reads besides the
/// pulse, and its copy of the obstacle table.
#[derive(Default)]
struct StepInputs {
    evolution: u32,
    physics: u32,
    obstacles: Vec<ObstacleRecord>,
    optimisation: u32,
}

fn step_flock(
    sab: Res<Sab>,
    time: Res<Time>,
    mut flock: ResMut<Flock>,
    mut writer: ResMut<BirdWriter>,
    mut times: ResMut<StageTimes>,
    mut inputs: Local<StepInputs>,
) {
    let _span = info_span!("boids_step", birds = flock.birds().len()).entered();
    let start = Instant::now();
    sab.heartbeats().beat_unit("boids");
    let epochs = sab.epochs();
    let evolution = epochs.load(EpochIndex::EVOLUTION);
    // A read that fails is retried on the next step (the epoch is only marked seen on success).
    if evolution != inputs.evolution {
        match flock.merge_genes(&sab) {
            Ok(()) => inputs.evolution = evolution,
            Err(e) => error!("the boids unit could not read the new generation: {e}"),
        }
    }
    let optimisation = epochs.load(EpochIndex::OPTIMIZATION);
    // A record being written is read again on the next step.
    if optimisation != inputs.optimisation
        && let Ok(record) = sab.engines().read(Engine::Optimisation)
    {
        inputs.optimisation = optimisation;
        let value = record.metric(Engine::Optimisation, "current_value").unwrap_or(0.0);
        if (1.0..=256.0).contains(&value) {
            flock.params.chunks_per_thread = value as usize;
        }
    }
    let physics = epochs.load(EpochIndex::PHYSICS);
    if physics != inputs.physics {
        match sab.obstacles().read_into(&mut inputs.obstacles) {
            Ok(()) => inputs.physics = physics,
            Err(e) => error!("the boids unit could not read the obstacles: {e}"),
        }
    }
    flock.step(time.delta_secs(), &inputs.obstacles);
    if let Err(e) = writer.0.publish(flock.birds()) {
        error!("the bird stream refused a publish: {e}");
    }
    times.record("physics", start.elapsed());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The half-angle heading is atan2's, halved, to f32 rounding: both branches and both signs.
        #[test]
        fn the_half_heading_is_half_of_atan2(x in -10.0f32..10.0, z in -10.0f32..10.0) {
            let h = f64::from(x).atan2(f64::from(z)) / 2.0;
            let (c, s) = half_heading(x, z);
            prop_assert!((f64::from(c) - h.cos()).abs() < 1e-6, "cos: {c} vs {}", h.cos());
            prop_assert!((f64::from(s) - h.sin()).abs() < 1e-6, "sin: {s} vs {}", h.sin());
        }

        /// Angle addition with the per-bird phases gives the reference's sines, for any bird.
        #[test]
        fn phases_give_the_noise_and_wing_beat_sines(i in 0usize..200_000, t in 0.0f32..10_000.0) {
            let clock = StepClock::new(t, 1.0 / 64.0, 0);
            let BirdPhases([(sp, cp), _, _, (sb, cb)]) = BirdPhases::of(i);
            let (t64, i64) = (f64::from(t), i as f64);
            let noise = clock.noise[0] * cp + clock.noise[1] * sp;
            prop_assert!((f64::from(noise) - (0.5 * t64 + 0.73 * i64).sin()).abs() < 1e-6);
            let (sf, cf) = clock.flap[i % 8];
            let beat = (5 + i % 8) as f64 * t64 + 2.1 * i64;
            prop_assert!((f64::from(sf * cb + cf * sb) - beat.sin()).abs() < 1e-6);
        }

        #[test]
        fn floor_matches_the_library(x in -1e9f32..1e9) {
            prop_assert_eq!(floor(x), x.floor());
        }
    }

    /// The sums of every bird of a real flock by each width of the neighbour pass.
    fn sums_by_width(width: Width) -> Vec<NeighbourSums> {
        let mut flock = Flock::new(3000, FlockParams::default());
        for _ in 0..60 {
            flock.step(1.0 / 64.0, &[]);
        }
        let mut grid = Grid::default();
        grid.build(&flock.world, flock.birds());
        let mut groups = Vec::new();
        (0..flock.birds().len())
            .map(|slot| {
                let cell = grid.cell_of_bird[grid.items[slot] as usize] as usize;
                grid.groups_around(&flock.world, cell, width.lanes(), &mut groups);
                grid.sums(slot, &groups, width)
            })
            .collect()
    }

    /// Faithful mode's wing angles and noise are the original's: the sine of the f32 sum
    /// `t·f + 2.1·i`, not an angle addition that agrees only to about 1e-4 at large t and i. The
    /// model here is the reference's formula (§4.7), computed from the stepped bird's energy.
    #[test]
    fn faithful_wings_take_the_sine_of_the_f32_sum() {
        let mut flock = Flock::new(
            3000,
            FlockParams {
                faithful: true,
                threads: 1,
                ..FlockParams::default()
            },
        );
        // A late start, where t·f and 2.1·i are large and f32 rounding shows.
        flock.t = 500.0;
        for _ in 0..3 {
            flock.step(1.0 / 64.0, &[]);
        }
        let t = flock.t;
        let mut checked = 0;
        for (i, b) in flock.birds().iter().enumerate() {
            if flock.intensity[i] != 0.0 {
                continue; // rolling birds add 0.4·I; the others show the flap alone
            }
            let e = b.energy;
            let flight = if e < 0.5 {
                0.6 + (e - 0.4) * 0.4
            } else if e < 0.75 {
                0.7 + (e - 0.5) * 0.6
            } else {
                0.85 + (e - 0.75) * 0.6
            };
            let flap = 0.6 * flight * (t * (5 + i % 8) as f32 + 2.1 * i as f32).sin();
            assert_eq!(b.right_wing.to_bits(), flap.to_bits(), "bird {i}");
            assert_eq!(b.left_wing.to_bits(), (-flap).to_bits(), "bird {i}");
            checked += 1;
        }
        assert!(checked > 2000, "{checked} birds checked");
    }

    /// Sixteen-lane groups (the AVX-512 lane arithmetic, run lane by lane on any CPU) find the
    /// same neighbours as four-lane ones, and the same sums up to the order of additions.
    #[test]
    fn sixteen_and_four_lane_groups_give_the_same_sums() {
        let close = |a: Vec3, b: Vec3| (a - b).length() <= 1e-4 * (1.0 + b.length());
        let four = sums_by_width(Width::Four);
        let sixteen = sums_by_width(Width::SixteenPortable);
        for (slot, (a, b)) in four.iter().zip(&sixteen).enumerate() {
            assert_eq!(a.neighbours, b.neighbours, "slot {slot}");
            for (a, b) in [
                (a.positions, b.positions),
                (a.velocities, b.velocities),
                (a.separation, b.separation),
            ] {
                assert!(close(a, b), "slot {slot}: {a} vs {b}");
            }
        }
        assert!(
            four.iter().map(|s| s.neighbours).sum::<u32>() > 3000 * 5,
            "a real flock"
        );
    }

    /// The AVX-512 pass and its portable model agree to the bit. Without AVX-512 this says, in
    /// the test output, that it was skipped (the portable model is still checked above).
    #[test]
    fn the_avx512_pass_matches_its_portable_model_to_the_bit() {
        #[cfg(target_arch = "x86_64")]
        if let Some(cpu) = wide::Avx512::detect() {
            let bits = |s: &NeighbourSums| {
                let v = [s.positions, s.velocities, s.separation].map(|v| v.to_array().map(f32::to_bits));
                (s.neighbours, v)
            };
            let portable = sums_by_width(Width::SixteenPortable);
            let avx = sums_by_width(Width::Avx512(cpu));
            for (slot, (a, b)) in portable.iter().zip(&avx).enumerate() {
                assert_eq!(bits(a), bits(b), "slot {slot}");
            }
            return;
        }
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED the_avx512_pass_matches_its_portable_model_to_the_bit: this CPU has no AVX-512F"
        );
    }

    #[test]
    fn half_heading_of_a_vertical_velocity_follows_atan2_signed_zeros() {
        for (x, z) in [(0.0f32, 0.0f32), (-0.0, 0.0), (0.0, -0.0), (-0.0, -0.0)] {
            let h = f64::from(x).atan2(f64::from(z)) / 2.0;
            let (c, s) = half_heading(x, z);
            assert!(
                (f64::from(c) - h.cos()).abs() < 1e-7 && f64::from(s) == h.sin(),
                "atan2({x}, {z}): ({c}, {s})"
            );
        }
    }

    /// The grid input a Jacobi step stages with its birds is exactly what staging the published
    /// birds gives; genes set before the first steps survive both ping-pong buffers.
    #[test]
    fn a_step_stages_the_next_grid_and_keeps_the_genes() {
        let mut birds = initial_population(3000);
        for (k, b) in birds.iter_mut().enumerate() {
            b.genes[5] = k as f32;
        }
        let mut flock = Flock::from_records(
            birds,
            FlockParams {
                threads: 2,
                ..FlockParams::default()
            },
        );
        for _ in 0..5 {
            flock.step(1.0 / 64.0, &[]);
            assert!(flock.staged_ready, "a Jacobi step stages");
            let (cells, staged) = &flock.next_staged;
            let mut grid = Grid::default();
            grid.build(&flock.world, flock.birds());
            assert!(cells == &grid.cell_of_bird && staged == &grid.staged);
            assert!(flock.birds().iter().enumerate().all(|(k, b)| b.genes[5] == k as f32));
        }
        flock.params.faithful = true;
        flock.step(1.0 / 64.0, &[]);
        assert!(!flock.staged_ready, "an in-place step stages nothing");
    }
}
