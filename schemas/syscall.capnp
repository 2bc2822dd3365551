# Syscalls: a module asks the kernel for something (reference §7.6,
# `protocols/schemas/system/v1/syscall.capnp`), and the kernel answers with a status. Frames are
# standard framed, unpacked Cap'n Proto messages on both ends.
#
# Rust code in src/protocol/generated/syscall_capnp.rs is generated from this file; the `codegen`
# test fails if it is stale (`INOS_REGENERATE=1 cargo test --test it codegen` rewrites it).

@0x8f985162b083f847;

# The first field of every envelope (the reference's value; it calls it "SABS").
const magic :UInt32 = 0x53424142;
const version :UInt8 = 1;

enum Opcode {
  noop @0;
  fetchChunk @1;
  storeChunk @2;
  sendMessage @3;
  spawnThread @4;
  killThread @5;
  hostCall @6;
}

struct Header {
  magic @0 :UInt32;
  version @1 :UInt8;
  flags @2 :UInt8;
  sourceModuleId @3 :UInt32;
  # Monotonic per source; the response carries it back.
  callId @4 :UInt64;
  opcode @5 :Opcode;
}

struct Message {
  header @0 :Header;
  body :union {
    noop @1 :Void;
    # Copy the chunk with this BLAKE3 hash into the SAB at [destinationOffset, +destinationSize).
    fetchChunk :group {
      hash @2 :Data;
      priority @3 :UInt8;
      destinationOffset @4 :UInt64;
      destinationSize @5 :UInt32;
    }
    # Store the SAB range [sourceOffset, +size) as a chunk, keyed by its BLAKE3 hash.
    storeChunk :group {
      hash @6 :Data;
      sourceOffset @7 :UInt64;
      size @8 :UInt32;
      ttl @9 :UInt32;
    }
    sendMessage :group {
      targetId @10 :UInt32;
      payload @11 :Data;
      priority @12 :UInt8;
    }
    # Start a unit's supervisor (by registry id).
    spawnThread :group {
      unit @13 :Text;
    }
    # Stop a unit's supervisor.
    killThread :group {
      unit @14 :Text;
    }
    hostCall :group {
      service @15 :Text;
      payload @16 :Data;
    }
  }
}

struct Response {
  callId @0 :UInt64;
  status @1 :Status;
  result :union {
    none @2 :Void;
    fetchChunk :group {
      bytesTransferred @3 :UInt64;
      hashVerified @4 :Bool;
    }
    storeChunk :group {
      hash @5 :Data;
      replicas @6 :UInt16;
    }
    sendMessage :group {
      delivered @7 :Bool;
    }
    hostCall :group {
      payload @8 :Data;
    }
  }
  error @9 :Text;

  enum Status {
    success @0;
    pending @1;
    invalidRequest @2;
    timeout @3;
    internalError @4;
    notFound @5;
    outOfBounds @6;
  }
}
