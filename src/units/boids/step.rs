//! One bird's step: the flocking forces from its neighbours, obstacle avoidance, and the
//! reference's per-bird rules (energy, tricks, swirl, noise, speed band, orientation, wings,
//! fitness), with the step's shared time terms ([`StepClock`]) and each bird's phases
//! ([`BirdPhases`]).

use bevy::math::{DQuat, Quat, Vec3};

use super::{
    AVOID_RADIUS, MAX_SPEED, MIN_SPEED, PERCEPTION_RADIUS, SEPARATION_DISTANCE, W_ALI, W_AVOID, W_BOUNDARY, W_COH,
    W_SEP, World,
};
use crate::sab::{BirdRecord, ObstacleRecord};
use crate::units::sin_cos;

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
pub(super) fn finish_forces(
    p: Vec3,
    v: Vec3,
    n: u32,
    vel_sum: Vec3,
    pos_sum: Vec3,
    sep: Vec3,
    world: &World,
) -> BirdForces {
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
pub(super) fn step_into(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::boids::{Flock, FlockParams};
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
}
