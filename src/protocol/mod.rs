//! The wire protocol: jobs (`schemas/job.capnp`) and syscalls (`schemas/syscall.capnp`) as Cap'n
//! Proto frames, and plain Rust types for them.
//!
//! One encoding on both ends: standard framing (segment table), unpacked. A frame is the exact
//! bytes of one message; a ring frame carries one. Frames from elsewhere are untrusted: decoding
//! checks the frame size first, reads with `ReaderOptions` limits (traversal words and nesting
//! depth proportional to the frame), and reports every failure as a [`FrameError`], never a panic.

#[allow(clippy::all, clippy::pedantic, unused, missing_docs)]
#[rustfmt::skip]
pub mod generated {
    #[path = "job_capnp.rs"]
    pub mod job_capnp;
    #[path = "syscall_capnp.rs"]
    pub mod syscall_capnp;
}

use std::ptr::NonNull;

use capnp::message::{Allocator, Builder, HeapAllocator, ReaderOptions};
use capnp::serialize;
use capnp::serialize::NoAllocSliceSegments;

use crate::sab::Sab;
use crate::sab::arena::UserRangeError;
use generated::job_capnp::{job_request, job_result, physics_params};
use generated::syscall_capnp::{self as sc, message, response};

/// The largest frame accepted: the inbox ring's largest frame is smaller still.
pub const MAX_FRAME_BYTES: usize = 1 << 20;
/// How deep a decoded message may nest (ours nest three deep).
pub const MAX_NESTING: i32 = 8;
/// Metadata entries a job may carry: a list of empty entries costs the frame little and the
/// decoder a lot, so its length is bounded too.
pub const MAX_METADATA: u32 = 64;

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("the frame is not a valid Cap'n Proto message: {0}")]
    Malformed(String),
    #[error("{len} bytes follow the message in the frame")]
    TrailingBytes { len: usize },
    #[error("the envelope's magic is {found:#010x}, not {:#010x}", sc::MAGIC)]
    BadMagic { found: u32 },
    #[error(
        "syscall protocol version {found} is not supported (this kernel speaks {})",
        sc::VERSION
    )]
    UnsupportedVersion { found: u8 },
    #[error("the header's opcode {header:?} does not match the body ({body:?})")]
    OpcodeMismatch { header: Opcode, body: Opcode },
    #[error("value {0} of an enum or union is not in this kernel's schema")]
    NotInSchema(u16),
    #[error("{field} has {len} entries, more than the {max} allowed")]
    TooMany { field: &'static str, len: u32, max: u32 },
}

impl From<capnp::Error> for FrameError {
    fn from(e: capnp::Error) -> Self {
        Self::Malformed(e.to_string())
    }
}

impl From<capnp::NotInSchema> for FrameError {
    fn from(e: capnp::NotInSchema) -> Self {
        Self::NotInSchema(e.0)
    }
}

type FrameReader<'a> = capnp::message::Reader<NoAllocSliceSegments<'a>>;

/// Reads one framed message that must fill `frame` exactly, within the limits, in place (no copy,
/// no allocation; capnp's `unaligned` feature lets a frame start at any byte).
fn read_frame(frame: &[u8]) -> Result<FrameReader<'_>, FrameError> {
    if frame.len() > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge {
            len: frame.len(),
            max: MAX_FRAME_BYTES,
        });
    }
    // Traversal is bounded by the frame's own size (in words, with slack for the root pointer),
    // so a small frame cannot make the reader walk far (amplification through shared pointers).
    let options = *ReaderOptions::new()
        .traversal_limit_in_words(Some(frame.len() / 8 * 4 + 64))
        .nesting_limit(MAX_NESTING);
    let mut rest = frame;
    let reader = serialize::read_message_from_flat_slice_no_alloc(&mut rest, options)?;
    if !rest.is_empty() {
        return Err(FrameError::TrailingBytes { len: rest.len() });
    }
    Ok(reader)
}

/// The first segment of the messages a thread encodes, reused from message to message: after a
/// message is written out, only the words it used are zeroed again, so encoding allocates no
/// segment and zeroes no more than it wrote. A message that outgrows it (it is sized so that only
/// large ones do) takes a heap segment instead.
struct Scratch {
    words: Vec<capnp::Word>,
    lent: bool,
    heap: HeapAllocator,
}

/// Words of a thread's scratch segment (8 KiB).
const SCRATCH_WORDS: usize = 1024;

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch {
        words: capnp::Word::allocate_zeroed_vec(SCRATCH_WORDS),
        lent: false,
        heap: HeapAllocator::new(),
    });
}

// SAFETY: the scratch segment is zeroed when lent (it starts zeroed and is re-zeroed up to the
// words used when given back), at least `minimum_size` words long, and lent to one message at a
// time; other segments come from capnp's own heap allocator and go back to it.
unsafe impl Allocator for Scratch {
    fn allocate_segment(&mut self, minimum_size: u32) -> (NonNull<u8>, u32) {
        if !self.lent && minimum_size as usize <= self.words.len() {
            self.lent = true;
            let start = NonNull::new(self.words.as_mut_ptr().cast::<u8>()).expect("a Vec's pointer is not null");
            return (start, self.words.len() as u32);
        }
        self.heap.allocate_segment(minimum_size)
    }

    unsafe fn deallocate_segment(&mut self, ptr: NonNull<u8>, word_size: u32, words_used: u32) {
        let start = self.words.as_mut_ptr().cast::<u8>();
        if ptr.as_ptr() == start {
            // SAFETY: the message used the first `words_used` words of this segment.
            unsafe { std::ptr::write_bytes(start, 0, words_used as usize * 8) };
            self.lent = false;
        } else {
            // SAFETY: every other segment came from `self.heap`.
            unsafe { self.heap.deallocate_segment(ptr, word_size, words_used) };
        }
    }
}

/// Writes one framed message, built by `build` on its root, into `out` (replacing its contents).
/// The message is one segment: it fits the thread's scratch segment, or, if `variable` (the bytes
/// of its texts, data and lists) says it may not, a first heap segment sized to fit (capnp's
/// default is 8 KiB, zeroed, and then a second segment when that overflows).
fn write_frame(variable: usize, out: &mut Vec<u8>, build: impl FnOnce(capnp::any_pointer::Builder<'_>)) {
    let words = 48 + variable.div_ceil(8) * 2;
    out.clear();
    let written = if words <= SCRATCH_WORDS {
        SCRATCH.with_borrow_mut(|scratch| {
            let mut message = Builder::new(scratch);
            build(message.init_root());
            serialize::write_message(&mut *out, &message)
        })
    } else {
        let mut message = Builder::new(HeapAllocator::new().first_segment_words(words.min(1 << 20) as u32));
        build(message.init_root());
        serialize::write_message(&mut *out, &message)
    };
    written.expect("writing to a Vec cannot fail");
}

/// [`write_frame`] into a new Vec.
fn frame(variable: usize, build: impl FnOnce(capnp::any_pointer::Builder<'_>)) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(variable, &mut out, build);
    out
}

fn text(reader: capnp::Result<capnp::text::Reader<'_>>) -> Result<String, FrameError> {
    let mut out = String::new();
    text_into(reader, &mut out)?;
    Ok(out)
}

/// A text into `out` (replacing its contents, reusing its allocation).
fn text_into(reader: capnp::Result<capnp::text::Reader<'_>>, out: &mut String) -> Result<(), FrameError> {
    let text = reader?.to_str().map_err(|e| FrameError::Malformed(e.to_string()))?;
    out.clear();
    out.push_str(text);
    Ok(())
}

/// A byte range of the SAB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SabRange {
    pub offset: u64,
    pub length: u32,
}

/// Where a job's input or output bytes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    Inline(Vec<u8>),
    Sab(SabRange),
}

impl Payload {
    /// How many bytes the payload names.
    pub fn len(&self) -> u64 {
        match self {
            Self::Inline(bytes) => bytes.len() as u64,
            Self::Sab(range) => u64::from(range.length),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many bytes the payload carries inside its frame: a SAB range carries none.
    pub fn inline_len(&self) -> usize {
        match self {
            Self::Inline(bytes) => bytes.len(),
            Self::Sab(_) => 0,
        }
    }

    /// The bytes this payload names: inline, or a range of the arena's data pages copied out
    /// (the range is checked at both ends; see `Arena::user_range`).
    pub fn bytes(&self, sab: &Sab) -> Result<Vec<u8>, UserRangeError> {
        match self {
            Self::Inline(bytes) => Ok(bytes.clone()),
            Self::Sab(range) => {
                // The SAB moves whole words: the words that cover the range must lie inside the
                // arena's data pages (checked); the range's bytes are kept.
                let length = u64::from(range.length);
                let r = sab.arena().user_range(range.offset, length.next_multiple_of(4))?;
                let mut bytes = Vec::new();
                sab.read_bytes(r.start, length as usize, &mut bytes)
                    .expect("a user range is inside the SAB and whole words");
                Ok(bytes)
            }
        }
    }
}

/// A job's unit-specific parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum JobParams {
    None,
    Crypto { key: Vec<u8>, expected: Vec<u8> },
    Physics(PhysicsCall),
    Binary(Vec<u8>),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PhysicsCall {
    /// A ball (radius `size.x`) or a cuboid (half extents `size`) at `at`.
    SpawnBody {
        cuboid: bool,
        size: [f32; 3],
        at: [f32; 3],
        dynamic: bool,
    },
    Step {
        steps: u32,
    },
    Raycast {
        origin: [f32; 3],
        direction: [f32; 3],
        max_distance: f32,
    },
}

/// A job request (`JobRequest`).
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    pub id: u64,
    pub library: String,
    pub method: String,
    pub input: Payload,
    pub params: JobParams,
    pub budget: u64,
    pub priority: u8,
    pub timeout_ms: u64,
    pub deadline_ms: u64,
    pub metadata: Vec<(String, String)>,
}

impl Job {
    /// A job with no parameters, budget, deadline or metadata.
    pub fn new(id: u64, library: &str, method: &str, input: Payload) -> Self {
        Self {
            id,
            library: library.into(),
            method: method.into(),
            input,
            params: JobParams::None,
            budget: 0,
            priority: 0,
            timeout_ms: 0,
            deadline_ms: 0,
            metadata: Vec::new(),
        }
    }

    /// The job as one frame.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(self.id, &mut out);
        out
    }

    /// The job as one frame carrying job id `id` instead of its own (the kernel's wire id), written
    /// into `out` (replacing its contents, reusing its allocation), without copying the job.
    pub fn encode_into(&self, id: u64, out: &mut Vec<u8>) {
        let params = match &self.params {
            JobParams::Crypto { key, expected } => key.len() + expected.len(),
            JobParams::Binary(bytes) => bytes.len(),
            JobParams::None | JobParams::Physics(_) => 0,
        };
        let metadata: usize = self.metadata.iter().map(|(k, v)| k.len() + v.len() + 24).sum();
        let variable = self.library.len() + self.method.len() + self.input.inline_len() + params + metadata;
        write_frame(variable, out, |root| {
            let mut job = root.init_as::<job_request::Builder>();
            job.set_job_id(id);
            job.set_library(&self.library);
            job.set_method(&self.method);
            match &self.input {
                Payload::Inline(bytes) => job.reborrow().init_input().set_inline(bytes),
                Payload::Sab(range) => {
                    let mut r = job.reborrow().init_input().init_sab_range();
                    r.set_offset(range.offset);
                    r.set_length(range.length);
                }
            }
            let mut params = job.reborrow().init_params();
            match &self.params {
                JobParams::None => params.set_none(()),
                JobParams::Crypto { key, expected } => {
                    let mut c = params.init_crypto();
                    c.set_key(key);
                    c.set_expected(expected);
                }
                JobParams::Binary(bytes) => params.set_binary(bytes),
                JobParams::Physics(call) => encode_physics(params.init_physics(), call),
            }
            job.set_budget(self.budget);
            job.set_priority(self.priority);
            job.set_timeout_ms(self.timeout_ms);
            job.set_deadline_ms(self.deadline_ms);
            let mut metadata = job.init_metadata(self.metadata.len() as u32);
            for (k, (key, value)) in self.metadata.iter().enumerate() {
                let mut kv = metadata.reborrow().get(k as u32);
                kv.set_key(key);
                kv.set_value(value);
            }
        });
    }

    /// Whether `decode` will accept this job's frame, without encoding it: the only limit a
    /// `Job` can break is the metadata count (its texts are UTF-8 and its values are in the
    /// schema by construction; the frame size is the sender's to check).
    pub fn check(&self) -> Result<(), FrameError> {
        let len = u32::try_from(self.metadata.len()).unwrap_or(u32::MAX);
        if len > MAX_METADATA {
            return Err(FrameError::TooMany {
                field: "metadata",
                len,
                max: MAX_METADATA,
            });
        }
        Ok(())
    }

    /// Decodes an untrusted frame.
    pub fn decode(frame: &[u8]) -> Result<Self, FrameError> {
        let mut job = Self::new(0, "", "", Payload::Inline(Vec::new()));
        Self::decode_into(frame, &mut job)?;
        Ok(job)
    }

    /// [`Job::decode`] into `job`, reusing its texts' and inline input's allocations (a host that
    /// decodes job after job allocates nothing for most). After an error `job` is unspecified.
    pub fn decode_into(frame: &[u8], job: &mut Job) -> Result<(), FrameError> {
        let message = read_frame(frame)?;
        let r: job_request::Reader = message.get_root()?;
        match r.get_input().which()? {
            job_request::input::Inline(bytes) => {
                let bytes = bytes?;
                match &mut job.input {
                    Payload::Inline(input) => {
                        input.clear();
                        input.extend_from_slice(bytes);
                    }
                    input => *input = Payload::Inline(bytes.to_vec()),
                }
            }
            job_request::input::SabRange(range) => job.input = Payload::Sab(read_range(range?)),
        }
        job.params = match r.get_params().which()? {
            job_request::params::None(()) => JobParams::None,
            job_request::params::Crypto(c) => {
                let c = c?;
                JobParams::Crypto {
                    key: c.get_key()?.to_vec(),
                    expected: c.get_expected()?.to_vec(),
                }
            }
            job_request::params::Physics(p) => JobParams::Physics(decode_physics(p?)?),
            job_request::params::Binary(bytes) => JobParams::Binary(bytes?.to_vec()),
        };
        let metadata = r.get_metadata()?;
        if metadata.len() > MAX_METADATA {
            return Err(FrameError::TooMany {
                field: "metadata",
                len: metadata.len(),
                max: MAX_METADATA,
            });
        }
        job.metadata.clear();
        for kv in metadata {
            job.metadata.push((text(kv.get_key())?, text(kv.get_value())?));
        }
        job.id = r.get_job_id();
        text_into(r.get_library(), &mut job.library)?;
        text_into(r.get_method(), &mut job.method)?;
        job.budget = r.get_budget();
        job.priority = r.get_priority();
        job.timeout_ms = r.get_timeout_ms();
        job.deadline_ms = r.get_deadline_ms();
        Ok(())
    }
}

fn read_range(r: generated::job_capnp::sab_range::Reader<'_>) -> SabRange {
    SabRange {
        offset: r.get_offset(),
        length: r.get_length(),
    }
}

fn encode_physics(p: physics_params::Builder<'_>, call: &PhysicsCall) {
    match *call {
        PhysicsCall::SpawnBody {
            cuboid,
            size,
            at,
            dynamic,
        } => {
            let mut s = p.init_spawn_body();
            s.set_shape(if cuboid {
                physics_params::Shape::Cuboid
            } else {
                physics_params::Shape::Ball
            });
            s.set_size_x(size[0]);
            s.set_size_y(size[1]);
            s.set_size_z(size[2]);
            s.set_x(at[0]);
            s.set_y(at[1]);
            s.set_z(at[2]);
            s.set_dynamic(dynamic);
        }
        PhysicsCall::Step { steps } => p.init_step().set_steps(steps),
        PhysicsCall::Raycast {
            origin,
            direction,
            max_distance,
        } => {
            let mut r = p.init_raycast();
            r.set_origin_x(origin[0]);
            r.set_origin_y(origin[1]);
            r.set_origin_z(origin[2]);
            r.set_dir_x(direction[0]);
            r.set_dir_y(direction[1]);
            r.set_dir_z(direction[2]);
            r.set_max_distance(max_distance);
        }
    }
}

fn decode_physics(p: physics_params::Reader<'_>) -> Result<PhysicsCall, FrameError> {
    Ok(match p.which()? {
        physics_params::SpawnBody(s) => PhysicsCall::SpawnBody {
            cuboid: s.get_shape()? == physics_params::Shape::Cuboid,
            size: [s.get_size_x(), s.get_size_y(), s.get_size_z()],
            at: [s.get_x(), s.get_y(), s.get_z()],
            dynamic: s.get_dynamic(),
        },
        physics_params::Step(s) => PhysicsCall::Step { steps: s.get_steps() },
        physics_params::Raycast(r) => PhysicsCall::Raycast {
            origin: [r.get_origin_x(), r.get_origin_y(), r.get_origin_z()],
            direction: [r.get_dir_x(), r.get_dir_y(), r.get_dir_z()],
            max_distance: r.get_max_distance(),
        },
    })
}

/// The metadata key naming who submitted a job (the security engine's rate limits are per source).
pub const SOURCE_KEY: &str = "source";

/// Sources the learning engine keeps a last job for at once: sources name themselves, so what is
/// kept per source is bounded (the engine starts its map over; the admission table has its own
/// bound, `sab::admission::BUCKETS`).
pub const MAX_SOURCES: usize = 4096;

/// The name given for the sources that share the admission table's last bucket (`sab::admission`).
pub const OVERFLOW_SOURCE: &str = "(other sources)";

/// The admission table's rate limit on a new node: one source may submit a burst of 4 096 jobs (the
/// pipeline's in-flight window), then 1 000 jobs a second: well above what the node's own parts
/// submit (a GA generation every few seconds, workflow steps, an operator's jobs), well below what
/// would let one caller starve the others. The benchmark, which floods the pipeline on purpose,
/// sets its own.
pub const DEFAULT_BURST: u32 = 4_096;
pub const DEFAULT_PER_SECOND: u32 = 1_000;

/// Why the kernel's admission refused a job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateError {
    #[error("source {0:?} is over its rate limit")]
    RateLimited(String),
    #[error("the job's input is {len} bytes; unit {unit:?} takes at most {max}")]
    InputTooLarge { unit: String, len: u64, max: u64 },
}

/// The source of `job`: its `source` metadata, or `"local"`.
pub fn source_of(job: &Job) -> &str {
    job.metadata
        .iter()
        .find(|(key, _)| key == SOURCE_KEY)
        .map_or("local", |(_, value)| value.as_str())
}

/// How a job ended (`JobResult.Status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobStatus {
    Success,
    Failed,
    BudgetExceeded,
    Timeout,
    InvalidParams,
    Rejected,
    /// The unit panicked while running the job.
    Crashed,
}

const JOB_STATUSES: [(JobStatus, job_result::Status); 7] = [
    (JobStatus::Success, job_result::Status::Success),
    (JobStatus::Failed, job_result::Status::Failed),
    (JobStatus::BudgetExceeded, job_result::Status::BudgetExceeded),
    (JobStatus::Timeout, job_result::Status::Timeout),
    (JobStatus::InvalidParams, job_result::Status::InvalidParams),
    (JobStatus::Rejected, job_result::Status::Rejected),
    (JobStatus::Crashed, job_result::Status::Crashed),
];

impl JobStatus {
    /// The status's code in the job history (`JobRecord::status`): its wire value.
    pub fn code(self) -> u16 {
        to_wire(&JOB_STATUSES, self) as u16
    }

    /// The status a history code names (`None` for a code no status has: bytes from elsewhere).
    pub fn from_code(code: u16) -> Option<Self> {
        job_result::Status::try_from(code)
            .ok()
            .map(|wire| from_wire(&JOB_STATUSES, wire))
    }
}

/// The wire value of `ours` in a (ours, wire) table that lists every value of both enums.
fn to_wire<A: PartialEq + Copy, B: Copy>(table: &[(A, B)], ours: A) -> B {
    table
        .iter()
        .find(|(a, _)| *a == ours)
        .expect("the table lists every value")
        .1
}

/// Our value of `wire` in a (ours, wire) table that lists every value of both enums.
fn from_wire<A: Copy, B: PartialEq + Copy>(table: &[(A, B)], wire: B) -> A {
    table
        .iter()
        .find(|(_, b)| *b == wire)
        .expect("the table lists every value")
        .0
}

/// A job's result (`JobResult`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobOutcome {
    pub id: u64,
    pub status: JobStatus,
    pub output: Payload,
    pub cost: u64,
    pub execution_time_ns: u64,
    pub error: String,
    pub retryable: bool,
    pub cpu_ns: u64,
    pub peak_memory_bytes: u64,
    pub input_bytes: u64,
    pub output_bytes: u64,
}

impl JobOutcome {
    /// A result with this status and output, and no cost, metrics or error.
    pub fn new(id: u64, status: JobStatus, output: Payload) -> Self {
        Self {
            id,
            status,
            output,
            cost: 0,
            execution_time_ns: 0,
            error: String::new(),
            retryable: false,
            cpu_ns: 0,
            peak_memory_bytes: 0,
            input_bytes: 0,
            output_bytes: 0,
        }
    }

    /// A job that produced no output, with `status` and the reason.
    pub fn failed(id: u64, status: JobStatus, error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            ..Self::new(id, status, Payload::Inline(vec![]))
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// [`JobOutcome::encode`] into `out` (replacing its contents, reusing its allocation).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        write_frame(self.output.inline_len() + self.error.len(), out, |root| {
            let mut r = root.init_as::<job_result::Builder>();
            r.set_job_id(self.id);
            r.set_status(to_wire(&JOB_STATUSES, self.status));
            match &self.output {
                Payload::Inline(bytes) => r.reborrow().init_output().set_inline(bytes),
                Payload::Sab(range) => {
                    let mut s = r.reborrow().init_output().init_sab_range();
                    s.set_offset(range.offset);
                    s.set_length(range.length);
                }
            }
            r.set_cost(self.cost);
            r.set_execution_time_ns(self.execution_time_ns);
            r.set_error_message(&self.error);
            r.set_retryable(self.retryable);
            let mut m = r.init_metrics();
            m.set_cpu_ns(self.cpu_ns);
            m.set_peak_memory_bytes(self.peak_memory_bytes);
            m.set_input_bytes(self.input_bytes);
            m.set_output_bytes(self.output_bytes);
        });
    }

    pub fn decode(frame: &[u8]) -> Result<Self, FrameError> {
        Self::read(&read_frame(frame)?)
    }

    fn read(message: &FrameReader<'_>) -> Result<Self, FrameError> {
        let r: job_result::Reader = message.get_root()?;
        let output = match r.get_output().which()? {
            job_result::output::Inline(bytes) => Payload::Inline(bytes?.to_vec()),
            job_result::output::SabRange(range) => Payload::Sab(read_range(range?)),
        };
        let m = r.get_metrics()?;
        Ok(Self {
            id: r.get_job_id(),
            status: from_wire(&JOB_STATUSES, r.get_status()?),
            output,
            cost: r.get_cost(),
            execution_time_ns: r.get_execution_time_ns(),
            error: text(r.get_error_message())?,
            retryable: r.get_retryable(),
            cpu_ns: m.get_cpu_ns(),
            peak_memory_bytes: m.get_peak_memory_bytes(),
            input_bytes: m.get_input_bytes(),
            output_bytes: m.get_output_bytes(),
        })
    }
}

/// A frame on the outbox-kernel ring, which carries job results and, beside them, the units'
/// syscalls: an envelope whose root has a header with the magic is a syscall, anything else a
/// result. The frame is read once, and each kind is decoded (and refused) by its own rules.
#[derive(Clone, Debug, PartialEq)]
pub enum OutboxFrame {
    Result(JobOutcome),
    Syscall(Syscall),
}

impl OutboxFrame {
    pub fn decode(frame: &[u8]) -> Result<Self, FrameError> {
        let reader = read_frame(frame)?;
        let envelope = reader
            .get_root::<message::Reader>()
            .and_then(|m| m.get_header())
            .is_ok_and(|h| h.get_magic() == sc::MAGIC);
        if envelope {
            Syscall::read(&reader).map(Self::Syscall)
        } else {
            JobOutcome::read(&reader).map(Self::Result)
        }
    }
}

/// A syscall's operation (`Opcode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opcode {
    Noop,
    FetchChunk,
    StoreChunk,
    SendMessage,
    SpawnThread,
    KillThread,
    HostCall,
}

const OPCODES: [(Opcode, sc::Opcode); 7] = [
    (Opcode::Noop, sc::Opcode::Noop),
    (Opcode::FetchChunk, sc::Opcode::FetchChunk),
    (Opcode::StoreChunk, sc::Opcode::StoreChunk),
    (Opcode::SendMessage, sc::Opcode::SendMessage),
    (Opcode::SpawnThread, sc::Opcode::SpawnThread),
    (Opcode::KillThread, sc::Opcode::KillThread),
    (Opcode::HostCall, sc::Opcode::HostCall),
];

/// A syscall's body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyscallBody {
    Noop,
    FetchChunk {
        hash: Vec<u8>,
        priority: u8,
        destination: SabRange,
    },
    StoreChunk {
        hash: Vec<u8>,
        source: SabRange,
        ttl: u32,
    },
    SendMessage {
        target: u32,
        payload: Vec<u8>,
        priority: u8,
    },
    SpawnThread {
        unit: String,
    },
    KillThread {
        unit: String,
    },
    HostCall {
        service: String,
        payload: Vec<u8>,
    },
}

impl SyscallBody {
    pub fn opcode(&self) -> Opcode {
        match self {
            Self::Noop => Opcode::Noop,
            Self::FetchChunk { .. } => Opcode::FetchChunk,
            Self::StoreChunk { .. } => Opcode::StoreChunk,
            Self::SendMessage { .. } => Opcode::SendMessage,
            Self::SpawnThread { .. } => Opcode::SpawnThread,
            Self::KillThread { .. } => Opcode::KillThread,
            Self::HostCall { .. } => Opcode::HostCall,
        }
    }
}

/// A syscall envelope (`Message`): header fields and body. Magic and version are written by
/// `encode` and checked by `decode`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Syscall {
    pub flags: u8,
    pub source_module: u32,
    pub call_id: u64,
    pub body: SyscallBody,
}

impl Syscall {
    pub fn encode(&self) -> Vec<u8> {
        let variable = match &self.body {
            SyscallBody::Noop => 0,
            SyscallBody::FetchChunk { hash, .. } | SyscallBody::StoreChunk { hash, .. } => hash.len(),
            SyscallBody::SendMessage { payload, .. } => payload.len(),
            SyscallBody::SpawnThread { unit } | SyscallBody::KillThread { unit } => unit.len(),
            SyscallBody::HostCall { service, payload } => service.len() + payload.len(),
        };
        frame(variable, |root| {
            let mut m = root.init_as::<message::Builder>();
            let mut h = m.reborrow().init_header();
            h.set_magic(sc::MAGIC);
            h.set_version(sc::VERSION);
            h.set_flags(self.flags);
            h.set_source_module_id(self.source_module);
            h.set_call_id(self.call_id);
            h.set_opcode(to_wire(&OPCODES, self.body.opcode()));
            let mut body = m.init_body();
            match &self.body {
                SyscallBody::Noop => body.set_noop(()),
                SyscallBody::FetchChunk {
                    hash,
                    priority,
                    destination,
                } => {
                    let mut f = body.init_fetch_chunk();
                    f.set_hash(hash);
                    f.set_priority(*priority);
                    f.set_destination_offset(destination.offset);
                    f.set_destination_size(destination.length);
                }
                SyscallBody::StoreChunk { hash, source, ttl } => {
                    let mut s = body.init_store_chunk();
                    s.set_hash(hash);
                    s.set_source_offset(source.offset);
                    s.set_size(source.length);
                    s.set_ttl(*ttl);
                }
                SyscallBody::SendMessage {
                    target,
                    payload,
                    priority,
                } => {
                    let mut s = body.init_send_message();
                    s.set_target_id(*target);
                    s.set_payload(payload);
                    s.set_priority(*priority);
                }
                SyscallBody::SpawnThread { unit } => body.init_spawn_thread().set_unit(unit),
                SyscallBody::KillThread { unit } => body.init_kill_thread().set_unit(unit),
                SyscallBody::HostCall { service, payload } => {
                    let mut c = body.init_host_call();
                    c.set_service(service);
                    c.set_payload(payload);
                }
            }
        })
    }

    /// Decodes an untrusted frame: magic, version and the opcode's agreement with the body are
    /// checked as well as the encoding.
    pub fn decode(frame: &[u8]) -> Result<Self, FrameError> {
        Self::read(&read_frame(frame)?)
    }

    fn read(reader: &FrameReader<'_>) -> Result<Self, FrameError> {
        let m: message::Reader = reader.get_root()?;
        let h = m.get_header()?;
        if h.get_magic() != sc::MAGIC {
            return Err(FrameError::BadMagic { found: h.get_magic() });
        }
        if h.get_version() != sc::VERSION {
            return Err(FrameError::UnsupportedVersion { found: h.get_version() });
        }
        let header_opcode = from_wire(&OPCODES, h.get_opcode()?);
        let body = match m.get_body().which()? {
            message::body::Noop(()) => SyscallBody::Noop,
            message::body::FetchChunk(f) => SyscallBody::FetchChunk {
                hash: f.get_hash()?.to_vec(),
                priority: f.get_priority(),
                destination: SabRange {
                    offset: f.get_destination_offset(),
                    length: f.get_destination_size(),
                },
            },
            message::body::StoreChunk(s) => SyscallBody::StoreChunk {
                hash: s.get_hash()?.to_vec(),
                source: SabRange {
                    offset: s.get_source_offset(),
                    length: s.get_size(),
                },
                ttl: s.get_ttl(),
            },
            message::body::SendMessage(s) => SyscallBody::SendMessage {
                target: s.get_target_id(),
                payload: s.get_payload()?.to_vec(),
                priority: s.get_priority(),
            },
            message::body::SpawnThread(s) => SyscallBody::SpawnThread {
                unit: text(s.get_unit())?,
            },
            message::body::KillThread(s) => SyscallBody::KillThread {
                unit: text(s.get_unit())?,
            },
            message::body::HostCall(c) => SyscallBody::HostCall {
                service: text(c.get_service())?,
                payload: c.get_payload()?.to_vec(),
            },
        };
        if body.opcode() != header_opcode {
            return Err(FrameError::OpcodeMismatch {
                header: header_opcode,
                body: body.opcode(),
            });
        }
        Ok(Self {
            flags: h.get_flags(),
            source_module: h.get_source_module_id(),
            call_id: h.get_call_id(),
            body,
        })
    }
}

/// A syscall's outcome (`Response.Status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyscallStatus {
    Success,
    Pending,
    InvalidRequest,
    Timeout,
    InternalError,
    NotFound,
    OutOfBounds,
}

const SYSCALL_STATUSES: [(SyscallStatus, response::Status); 7] = [
    (SyscallStatus::Success, response::Status::Success),
    (SyscallStatus::Pending, response::Status::Pending),
    (SyscallStatus::InvalidRequest, response::Status::InvalidRequest),
    (SyscallStatus::Timeout, response::Status::Timeout),
    (SyscallStatus::InternalError, response::Status::InternalError),
    (SyscallStatus::NotFound, response::Status::NotFound),
    (SyscallStatus::OutOfBounds, response::Status::OutOfBounds),
];

/// A syscall's typed result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyscallResult {
    None,
    FetchChunk { bytes: u64, hash_verified: bool },
    StoreChunk { hash: Vec<u8>, replicas: u16 },
    SendMessage { delivered: bool },
    HostCall { payload: Vec<u8> },
}

/// The kernel's answer (`Response`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyscallResponse {
    pub call_id: u64,
    pub status: SyscallStatus,
    pub result: SyscallResult,
    pub error: String,
}

impl SyscallResponse {
    pub fn encode(&self) -> Vec<u8> {
        let variable = match &self.result {
            SyscallResult::StoreChunk { hash, .. } => hash.len(),
            SyscallResult::HostCall { payload } => payload.len(),
            _ => 0,
        };
        frame(self.error.len() + variable, |root| {
            let mut r = root.init_as::<response::Builder>();
            r.set_call_id(self.call_id);
            r.set_status(to_wire(&SYSCALL_STATUSES, self.status));
            r.set_error(&self.error);
            let mut result = r.init_result();
            match &self.result {
                SyscallResult::None => result.set_none(()),
                SyscallResult::FetchChunk { bytes, hash_verified } => {
                    let mut f = result.init_fetch_chunk();
                    f.set_bytes_transferred(*bytes);
                    f.set_hash_verified(*hash_verified);
                }
                SyscallResult::StoreChunk { hash, replicas } => {
                    let mut s = result.init_store_chunk();
                    s.set_hash(hash);
                    s.set_replicas(*replicas);
                }
                SyscallResult::SendMessage { delivered } => result.init_send_message().set_delivered(*delivered),
                SyscallResult::HostCall { payload } => result.init_host_call().set_payload(payload),
            }
        })
    }

    pub fn decode(frame: &[u8]) -> Result<Self, FrameError> {
        let reader = read_frame(frame)?;
        let r: response::Reader = reader.get_root()?;
        let status = from_wire(&SYSCALL_STATUSES, r.get_status()?);
        let result = match r.get_result().which()? {
            response::result::None(()) => SyscallResult::None,
            response::result::FetchChunk(f) => SyscallResult::FetchChunk {
                bytes: f.get_bytes_transferred(),
                hash_verified: f.get_hash_verified(),
            },
            response::result::StoreChunk(s) => SyscallResult::StoreChunk {
                hash: s.get_hash()?.to_vec(),
                replicas: s.get_replicas(),
            },
            response::result::SendMessage(s) => SyscallResult::SendMessage {
                delivered: s.get_delivered(),
            },
            response::result::HostCall(c) => SyscallResult::HostCall {
                payload: c.get_payload()?.to_vec(),
            },
        };
        Ok(Self {
            call_id: r.get_call_id(),
            status,
            result,
            error: text(r.get_error())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scratch segment lent, given back re-zeroed and lent again, beside a heap segment for a
    /// message too large for it (run under Miri for the allocator's pointer handling).
    #[test]
    fn the_scratch_segment_is_reused_and_rezeroed() {
        let mut frame = Vec::new();
        let mut decoded = Job::new(0, "", "", Payload::Inline(Vec::new()));
        for (k, len) in [300, 9_000, 0, 40].into_iter().enumerate() {
            let mut job = Job::new(k as u64, "echo", "echo", Payload::Inline(vec![k as u8 + 1; len]));
            job.priority = if k == 0 { 200 } else { 0 };
            job.encode_into(7, &mut frame);
            Job::decode_into(&frame, &mut decoded).unwrap();
            job.id = 7;
            assert_eq!(decoded, job);
        }
        SCRATCH.with_borrow(|scratch| {
            assert!(!scratch.lent);
            assert!(capnp::Word::words_to_bytes(&scratch.words).iter().all(|&b| b == 0));
        });
    }
}
