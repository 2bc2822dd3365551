// Generated from schemas/sab_layout.capnp by tests/it/codegen.rs. Do not edit: change the
// schema and run `INOS_REGENERATE=1 cargo test --test it codegen`.
// The same names and values as the Rust constants in src/sab/generated/sab_layout_capnp.rs.
// u64 values beyond Number.MAX_SAFE_INTEGER are BigInts.

export const LAYOUT_VERSION = 7;
export const SAB_MAGIC = 0x4241535f534f4e49n;
export const CACHE_LINE = 64;
export const PAGE_SIZE = 4096;
export const LARGE_ALIGNMENT = 65536;
export const SAB_SIZE_MIN = 33554432;
export const SAB_SIZE_MAX = 1073741824;
export const EPOCH_COUNT = 256;
export const EPOCH_SIZE = 4;
/** 59 x f32 (reference 2.14) */
export const BIRD_RECORD_SIZE = 236;
export const BIRD_RECORD_FLOATS = 59;
/** u32 id, f64 fitness, 44 x f32 (reference 2.14) */
export const GENE_RECORD_SIZE = 188;
/** one column-major 4x4 f32 */
export const MATRIX_PART_SIZE = 64;
/** part-major planes (reference 2.15) */
export const MATRIX_PARTS_PER_BIRD = 8;
export const REGISTRY_ENTRY_SIZE = 96;
export const REGISTRY_INLINE_SLOTS = 64;
export const REGISTRY_MAX_PROBES = 128;
export const CAPABILITY_ENTRY_SIZE = 36;
export const DEPENDENCY_ENTRY_SIZE = 16;
export const SUPERVISOR_HEADER_SIZE = 128;
export const PATTERN_RECORD_SIZE = 64;
export const PATTERN_INLINE_SLOTS = 1024;
export const HEARTBEAT_SLOT_SIZE = 8;
export const ARENA_QUEUE_ENTRY_SIZE = 64;
export const ARENA_QUEUE_SLOTS = 64;
export const MESH_EVENT_SLOT_SIZE = 1024;
/** the sab-refinement count, which frees room for guards */
export const MESH_EVENT_SLOTS = 48;
export const GUARD_ENTRY_SIZE = 16;
export const GUARD_ENTRIES = 256;
/** one per ping-pong stream */
export const STREAM_CONTROL_SIZE = 64;
/** consumer line + producer line */
export const RING_CONTROL_SIZE = 128;
/** [len u32][sequence stamp u32] */
export const RING_FRAME_HEADER_SIZE = 8;
export const RING_FRAME_ALIGN = 8;
export const EPOCHS_OFFSET = 0;
export const EPOCHS_SIZE = 1024;
export const SAB_HEADER_OFFSET = 1024;
export const SAB_HEADER_SIZE = 64;
export const SUPERVISOR_ALLOC_OFFSET = 1088;
export const SUPERVISOR_ALLOC_SIZE = 576;
export const REGISTRY_LOCK_OFFSET = 1664;
export const REGISTRY_LOCK_SIZE = 16;
export const REGISTRY_OFFSET = 1728;
export const REGISTRY_SIZE = 6144;
export const BLOOM_OFFSET = 7872;
export const BLOOM_SIZE = 256;
export const SUPERVISOR_HEADERS_OFFSET = 8192;
export const SUPERVISOR_HEADERS_SIZE = 8192;
export const MESH_METRICS_OFFSET = 16384;
export const MESH_METRICS_SIZE = 256;
export const GLOBAL_ANALYTICS_OFFSET = 16640;
export const GLOBAL_ANALYTICS_SIZE = 256;
export const ECONOMICS_OFFSET = 16896;
export const ECONOMICS_SIZE = 15872;
export const IDENTITY_OFFSET = 32768;
export const IDENTITY_SIZE = 16384;
export const SOCIAL_GRAPH_OFFSET = 49152;
export const SOCIAL_GRAPH_SIZE = 16384;
export const PATTERN_EXCHANGE_OFFSET = 65536;
export const PATTERN_EXCHANGE_SIZE = 65536;
export const JOB_HISTORY_OFFSET = 131072;
export const JOB_HISTORY_SIZE = 131072;
export const COORDINATION_OFFSET = 262144;
export const COORDINATION_SIZE = 65024;
export const ENGINE_STATE_OFFSET = 262144;
export const ENGINE_STATE_SIZE = 1280;
export const ENGINE_RECORD_SIZE = 256;
export const ENGINE_COUNT = 5;
export const ENGINE_METRIC_SLOTS = 56;
export const PIPELINE_STATE_OFFSET = 263424;
export const PIPELINE_STATE_SIZE = 256;
export const LIFECYCLE_OFFSET = 274432;
export const LIFECYCLE_SIZE = 4096;
export const ADMISSION_OFFSET = 278528;
export const ADMISSION_SIZE = 34816;
export const ADMISSION_HEADER_SIZE = 256;
export const ADMISSION_LIMIT_SIZE = 16;
export const ADMISSION_LIMITS = 64;
export const ADMISSION_BUCKET_SIZE = 32;
export const ADMISSION_BUCKETS = 1024;
export const PROCESS_TABLE_OFFSET = 313344;
export const PROCESS_TABLE_SIZE = 4096;
export const PROCESS_HEADER_SIZE = 64;
export const PROCESS_RECORD_SIZE = 64;
export const PROCESS_SLOTS = 32;
export const PROCESS_ROLE_KERNEL = 1;
export const PROCESS_ROLE_CLIENT = 2;
export const PROCESS_ROLE_INSPECTOR = 3;
export const EPOCH_WAITERS_OFFSET = 317440;
export const EPOCH_WAITERS_SIZE = 1024;
export const AUDIT_LOG_OFFSET = 264192;
export const AUDIT_LOG_SIZE = 8192;
export const AUDIT_RECORD_SIZE = 64;
export const RING_CONTROL_OFFSET = 327168;
export const RING_CONTROL_REGION_SIZE = 512;
export const INBOX_CONTROL_OFFSET = 327168;
export const OUTBOX_HOST_CONTROL_OFFSET = 327296;
export const OUTBOX_KERNEL_CONTROL_OFFSET = 327424;
export const LIFECYCLE_CONTROL_OFFSET = 327552;
export const INBOX_OFFSET = 327680;
/** Outbox-host: kernel -> units (syscall responses). */
export const INBOX_SIZE = 524288;
export const OUTBOX_HOST_OFFSET = 851968;
/** Outbox-kernel: units -> kernel (results and syscalls). */
export const OUTBOX_HOST_SIZE = 262144;
export const OUTBOX_KERNEL_OFFSET = 1114112;
export const OUTBOX_KERNEL_SIZE = 262144;
export const ARENA_OFFSET = 1376256;
export const ARENA_METADATA_OFFSET = 1376256;
export const ARENA_METADATA_SIZE = 65536;
export const DIAGNOSTICS_OFFSET = 1376256;
export const DIAGNOSTICS_SIZE = 2048;
export const BRIDGE_METRICS_OFFSET = 1378304;
export const BRIDGE_METRICS_SIZE = 256;
export const ARENA_REQUEST_QUEUE_OFFSET = 1380352;
export const ARENA_REQUEST_QUEUE_SIZE = 4096;
export const ARENA_RESPONSE_QUEUE_OFFSET = 1384448;
export const ARENA_RESPONSE_QUEUE_SIZE = 4096;
export const MESH_EVENT_QUEUE_OFFSET = 1388544;
export const MESH_EVENT_QUEUE_SIZE = 49152;
export const GUARD_TABLE_OFFSET = 1437696;
export const GUARD_TABLE_SIZE = 4096;
export const BIRD_STATE_OFFSET = 1441792;
export const BIRD_STATE_SIZE = 4096;
export const STREAM_CONTROL_OFFSET = 1445888;
export const STREAM_CONTROL_REGION_SIZE = 128;
export const BIRD_STREAM_CONTROL_OFFSET = 1445888;
export const MATRIX_STREAM_CONTROL_OFFSET = 1445952;
export const OBSTACLE_TABLE_OFFSET = 1447936;
export const OBSTACLE_TABLE_SIZE = 2048;
export const OBSTACLE_HEADER_SIZE = 64;
export const OBSTACLE_RECORD_SIZE = 64;
/** Shapes: a ball (dimensions: radius), a box (half extents), a cylinder along its local Y axis (radius, half height). */
export const OBSTACLE_MAX = 31;
export const OBSTACLE_SHAPE_BALL = 0;
export const OBSTACLE_SHAPE_CUBOID = 1;
export const OBSTACLE_SHAPE_CYLINDER = 2;
export const OBSTACLE_ROLE_FLOOR = 1;
export const OBSTACLE_ROLE_PILLAR = 2;
export const OBSTACLE_ROLE_ORBITER = 3;
export const OBSTACLE_ROLE_BALL = 4;
export const OBSTACLE_ROLE_CRATE = 5;
export const KERNEL_STATE_SIZE = 6291456;
export const JOB_TABLE_OFFSET = 0;
export const JOB_TABLE_SIZE = 4198400;
export const JOB_TABLE_HEADER_SIZE = 4096;
export const JOB_SLOT_SIZE = 256;
export const JOB_SLOT_RECORD_SIZE = 64;
export const JOB_SLOTS = 16384;
export const KEYED_TABLE_HEADER_SIZE = 64;
export const WORKFLOW_TABLE_OFFSET = 4198400;
export const WORKFLOW_TABLE_SIZE = 65536;
export const WORKFLOW_SLOTS = 1024;
export const CHUNK_INDEX_OFFSET = 4263936;
export const CHUNK_INDEX_SIZE = 131072;
export const CHUNK_SLOTS = 2048;
export const TREE_STATE_OFFSET = 4395008;
export const TREE_STATE_SIZE = 32768;
export const LEARNING_STATE_OFFSET = 4427776;
export const LEARNING_STATE_SIZE = 393216;
export const SECURITY_STATE_OFFSET = 4820992;
export const SECURITY_STATE_SIZE = 65536;
export const HEALTH_STATE_OFFSET = 4886528;
export const HEALTH_STATE_SIZE = 16384;
export const OPTIMISATION_STATE_OFFSET = 4902912;
export const OPTIMISATION_STATE_SIZE = 4096;
export const SCHEDULING_STATE_OFFSET = 4907008;
export const SCHEDULING_STATE_SIZE = 4096;
export const CLIENT_LANES_OFFSET = 4911104;
export const CLIENT_LANES_SIZE = 1081344;
export const CLIENT_LANE_SIZE = 135168;
export const CLIENT_LANE_HEADER_SIZE = 4096;
export const CLIENT_RING_SIZE = 65536;
/** 0x5B7000 .. 0x600000: free for the kernel state of later layouts. */
export const CLIENT_LANES = 8;
export const TIER_COUNT = 4;
export const TIER_LIGHT = 0;
export const TIER_MODERATE = 1;
export const TIER_HEAVY = 2;
export const TIER_DEDICATED = 3;
export const LIGHT_SAB_SIZE = 33554432;
export const LIGHT_RECOMMENDED_BIRDS = 1000;
export const LIGHT_MAX_BIRDS = 4999;
export const LIGHT_BIRD_BUFFER_A_OFFSET = 1449984;
export const LIGHT_BIRD_BUFFER_B_OFFSET = 2633728;
export const LIGHT_BIRD_BUFFER_SIZE = 1179764;
export const LIGHT_MATRIX_BUFFER_A_OFFSET = 3817472;
export const LIGHT_MATRIX_BUFFER_B_OFFSET = 6377472;
export const LIGHT_MATRIX_BUFFER_SIZE = 2559488;
export const LIGHT_GENE_BUFFER_OFFSET = 8937472;
export const LIGHT_GENE_BUFFER_SIZE = 939812;
export const LIGHT_KERNEL_STATE_OFFSET = 9895936;
export const LIGHT_ARENA_HEAP_OFFSET = 16187392;
export const MODERATE_SAB_SIZE = 67108864;
export const MODERATE_RECOMMENDED_BIRDS = 2000;
export const MODERATE_MAX_BIRDS = 10000;
export const MODERATE_BIRD_BUFFER_A_OFFSET = 1449984;
export const MODERATE_BIRD_BUFFER_B_OFFSET = 3813376;
export const MODERATE_BIRD_BUFFER_SIZE = 2360000;
export const MODERATE_MATRIX_BUFFER_A_OFFSET = 6176768;
export const MODERATE_MATRIX_BUFFER_B_OFFSET = 11296768;
export const MODERATE_MATRIX_BUFFER_SIZE = 5120000;
export const MODERATE_GENE_BUFFER_OFFSET = 16416768;
export const MODERATE_GENE_BUFFER_SIZE = 1880000;
export const MODERATE_KERNEL_STATE_OFFSET = 18350080;
export const MODERATE_ARENA_HEAP_OFFSET = 24641536;
export const HEAVY_SAB_SIZE = 134217728;
export const HEAVY_RECOMMENDED_BIRDS = 5000;
export const HEAVY_MAX_BIRDS = 50000;
export const HEAVY_BIRD_BUFFER_A_OFFSET = 1449984;
export const HEAVY_BIRD_BUFFER_B_OFFSET = 13250560;
export const HEAVY_BIRD_BUFFER_SIZE = 11800000;
export const HEAVY_MATRIX_BUFFER_A_OFFSET = 25051136;
export const HEAVY_MATRIX_BUFFER_B_OFFSET = 50651136;
export const HEAVY_MATRIX_BUFFER_SIZE = 25600000;
export const HEAVY_GENE_BUFFER_OFFSET = 76251136;
export const HEAVY_GENE_BUFFER_SIZE = 9400000;
export const HEAVY_KERNEL_STATE_OFFSET = 85655552;
export const HEAVY_ARENA_HEAP_OFFSET = 91947008;
export const DEDICATED_SAB_SIZE = 268435456;
export const DEDICATED_RECOMMENDED_BIRDS = 15000;
export const DEDICATED_MAX_BIRDS = 100000;
export const DEDICATED_BIRD_BUFFER_A_OFFSET = 1449984;
export const DEDICATED_BIRD_BUFFER_B_OFFSET = 25051136;
export const DEDICATED_BIRD_BUFFER_SIZE = 23600000;
export const DEDICATED_MATRIX_BUFFER_A_OFFSET = 48652288;
export const DEDICATED_MATRIX_BUFFER_B_OFFSET = 99852288;
export const DEDICATED_MATRIX_BUFFER_SIZE = 51200000;
export const DEDICATED_GENE_BUFFER_OFFSET = 151052288;
export const DEDICATED_GENE_BUFFER_SIZE = 18800000;
export const DEDICATED_KERNEL_STATE_OFFSET = 169869312;
export const DEDICATED_ARENA_HEAP_OFFSET = 176160768;
/** value: core plugin sets 1 at startup -> JS host, inspect */
export const EPOCH_KERNEL_READY = 0;
/** kernel after pushing inbox frames -> unit consumers */
export const EPOCH_INBOX_DIRTY = 1;
/** kernel after pushing syscall responses -> job host */
export const EPOCH_OUTBOX_HOST_DIRTY = 2;
/** value: any part on a fatal error -> everyone */
export const EPOCH_PANIC_STATE = 3;
/** host input sensors -> units */
export const EPOCH_SENSOR = 4;
/** units driving actors -> host */
export const EPOCH_ACTOR = 5;
/** chunk store after a store -> syscall clients */
export const EPOCH_STORAGE = 6;
/** master heartbeat: every stream publish -> health engine */
export const EPOCH_SYSTEM = 7;
/** fixed tick (64 Hz default) -> boids unit, supervisors  DEVIATION (2.1: 8 is the arena allocator) */
export const EPOCH_SYSTEM_PULSE = 8;
/** value: JS host, 1 visible / 0 hidden -> pulse  DEVIATION (2.1: 9 is a mutex) */
export const EPOCH_SYSTEM_VISIBILITY = 9;
/** value: host, 0 low / 1 normal / 2 high -> scheduler  DEVIATION (2.1: 10 is a mutex) 11-15: reserved for further pulse sources. */
export const EPOCH_SYSTEM_POWER_STATE = 10;
/** arena allocator after each alloc/free -> inspect, units  DEVIATION (2.1: 8) DEVIATION: no longer the bump pointer itself */
export const EPOCH_ARENA_ALLOCATOR = 16;
/** retired: the rings reserve by CAS and need no mutex  DEVIATION (2.1: 9 or 10) */
export const EPOCH_OUTBOX_MUTEX = 17;
/** retired: see 17  DEVIATION (2.1: 9 or 10) */
export const EPOCH_INBOX_MUTEX = 18;
/** bridge/mesh metrics writers -> inspector */
export const EPOCH_METRICS = 19;
/** boids unit after each bird-stream publish -> matrix unit  DEVIATION (2.1: 12) */
export const EPOCH_BIRD = 20;
/** matrix unit after each matrix publish -> renderer, JS  DEVIATION (2.1: 13) */
export const EPOCH_MATRIX = 21;
/** retired: DEVIATION, each stream has its own active word  DEVIATION (2.1: 14) */
export const EPOCH_PINGPONG_ACTIVE = 22;
/** registry after each register/unregister -> supervisors  DEVIATION (2.1: 15) */
export const EPOCH_REGISTRY = 23;
/** boids supervisor after a GA generation -> boids unit  DEVIATION (2.1: 16) */
export const EPOCH_EVOLUTION = 24;
/** health engine after each assessment -> root supervisor  DEVIATION (2.1: 17) */
export const EPOCH_HEALTH = 25;
/** learning engine after a model update -> scheduler  DEVIATION (2.1: 18) */
export const EPOCH_LEARNING = 26;
/** economics writers -> inspector  DEVIATION (2.1: 19) */
export const EPOCH_ECONOMY = 27;
/** value: boids unit, live bird count -> JS host, inspect  DEVIATION (2.1: 20) */
export const EPOCH_BIRD_COUNT = 28;
/** analytics writer -> inspector */
export const EPOCH_GLOBAL_METRICS = 29;
/** units after pushing results/syscalls -> kernel */
export const EPOCH_OUTBOX_KERNEL_DIRTY = 30;
/** value: core plugin writes the run's context hash -> zombie detection (the original never wrote it) */
export const EPOCH_CONTEXT_ID_HASH = 31;
/** mesh (reserved) */
export const EPOCH_DELEGATED_JOB = 32;
/** outside clients after pushing into their lanes -> kernel */
export const EPOCH_USER_JOB = 33;
/** mesh (reserved) */
export const EPOCH_DELEGATED_CHUNK = 34;
/** mesh event producer -> JS host */
export const EPOCH_MESH_EVENT = 35;
/** value: mesh event consumer counter */
export const EPOCH_MESH_EVENT_HEAD = 36;
/** value: mesh event producer counter */
export const EPOCH_MESH_EVENT_TAIL = 37;
/** mesh event producer on overflow -> inspect Indices added by this project (39-47): */
export const EPOCH_MESH_EVENT_DROPPED = 38;
/** scheduling engine after a dispatch round -> inspector */
export const EPOCH_SCHEDULING = 39;
/** security engine after an audit record -> health */
export const EPOCH_SECURITY = 40;
/** optimisation engine after a parameter change -> units */
export const EPOCH_OPTIMIZATION = 41;
/** supervisor table on alloc/free -> root supervisor */
export const EPOCH_SUPERVISOR_TABLE = 42;
/** pattern writers -> learning engine */
export const EPOCH_PATTERN_EXCHANGE = 43;
/** supervisors after a job record -> learning engine */
export const EPOCH_JOB_HISTORY = 44;
/** physics unit after a Rapier step -> boids unit */
export const EPOCH_PHYSICS = 45;
/** region guards on each violation -> health, inspector */
export const EPOCH_GUARD_VIOLATION = 46;
/** snapshot writer after a snapshot -> inspector Drone unit indices of the original's TS racing layout (not in its schema); reserved here. */
export const EPOCH_SNAPSHOT = 47;
export const EPOCH_DRONE_SENSOR = 48;
export const EPOCH_DRONE_CONTROL = 49;
export const EPOCH_DRONE_PHYSICS = 50;
export const EPOCH_DRONE_RACE_STATE = 51;
/** DEVIATION (new): lifecycle requesters after a push -> supervisor tree Supervisor pool: one epoch per supervisor pool slot, written by that supervisor -> its children. DEVIATION: 64..127 (64 slots, one per inline header). The original's pool 64..191 overlapped its "reserved" 128..255 and ran past its 128-bit bitmap. */
export const EPOCH_LIFECYCLE_DIRTY = 52;
export const EPOCH_SUPERVISOR_POOL_FIRST = 64;
/** 128..255: reserved for user-defined epochs. */
export const SUPERVISOR_POOL_SIZE = 64;
export const EPOCH_RESERVED_FIRST = 128;
export const OWNER_KERNEL = 1;
export const OWNER_MODULE = 2;
export const OWNER_HOST = 4;
export const OWNER_SYSTEM = 8;
export const GUARD_MODE_SINGLE_WRITER = 0;
/** A guard with this epoch index has no "epoch advanced after the write" check. */
export const GUARD_MODE_MULTI_WRITER = 1;
export const GUARD_NO_EPOCH = 4294967295;
export const GUARD_INBOX = 0;
export const GUARD_INBOX_MODE = 0;
export const GUARD_INBOX_WRITERS = 1;
export const GUARD_INBOX_EPOCH = 1;
export const GUARD_OUTBOX_HOST = 1;
export const GUARD_OUTBOX_HOST_MODE = 0;
export const GUARD_OUTBOX_HOST_WRITERS = 1;
export const GUARD_OUTBOX_HOST_EPOCH = 2;
export const GUARD_OUTBOX_KERNEL = 2;
export const GUARD_OUTBOX_KERNEL_MODE = 1;
export const GUARD_OUTBOX_KERNEL_WRITERS = 2;
export const GUARD_OUTBOX_KERNEL_EPOCH = 30;
export const GUARD_MESH_EVENT_QUEUE = 3;
export const GUARD_MESH_EVENT_QUEUE_MODE = 0;
export const GUARD_MESH_EVENT_QUEUE_WRITERS = 1;
export const GUARD_MESH_EVENT_QUEUE_EPOCH = 35;
export const GUARD_ARENA_REQUEST_QUEUE = 4;
export const GUARD_ARENA_REQUEST_QUEUE_MODE = 0;
export const GUARD_ARENA_REQUEST_QUEUE_WRITERS = 2;
export const GUARD_ARENA_REQUEST_QUEUE_EPOCH = 16;
export const GUARD_ARENA_RESPONSE_QUEUE = 5;
export const GUARD_ARENA_RESPONSE_QUEUE_MODE = 0;
export const GUARD_ARENA_RESPONSE_QUEUE_WRITERS = 1;
export const GUARD_ARENA_RESPONSE_QUEUE_EPOCH = 4294967295;
export const GUARD_ARENA = 6;
export const GUARD_ARENA_MODE = 1;
/** kernel | module */
export const GUARD_ARENA_WRITERS = 3;
export const GUARD_ARENA_EPOCH = 4294967295;
export const GUARD_BIRD_STREAM = 7;
export const GUARD_BIRD_STREAM_MODE = 0;
export const GUARD_BIRD_STREAM_WRITERS = 2;
export const GUARD_BIRD_STREAM_EPOCH = 20;
export const GUARD_MATRIX_STREAM = 8;
export const GUARD_MATRIX_STREAM_MODE = 0;
export const GUARD_MATRIX_STREAM_WRITERS = 2;
export const GUARD_MATRIX_STREAM_EPOCH = 21;
export const GUARD_REGISTRY = 9;
export const GUARD_REGISTRY_MODE = 1;
/** kernel | module */
export const GUARD_REGISTRY_WRITERS = 3;
export const GUARD_REGISTRY_EPOCH = 23;
export const GUARD_PATTERN_EXCHANGE = 10;
export const GUARD_PATTERN_EXCHANGE_MODE = 0;
/** kernel | module */
export const GUARD_PATTERN_EXCHANGE_WRITERS = 3;
export const GUARD_PATTERN_EXCHANGE_EPOCH = 43;
export const GUARD_JOB_HISTORY = 11;
export const GUARD_JOB_HISTORY_MODE = 0;
/** kernel (the supervisors) */
export const GUARD_JOB_HISTORY_WRITERS = 1;
export const GUARD_JOB_HISTORY_EPOCH = 44;
export const GUARD_SUPERVISOR_TABLE = 12;
export const GUARD_SUPERVISOR_TABLE_MODE = 0;
/** kernel */
export const GUARD_SUPERVISOR_TABLE_WRITERS = 1;
export const GUARD_SUPERVISOR_TABLE_EPOCH = 42;
export const GUARD_GENE_BUFFER = 13;
export const GUARD_GENE_BUFFER_MODE = 0;
/** kernel (the boids supervisor) */
export const GUARD_GENE_BUFFER_WRITERS = 1;
export const GUARD_GENE_BUFFER_EPOCH = 24;
export const GUARD_OBSTACLE_TABLE = 14;
export const GUARD_OBSTACLE_TABLE_MODE = 0;
/** the physics unit */
export const GUARD_OBSTACLE_TABLE_WRITERS = 2;
export const GUARD_OBSTACLE_TABLE_EPOCH = 45;
export const GUARD_LIFECYCLE = 15;
export const GUARD_LIFECYCLE_MODE = 1;
/** kernel | host */
export const GUARD_LIFECYCLE_WRITERS = 5;
export const GUARD_LIFECYCLE_EPOCH = 52;
export const GUARD_COUNT = 16;
export const REGISTRY_SIGNATURE = 0x494e4f5352454749n;
export const REGISTRY_FLAG_EXTENDED_DATA = 1;
export const REGISTRY_FLAG_ACTIVE = 2;
export const REGISTRY_FLAG_OVERFLOW = 4;
export const CAPABILITY_FLAG_REQUIRES_GPU = 1;
export const DEPENDENCY_FLAG_OPTIONAL = 1;
/** Pattern record magic, "PAT_EX-P" (reference 2.8). */
export const DEPENDENCY_FLAG_HAS_ALTERNATIVES = 2;
/** Job history: a 64 B header, then 64 B records, oldest overwritten first. DEVIATION (new, layout 5): the record's reserved words now carry what the engines learn from (the submitter's source hash, the unit's execution and CPU time), and status and priority are u16 each, so that every engine reads finished jobs here and nowhere else. Readers follow the header's `total` (records ever written) with a cursor of their own and learn how many records the ring overwrote before they read them. */
export const PATTERN_MAGIC = 0x5041545f45582d50n;
export const JOB_HISTORY_HEADER_SIZE = 64;
export const JOB_RECORD_SIZE = 64;
