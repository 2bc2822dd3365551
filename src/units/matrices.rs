//! The matrix unit: the 8 per-part transforms of every bird (reference §2.15), column-major,
//! written part-major (part p of bird i at plane offset p · count + i) to the matrix stream.
//!
//! It runs on the bird epoch, after the boids stage of the same tick, so the matrices of tick N
//! always come from the birds of tick N. It reads the birds into a reused buffer and writes the
//! matrices straight into the stream's inactive buffer, splitting large flocks across the
//! machine's cores.

use std::sync::atomic::{AtomicU32, Ordering};

use bevy::math::{Affine3A, Mat3, Mat4, Quat, Vec3, Vec3A};
use bevy::platform::time::Instant;
use bevy::prelude::*;

use crate::sab::stream::StreamWriter;
use crate::sab::supervisors::unit_running;
use crate::sab::{BirdRecord, EpochIndex, MatrixPart, ModuleSpec, Owner, Sab, StreamId, epoch_changed};
use crate::timing::StageTimes;
use crate::units::{RegisterUnitExt, run_scoped, sin_cos};

/// Parts per bird, in stream order: body, head, beak, left wing, left tip, right wing, right tip, tail.
pub const PARTS: usize = 8;

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

fn t(x: f32, y: f32, z: f32) -> Affine3A {
    Affine3A::from_translation(Vec3::new(x, y, z))
}

/// A rotation about z, as `Affine3A::from_rotation_z` builds it, from the polynomial `sin_cos`.
fn rot_z(angle: f32) -> Affine3A {
    let (s, c) = sin_cos(angle);
    Affine3A::from_mat3(Mat3::from_cols(Vec3::new(c, s, 0.0), Vec3::new(-s, c, 0.0), Vec3::Z))
}

/// A rotation about y, as `Affine3A::from_rotation_y` builds it, from the polynomial `sin_cos`.
fn rot_y(angle: f32) -> Affine3A {
    let (s, c) = sin_cos(angle);
    Affine3A::from_mat3(Mat3::from_cols(Vec3::new(c, 0.0, -s), Vec3::Y, Vec3::new(s, 0.0, c)))
}

/// A quarter turn about x (the body's and beak's +Y axis to +Z), exactly.
const RX90: Affine3A = Affine3A::from_cols(Vec3A::X, Vec3A::Z, Vec3A::NEG_Y, Vec3A::ZERO);

/// The 8 part transforms of one bird: body, head, beak, left wing, left wing tip, right wing,
/// right wing tip, tail. Composed as affine transforms (a 3 × 3 matrix and a translation, the
/// same products as 4 × 4 matrices whose last row is 0 0 0 1, for about half the work).
pub fn bird_parts(b: &BirdRecord) -> [Mat4; PARTS] {
    let body = Affine3A::from_rotation_translation(orientation(b), Vec3::from(b.position));
    let (left, right) = (b.left_wing, b.right_wing);
    let wing_l = body * t(-0.04, 0.0, 0.05) * rot_z(left);
    let wing_r = body * t(0.04, 0.0, 0.05) * rot_z(right);
    [
        body * RX90,
        body * t(0.0, 0.0, 0.18),
        body * t(0.0, 0.0, 0.26) * RX90,
        wing_l * t(-0.15, 0.0, 0.0),
        wing_l * t(-0.30, 0.0, 0.0) * rot_z(0.5 * left) * t(-0.12, 0.0, -0.05),
        wing_r * t(0.15, 0.0, 0.0),
        wing_r * t(0.30, 0.0, 0.0) * rot_z(0.5 * right) * t(0.12, 0.0, -0.05),
        body * t(0.0, 0.0, -0.15) * rot_y(b.tail_yaw) * t(0.0, 0.0, -0.10),
    ]
    .map(Mat4::from)
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
