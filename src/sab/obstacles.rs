//! The obstacle table: the physics unit's obstacles as of its last Rapier step (shape, pose and
//! size, 64 bytes each), written under the table's single-writer guard with
//! `EpochIndex::PHYSICS` signalled after it. The boids unit reads a consistent copy and steers by
//! the nearest point of each obstacle's surface, which [`ObstacleRecord::closest_point`] computes
//! exactly for the three shapes the scene uses.

use bevy::math::{Quat, Vec3};

use super::generated as g;
use super::guard::{GuardError, GuardRegion, Owner};
use super::{EpochIndex, Sab};

/// An obstacle's shape; its `dims` are the radius (ball), the half extents (cuboid), or the
/// radius and half height (cylinder along its local Y axis).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObstacleShape {
    Ball,
    Cuboid,
    Cylinder,
}

/// What an obstacle is in the scene, so that a renderer can draw it from the table alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObstacleRole {
    Floor = g::OBSTACLE_ROLE_FLOOR as isize,
    Pillar = g::OBSTACLE_ROLE_PILLAR as isize,
    Orbiter = g::OBSTACLE_ROLE_ORBITER as isize,
    Ball = g::OBSTACLE_ROLE_BALL as isize,
    Crate = g::OBSTACLE_ROLE_CRATE as isize,
}

impl ObstacleRole {
    pub fn from_code(code: u32) -> Option<Self> {
        [Self::Floor, Self::Pillar, Self::Orbiter, Self::Ball, Self::Crate]
            .into_iter()
            .find(|r| *r as u32 == code)
    }
}

/// One obstacle, byte for byte.
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct ObstacleRecord {
    pub shape: u32,
    /// What the obstacle is (`ObstacleRole`), for drawing; 0 if unknown.
    pub role: u32,
    pub centre: [f32; 3],
    /// The radius of a sphere about the centre that holds the whole shape.
    pub bound: f32,
    /// Rotation quaternion (x, y, z, w).
    pub rotation: [f32; 4],
    pub dims: [f32; 3],
    pub reserved_tail: [u32; 3],
}
const _: () = assert!(size_of::<ObstacleRecord>() == g::OBSTACLE_RECORD_SIZE as usize);
const _: () = assert!(g::OBSTACLE_HEADER_SIZE + g::OBSTACLE_MAX * g::OBSTACLE_RECORD_SIZE <= g::OBSTACLE_TABLE_SIZE);

impl ObstacleRecord {
    pub fn new(shape: ObstacleShape, role: ObstacleRole, centre: Vec3, rotation: Quat, dims: Vec3) -> Self {
        let (code, bound) = match shape {
            ObstacleShape::Ball => (g::OBSTACLE_SHAPE_BALL, dims.x),
            ObstacleShape::Cuboid => (g::OBSTACLE_SHAPE_CUBOID, dims.length()),
            ObstacleShape::Cylinder => (g::OBSTACLE_SHAPE_CYLINDER, dims.truncate().length()),
        };
        Self {
            shape: code,
            role: role as u32,
            centre: centre.to_array(),
            bound,
            rotation: rotation.to_array(),
            dims: dims.to_array(),
            reserved_tail: [0; 3],
        }
    }

    /// The shape, if the code is one of the three.
    pub fn shape(&self) -> Option<ObstacleShape> {
        match self.shape {
            g::OBSTACLE_SHAPE_BALL => Some(ObstacleShape::Ball),
            g::OBSTACLE_SHAPE_CUBOID => Some(ObstacleShape::Cuboid),
            g::OBSTACLE_SHAPE_CYLINDER => Some(ObstacleShape::Cylinder),
            _ => None,
        }
    }

    /// The point of the obstacle's surface nearest to `p`, and whether `p` is inside the shape;
    /// `None` for a record that describes no shape (an unknown shape code, a non-finite or
    /// negative size or centre, a zero rotation), as a corrupt table might hold.
    pub fn closest_point(&self, p: Vec3) -> Option<(Vec3, bool)> {
        let (centre, rotation, d) = (
            Vec3::from(self.centre),
            Quat::from_array(self.rotation),
            Vec3::from(self.dims),
        );
        if !(centre.is_finite() && rotation.is_finite() && d.is_finite() && d.cmpge(Vec3::ZERO).all())
            || rotation.length_squared() < 1e-12
        {
            return None;
        }
        let rotation = rotation.normalize();
        let local = rotation.inverse() * (p - centre);
        let (surface, inside) = match self.shape()? {
            ObstacleShape::Ball => {
                let r = d.x;
                let dir = local.try_normalize().unwrap_or(Vec3::Y);
                (dir * r, local.length() < r)
            }
            ObstacleShape::Cuboid => {
                let inside = local.abs().cmplt(d).all();
                if inside {
                    // Out through the nearest face.
                    let gaps = d - local.abs();
                    let axis = if gaps.x <= gaps.y && gaps.x <= gaps.z {
                        0
                    } else if gaps.y <= gaps.z {
                        1
                    } else {
                        2
                    };
                    let mut q = local;
                    q[axis] = d[axis].copysign(local[axis]);
                    (q, true)
                } else {
                    (local.clamp(-d, d), false)
                }
            }
            ObstacleShape::Cylinder => {
                let (r, h) = (d.x, d.y);
                let radial = Vec3::new(local.x, 0.0, local.z);
                let rlen = radial.length();
                let dir = if rlen > 0.0 { radial / rlen } else { Vec3::X };
                let inside = rlen < r && local.y.abs() < h;
                if inside {
                    // Out through the side or a cap, whichever is nearer.
                    if r - rlen <= h - local.y.abs() {
                        (dir * r + Vec3::Y * local.y, true)
                    } else {
                        (radial + Vec3::Y * h.copysign(local.y), true)
                    }
                } else {
                    (dir * rlen.min(r) + Vec3::Y * local.y.clamp(-h, h), false)
                }
            }
        };
        Some((centre + rotation * surface, inside))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ObstacleError {
    #[error("{count} obstacles exceed the obstacle table's {max}")]
    TooMany { count: usize, max: usize },
    #[error("the obstacle table kept changing while it was read")]
    Contended,
    #[error("the obstacle table's header counts {count} obstacles, more than its {max}")]
    Corrupt { count: u32, max: usize },
    #[error(transparent)]
    Guard(#[from] GuardError),
}

/// The obstacle table of one SAB.
pub struct ObstacleTable<'a> {
    sab: &'a Sab,
}

impl<'a> ObstacleTable<'a> {
    pub(crate) fn new(sab: &'a Sab) -> Self {
        Self { sab }
    }

    pub const MAX: usize = g::OBSTACLE_MAX as usize;

    /// Replaces the table's contents and signals the physics epoch.
    pub fn publish(&self, records: &[ObstacleRecord], owner: Owner) -> Result<u32, ObstacleError> {
        if records.len() > Self::MAX {
            return Err(ObstacleError::TooMany {
                count: records.len(),
                max: Self::MAX,
            });
        }
        let mut session = self.sab.guards().begin(GuardRegion::ObstacleTable, owner)?;
        let offset = g::OBSTACLE_TABLE_OFFSET as usize;
        self.sab
            .write(offset + g::OBSTACLE_HEADER_SIZE as usize, records)
            .expect("the table holds its maximum");
        self.sab
            .write(offset, &[records.len() as u32])
            .expect("the header is in the table");
        let epoch = self.sab.epochs().signal(EpochIndex::PHYSICS);
        session.check_advanced()?;
        Ok(epoch)
    }

    /// A consistent copy of the table into `out` (cleared first; no allocation once it has held
    /// the table's maximum).
    pub fn read_into(&self, out: &mut Vec<ObstacleRecord>) -> Result<(), ObstacleError> {
        let offset = g::OBSTACLE_TABLE_OFFSET as usize;
        let mut all = [bytemuck::Zeroable::zeroed(); Self::MAX];
        let count = self
            .sab
            .guards()
            .read_consistent(GuardRegion::ObstacleTable, 1024, || {
                let count: u32 = self.sab.read(offset).expect("the header is in the table");
                let n = (count as usize).min(Self::MAX);
                self.sab
                    .read_into(offset + g::OBSTACLE_HEADER_SIZE as usize, &mut all[..n])
                    .expect("the table holds its maximum");
                count
            })
            .ok_or(ObstacleError::Contended)?;
        let count = usize::try_from(count)
            .ok()
            .filter(|&n| n <= Self::MAX)
            .ok_or(ObstacleError::Corrupt { count, max: Self::MAX })?;
        out.clear();
        out.extend_from_slice(&all[..count]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sab::Tier;

    #[test]
    fn the_table_round_trips_and_refuses_too_many() {
        let sab = Sab::for_tier(Tier::Light);
        let table = sab.obstacles();
        let records: Vec<_> = (0..5)
            .map(|k| {
                ObstacleRecord::new(
                    ObstacleShape::Ball,
                    ObstacleRole::Ball,
                    Vec3::splat(k as f32),
                    Quat::IDENTITY,
                    Vec3::ONE,
                )
            })
            .collect();
        let before = sab.epochs().load(EpochIndex::PHYSICS);
        table.publish(&records, Owner::Module).unwrap();
        assert_eq!(sab.epochs().load(EpochIndex::PHYSICS), before + 1);
        let mut out = Vec::new();
        table.read_into(&mut out).unwrap();
        assert_eq!(out, records);
        let many = vec![records[0]; ObstacleTable::MAX + 1];
        assert!(matches!(
            table.publish(&many, Owner::Module),
            Err(ObstacleError::TooMany { .. })
        ));
        assert!(matches!(
            table.publish(&records, Owner::Host),
            Err(ObstacleError::Guard(_))
        ));
        table.read_into(&mut out).unwrap();
        assert_eq!(out, records, "refused writes leave the table as it was");
        // A header that claims more than the table holds is an error, not a short read.
        sab.write(g::OBSTACLE_TABLE_OFFSET as usize, &[40u32]).unwrap();
        assert_eq!(
            table.read_into(&mut out),
            Err(ObstacleError::Corrupt {
                count: 40,
                max: ObstacleTable::MAX
            })
        );
    }

    #[test]
    fn records_that_describe_no_shape_have_no_closest_point() {
        let good = ObstacleRecord::new(
            ObstacleShape::Ball,
            ObstacleRole::Ball,
            Vec3::ZERO,
            Quat::IDENTITY,
            Vec3::ONE,
        );
        assert!(good.closest_point(Vec3::X * 3.0).is_some());
        for corrupt in [
            ObstacleRecord { shape: 7, ..good },
            ObstacleRecord {
                rotation: [0.0; 4],
                ..good
            },
            ObstacleRecord {
                centre: [f32::NAN, 0.0, 0.0],
                ..good
            },
            ObstacleRecord {
                dims: [-1.0, 0.0, 0.0],
                ..good
            },
        ] {
            assert_eq!(corrupt.closest_point(Vec3::X * 3.0), None, "{corrupt:?}");
        }
    }
}
