//! The matrix unit: the 8 per-part transforms of every bird (reference §2.15), column-major,
//! written part-major (part p of bird i at plane offset p · count + i) to the matrix stream.
//!
//! It runs on the bird epoch, after the boids stage of the same tick, so the matrices of tick N
//! always come from the birds of tick N. It reads the birds into a reused buffer and writes the
//! matrices straight into the stream's inactive buffer, splitting large flocks across the
//! machine's cores.

use std::sync::atomic::{AtomicU32, Ordering};

use bevy::math::{Mat3A, Mat4, Quat, Vec3A};
use bevy::platform::time::Instant;
use bevy::prelude::*;

use crate::sab::stream::StreamWriter;
use crate::sab::supervisors::unit_running;
use crate::sab::{BirdRecord, EpochIndex, MatrixPart, ModuleSpec, Owner, Sab, StreamId, epoch_changed};
use crate::timing::StageTimes;
use crate::units::{RegisterUnitExt, run_scoped, sin_cos};

/// Parts per bird, in stream order (`sab::stream::PARTS_PER_BIRD`).
pub const PARTS: usize = crate::sab::stream::PARTS_PER_BIRD;

/// The bird's orientation, renormalised; a zero quaternion (before the first step) is identity.
fn orientation(b: &BirdRecord) -> Quat {
    let [x, y, z, w] = b.orientation;
    let q = Quat::from_xyzw(x, y, z, w);
    if q.length_squared() > 1e-12 {
        q.normalize()
    } else {
        Quat::IDENTITY
    }
}

/// The 8 part transforms of one bird: body, head, beak, left wing, left wing tip, right wing,
/// right wing tip, tail (reference §2.15). Each is the body's transform T(p)·R times the part's
/// chain of translations and rotations, composed column by column: a rotation about a local axis
/// mixes two of R's columns, a translation adds columns scaled by its coordinates.
pub fn bird_parts(b: &BirdRecord) -> [Mat4; PARTS] {
    let Mat3A {
        x_axis: x,
        y_axis: y,
        z_axis: z,
    } = Mat3A::from_quat(orientation(b));
    let p = Vec3A::from(b.position);
    let part = |c0: Vec3A, c1: Vec3A, c2: Vec3A, t: Vec3A| {
        Mat4::from_cols(c0.extend(0.0), c1.extend(0.0), c2.extend(0.0), t.extend(1.0))
    };
    // Columns (u, v) turned by Rz(angle).
    let turn = |u: Vec3A, v: Vec3A, angle: f32| {
        let (s, c) = sin_cos(angle);
        (u * c + v * s, v * c - u * s)
    };
    // T(0.04·side, 0, 0.05)·Rz(a), then T(0.15·side, 0, 0) for the wing, and
    // T(0.30·side, 0, 0)·Rz(a/2)·T(0.12·side, 0, −0.05) for its tip; side −1 is the left.
    let wing = |side: f32, a: f32| {
        let root = p + x * (0.04 * side) + z * 0.05;
        let (u, v) = turn(x, y, a);
        let (tip_u, tip_v) = turn(u, v, 0.5 * a);
        [
            part(u, v, z, root + u * (0.15 * side)),
            part(
                tip_u,
                tip_v,
                z,
                root + u * (0.30 * side) + tip_u * (0.12 * side) - z * 0.05,
            ),
        ]
    };
    let [left, left_tip] = wing(-1.0, b.left_wing);
    let [right, right_tip] = wing(1.0, b.right_wing);
    // Rx(90°) turns (x, y, z) into (x, z, −y); the tail is T(0, 0, −0.15)·Ry(yaw)·T(0, 0, −0.10).
    let (s, c) = sin_cos(b.tail_yaw);
    let tail_z = x * s + z * c;
    [
        part(x, z, -y, p),
        part(x, y, z, p + z * 0.18),
        part(x, z, -y, p + z * 0.26),
        left,
        left_tip,
        right,
        right_tip,
        part(x * c - z * s, y, tail_z, p - z * 0.15 - tail_z * 0.10),
    ]
}

/// The words of one matrix record (16 `f32`s).
pub const MATRIX_WORDS: usize = 16;

/// Writes the part-major matrices of `birds` into `words` (the matrix stream's buffer: part p of
/// bird i at record p · count + i, each as 16 little-endian `u32` values), splitting the birds
/// across `threads` threads (each writes its range of every plane). Straight into the SAB, so no
/// copy of 512 bytes per bird is made first.
pub fn write_part_major_words(birds: &[BirdRecord], words: &[AtomicU32], threads: usize) {
    let count = birds.len();
    assert_eq!(
        words.len(),
        PARTS * count * MATRIX_WORDS,
        "one matrix record per part per bird"
    );
    let fill = |first: usize, birds: &[BirdRecord]| {
        for (k, b) in birds.iter().enumerate() {
            for (part, m) in bird_parts(b).iter().enumerate() {
                let record = (part * count + first + k) * MATRIX_WORDS;
                for (word, value) in words[record..record + MATRIX_WORDS].iter().zip(m.to_cols_array()) {
                    word.store(value.to_bits(), Ordering::Relaxed);
                }
            }
        }
    };
    let threads = threads.clamp(1, 64);
    if threads == 1 || count < 1024 {
        fill(0, birds);
        return;
    }
    let chunk = count.div_ceil(threads);
    let fill = &fill;
    run_scoped(
        birds
            .chunks(chunk)
            .enumerate()
            .map(|(t, birds)| move || fill(t * chunk, birds)),
    );
}

/// The part-major matrices of `birds` as records (8 × count), on this thread: what
/// [`write_part_major_words`] writes, for tests and tools.
pub fn part_major(birds: &[BirdRecord]) -> Vec<MatrixPart> {
    let count = birds.len();
    let mut out = vec![MatrixPart { cols: [0.0; 16] }; PARTS * count];
    for (k, b) in birds.iter().enumerate() {
        for (part, m) in bird_parts(b).iter().enumerate() {
            out[part * count + k].cols = m.to_cols_array();
        }
    }
    out
}

pub fn spec() -> ModuleSpec {
    ModuleSpec {
        dependencies: vec![crate::sab::Dependency {
            module_id: "boids".into(),
            min: [0, 1, 0],
            max: [0, 255, 255],
            optional: false,
        }],
        ..ModuleSpec::cpu_unit("matrices", 8, &["math:compute_instance_matrices"])
    }
}

/// The matrix unit's place in `FixedUpdate` (`lib.rs` orders it after the boids unit).
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub struct MatricesSystems;

/// The unit's reused buffers and its matrix-stream writer.
#[derive(Resource)]
pub struct MatrixUnit {
    writer: StreamWriter,
    threads: usize,
    birds: Vec<BirdRecord>,
}

pub struct MatricesPlugin;

impl Plugin for MatricesPlugin {
    fn build(&self, app: &mut App) {
        let sab = app.world().resource::<Sab>().clone();
        let capacity = sab.stream(StreamId::Birds).capacity();
        let writer = sab
            .stream(StreamId::Matrices)
            .writer(Owner::Module)
            .expect("the matrix unit is the matrix stream's only writer");
        app.init_resource::<StageTimes>()
            .insert_resource(MatrixUnit {
                writer,
                threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
                birds: vec![bytemuck::Zeroable::zeroed(); capacity],
            })
            .register_unit(spec())
            .add_systems(
                FixedUpdate,
                compute_matrices
                    .in_set(MatricesSystems)
                    .run_if(epoch_changed(EpochIndex::BIRD))
                    .run_if(unit_running("matrices")),
            );
    }
}

fn compute_matrices(sab: Res<Sab>, mut unit: ResMut<MatrixUnit>, mut times: ResMut<StageTimes>) {
    let _span = info_span!("matrices").entered();
    let start = Instant::now();
    sab.heartbeats().beat_unit("matrices");
    let unit = &mut *unit;
    let read = match sab.stream(StreamId::Birds).read_into(&mut unit.birds) {
        Ok(read) => read,
        Err(e) => {
            error!("the matrix unit could not read the bird stream: {e}");
            return;
        }
    };
    let (birds, threads) = (&unit.birds[..read.count], unit.threads);
    // A matrix-stream record is one bird's 8 matrices.
    let published = unit.writer.publish_with(birds.len(), |words| {
        write_part_major_words(birds, words, threads);
    });
    if let Err(e) = published {
        error!("the matrix stream refused a publish: {e}");
    }
    times.record("matrices", start.elapsed());
}
