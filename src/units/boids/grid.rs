//! The spatial grid and the neighbour pass: a counting-sort uniform grid with cell-ordered
//! coordinate arrays, and each bird's [`NeighbourSums`] over the 27 cells around it, taken in
//! groups of four lanes (or sixteen, in `wide`).

use bevy::math::{Vec3, Vec4};

use super::step::{BirdForces, finish_forces};
#[cfg(any(test, target_arch = "x86_64"))]
use super::wide;
use super::{PERCEPTION_RADIUS, SEPARATION_DISTANCE, World};
use crate::sab::BirdRecord;
use crate::units::run_scoped;

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
    pub(super) slot_of_bird: Vec<u32>,
    pub(super) cell_of_bird: Vec<u32>,
    /// [position, velocity] by bird.
    pub(super) staged: Vec<[[f32; 3]; 2]>,
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
pub(super) type StagedBirds = (Vec<u32>, Vec<[[f32; 3]; 2]>);

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
    pub(super) fn sort(&mut self, world: &World, threads: usize) {
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
    pub(super) fn visit_near_indices(&self, world: &World, cell: usize, mut f: impl FnMut(usize)) {
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
    pub(super) fn sums_for_slots(
        &self,
        world: &World,
        first: usize,
        out: &mut [NeighbourSums],
        groups: &mut Vec<Group>,
    ) {
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
    pub(super) fn finish(&self, i: usize, sums: &NeighbourSums, world: &World) -> BirdForces {
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
    /// (the Jacobi step): the same sums as [`forces`](super::forces) over the 27 cells around the
    /// bird, taken a group of candidates at a time.
    pub fn forces(&self, i: usize, world: &World) -> BirdForces {
        let (mut groups, width) = (Vec::new(), Width::detect());
        self.groups_around(world, self.cell_of_bird[i] as usize, width.lanes(), &mut groups);
        self.finish(i, &self.sums(self.slot_of_bird[i] as usize, &groups, width), world)
    }
}

/// Consecutive slots of a run: the first, and a bit for each that is in the run.
#[derive(Clone, Copy, Debug)]
pub(super) struct Group {
    pub(super) first: u32,
    pub(super) live: u32,
}

/// A bird's sums over its neighbours: what [`finish_forces`] turns into forces.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct NeighbourSums {
    pub(super) neighbours: u32,
    pub(super) positions: Vec3,
    pub(super) velocities: Vec3,
    pub(super) separation: Vec3,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::boids::{Flock, FlockParams};

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

    /// The AVX-512 pass and its portable model agree to the bit. It needs a CPU with AVX-512F, so
    /// it is ignored by default (shown as such, not as a pass): `cargo test -- --ignored avx512`
    /// runs it, and fails on a CPU without AVX-512F instead of passing untested. The portable
    /// model is checked on every CPU above.
    #[test]
    #[ignore = "needs a CPU with AVX-512F: cargo test -- --ignored avx512"]
    #[cfg(target_arch = "x86_64")]
    fn the_avx512_pass_matches_its_portable_model_to_the_bit() {
        let cpu = wide::Avx512::detect().expect("this CPU has no AVX-512F: the test cannot run here");
        let bits = |s: &NeighbourSums| {
            let v = [s.positions, s.velocities, s.separation].map(|v| v.to_array().map(f32::to_bits));
            (s.neighbours, v)
        };
        let portable = sums_by_width(Width::SixteenPortable);
        let avx = sums_by_width(Width::Avx512(cpu));
        for (slot, (a, b)) in portable.iter().zip(&avx).enumerate() {
            assert_eq!(bits(a), bits(b), "slot {slot}");
        }
    }
}
