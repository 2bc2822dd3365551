//! The SAB in a shared mapping, for several processes at once (native builds).
//!
//! A kernel creates its SAB as a file in `/dev/shm` (`/dev/shm/inos-<pid>.sab` unless `--sab`
//! names another) and maps it shared; other processes attach to it by path: `inos submit`,
//! `inos inspect --live`, the inspector's `--attach`. The file is removed when the kernel exits
//! cleanly. A kernel that was killed leaves its file behind: `inos shm` lists the SAB files with
//! their kernels, and `inos shm --clean` removes those whose processes are all gone.
//!
//! Attaching checks the SAB's header against this build (magic, layout version, tier, size, bird
//! capacity) and refuses a file that differs, naming what differs.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::generated as g;
use super::layout::{LayoutError, SabLayout, Tier, regions};
use super::memory::SabMemory;
use super::processes::process_alive;
use super::{Sab, SabHeader};

/// Where SAB files live by default.
pub const SHM_DIR: &str = "/dev/shm";

/// The default SAB file of this process: `/dev/shm/inos-<pid>.sab`.
pub fn default_path() -> PathBuf {
    Path::new(SHM_DIR).join(format!("inos-{}.sab", std::process::id()))
}

#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error(
        "{path} already exists: the SAB of a running kernel, or one left by a kernel that was killed (`inos shm --clean` removes those)"
    )]
    Exists { path: PathBuf },
    #[error("cannot create the shared SAB {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    #[error("cannot map the shared SAB {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a SAB: it is {len} bytes, too short for the SAB header")]
    TooShort { path: PathBuf, len: usize },
    #[error("{path} is not a SAB: its magic is {found:#018x}, expected {expected:#018x}")]
    Magic { path: PathBuf, found: u64, expected: u64 },
    #[error("{path}: its layout version is {found}, this build's is {expected}")]
    LayoutVersion { path: PathBuf, found: u32, expected: u32 },
    #[error("{path}: its tier id {found} is not a tier")]
    Tier { path: PathBuf, found: u32 },
    #[error("{path}: its header says {header} bytes, but the file holds {file}")]
    Size { path: PathBuf, header: u64, file: usize },
    #[error("{path}: {source}")]
    Layout { path: PathBuf, source: LayoutError },
    #[error("no running kernel's SAB in {dir}: start one (`inos --headless --serve 60`) or name one with --sab")]
    NoneRunning { dir: PathBuf },
    #[error("{count} kernels run ({paths}); name one with --sab")]
    ManyRunning { count: usize, paths: String },
    #[error("cannot list {dir}: {source}")]
    List { dir: PathBuf, source: std::io::Error },
    #[error("{path}: its bird capacity is {found}, the {tier} tier's is {expected}")]
    BirdCapacity {
        path: PathBuf,
        tier: Tier,
        found: u32,
        expected: u32,
    },
}

impl Sab {
    /// A new SAB of `layout` in a shared mapping of the new file `path` (removed when the last
    /// handle of this process drops).
    pub fn create_shared(layout: SabLayout, path: &Path) -> Result<Sab, SharedError> {
        Ok(Self::with_memory(create(path, layout.sab_size)?, layout).formatted())
    }

    /// A copy of this SAB in a shared mapping of the new file `path`: how a resumed snapshot is
    /// shared.
    pub fn share(&self, path: &Path) -> Result<Sab, SharedError> {
        let shared = Self::with_memory(create(path, self.len())?, *self.layout());
        let mut chunk = vec![0u8; 1 << 20];
        for offset in (0..self.len()).step_by(chunk.len()) {
            let part = &mut chunk[..(self.len() - offset).min(1 << 20)];
            self.copy_out(offset, part).expect("the chunk lies inside the SAB");
            shared
                .memory()
                .copy_in(offset, part)
                .expect("both SABs have the same size");
        }
        Ok(shared)
    }

    /// Maps the SAB of another process (a running kernel's) at `path`, after checking its header
    /// against this build. Nothing in it is changed.
    pub fn attach(path: &Path) -> Result<Sab, SharedError> {
        let path_buf = || path.to_path_buf();
        let memory = SabMemory::open_shared(path).map_err(|source| SharedError::Open {
            path: path_buf(),
            source,
        })?;
        let len = memory.len();
        let header: SabHeader = memory
            .read(regions::SAB_HEADER.offset)
            .map_err(|_| SharedError::TooShort { path: path_buf(), len })?;
        let layout = check_header(path, &header, len)?;
        Ok(Self::with_memory(memory, layout))
    }
}

fn create(path: &Path, len: usize) -> Result<SabMemory, SharedError> {
    SabMemory::create_shared(path, len).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => SharedError::Exists { path: path.into() },
        _ => SharedError::Create {
            path: path.into(),
            source,
        },
    })
}

/// The layout a SAB header of a `len`-byte file describes, or what differs from this build.
fn check_header(path: &Path, header: &SabHeader, len: usize) -> Result<SabLayout, SharedError> {
    let path = path.to_path_buf();
    if header.magic != g::SAB_MAGIC {
        return Err(SharedError::Magic {
            path,
            found: header.magic,
            expected: g::SAB_MAGIC,
        });
    }
    if header.layout_version != g::LAYOUT_VERSION {
        return Err(SharedError::LayoutVersion {
            path,
            found: header.layout_version,
            expected: g::LAYOUT_VERSION,
        });
    }
    let tier = Tier::from_id(header.tier).ok_or(SharedError::Tier {
        path: path.clone(),
        found: header.tier,
    })?;
    if header.sab_size != len as u64 {
        return Err(SharedError::Size {
            path,
            header: header.sab_size,
            file: len,
        });
    }
    let layout = SabLayout::with_size(tier, len).map_err(|source| SharedError::Layout {
        path: path.clone(),
        source,
    })?;
    if header.bird_capacity != layout.spec().max_birds {
        return Err(SharedError::BirdCapacity {
            path,
            tier,
            found: header.bird_capacity,
            expected: layout.spec().max_birds,
        });
    }
    Ok(layout)
}

/// A SAB file in `/dev/shm`, as `inos shm` lists it.
#[derive(Debug, Serialize)]
pub struct ShmFile {
    pub path: PathBuf,
    pub bytes: u64,
    /// The kernel lock's pid (0: none), if the file is a SAB of this build.
    pub kernel_pid: Option<u32>,
    /// Whether that kernel runs.
    pub kernel_alive: bool,
    /// Seconds since the file was last modified.
    pub age_seconds: u64,
    /// Processes of its table that are running.
    pub live_processes: usize,
    /// Why it could not be read as a SAB of this build.
    pub error: Option<String>,
}

/// A file younger than this is never stale: its kernel may be starting (between creating the
/// file and taking its lock, or copying a snapshot into it).
const STARTING_SECONDS: u64 = 10;

impl ShmFile {
    /// A SAB of this build that no running process uses: left by a kernel that was killed.
    pub fn stale(&self) -> bool {
        self.error.is_none() && self.live_processes == 0 && self.age_seconds >= STARTING_SECONDS
    }
}

/// The `inos-*.sab` files of `dir`, sorted by name.
pub fn list(dir: &Path) -> std::io::Result<Vec<ShmFile>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with("inos-") && name.ends_with(".sab")) {
            continue;
        }
        let path = entry.path();
        let metadata = entry.metadata();
        let bytes = metadata.as_ref().map_or(0, std::fs::Metadata::len);
        let age_seconds = metadata
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .map_or(0, |age| age.as_secs());
        files.push(match Sab::attach(&path) {
            Ok(sab) => {
                let header = sab.processes().header();
                let entries = sab.processes().entries();
                let kernel_alive = process_alive(header.kernel_pid, header.kernel_start_ticks);
                // The kernel has a record too, once it has started.
                let unlisted_kernel = kernel_alive && !entries.iter().any(|e| e.pid == header.kernel_pid);
                ShmFile {
                    path,
                    bytes,
                    kernel_pid: Some(header.kernel_pid),
                    kernel_alive,
                    age_seconds,
                    live_processes: entries.iter().filter(|e| e.alive).count() + usize::from(unlisted_kernel),
                    error: None,
                }
            }
            Err(e) => ShmFile {
                path,
                bytes,
                kernel_pid: None,
                kernel_alive: false,
                age_seconds,
                live_processes: 0,
                error: Some(e.to_string()),
            },
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// The SAB of the one kernel running in `dir` (/dev/shm): its kernel lock's pid is alive.
pub fn running(dir: &Path) -> Result<PathBuf, SharedError> {
    let live: Vec<PathBuf> = list(dir)
        .map_err(|source| SharedError::List {
            dir: dir.into(),
            source,
        })?
        .into_iter()
        .filter(|f| f.kernel_alive)
        .map(|f| f.path)
        .collect();
    match live.len() {
        1 => Ok(live.into_iter().next().expect("one")),
        0 => Err(SharedError::NoneRunning { dir: dir.into() }),
        count => Err(SharedError::ManyRunning {
            count,
            paths: live
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}
