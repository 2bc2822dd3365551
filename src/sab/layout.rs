//! The SAB memory map, as typed regions and tiers built from the constants generated from
//! `schemas/sab_layout.capnp`. No offset is written here: every number comes from the schema.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::generated as g;

/// A named byte range of the SAB.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Region {
    pub name: &'static str,
    pub offset: usize,
    pub size: usize,
}

impl Region {
    const fn new(name: &'static str, offset: u32, size: u32) -> Self {
        Self {
            name,
            offset: offset as usize,
            size: size as usize,
        }
    }

    /// One past the last byte.
    pub const fn end(&self) -> usize {
        self.offset + self.size
    }

    /// Whether `other` lies entirely inside this region.
    pub const fn contains(&self, other: &Region) -> bool {
        other.offset >= self.offset && other.end() <= self.end()
    }

    /// Whether the two regions share at least one byte.
    pub const fn overlaps(&self, other: &Region) -> bool {
        self.offset < other.end() && other.offset < self.end()
    }
}

/// The regions whose place is the same in every tier.
pub mod regions {
    use super::{Region, g};

    pub const EPOCHS: Region = Region::new("epochs", g::EPOCHS_OFFSET, g::EPOCHS_SIZE);
    pub const SAB_HEADER: Region = Region::new("sab_header", g::SAB_HEADER_OFFSET, g::SAB_HEADER_SIZE);
    pub const SUPERVISOR_ALLOC: Region =
        Region::new("supervisor_alloc", g::SUPERVISOR_ALLOC_OFFSET, g::SUPERVISOR_ALLOC_SIZE);
    pub const REGISTRY_LOCK: Region = Region::new("registry_lock", g::REGISTRY_LOCK_OFFSET, g::REGISTRY_LOCK_SIZE);
    pub const REGISTRY: Region = Region::new("module_registry", g::REGISTRY_OFFSET, g::REGISTRY_SIZE);
    pub const BLOOM: Region = Region::new("bloom_filter", g::BLOOM_OFFSET, g::BLOOM_SIZE);
    pub const SUPERVISOR_HEADERS: Region = Region::new(
        "supervisor_headers",
        g::SUPERVISOR_HEADERS_OFFSET,
        g::SUPERVISOR_HEADERS_SIZE,
    );
    pub const MESH_METRICS: Region = Region::new("mesh_metrics", g::MESH_METRICS_OFFSET, g::MESH_METRICS_SIZE);
    pub const GLOBAL_ANALYTICS: Region =
        Region::new("global_analytics", g::GLOBAL_ANALYTICS_OFFSET, g::GLOBAL_ANALYTICS_SIZE);
    pub const ECONOMICS: Region = Region::new("economics", g::ECONOMICS_OFFSET, g::ECONOMICS_SIZE);
    pub const IDENTITY: Region = Region::new("identity", g::IDENTITY_OFFSET, g::IDENTITY_SIZE);
    pub const SOCIAL_GRAPH: Region = Region::new("social_graph", g::SOCIAL_GRAPH_OFFSET, g::SOCIAL_GRAPH_SIZE);
    pub const PATTERN_EXCHANGE: Region =
        Region::new("pattern_exchange", g::PATTERN_EXCHANGE_OFFSET, g::PATTERN_EXCHANGE_SIZE);
    pub const JOB_HISTORY: Region = Region::new("job_history", g::JOB_HISTORY_OFFSET, g::JOB_HISTORY_SIZE);
    pub const COORDINATION: Region = Region::new("coordination", g::COORDINATION_OFFSET, g::COORDINATION_SIZE);
    pub const ENGINE_STATE: Region = Region::new("engine_state", g::ENGINE_STATE_OFFSET, g::ENGINE_STATE_SIZE);
    pub const PIPELINE_STATE: Region = Region::new("pipeline_state", g::PIPELINE_STATE_OFFSET, g::PIPELINE_STATE_SIZE);
    pub const AUDIT_LOG: Region = Region::new("audit_log", g::AUDIT_LOG_OFFSET, g::AUDIT_LOG_SIZE);
    pub const ADMISSION: Region = Region::new("admission", g::ADMISSION_OFFSET, g::ADMISSION_SIZE);
    pub const PROCESS_TABLE: Region = Region::new("process_table", g::PROCESS_TABLE_OFFSET, g::PROCESS_TABLE_SIZE);
    pub const EPOCH_WAITERS: Region = Region::new("epoch_waiters", g::EPOCH_WAITERS_OFFSET, g::EPOCH_WAITERS_SIZE);
    pub const RING_CONTROL: Region = Region::new("ring_control", g::RING_CONTROL_OFFSET, g::RING_CONTROL_REGION_SIZE);
    pub const INBOX_CONTROL: Region = Region::new("inbox_control", g::INBOX_CONTROL_OFFSET, g::RING_CONTROL_SIZE);
    pub const OUTBOX_HOST_CONTROL: Region = Region::new(
        "outbox_host_control",
        g::OUTBOX_HOST_CONTROL_OFFSET,
        g::RING_CONTROL_SIZE,
    );
    pub const OUTBOX_KERNEL_CONTROL: Region = Region::new(
        "outbox_kernel_control",
        g::OUTBOX_KERNEL_CONTROL_OFFSET,
        g::RING_CONTROL_SIZE,
    );
    pub const LIFECYCLE_CONTROL: Region =
        Region::new("lifecycle_control", g::LIFECYCLE_CONTROL_OFFSET, g::RING_CONTROL_SIZE);
    pub const LIFECYCLE: Region = Region::new("lifecycle", g::LIFECYCLE_OFFSET, g::LIFECYCLE_SIZE);
    pub const INBOX: Region = Region::new("inbox", g::INBOX_OFFSET, g::INBOX_SIZE);
    pub const OUTBOX_HOST: Region = Region::new("outbox_host", g::OUTBOX_HOST_OFFSET, g::OUTBOX_HOST_SIZE);
    pub const OUTBOX_KERNEL: Region = Region::new("outbox_kernel", g::OUTBOX_KERNEL_OFFSET, g::OUTBOX_KERNEL_SIZE);

    pub const ARENA_METADATA: Region = Region::new("arena_metadata", g::ARENA_METADATA_OFFSET, g::ARENA_METADATA_SIZE);
    pub const DIAGNOSTICS: Region = Region::new("diagnostics", g::DIAGNOSTICS_OFFSET, g::DIAGNOSTICS_SIZE);
    pub const BRIDGE_METRICS: Region = Region::new("bridge_metrics", g::BRIDGE_METRICS_OFFSET, g::BRIDGE_METRICS_SIZE);
    pub const ARENA_REQUEST_QUEUE: Region = Region::new(
        "arena_request_queue",
        g::ARENA_REQUEST_QUEUE_OFFSET,
        g::ARENA_REQUEST_QUEUE_SIZE,
    );
    pub const ARENA_RESPONSE_QUEUE: Region = Region::new(
        "arena_response_queue",
        g::ARENA_RESPONSE_QUEUE_OFFSET,
        g::ARENA_RESPONSE_QUEUE_SIZE,
    );
    pub const MESH_EVENT_QUEUE: Region =
        Region::new("mesh_event_queue", g::MESH_EVENT_QUEUE_OFFSET, g::MESH_EVENT_QUEUE_SIZE);
    pub const GUARD_TABLE: Region = Region::new("guard_table", g::GUARD_TABLE_OFFSET, g::GUARD_TABLE_SIZE);
    pub const BIRD_STATE: Region = Region::new("bird_state", g::BIRD_STATE_OFFSET, g::BIRD_STATE_SIZE);
    pub const OBSTACLE_TABLE: Region = Region::new("obstacle_table", g::OBSTACLE_TABLE_OFFSET, g::OBSTACLE_TABLE_SIZE);
    pub const STREAM_CONTROL: Region = Region::new(
        "stream_control",
        g::STREAM_CONTROL_OFFSET,
        g::STREAM_CONTROL_REGION_SIZE,
    );
    pub const BIRD_STREAM_CONTROL: Region = Region::new(
        "bird_stream_control",
        g::BIRD_STREAM_CONTROL_OFFSET,
        g::STREAM_CONTROL_SIZE,
    );
    pub const MATRIX_STREAM_CONTROL: Region = Region::new(
        "matrix_stream_control",
        g::MATRIX_STREAM_CONTROL_OFFSET,
        g::STREAM_CONTROL_SIZE,
    );

    /// The areas of a tier's kernel state, at offsets relative to its start.
    pub const KERNEL_AREAS: [Region; 9] = [
        Region::new("job_table", g::JOB_TABLE_OFFSET, g::JOB_TABLE_SIZE),
        Region::new("workflow_table", g::WORKFLOW_TABLE_OFFSET, g::WORKFLOW_TABLE_SIZE),
        Region::new("chunk_index", g::CHUNK_INDEX_OFFSET, g::CHUNK_INDEX_SIZE),
        Region::new("tree_state", g::TREE_STATE_OFFSET, g::TREE_STATE_SIZE),
        Region::new("learning_state", g::LEARNING_STATE_OFFSET, g::LEARNING_STATE_SIZE),
        Region::new("security_state", g::SECURITY_STATE_OFFSET, g::SECURITY_STATE_SIZE),
        Region::new("health_state", g::HEALTH_STATE_OFFSET, g::HEALTH_STATE_SIZE),
        Region::new(
            "optimisation_state",
            g::OPTIMISATION_STATE_OFFSET,
            g::OPTIMISATION_STATE_SIZE,
        ),
        Region::new("scheduling_state", g::SCHEDULING_STATE_OFFSET, g::SCHEDULING_STATE_SIZE),
    ];

    /// Top-level regions below the arena, in address order.
    pub const LOW: [Region; 19] = [
        EPOCHS,
        SAB_HEADER,
        SUPERVISOR_ALLOC,
        REGISTRY_LOCK,
        REGISTRY,
        BLOOM,
        SUPERVISOR_HEADERS,
        MESH_METRICS,
        GLOBAL_ANALYTICS,
        ECONOMICS,
        IDENTITY,
        SOCIAL_GRAPH,
        PATTERN_EXCHANGE,
        JOB_HISTORY,
        COORDINATION,
        RING_CONTROL,
        INBOX,
        OUTBOX_HOST,
        OUTBOX_KERNEL,
    ];

    /// The sub-regions of the arena metadata.
    pub const ARENA_METADATA_PARTS: [Region; 6] = [
        DIAGNOSTICS,
        BRIDGE_METRICS,
        ARENA_REQUEST_QUEUE,
        ARENA_RESPONSE_QUEUE,
        MESH_EVENT_QUEUE,
        GUARD_TABLE,
    ];
}

/// A device tier: the SAB size and how many birds its ping-pong buffers hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Light,
    Moderate,
    Heavy,
    Dedicated,
}

/// The areas of the kernel state (`regions::KERNEL_AREAS`, in the same order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelArea {
    JobTable,
    WorkflowTable,
    ChunkIndex,
    TreeState,
    LearningState,
    SecurityState,
    HealthState,
    OptimisationState,
    SchedulingState,
}

impl KernelArea {
    pub const ALL: [KernelArea; 9] = [
        KernelArea::JobTable,
        KernelArea::WorkflowTable,
        KernelArea::ChunkIndex,
        KernelArea::TreeState,
        KernelArea::LearningState,
        KernelArea::SecurityState,
        KernelArea::HealthState,
        KernelArea::OptimisationState,
        KernelArea::SchedulingState,
    ];
}

/// Everything the schema says about one tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct TierSpec {
    pub tier: Tier,
    pub sab_size: usize,
    pub recommended_birds: u32,
    pub max_birds: u32,
    pub bird_buffers: [Region; 2],
    pub matrix_buffers: [Region; 2],
    /// One 188-byte gene record per bird, written by the boids supervisor each generation.
    pub gene_buffer: Region,
    /// Everything the kernel knows (`kernelState*` in the schema): the job table, workflows, the
    /// chunk index, the supervisor tree and the engines' models.
    pub kernel_state: Region,
    pub arena_heap_offset: usize,
}

macro_rules! tier_spec {
    ($tier:expr, $size:expr, $rec:expr, $max:expr, $ba:expr, $bb:expr, $bs:expr, $ma:expr, $mb:expr, $ms:expr, $go:expr, $gs:expr, $ks:expr, $heap:expr) => {
        TierSpec {
            tier: $tier,
            sab_size: $size as usize,
            recommended_birds: $rec,
            max_birds: $max,
            bird_buffers: [
                Region::new("bird_buffer_a", $ba, $bs),
                Region::new("bird_buffer_b", $bb, $bs),
            ],
            matrix_buffers: [
                Region::new("matrix_buffer_a", $ma, $ms),
                Region::new("matrix_buffer_b", $mb, $ms),
            ],
            gene_buffer: Region::new("gene_buffer", $go, $gs),
            kernel_state: Region::new("kernel_state", $ks, g::KERNEL_STATE_SIZE),
            arena_heap_offset: $heap as usize,
        }
    };
}

const TIERS: [TierSpec; 4] = [
    tier_spec!(
        Tier::Light,
        g::LIGHT_SAB_SIZE,
        g::LIGHT_RECOMMENDED_BIRDS,
        g::LIGHT_MAX_BIRDS,
        g::LIGHT_BIRD_BUFFER_A_OFFSET,
        g::LIGHT_BIRD_BUFFER_B_OFFSET,
        g::LIGHT_BIRD_BUFFER_SIZE,
        g::LIGHT_MATRIX_BUFFER_A_OFFSET,
        g::LIGHT_MATRIX_BUFFER_B_OFFSET,
        g::LIGHT_MATRIX_BUFFER_SIZE,
        g::LIGHT_GENE_BUFFER_OFFSET,
        g::LIGHT_GENE_BUFFER_SIZE,
        g::LIGHT_KERNEL_STATE_OFFSET,
        g::LIGHT_ARENA_HEAP_OFFSET
    ),
    tier_spec!(
        Tier::Moderate,
        g::MODERATE_SAB_SIZE,
        g::MODERATE_RECOMMENDED_BIRDS,
        g::MODERATE_MAX_BIRDS,
        g::MODERATE_BIRD_BUFFER_A_OFFSET,
        g::MODERATE_BIRD_BUFFER_B_OFFSET,
        g::MODERATE_BIRD_BUFFER_SIZE,
        g::MODERATE_MATRIX_BUFFER_A_OFFSET,
        g::MODERATE_MATRIX_BUFFER_B_OFFSET,
        g::MODERATE_MATRIX_BUFFER_SIZE,
        g::MODERATE_GENE_BUFFER_OFFSET,
        g::MODERATE_GENE_BUFFER_SIZE,
        g::MODERATE_KERNEL_STATE_OFFSET,
        g::MODERATE_ARENA_HEAP_OFFSET
    ),
    tier_spec!(
        Tier::Heavy,
        g::HEAVY_SAB_SIZE,
        g::HEAVY_RECOMMENDED_BIRDS,
        g::HEAVY_MAX_BIRDS,
        g::HEAVY_BIRD_BUFFER_A_OFFSET,
        g::HEAVY_BIRD_BUFFER_B_OFFSET,
        g::HEAVY_BIRD_BUFFER_SIZE,
        g::HEAVY_MATRIX_BUFFER_A_OFFSET,
        g::HEAVY_MATRIX_BUFFER_B_OFFSET,
        g::HEAVY_MATRIX_BUFFER_SIZE,
        g::HEAVY_GENE_BUFFER_OFFSET,
        g::HEAVY_GENE_BUFFER_SIZE,
        g::HEAVY_KERNEL_STATE_OFFSET,
        g::HEAVY_ARENA_HEAP_OFFSET
    ),
    tier_spec!(
        Tier::Dedicated,
        g::DEDICATED_SAB_SIZE,
        g::DEDICATED_RECOMMENDED_BIRDS,
        g::DEDICATED_MAX_BIRDS,
        g::DEDICATED_BIRD_BUFFER_A_OFFSET,
        g::DEDICATED_BIRD_BUFFER_B_OFFSET,
        g::DEDICATED_BIRD_BUFFER_SIZE,
        g::DEDICATED_MATRIX_BUFFER_A_OFFSET,
        g::DEDICATED_MATRIX_BUFFER_B_OFFSET,
        g::DEDICATED_MATRIX_BUFFER_SIZE,
        g::DEDICATED_GENE_BUFFER_OFFSET,
        g::DEDICATED_GENE_BUFFER_SIZE,
        g::DEDICATED_KERNEL_STATE_OFFSET,
        g::DEDICATED_ARENA_HEAP_OFFSET
    ),
];

impl Tier {
    pub const ALL: [Tier; 4] = [Tier::Light, Tier::Moderate, Tier::Heavy, Tier::Dedicated];

    /// The tier's number in the SAB header and in snapshots.
    pub const fn id(self) -> u32 {
        match self {
            Tier::Light => g::TIER_LIGHT,
            Tier::Moderate => g::TIER_MODERATE,
            Tier::Heavy => g::TIER_HEAVY,
            Tier::Dedicated => g::TIER_DEDICATED,
        }
    }

    pub fn from_id(id: u32) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.id() == id)
    }

    pub const fn name(self) -> &'static str {
        match self {
            Tier::Light => "light",
            Tier::Moderate => "moderate",
            Tier::Heavy => "heavy",
            Tier::Dedicated => "dedicated",
        }
    }

    pub fn spec(self) -> &'static TierSpec {
        &TIERS[self.id() as usize]
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Tier {
    type Err = LayoutError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tier::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| LayoutError::UnknownTier(s.to_owned()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("unknown tier {0:?}: expected light, moderate, heavy or dedicated")]
    UnknownTier(String),
    #[error(
        "a SAB of {size} bytes does not fit the {tier} tier: it must be between {min} and {max} bytes and a multiple of {align}"
    )]
    BadSize {
        tier: Tier,
        size: usize,
        min: usize,
        max: usize,
        align: usize,
    },
}

/// A region and the region it lies in (`None` for top-level regions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RegionNode {
    #[serde(flatten)]
    pub region: Region,
    pub parent: Option<&'static str>,
}

/// The memory map of one SAB: a tier and a size (at least the tier's, at most `SAB_SIZE_MAX`; a
/// larger SAB only grows the arena heap).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SabLayout {
    pub tier: Tier,
    pub sab_size: usize,
}

impl SabLayout {
    /// The layout of `tier` at its own size.
    pub fn for_tier(tier: Tier) -> Self {
        Self {
            tier,
            sab_size: tier.spec().sab_size,
        }
    }

    /// The layout of `tier` in a SAB of `sab_size` bytes.
    pub fn with_size(tier: Tier, sab_size: usize) -> Result<Self, LayoutError> {
        let min = tier.spec().sab_size;
        let max = g::SAB_SIZE_MAX as usize;
        let align = g::LARGE_ALIGNMENT as usize;
        if sab_size < min || sab_size > max || !sab_size.is_multiple_of(align) {
            return Err(LayoutError::BadSize {
                tier,
                size: sab_size,
                min,
                max,
                align,
            });
        }
        Ok(Self { tier, sab_size })
    }

    pub fn spec(&self) -> &'static TierSpec {
        self.tier.spec()
    }

    /// The arena: from the arena offset to the end of the SAB.
    pub fn arena(&self) -> Region {
        Region {
            name: "arena",
            offset: g::ARENA_OFFSET as usize,
            size: self.sab_size - g::ARENA_OFFSET as usize,
        }
    }

    /// The range the arena allocator hands out: after the streams, to the end of the SAB.
    pub fn arena_heap(&self) -> Region {
        let offset = self.spec().arena_heap_offset;
        Region {
            name: "arena_heap",
            offset,
            size: self.sab_size - offset,
        }
    }

    /// One area of the kernel state, at its place in this SAB.
    pub fn kernel_area(&self, area: KernelArea) -> Region {
        let relative = regions::KERNEL_AREAS[area as usize];
        Region {
            offset: self.spec().kernel_state.offset + relative.offset,
            ..relative
        }
    }

    /// The client lanes (`sab::clients`), in the kernel state's region.
    pub fn client_lanes(&self) -> Region {
        Region {
            name: "client_lanes",
            offset: self.spec().kernel_state.offset + g::CLIENT_LANES_OFFSET as usize,
            size: g::CLIENT_LANES_SIZE as usize,
        }
    }

    /// Every region with its parent, in address order within each level.
    pub fn regions(&self) -> Vec<RegionNode> {
        let spec = self.spec();
        let top = |region| RegionNode { region, parent: None };
        let under = |parent: Region| {
            move |region| RegionNode {
                region,
                parent: Some(parent.name),
            }
        };
        let arena = self.arena();
        let mut nodes: Vec<RegionNode> = regions::LOW.into_iter().map(top).collect();
        nodes.push(top(arena));
        nodes.extend(
            [
                regions::ARENA_METADATA,
                regions::BIRD_STATE,
                regions::STREAM_CONTROL,
                regions::OBSTACLE_TABLE,
                spec.bird_buffers[0],
                spec.bird_buffers[1],
                spec.matrix_buffers[0],
                spec.matrix_buffers[1],
                spec.gene_buffer,
                spec.kernel_state,
                self.arena_heap(),
            ]
            .map(under(arena)),
        );
        nodes.extend(
            KernelArea::ALL
                .map(|area| self.kernel_area(area))
                .into_iter()
                .chain([self.client_lanes()])
                .map(under(spec.kernel_state)),
        );
        nodes.extend(regions::ARENA_METADATA_PARTS.map(under(regions::ARENA_METADATA)));
        nodes.extend(
            [
                regions::INBOX_CONTROL,
                regions::OUTBOX_HOST_CONTROL,
                regions::OUTBOX_KERNEL_CONTROL,
                regions::LIFECYCLE_CONTROL,
            ]
            .map(under(regions::RING_CONTROL)),
        );
        nodes
            .extend([regions::BIRD_STREAM_CONTROL, regions::MATRIX_STREAM_CONTROL].map(under(regions::STREAM_CONTROL)));
        nodes.extend(
            [
                regions::ENGINE_STATE,
                regions::PIPELINE_STATE,
                regions::AUDIT_LOG,
                regions::LIFECYCLE,
                regions::ADMISSION,
                regions::PROCESS_TABLE,
                regions::EPOCH_WAITERS,
            ]
            .map(under(regions::COORDINATION)),
        );
        nodes
    }

    /// The region called `name`, if the map has one.
    pub fn region(&self, name: &str) -> Option<Region> {
        self.regions().into_iter().map(|n| n.region).find(|r| r.name == name)
    }
}
