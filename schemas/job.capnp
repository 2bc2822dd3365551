# Jobs: what a supervisor hands a compute unit, and what the unit hands back (reference §7.6,
# `compute/v1/capsule.capnp`). Frames are standard framed, unpacked Cap'n Proto messages on both
# ends (the original's two ends disagreed: packed on one, unpacked on the other).
#
# Rust code in src/protocol/generated/job_capnp.rs is generated from this file; the `codegen` test
# fails if it is stale (`INOS_REGENERATE=1 cargo test --test it codegen` rewrites it).

@0xcaf815ad951be97f;

# A byte range of the SAB: how data passes between units and workflow steps without a copy.
struct SabRange {
  offset @0 :UInt64;
  length @1 :UInt32;
}

struct KeyValue {
  key @0 :Text;
  value @1 :Text;
}

struct JobRequest {
  jobId @0 :UInt64;
  # The unit (its registry id, e.g. "crypto") and the method (e.g. "hash").
  library @1 :Text;
  method @2 :Text;
  input :union {
    inline @3 :Data;
    sabRange @4 :SabRange;
  }
  params :union {
    none @5 :Void;
    crypto @6 :CryptoParams;
    physics @7 :PhysicsParams;
    # Anything else: bytes the unit parses itself.
    binary @8 :Data;
  }
  # Credits the job may spend; 0 = unlimited.
  budget @9 :UInt64;
  # 0 (lowest) to 255.
  priority @10 :UInt8;
  # Wall-clock limit from submission, in ms; 0 = none.
  timeoutMs @11 :UInt64;
  # Absolute deadline, ms since the Unix epoch; 0 = none.
  deadlineMs @12 :UInt64;
  metadata @13 :List(KeyValue);
}

struct CryptoParams {
  # The key of a keyed hash (32 bytes), and the digest a `verify` compares against.
  key @0 :Data;
  expected @1 :Data;
}

struct PhysicsParams {
  union {
    spawnBody :group {
      shape @0 :Shape;
      # Ball: radius = size.x; cuboid: half extents = size.
      sizeX @1 :Float32;
      sizeY @2 :Float32;
      sizeZ @3 :Float32;
      x @4 :Float32;
      y @5 :Float32;
      z @6 :Float32;
      dynamic @7 :Bool;
    }
    step :group {
      steps @8 :UInt32;
    }
    raycast :group {
      originX @9 :Float32;
      originY @10 :Float32;
      originZ @11 :Float32;
      dirX @12 :Float32;
      dirY @13 :Float32;
      dirZ @14 :Float32;
      maxDistance @15 :Float32;
    }
  }

  enum Shape {
    ball @0;
    cuboid @1;
  }
}

struct JobMetrics {
  cpuNs @0 :UInt64;
  peakMemoryBytes @1 :UInt64;
  inputBytes @2 :UInt64;
  outputBytes @3 :UInt64;
}

struct JobResult {
  jobId @0 :UInt64;
  status @1 :Status;
  output :union {
    inline @2 :Data;
    sabRange @3 :SabRange;
  }
  cost @4 :UInt64;
  executionTimeNs @5 :UInt64;
  errorMessage @6 :Text;
  retryable @7 :Bool;
  metrics @8 :JobMetrics;

  enum Status {
    success @0;
    failed @1;
    budgetExceeded @2;
    timeout @3;
    invalidParams @4;
    # Refused before running: security gate, rate limit, open circuit breaker.
    rejected @5;
    # The unit panicked while running the job; its supervisor restarts it.
    crashed @6;
  }
}
