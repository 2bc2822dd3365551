# The SAB memory map: the single source of truth for every offset, size, record size, epoch index,
# guard policy and tier in this project.
#
# Rust constants (src/sab/generated/sab_layout_capnp.rs) are generated from this file by capnpc, and
# JS constants (web/generated/sab_layout.js) by the project's own emitter over the same compiler
# request. The integration test `codegen` regenerates both and fails on any difference; run it with
# INOS_REGENERATE=1 to rewrite them after editing this file.
#
# Base: the v2.2 layout of the user's layout document (seed 001), with absolute offsets from 0.
# Every place where this map differs from v2.2 is marked "DEVIATION" with the reason. All offsets are
# multiples of 64 (a cache line); the test `layout` walks every region of every tier, arena
# sub-regions included, and proves that none overlap and that everything fits.
#
# Units: offsets and sizes in bytes, counts in records. All multi-byte values are little-endian.

@0xabbc7bc1f67ecf13;

# ---------------------------------------------------------------------------------------------
# Versions, magic and alignment
# ---------------------------------------------------------------------------------------------

# Layout version stored in the SAB header and in snapshots. v2.2 of the seed is the base; 3 marked
# this project's corrected map (the deviations below change offsets, so readers must not mix them);
# 4 sizes the tiers' streams for the layout document's entity counts; 5 added the job pipeline's
# record, the lifecycle ring and the admission table; 6 adds the kernel state (below the tiers); 7
# the process table, the epoch waiter counts and the client lanes, for a SAB shared by processes.
const layoutVersion :UInt32 = 7;

# "INOS_SAB" read as a little-endian u64; the first word of the SAB header region.
const sabMagic :UInt64 = 0x4241535f534f4e49;

const cacheLine :UInt32 = 64;
const pageSize :UInt32 = 4096;
const largeAlignment :UInt32 = 65536;

# Smallest and largest SAB (a larger SAB than its tier's size only grows the arena heap).
const sabSizeMin :UInt64 = 33554432;
const sabSizeMax :UInt64 = 1073741824;

# ---------------------------------------------------------------------------------------------
# Record sizes and strides
# ---------------------------------------------------------------------------------------------

const epochCount :UInt32 = 256;
const epochSize :UInt32 = 4;
const birdRecordSize :UInt32 = 236;            # 59 x f32 (reference 2.14)
const birdRecordFloats :UInt32 = 59;
const geneRecordSize :UInt32 = 188;            # u32 id, f64 fitness, 44 x f32 (reference 2.14)
const matrixPartSize :UInt32 = 64;             # one column-major 4x4 f32
const matrixPartsPerBird :UInt32 = 8;          # part-major planes (reference 2.15)
const registryEntrySize :UInt32 = 96;
const registryInlineSlots :UInt32 = 64;
const registryMaxProbes :UInt32 = 128;
const capabilityEntrySize :UInt32 = 36;
const dependencyEntrySize :UInt32 = 16;
const supervisorHeaderSize :UInt32 = 128;
const patternRecordSize :UInt32 = 64;
const patternInlineSlots :UInt32 = 1024;
const heartbeatSlotSize :UInt32 = 8;
const arenaQueueEntrySize :UInt32 = 64;
const arenaQueueSlots :UInt32 = 64;
const meshEventSlotSize :UInt32 = 1024;
const meshEventSlots :UInt32 = 48;             # the sab-refinement count, which frees room for guards
const guardEntrySize :UInt32 = 16;
const guardEntries :UInt32 = 256;
const streamControlSize :UInt32 = 64;          # one per ping-pong stream
const ringControlSize :UInt32 = 128;           # consumer line + producer line
const ringFrameHeaderSize :UInt32 = 8;         # [len u32][sequence stamp u32]
const ringFrameAlign :UInt32 = 8;

# ---------------------------------------------------------------------------------------------
# Fixed regions (identical in every tier)
# ---------------------------------------------------------------------------------------------

# Epoch counters: 256 x u32, index n at byte 4n as in the original.
# DEVIATION: v2.2 gave "atomic flags" 128 B (32 indices) while the code used indices up to 255, so
# indices 32 and up landed in the supervisor table, the registry lock and the registry. The epoch
# region now holds all 256 indices, and the small regions that followed it moved up (below).
const epochsOffset :UInt32 = 0x000000;
const epochsSize :UInt32 = 0x400;

# DEVIATION (new): a self-describing header for the JS host and for snapshots:
# [0] magic u64 | [8] layout version u32 | [12] tier u32 | [16] SAB size u64 | [24] bird capacity u32.
const sabHeaderOffset :UInt32 = 0x000400;
const sabHeaderSize :UInt32 = 0x40;

# Supervisor epoch allocation table: allocation bitmap over the supervisor pool, next-index hint,
# allocated count, then one (id hash u32, epoch index u32) pair per pool slot.
# DEVIATION: v2.2 had 176 B at 0x80, room for 29 pairs while the pool had 128 indices and the
# bitmap covered the wrong range. It now has a pair for every pool slot, and moved up by 0x3C0.
const supervisorAllocOffset :UInt32 = 0x000440;
const supervisorAllocSize :UInt32 = 0x240;

# Registry lock: [0] state u32 (0 free) | [4] owner u32 | [8] deadline in ms u64.
# DEVIATION: moved up by 0x550 with the epoch region (was 0x130). v2.2 documented it; the original
# never used it.
const registryLockOffset :UInt32 = 0x000680;
const registryLockSize :UInt32 = 0x10;

# Module registry: 64 inline entries x 96 B. DEVIATION: moved up by 0x580 (was 0x140).
const registryOffset :UInt32 = 0x0006C0;
const registrySize :UInt32 = 0x1800;

# Registry bloom filter, 256 B. DEVIATION: moved up by 0x580 (was 0x1940).
const bloomOffset :UInt32 = 0x001EC0;
const bloomSize :UInt32 = 0x100;

# Supervisor headers: one 128 B header per supervisor pool slot.
# DEVIATION: 8 KiB (64 headers) instead of 4 KiB (32), absorbing the 4 KiB syscall table at
# 0x3000, which nothing read or wrote: syscalls travel as Cap'n Proto frames on the rings.
const supervisorHeadersOffset :UInt32 = 0x002000;
const supervisorHeadersSize :UInt32 = 0x2000;

const meshMetricsOffset :UInt32 = 0x004000;
const meshMetricsSize :UInt32 = 0x100;
const globalAnalyticsOffset :UInt32 = 0x004100;
const globalAnalyticsSize :UInt32 = 0x100;
const economicsOffset :UInt32 = 0x004200;
const economicsSize :UInt32 = 0x3E00;
const identityOffset :UInt32 = 0x008000;
const identitySize :UInt32 = 0x4000;
const socialGraphOffset :UInt32 = 0x00C000;
const socialGraphSize :UInt32 = 0x4000;

# Pattern exchange: 1024 x 64 B pattern records.
const patternExchangeOffset :UInt32 = 0x010000;
const patternExchangeSize :UInt32 = 0x10000;

# Job history ring.
const jobHistoryOffset :UInt32 = 0x020000;
const jobHistorySize :UInt32 = 0x20000;

# DEVIATION: 0xFE00 instead of 0x10000; its last 512 bytes hold the ring control blocks.
const coordinationOffset :UInt32 = 0x040000;
const coordinationSize :UInt32 = 0xFE00;

# DEVIATION (new): the engines' state, at the start of the coordination region: one 256-byte
# record per engine (learning, scheduling, security, health, optimisation), each rewritten under
# its own seqlock word by its engine after every run, so the inspector and `inos inspect` show what
# the engines computed. The original's engines kept their state in Go memory.
const engineStateOffset :UInt32 = 0x040000;
const engineStateSize :UInt32 = 0x500;
const engineRecordSize :UInt32 = 256;
const engineCount :UInt32 = 5;
const engineMetricSlots :UInt32 = 56;

# DEVIATION (new, layout 5): the job pipeline's record, after the engine records: the kernel's
# counters (submitted, dispatched, resolved, timed out, ...) and its queue depth and jobs in
# flight, rewritten under its seqlock word at the end of every pipeline stage, so the scheduling
# engine and the inspector read them here instead of the kernel's memory.
const pipelineStateOffset :UInt32 = 0x040500;
const pipelineStateSize :UInt32 = 0x100;

# DEVIATION (new, layout 5): the lifecycle ring, a fourth ring (control block at 0x04FF80): requests
# to the supervisor tree (spawn, kill, pause, resume, snapshot, restart a unit) from the health
# engine, the inspector's buttons and the spawnThread/killThread syscalls, as 8-byte frames
# (unit hash, action). The tree is its only consumer; no part calls another to restart a unit.
const lifecycleOffset :UInt32 = 0x043000;
const lifecycleSize :UInt32 = 0x1000;

# DEVIATION (new, layout 5): the admission table, which the kernel reads for every submitted job:
# a 256-byte header (the rate limit's burst and refill, the counters), 64 input limits of 16 bytes
# (unit hash, maximum input bytes), then 1 024 token buckets of 32 bytes, one per source (the job's
# `source` metadata, by CRC32C; the last bucket is shared by sources that find no free one). The
# security engine's settings and the kernel's buckets live here, so the gate is not a call and a
# resumed snapshot keeps every source's tokens.
const admissionOffset :UInt32 = 0x044000;
const admissionSize :UInt32 = 0x8800;
const admissionHeaderSize :UInt32 = 0x100;
const admissionLimitSize :UInt32 = 16;
const admissionLimits :UInt32 = 64;
const admissionBucketSize :UInt32 = 32;
const admissionBuckets :UInt32 = 1024;

# DEVIATION (new, layout 7): the process table, after the admission table: the processes that share
# this SAB (it lives in a shared mapping, `/dev/shm/inos-<pid>.sab`). Every field is a u64, read and
# written only as one. A 64-byte header: [0] the kernel lock's pid, [8] that pid's start time in
# clock ticks (a reused pid is not taken for the kernel), [16] claims, [24] locks taken over from a
# dead kernel, [32] client lanes reclaimed from dead clients, [40] frames those clients left
# half-written; then 32 records of 64 bytes: [0] pid (0: free) | [8] role | [16] start time (ms since
# the Unix epoch) | [24] heartbeat (ms) | [32] the pid's start time in clock ticks | [40] client lane
# + 1 (0: none) | [48] name, 16 bytes of UTF-8. The original ran one process.
const processTableOffset :UInt32 = 0x04C800;
const processTableSize :UInt32 = 0x1000;
const processHeaderSize :UInt32 = 64;
const processRecordSize :UInt32 = 64;
const processSlots :UInt32 = 32;
const processRoleKernel :UInt32 = 1;
const processRoleClient :UInt32 = 2;
const processRoleInspector :UInt32 = 3;

# DEVIATION (new, layout 7): one waiter count per epoch index (256 x u32). A thread parks on an epoch
# word (a futex, shared between processes) after counting itself here, and a signaller makes the
# wake-up call only when the count is not zero, so a signal with nobody waiting stays one atomic add
# in every process that shares the SAB. The original's waiters were the JS host's Atomics.wait.
const epochWaitersOffset :UInt32 = 0x04D800;
const epochWaitersSize :UInt32 = 0x400;

# DEVIATION (new): the security engine's audit log: a 64-byte header (seqlock word, head, count,
# total) and then 64-byte records, oldest overwritten first.
const auditLogOffset :UInt32 = 0x040800;
const auditLogSize :UInt32 = 0x2000;
const auditRecordSize :UInt32 = 64;

# Ring control blocks, 128 B each (consumer cache line + producer cache line, see ring.rs).
# DEVIATION: the original kept head and tail in the first 8 bytes of each ring region. Here they
# live apart, so each ring's data area is its whole region, a power of two, and positions wrap
# with a mask.
const ringControlOffset :UInt32 = 0x04FE00;
const ringControlRegionSize :UInt32 = 0x200;
const inboxControlOffset :UInt32 = 0x04FE00;
const outboxHostControlOffset :UInt32 = 0x04FE80;
const outboxKernelControlOffset :UInt32 = 0x04FF00;
const lifecycleControlOffset :UInt32 = 0x04FF80;

# Rings: frame data only (see ring.rs), each a power of two in size.
# Inbox: kernel -> units (job requests).
const inboxOffset :UInt32 = 0x050000;
const inboxSize :UInt32 = 0x80000;
# Outbox-host: kernel -> units (syscall responses).
const outboxHostOffset :UInt32 = 0x0D0000;
const outboxHostSize :UInt32 = 0x40000;
# Outbox-kernel: units -> kernel (results and syscalls).
const outboxKernelOffset :UInt32 = 0x110000;
const outboxKernelSize :UInt32 = 0x40000;

# ---------------------------------------------------------------------------------------------
# The arena: from arenaOffset to the end of the SAB
# ---------------------------------------------------------------------------------------------

const arenaOffset :UInt32 = 0x150000;

# Arena metadata: the first 64 KiB of the arena, never handed out by the allocator.
const arenaMetadataOffset :UInt32 = 0x150000;
const arenaMetadataSize :UInt32 = 0x10000;

# Per-module heartbeat slots: [last pulse u32][pulse counter u32] x 256 modules.
# DEVIATION: 2 KiB instead of 4 KiB; v2.2's 4 KiB diagnostics region contained the bridge metrics.
const diagnosticsOffset :UInt32 = 0x150000;
const diagnosticsSize :UInt32 = 0x800;

const bridgeMetricsOffset :UInt32 = 0x150800;
const bridgeMetricsSize :UInt32 = 0x100;

const arenaRequestQueueOffset :UInt32 = 0x151000;
const arenaRequestQueueSize :UInt32 = 0x1000;
const arenaResponseQueueOffset :UInt32 = 0x152000;
const arenaResponseQueueSize :UInt32 = 0x1000;

# 48 x 1 KiB mesh event slots (the sab-refinement size).
const meshEventQueueOffset :UInt32 = 0x153000;
const meshEventQueueSize :UInt32 = 0xC000;

# Region guard table: 256 x 16 B, [lock][last epoch][violations][last owner] (reference 2.12).
const guardTableOffset :UInt32 = 0x15F000;
const guardTableSize :UInt32 = 0x1000;

# Bird animation state, reserved in v2.2 (the original's boids never used it). DEVIATION (layout 6):
# the flock's state (sab/flock_state.rs): at 0x00 what the boids unit simulates (world bounds, bird
# count, faithful), at 0x40 a host's requests (respawn, faithful, evolution restart: argument words,
# then a sequence number, then EPOCH_SENSOR), at 0x80 the evolution's generation and the newest 256
# generations' mean and best fitness.
const birdStateOffset :UInt32 = 0x160000;
const birdStateSize :UInt32 = 0x1000;

# Ping-pong control: one 64 B control block per stream, birds then matrices.
# DEVIATION: 128 B instead of 64 B. The original declared one block, never used it, and shared one
# "active" epoch word (index 22) between both streams; each stream now has its own control words.
const streamControlOffset :UInt32 = 0x161000;
const streamControlRegionSize :UInt32 = 0x80;
const birdStreamControlOffset :UInt32 = 0x161000;
const matrixStreamControlOffset :UInt32 = 0x161040;

# DEVIATION (new): the obstacle table, the physics unit's obstacles after each Rapier step, for the boids
# unit to steer by. A 64 B header ([count u32], then reserved) and up to 31 records of 64 B:
# [shape u32][role u32][centre 3 x f32][bounding radius f32][rotation quaternion 4 x f32]
# [dimensions 3 x f32][reserved 3 x u32]. Written under its guard; signals epochPhysics. The role
# (layout 6; was reserved) says what the obstacle is, so a renderer draws the scene from the table
# alone: 0 unknown, then the constants below.
const obstacleTableOffset :UInt32 = 0x161800;
const obstacleTableSize :UInt32 = 0x800;
const obstacleHeaderSize :UInt32 = 64;
const obstacleRecordSize :UInt32 = 64;
const obstacleMax :UInt32 = 31;
# Shapes: a ball (dimensions: radius), a box (half extents), a cylinder along its local Y axis
# (radius, half height).
const obstacleShapeBall :UInt32 = 0;
const obstacleShapeCuboid :UInt32 = 1;
const obstacleShapeCylinder :UInt32 = 2;
const obstacleRoleFloor :UInt32 = 1;
const obstacleRolePillar :UInt32 = 2;
const obstacleRoleOrbiter :UInt32 = 3;
const obstacleRoleBall :UInt32 = 4;
const obstacleRoleCrate :UInt32 = 5;

# ---------------------------------------------------------------------------------------------
# Kernel state. DEVIATION (new, layout 6): everything the kernel knows lives in the SAB, so that a
# snapshot (or, later, another process) resumes the whole system: the job table (queued and
# in-flight jobs with their frames, results not yet taken), the workflows, the chunk-store index,
# the supervisor tree's restart history, and the engines' models and read cursors. Bevy memory
# holds only caches rebuilt from here. One region of `kernelStateSize` bytes per tier, after the
# gene buffer (`<tier>KernelStateOffset`); the areas below are offsets inside it. The original kept
# all of this in Go memory, lost on every restart. Written by the kernel only.
# ---------------------------------------------------------------------------------------------

const kernelStateSize :UInt32 = 0x600000;

# The job table: a 4 KiB header, then one 256-byte slot per live job (64-byte record, 192 bytes of
# frame: the job's frame while it waits or runs, its result's frame once answered; longer frames
# live in an arena block the slot points to).
const jobTableOffset :UInt32 = 0x000000;
const jobTableSize :UInt32 = 0x401000;
const jobTableHeaderSize :UInt32 = 0x1000;
const jobSlotSize :UInt32 = 256;
const jobSlotRecordSize :UInt32 = 64;
const jobSlots :UInt32 = 16384;

# Keyed tables (sab/table.rs): a 64-byte header, then slots of [last use u64][key][value], found by
# hash with linear probing; each area holds one or more tables.
const keyedTableHeaderSize :UInt32 = 64;

# Workflows: one slot per workflow (running, or ended with its outcome not yet taken), pointing to
# the arena block that holds its steps and their states.
const workflowTableOffset :UInt32 = 0x401000;
const workflowTableSize :UInt32 = 0x10000;
const workflowSlots :UInt32 = 1024;

# The chunk store's index: BLAKE3 key -> arena block, length, expiry.
const chunkIndexOffset :UInt32 = 0x411000;
const chunkIndexSize :UInt32 = 0x20000;
const chunkSlots :UInt32 = 2048;

# The supervisor tree: the root's restart history, each unit's back-off, breaker and restart times.
const treeStateOffset :UInt32 = 0x431000;
const treeStateSize :UInt32 = 0x8000;

# The engines: each a 256-byte header (its read cursor in the job history, its counters) and its
# model tables.
const learningStateOffset :UInt32 = 0x439000;
const learningStateSize :UInt32 = 0x60000;
const securityStateOffset :UInt32 = 0x499000;
const securityStateSize :UInt32 = 0x10000;
const healthStateOffset :UInt32 = 0x4A9000;
const healthStateSize :UInt32 = 0x4000;
const optimisationStateOffset :UInt32 = 0x4AD000;
const optimisationStateSize :UInt32 = 0x1000;
const schedulingStateOffset :UInt32 = 0x4AE000;
const schedulingStateSize :UInt32 = 0x1000;

# DEVIATION (new, layout 7): the client lanes, through which processes outside the kernel (`inos
# submit`) send jobs and get their results. 8 lanes of 132 KiB: a 4 KiB header of u64 words ([0]
# owner pid, [8] generation, [16] the owner's start time in clock ticks, [24] results epoch u32 (a
# futex the kernel bumps after pushing results) and its waiter count u32, [32] frames taken, [40]
# results sent, [48] closing (the client is done), [56] when it took the lane (ms), then at 0x100 the
# request ring's 128-byte control block and at 0x180 the result ring's), then the request ring's data
# (64 KiB; the client is its only producer, the kernel its consumer) and the result ring's (64 KiB;
# the other way round). One lane per client, so a client that dies mid-frame wedges only its own
# lane, which the kernel reclaims; and a client's results go to its own lane only (the process
# table's header counts reclaimed lanes and abandoned frames). The original had no outside clients.
const clientLanesOffset :UInt32 = 0x4AF000;
const clientLanesSize :UInt32 = 0x108000;
const clientLaneSize :UInt32 = 0x21000;
const clientLaneHeaderSize :UInt32 = 0x1000;
const clientRingSize :UInt32 = 0x10000;
const clientLanes :UInt32 = 8;
# 0x5B7000 .. 0x600000: free for the kernel state of later layouts.

# ---------------------------------------------------------------------------------------------
# Tiers. DEVIATION: the ping-pong buffers are sized from each tier's maximum bird count (v2.2 used
# a fixed 10 000 whatever the tier, so counts above it overflowed buffer A into buffer B). Buffers
# start on page boundaries. DEVIATION (new): after matrix buffer B, a gene buffer holds one 188-byte
# gene record per bird: the boids supervisor writes each GA generation there and the boids unit
# merges it on the evolution epoch (the original's genes never reached the physics). The arena heap
# (the allocator's range) starts after the kernel state (above), on a 64 KiB boundary, and runs to
# the end of the SAB.
# Maximum birds per tier are the layout document's entity counts (v2.2 section 5: light < 5k,
# moderate 10k, heavy 50k, dedicated 100k+), which the newer document sets over the original
# code's 2 000 / 5 000 / 15 000 / 50 000 (computeTierLimits). Each bird takes 1 684 bytes of
# streams (two 236-byte records, two 512-byte matrix sets, one 188-byte gene record), so the heavy
# tier's 50 000 birds and the 6 MiB kernel state leave about 42 MiB of its 128 MiB to the arena heap. Layout version 4 is this
# sizing (version 3 had the original's).
# ---------------------------------------------------------------------------------------------

const tierCount :UInt32 = 4;
const tierLight :UInt32 = 0;
const tierModerate :UInt32 = 1;
const tierHeavy :UInt32 = 2;
const tierDedicated :UInt32 = 3;

const lightSabSize :UInt64 = 33554432;
const lightRecommendedBirds :UInt32 = 1000;
const lightMaxBirds :UInt32 = 4999;
const lightBirdBufferAOffset :UInt32 = 0x162000;
const lightBirdBufferBOffset :UInt32 = 0x283000;
const lightBirdBufferSize :UInt32 = 1179764;
const lightMatrixBufferAOffset :UInt32 = 0x3A4000;
const lightMatrixBufferBOffset :UInt32 = 0x615000;
const lightMatrixBufferSize :UInt32 = 2559488;
const lightGeneBufferOffset :UInt32 = 0x886000;
const lightGeneBufferSize :UInt32 = 939812;
const lightKernelStateOffset :UInt32 = 0x970000;
const lightArenaHeapOffset :UInt32 = 0xF70000;

const moderateSabSize :UInt64 = 67108864;
const moderateRecommendedBirds :UInt32 = 2000;
const moderateMaxBirds :UInt32 = 10000;
const moderateBirdBufferAOffset :UInt32 = 0x162000;
const moderateBirdBufferBOffset :UInt32 = 0x3A3000;
const moderateBirdBufferSize :UInt32 = 2360000;
const moderateMatrixBufferAOffset :UInt32 = 0x5E4000;
const moderateMatrixBufferBOffset :UInt32 = 0xAC6000;
const moderateMatrixBufferSize :UInt32 = 5120000;
const moderateGeneBufferOffset :UInt32 = 0xFA8000;
const moderateGeneBufferSize :UInt32 = 1880000;
const moderateKernelStateOffset :UInt32 = 0x1180000;
const moderateArenaHeapOffset :UInt32 = 0x1780000;

const heavySabSize :UInt64 = 134217728;
const heavyRecommendedBirds :UInt32 = 5000;
const heavyMaxBirds :UInt32 = 50000;
const heavyBirdBufferAOffset :UInt32 = 0x162000;
const heavyBirdBufferBOffset :UInt32 = 0xCA3000;
const heavyBirdBufferSize :UInt32 = 11800000;
const heavyMatrixBufferAOffset :UInt32 = 0x17E4000;
const heavyMatrixBufferBOffset :UInt32 = 0x304E000;
const heavyMatrixBufferSize :UInt32 = 25600000;
const heavyGeneBufferOffset :UInt32 = 0x48B8000;
const heavyGeneBufferSize :UInt32 = 9400000;
const heavyKernelStateOffset :UInt32 = 0x51B0000;
const heavyArenaHeapOffset :UInt32 = 0x57B0000;

const dedicatedSabSize :UInt64 = 268435456;
const dedicatedRecommendedBirds :UInt32 = 15000;
const dedicatedMaxBirds :UInt32 = 100000;
const dedicatedBirdBufferAOffset :UInt32 = 0x162000;
const dedicatedBirdBufferBOffset :UInt32 = 0x17E4000;
const dedicatedBirdBufferSize :UInt32 = 23600000;
const dedicatedMatrixBufferAOffset :UInt32 = 0x2E66000;
const dedicatedMatrixBufferBOffset :UInt32 = 0x5F3A000;
const dedicatedMatrixBufferSize :UInt32 = 51200000;
const dedicatedGeneBufferOffset :UInt32 = 0x900E000;
const dedicatedGeneBufferSize :UInt32 = 18800000;
const dedicatedKernelStateOffset :UInt32 = 0xA200000;
const dedicatedArenaHeapOffset :UInt32 = 0xA800000;

# ---------------------------------------------------------------------------------------------
# Epoch indices (reference 1.3 numbering, kept for wire compatibility). Counters are bumped with
# fetch_add(1, Release) and compared with != (wrap-safe); "value" words hold a plain value instead.
# Each line names writer -> readers in this project.
#
# DEVIATION: the layout document's table (v2.2 section 2.1) numbers several indices differently
# from the original code, whose JS host and Go kernel read the numbers below (reference 1.3); this
# map keeps the code's numbers, so the original's hosts can read a SAB of this project. Each index
# where the two differ says "DEVIATION (2.1: n)" with the document's number. The document's 4-7
# (sensor, actor, storage, system), 0-3, 31 and 128-255 agree; its supervisor pool 32-127 (96
# slots) is 64-127 here (see epochSupervisorPoolFirst).
# ---------------------------------------------------------------------------------------------

const epochKernelReady :UInt32 = 0;        # value: core plugin sets 1 at startup -> JS host, inspect
const epochInboxDirty :UInt32 = 1;         # kernel after pushing inbox frames -> unit consumers
const epochOutboxHostDirty :UInt32 = 2;    # kernel after pushing syscall responses -> job host
const epochPanicState :UInt32 = 3;         # value: any part on a fatal error -> everyone
const epochSensor :UInt32 = 4;             # host input sensors -> units
const epochActor :UInt32 = 5;              # units driving actors -> host
const epochStorage :UInt32 = 6;            # chunk store after a store -> syscall clients
const epochSystem :UInt32 = 7;             # master heartbeat: every stream publish -> health engine
const epochSystemPulse :UInt32 = 8;        # fixed tick (64 Hz default) -> boids unit, supervisors  DEVIATION (2.1: 8 is the arena allocator)
const epochSystemVisibility :UInt32 = 9;   # value: JS host, 1 visible / 0 hidden -> pulse  DEVIATION (2.1: 9 is a mutex)
const epochSystemPowerState :UInt32 = 10;  # value: host, 0 low / 1 normal / 2 high -> scheduler  DEVIATION (2.1: 10 is a mutex)
# 11-15: reserved for further pulse sources.
const epochArenaAllocator :UInt32 = 16;    # arena allocator after each alloc/free -> inspect, units  DEVIATION (2.1: 8)
                                           # DEVIATION: no longer the bump pointer itself
const epochOutboxMutex :UInt32 = 17;       # retired: the rings reserve by CAS and need no mutex  DEVIATION (2.1: 9 or 10)
const epochInboxMutex :UInt32 = 18;        # retired: see 17  DEVIATION (2.1: 9 or 10)
const epochMetrics :UInt32 = 19;           # bridge/mesh metrics writers -> inspector
const epochBird :UInt32 = 20;              # boids unit after each bird-stream publish -> matrix unit  DEVIATION (2.1: 12)
const epochMatrix :UInt32 = 21;            # matrix unit after each matrix publish -> renderer, JS  DEVIATION (2.1: 13)
const epochPingpongActive :UInt32 = 22;    # retired: DEVIATION, each stream has its own active word  DEVIATION (2.1: 14)
const epochRegistry :UInt32 = 23;          # registry after each register/unregister -> supervisors  DEVIATION (2.1: 15)
const epochEvolution :UInt32 = 24;         # boids supervisor after a GA generation -> boids unit  DEVIATION (2.1: 16)
const epochHealth :UInt32 = 25;            # health engine after each assessment -> root supervisor  DEVIATION (2.1: 17)
const epochLearning :UInt32 = 26;          # learning engine after a model update -> scheduler  DEVIATION (2.1: 18)
const epochEconomy :UInt32 = 27;           # economics writers -> inspector  DEVIATION (2.1: 19)
const epochBirdCount :UInt32 = 28;         # value: boids unit, live bird count -> JS host, inspect  DEVIATION (2.1: 20)
const epochGlobalMetrics :UInt32 = 29;     # analytics writer -> inspector
const epochOutboxKernelDirty :UInt32 = 30; # units after pushing results/syscalls -> kernel
const epochContextIdHash :UInt32 = 31;     # value: core plugin writes the run's context hash
                                           # -> zombie detection (the original never wrote it)
const epochDelegatedJob :UInt32 = 32;      # mesh (reserved)
const epochUserJob :UInt32 = 33;           # outside clients after pushing into their lanes -> kernel
const epochDelegatedChunk :UInt32 = 34;    # mesh (reserved)
const epochMeshEvent :UInt32 = 35;         # mesh event producer -> JS host
const epochMeshEventHead :UInt32 = 36;     # value: mesh event consumer counter
const epochMeshEventTail :UInt32 = 37;     # value: mesh event producer counter
const epochMeshEventDropped :UInt32 = 38;  # mesh event producer on overflow -> inspect
# Indices added by this project (39-47):
const epochScheduling :UInt32 = 39;        # scheduling engine after a dispatch round -> inspector
const epochSecurity :UInt32 = 40;          # security engine after an audit record -> health
const epochOptimization :UInt32 = 41;      # optimisation engine after a parameter change -> units
const epochSupervisorTable :UInt32 = 42;   # supervisor table on alloc/free -> root supervisor
const epochPatternExchange :UInt32 = 43;   # pattern writers -> learning engine
const epochJobHistory :UInt32 = 44;        # supervisors after a job record -> learning engine
const epochPhysics :UInt32 = 45;           # physics unit after a Rapier step -> boids unit
const epochGuardViolation :UInt32 = 46;    # region guards on each violation -> health, inspector
const epochSnapshot :UInt32 = 47;          # snapshot writer after a snapshot -> inspector
# Drone unit indices of the original's TS racing layout (not in its schema); reserved here.
const epochDroneSensor :UInt32 = 48;
const epochDroneControl :UInt32 = 49;
const epochDronePhysics :UInt32 = 50;
const epochDroneRaceState :UInt32 = 51;
const epochLifecycleDirty :UInt32 = 52;    # DEVIATION (new): lifecycle requesters after a push -> supervisor tree
# Supervisor pool: one epoch per supervisor pool slot, written by that supervisor -> its children.
# DEVIATION: 64..127 (64 slots, one per inline header). The original's pool 64..191 overlapped its
# "reserved" 128..255 and ran past its 128-bit bitmap.
const epochSupervisorPoolFirst :UInt32 = 64;
const supervisorPoolSize :UInt32 = 64;
# 128..255: reserved for user-defined epochs.
const epochReservedFirst :UInt32 = 128;

# ---------------------------------------------------------------------------------------------
# Region guards (reference 2.12): owner bits, guarded region ids and their policies.
# ---------------------------------------------------------------------------------------------

const ownerKernel :UInt32 = 1;
const ownerModule :UInt32 = 2;
const ownerHost :UInt32 = 4;
const ownerSystem :UInt32 = 8;

const guardModeSingleWriter :UInt32 = 0;
const guardModeMultiWriter :UInt32 = 1;
# A guard with this epoch index has no "epoch advanced after the write" check.
const guardNoEpoch :UInt32 = 0xFFFFFFFF;

const guardInbox :UInt32 = 0;
const guardInboxMode :UInt32 = .guardModeSingleWriter;
const guardInboxWriters :UInt32 = .ownerKernel;
const guardInboxEpoch :UInt32 = .epochInboxDirty;

const guardOutboxHost :UInt32 = 1;
const guardOutboxHostMode :UInt32 = .guardModeSingleWriter;
const guardOutboxHostWriters :UInt32 = .ownerKernel;
const guardOutboxHostEpoch :UInt32 = .epochOutboxHostDirty;

const guardOutboxKernel :UInt32 = 2;
const guardOutboxKernelMode :UInt32 = .guardModeMultiWriter;
const guardOutboxKernelWriters :UInt32 = .ownerModule;
const guardOutboxKernelEpoch :UInt32 = .epochOutboxKernelDirty;

const guardMeshEventQueue :UInt32 = 3;
const guardMeshEventQueueMode :UInt32 = .guardModeSingleWriter;
const guardMeshEventQueueWriters :UInt32 = .ownerKernel;
const guardMeshEventQueueEpoch :UInt32 = .epochMeshEvent;

const guardArenaRequestQueue :UInt32 = 4;
const guardArenaRequestQueueMode :UInt32 = .guardModeSingleWriter;
const guardArenaRequestQueueWriters :UInt32 = .ownerModule;
const guardArenaRequestQueueEpoch :UInt32 = .epochArenaAllocator;

const guardArenaResponseQueue :UInt32 = 5;
const guardArenaResponseQueueMode :UInt32 = .guardModeSingleWriter;
const guardArenaResponseQueueWriters :UInt32 = .ownerKernel;
const guardArenaResponseQueueEpoch :UInt32 = .guardNoEpoch;

const guardArena :UInt32 = 6;
const guardArenaMode :UInt32 = .guardModeMultiWriter;
const guardArenaWriters :UInt32 = 3;  # kernel | module
const guardArenaEpoch :UInt32 = .guardNoEpoch;

# Guards added by this project:
const guardBirdStream :UInt32 = 7;
const guardBirdStreamMode :UInt32 = .guardModeSingleWriter;
const guardBirdStreamWriters :UInt32 = .ownerModule;
const guardBirdStreamEpoch :UInt32 = .epochBird;

const guardMatrixStream :UInt32 = 8;
const guardMatrixStreamMode :UInt32 = .guardModeSingleWriter;
const guardMatrixStreamWriters :UInt32 = .ownerModule;
const guardMatrixStreamEpoch :UInt32 = .epochMatrix;

const guardRegistry :UInt32 = 9;
const guardRegistryMode :UInt32 = .guardModeMultiWriter;
const guardRegistryWriters :UInt32 = 3;  # kernel | module
const guardRegistryEpoch :UInt32 = .epochRegistry;

const guardPatternExchange :UInt32 = 10;
const guardPatternExchangeMode :UInt32 = .guardModeSingleWriter;
const guardPatternExchangeWriters :UInt32 = 3;  # kernel | module
const guardPatternExchangeEpoch :UInt32 = .epochPatternExchange;

const guardJobHistory :UInt32 = 11;
const guardJobHistoryMode :UInt32 = .guardModeSingleWriter;
const guardJobHistoryWriters :UInt32 = 1;  # kernel (the supervisors)
const guardJobHistoryEpoch :UInt32 = .epochJobHistory;

const guardSupervisorTable :UInt32 = 12;
const guardSupervisorTableMode :UInt32 = .guardModeSingleWriter;
const guardSupervisorTableWriters :UInt32 = 1;  # kernel
const guardSupervisorTableEpoch :UInt32 = .epochSupervisorTable;

const guardGeneBuffer :UInt32 = 13;
const guardGeneBufferMode :UInt32 = .guardModeSingleWriter;
const guardGeneBufferWriters :UInt32 = 1;  # kernel (the boids supervisor)
const guardGeneBufferEpoch :UInt32 = .epochEvolution;

# DEVIATION (new): the obstacle table's guard.
const guardObstacleTable :UInt32 = 14;
const guardObstacleTableMode :UInt32 = .guardModeSingleWriter;
const guardObstacleTableWriters :UInt32 = .ownerModule;  # the physics unit
const guardObstacleTableEpoch :UInt32 = .epochPhysics;

# DEVIATION (new, layout 5): the lifecycle ring's guard: the kernel (health engine, syscalls) and the
# host (the inspector, the JS host) ask; the supervisor tree consumes.
const guardLifecycle :UInt32 = 15;
const guardLifecycleMode :UInt32 = .guardModeMultiWriter;
const guardLifecycleWriters :UInt32 = 5;  # kernel | host
const guardLifecycleEpoch :UInt32 = .epochLifecycleDirty;

const guardCount :UInt32 = 16;

# ---------------------------------------------------------------------------------------------
# Record magics and flag bits
# ---------------------------------------------------------------------------------------------

# Module registry entry signature, "INOSREGI" as a big-endian string (reference 2.1).
const registrySignature :UInt64 = 0x494E4F5352454749;
const registryFlagExtendedData :UInt32 = 1;
const registryFlagActive :UInt32 = 2;
const registryFlagOverflow :UInt32 = 4;
const capabilityFlagRequiresGpu :UInt32 = 1;
const dependencyFlagOptional :UInt32 = 1;
const dependencyFlagHasAlternatives :UInt32 = 2;
# Pattern record magic, "PAT_EX-P" (reference 2.8).
const patternMagic :UInt64 = 0x5041545F45582D50;
# Job history: a 64 B header, then 64 B records, oldest overwritten first.
# DEVIATION (new, layout 5): the record's reserved words now carry what the engines learn from
# (the submitter's source hash, the unit's execution and CPU time), and status and priority are
# u16 each, so that every engine reads finished jobs here and nowhere else. Readers follow the
# header's `total` (records ever written) with a cursor of their own and learn how many records
# the ring overwrote before they read them.
const jobHistoryHeaderSize :UInt32 = 64;
const jobRecordSize :UInt32 = 64;
