//! The neighbour pass sixteen candidates per group: on AVX-512 with lane masks instead of weights,
//! and the same lane arithmetic in portable code for tests. Both add each lane's terms in group
//! order and then the sixteen lanes in one fixed order ([`reduce`]), so they agree to the bit.

use bevy::math::Vec3;

use super::grid::{Group, NeighbourSums};
use super::{PERCEPTION_RADIUS, SEPARATION_DISTANCE};

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
