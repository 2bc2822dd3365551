//! The flock on screen: each bird is 8 instanced parts, drawn by `shaders/birds.wgsl` straight from
//! the matrix stream.
//!
//! The render world holds its own handle on the SAB (it is shared memory, so no extraction). When
//! the matrix epoch moves, one system copies the published matrices (a seqlocked read) into a
//! persistent GPU vertex buffer; it is reallocated only when the flock outgrows it. The stream is
//! part-major, so part `p` of every bird is one contiguous run of `count` 64-byte column-major
//! matrices: each of the 8 part entities draws its mesh `count` times with that run bound as a
//! per-instance vertex buffer (4 × `vec4` attributes). No storage buffers or compute, so the same
//! path runs on WebGL2.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use bevy::asset::uuid_handle;
use bevy::camera::visibility::NoFrustumCulling;
use bevy::core_pipeline::core_3d::{Transparent3d, TransparentSortingInfo3d};
use bevy::ecs::query::QueryItem;
use bevy::ecs::system::SystemParamItem;
use bevy::ecs::system::lifetimeless::{Read, SRes};
use bevy::math::primitives::{Cone, ConicalFrustum, Plane3d, Sphere};
use bevy::mesh::{MeshVertexBufferLayoutRef, VertexBufferLayout};
use bevy::pbr::{
    MeshPipeline, MeshPipelineKey, MeshPipelineSystems, RenderMeshInstances, SetMeshBindGroup, SetMeshViewBindGroup,
    SetMeshViewBindingArrayBindGroup, ViewKeyCache,
};
use bevy::platform::time::Instant;
use bevy::prelude::*;
use bevy::render::extract_component::{ExtractComponent, ExtractComponentPlugin};
use bevy::render::mesh::allocator::MeshAllocator;
use bevy::render::mesh::{RenderMesh, RenderMeshBufferInfo};
use bevy::render::render_asset::RenderAssets;
use bevy::render::render_phase::{
    AddRenderCommand, DrawFunctions, PhaseItem, PhaseItemExtraIndex, RenderCommand, RenderCommandResult,
    SetItemPipeline, TrackedRenderPass, ViewSortedRenderPhases,
};
use bevy::render::render_resource::*;
use bevy::render::renderer::{RenderDevice, RenderQueue};
use bevy::render::sync_component::SyncComponent;
use bevy::render::sync_world::MainEntity;
use bevy::render::view::ExtractedView;
use bevy::render::{Render, RenderApp, RenderStartup, RenderSystems};
use bevy::shader::ShaderDefVal;

use crate::sab::stream::PARTS_PER_BIRD as PARTS;
use crate::sab::{EpochIndex, MatrixPart, Sab, StreamId};

const BIRD_SHADER: Handle<Shader> = uuid_handle!("6f1d2f8e-5a0b-4c43-9b3e-2f7d1c9a8b01");

const PART_BYTES: u64 = size_of::<MatrixPart>() as u64;

/// One of the 8 part entities; `0` is its index in the matrix stream.
#[derive(Component, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BirdPart(pub u8);

impl SyncComponent for BirdPart {
    type Target = Self;
}

impl ExtractComponent for BirdPart {
    type QueryData = &'static BirdPart;
    type QueryFilter = ();
    type Out = Self;

    fn extract_component(part: QueryItem<'_, '_, Self::QueryData>) -> Option<Self> {
        Some(*part)
    }
}

/// Matrix uploads, shared by the render world (which writes) and the main world (which shows them).
#[derive(Resource, Clone, Default)]
pub struct UploadStats(Arc<UploadCounters>);

#[derive(Default)]
struct UploadCounters {
    uploads: AtomicU64,
    last_nanos: AtomicU64,
    last_bytes: AtomicU64,
    birds: AtomicU32,
}

impl UploadStats {
    /// Uploads so far, the last one's duration (SAB read plus queue write) in ms, its size in
    /// bytes, and the bird count drawn.
    pub fn read(&self) -> (u64, f64, u64, u32) {
        let c = &self.0;
        (
            c.uploads.load(Ordering::Relaxed),
            c.last_nanos.load(Ordering::Relaxed) as f64 / 1e6,
            c.last_bytes.load(Ordering::Relaxed),
            c.birds.load(Ordering::Relaxed),
        )
    }
}

pub struct BirdRenderPlugin;

impl Plugin for BirdRenderPlugin {
    fn build(&self, app: &mut App) {
        app.world_mut()
            .resource_mut::<Assets<Shader>>()
            .insert(
                BIRD_SHADER.id(),
                Shader::from_wgsl(include_str!("../../shaders/birds.wgsl"), "shaders/birds.wgsl"),
            )
            .expect("the bird shader handle is free");
        let sab = app.world().resource::<Sab>().clone();
        let stats = UploadStats::default();
        app.insert_resource(stats.clone())
            .add_plugins(ExtractComponentPlugin::<BirdPart>::default())
            .add_systems(Startup, spawn_parts);
        app.sub_app_mut(RenderApp)
            .insert_resource(sab)
            .insert_resource(stats)
            .init_resource::<BirdInstances>()
            .add_render_command::<Transparent3d, DrawBirdPart>()
            .init_resource::<SpecializedMeshPipelines<BirdPipeline>>()
            .add_systems(RenderStartup, init_pipeline.after(MeshPipelineSystems))
            .add_systems(
                Render,
                (
                    queue_parts.in_set(RenderSystems::QueueMeshes),
                    upload_matrices.in_set(RenderSystems::PrepareResources),
                ),
            );
    }
}

/// The 8 part meshes in the bird's own frame (reference §8, with the wings lying flat).
pub fn part_meshes() -> [Mesh; PARTS] {
    let wing = |w: f32, d: f32| {
        Plane3d::new(Vec3::Y, Vec2::new(w / 2.0, d / 2.0))
            .mesh()
            .subdivisions(2)
            .build()
    };
    let tail = Mesh::from(Cone {
        radius: 0.12,
        height: 0.35,
    })
    .rotated_by(Quat::from_rotation_x(std::f32::consts::FRAC_PI_2))
    .scaled_by(Vec3::new(1.0, 0.05, 1.0));
    [
        ConicalFrustum {
            radius_top: 0.025,
            radius_bottom: 0.05,
            height: 0.45,
        }
        .mesh()
        .resolution(6)
        .build(),
        Sphere::new(0.06).mesh().ico(1).expect("a small icosphere"),
        Cone {
            radius: 0.02,
            height: 0.15,
        }
        .mesh()
        .resolution(4)
        .build(),
        wing(0.45, 0.25),
        wing(0.38, 0.15),
        wing(0.45, 0.25),
        wing(0.38, 0.15),
        tail,
    ]
}

fn spawn_parts(mut commands: Commands, mut meshes: ResMut<Assets<Mesh>>) {
    for (p, mesh) in part_meshes().into_iter().enumerate() {
        // The instances carry their own world transforms; the entity's bounds mean nothing.
        commands.spawn((
            Name::new(format!("bird part {p}")),
            BirdPart(p as u8),
            Mesh3d(meshes.add(mesh)),
            Transform::IDENTITY,
            NoFrustumCulling,
        ));
    }
}

/// The GPU copy of the matrix stream.
#[derive(Resource, Default)]
struct BirdInstances {
    buffer: Option<Buffer>,
    /// Birds in the buffer.
    count: u32,
    /// The matrix epoch last uploaded.
    epoch: Option<u32>,
    staging: Vec<MatrixPart>,
}

fn upload_matrices(
    sab: Res<Sab>,
    device: Res<RenderDevice>,
    queue: Res<RenderQueue>,
    stats: Res<UploadStats>,
    mut instances: ResMut<BirdInstances>,
) {
    let instances = &mut *instances;
    let epoch = sab.epochs().load(EpochIndex::MATRIX);
    if instances.epoch == Some(epoch) {
        return;
    }
    let start = Instant::now();
    let stream = sab.stream(StreamId::Matrices);
    let parts = PARTS * stream.capacity();
    if instances.staging.len() != parts {
        instances.staging = vec![MatrixPart { cols: [0.0; 16] }; parts];
    }
    let read = match stream.read_into(&mut instances.staging) {
        Ok(read) => read,
        Err(e) => {
            // Contended or not yet published: keep drawing the last upload, try next frame.
            debug!("matrix stream not read this frame: {e}");
            return;
        }
    };
    instances.epoch = Some(epoch);
    instances.count = read.count as u32;
    let bytes: &[u8] = bytemuck::cast_slice(&instances.staging[..PARTS * read.count]);
    if bytes.is_empty() {
        return;
    }
    let fits = instances
        .buffer
        .as_ref()
        .is_some_and(|b| b.size() >= bytes.len() as u64);
    if !fits {
        instances.buffer = Some(device.create_buffer(&BufferDescriptor {
            label: Some("bird part matrices"),
            size: (bytes.len() as u64).next_power_of_two(),
            usage: BufferUsages::VERTEX | BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }));
    }
    let buffer = instances.buffer.as_ref().expect("allocated above");
    queue.write_buffer(buffer, 0, bytes);
    let c = &stats.0;
    c.uploads.fetch_add(1, Ordering::Relaxed);
    c.last_nanos.store(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
    c.last_bytes.store(bytes.len() as u64, Ordering::Relaxed);
    c.birds.store(read.count as u32, Ordering::Relaxed);
}

#[derive(Resource)]
struct BirdPipeline {
    mesh_pipeline: MeshPipeline,
}

fn init_pipeline(mut commands: Commands, mesh_pipeline: Res<MeshPipeline>) {
    commands.insert_resource(BirdPipeline {
        mesh_pipeline: mesh_pipeline.clone(),
    });
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct BirdPipelineKey {
    mesh: MeshPipelineKey,
    part: u8,
}

impl SpecializedMeshPipeline for BirdPipeline {
    type Key = BirdPipelineKey;

    fn specialize(
        &self,
        key: Self::Key,
        layout: &MeshVertexBufferLayoutRef,
    ) -> Result<RenderPipelineDescriptor, SpecializedMeshPipelineError> {
        let mut descriptor = self.mesh_pipeline.specialize(key.mesh, layout)?;
        // Only position and normal from the mesh; locations 3..=6 are the instance's matrix columns.
        descriptor.vertex.buffers = vec![
            layout.0.get_layout(&[
                Mesh::ATTRIBUTE_POSITION.at_shader_location(0),
                Mesh::ATTRIBUTE_NORMAL.at_shader_location(1),
            ])?,
            VertexBufferLayout {
                array_stride: PART_BYTES,
                step_mode: VertexStepMode::Instance,
                attributes: (0..4)
                    .map(|column| VertexAttribute {
                        format: VertexFormat::Float32x4,
                        offset: column * VertexFormat::Float32x4.size(),
                        shader_location: 3 + column as u32,
                    })
                    .collect(),
            },
        ];
        // Which of the shader's colours the part takes (all colours live in the shader).
        let colour = match key.part {
            0..=2 => "PALETTE",
            7 => "TAIL",
            _ => "WING",
        };
        let defs = vec![ShaderDefVal::Bool(colour.into(), true)];
        descriptor.vertex.shader = BIRD_SHADER;
        descriptor.vertex.shader_defs.extend(defs.iter().cloned());
        let fragment = descriptor
            .fragment
            .as_mut()
            .expect("the mesh pipeline has a fragment stage");
        fragment.shader = BIRD_SHADER;
        fragment.shader_defs.extend(defs);
        // Thin parts (wings, tail fan) are seen from both sides.
        descriptor.primitive.cull_mode = None;
        Ok(descriptor)
    }
}

#[allow(
    clippy::too_many_arguments,
    reason = "a render queue system takes what it queues from"
)]
fn queue_parts(
    draw_functions: Res<DrawFunctions<Transparent3d>>,
    pipeline: Res<BirdPipeline>,
    mut pipelines: ResMut<SpecializedMeshPipelines<BirdPipeline>>,
    pipeline_cache: Res<PipelineCache>,
    meshes: Res<RenderAssets<RenderMesh>>,
    mesh_instances: Res<RenderMeshInstances>,
    parts: Query<(Entity, &MainEntity, &BirdPart)>,
    mut phases: ResMut<ViewSortedRenderPhases<Transparent3d>>,
    views: Query<&ExtractedView>,
    view_keys: Res<ViewKeyCache>,
) {
    let draw = draw_functions.read().id::<DrawBirdPart>();
    for view in &views {
        let Some(phase) = phases.get_mut(&view.retained_view_entity) else {
            continue;
        };
        let Some(&view_key) = view_keys.get(&view.retained_view_entity) else {
            continue;
        };
        for (entity, main_entity, part) in &parts {
            let Some(instance) = mesh_instances.render_mesh_queue_data(*main_entity) else {
                continue;
            };
            let Some(mesh) = meshes.get(instance.mesh_asset_id()) else {
                continue;
            };
            let key = BirdPipelineKey {
                mesh: view_key
                    | MeshPipelineKey::from_primitive_topology_and_strip_index(
                        mesh.primitive_topology(),
                        mesh.index_format(),
                    ),
                part: part.0,
            };
            let pipeline = match pipelines.specialize(&pipeline_cache, &pipeline, key, &mesh.layout) {
                Ok(pipeline) => pipeline,
                Err(e) => {
                    error!("bird part {} cannot be drawn: {e}", part.0);
                    continue;
                }
            };
            phase.add_retained(Transparent3d {
                sorting_info: TransparentSortingInfo3d::Sorted {
                    mesh_center: Vec3::ZERO,
                    depth_bias: 0.0,
                },
                entity: (entity, *main_entity),
                pipeline,
                draw_function: draw,
                distance: 0.0,
                batch_range: 0..1,
                extra_index: PhaseItemExtraIndex::None,
                indexed: true,
            });
        }
    }
}

type DrawBirdPart = (
    SetItemPipeline,
    SetMeshViewBindGroup<0>,
    SetMeshViewBindingArrayBindGroup<1>,
    SetMeshBindGroup<2>,
    DrawPartInstances,
);

struct DrawPartInstances;

impl<P: PhaseItem> RenderCommand<P> for DrawPartInstances {
    type Param = (
        SRes<RenderAssets<RenderMesh>>,
        SRes<RenderMeshInstances>,
        SRes<MeshAllocator>,
        SRes<BirdInstances>,
    );
    type ViewQuery = ();
    type ItemQuery = Read<BirdPart>;

    fn render<'w>(
        item: &P,
        _view: (),
        part: Option<&'w BirdPart>,
        (meshes, mesh_instances, allocator, instances): SystemParamItem<'w, '_, Self::Param>,
        pass: &mut TrackedRenderPass<'w>,
    ) -> RenderCommandResult {
        let (allocator, instances) = (allocator.into_inner(), instances.into_inner());
        let (Some(part), Some(buffer)) = (part, instances.buffer.as_ref()) else {
            return RenderCommandResult::Skip;
        };
        let count = instances.count;
        let Some(instance) = mesh_instances.render_mesh_queue_data(item.main_entity()) else {
            return RenderCommandResult::Skip;
        };
        let mesh_id = instance.mesh_asset_id();
        let (Some(mesh), Some(vertices)) = (meshes.into_inner().get(mesh_id), allocator.mesh_vertex_slice(&mesh_id))
        else {
            return RenderCommandResult::Skip;
        };
        if count == 0 {
            return RenderCommandResult::Skip;
        }
        let run = u64::from(count) * PART_BYTES;
        let start = u64::from(part.0) * run;
        pass.set_vertex_buffer(0, vertices.buffer.slice(..));
        pass.set_vertex_buffer(1, buffer.slice(start..start + run));
        match &mesh.buffer_info {
            RenderMeshBufferInfo::Indexed {
                index_format,
                count: index_count,
            } => {
                let Some(indices) = allocator.mesh_index_slice(&mesh_id) else {
                    return RenderCommandResult::Skip;
                };
                pass.set_index_buffer(indices.buffer.slice(..), *index_format);
                pass.draw_indexed(
                    indices.range.start..indices.range.start + index_count,
                    vertices.range.start as i32,
                    0..count,
                );
            }
            RenderMeshBufferInfo::NonIndexed => pass.draw(vertices.range.clone(), 0..count),
        }
        RenderCommandResult::Success
    }
}
