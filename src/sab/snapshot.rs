//! Snapshot files: the whole SAB, bit for bit, behind a header that says what it is.
//!
//! File = 128-byte `SnapshotHeader` + the SAB body (`sab_size` bytes).
//! The header holds a magic, the snapshot format version, the layout version, the tier, the SAB
//! size and the BLAKE3 hash of the body; its reserved bytes must be zero. A file is written to a
//! temporary name beside the target, fsynced, then renamed over it, so a crash never leaves a
//! half-written snapshot under the real name. Loading checks every header field and the hash and
//! says which one is wrong.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::Sab;
use super::epochs::EpochIndex;
use super::generated as g;
use super::layout::{LayoutError, SabLayout, Tier};

/// "INOSSNAP".
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"INOSSNAP";
/// Version of the snapshot file format (the header), independent of the layout version.
pub const SNAPSHOT_FORMAT: u32 = 1;

/// The header at the start of a snapshot file (little-endian).
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct SnapshotHeader {
    pub magic: [u8; 8],
    pub format: u32,
    pub layout_version: u32,
    pub tier: u32,
    pub reserved0: u32,
    pub sab_size: u64,
    pub body_hash: [u8; 32],
    pub reserved: [u8; 64],
}
pub const SNAPSHOT_HEADER_SIZE: usize = size_of::<SnapshotHeader>();
const _: () = assert!(SNAPSHOT_HEADER_SIZE == 128);

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not an INOS snapshot: it is shorter than the {SNAPSHOT_HEADER_SIZE}-byte header")]
    Truncated { path: PathBuf },
    #[error("{path} is not an INOS snapshot: magic is {found:?}, expected \"INOSSNAP\"")]
    BadMagic { path: PathBuf, found: String },
    #[error("{path}: snapshot format {found} is not supported (this build reads format {SNAPSHOT_FORMAT})")]
    Format { path: PathBuf, found: u32 },
    #[error("{path}: layout version {found} does not match this build's layout version {expected}")]
    LayoutVersion { path: PathBuf, found: u32, expected: u32 },
    #[error("{path}: unknown tier id {found}")]
    Tier { path: PathBuf, found: u32 },
    #[error("{path}: {source}")]
    Size { path: PathBuf, source: LayoutError },
    #[error("{path}: the header declares a {declared}-byte SAB but the file holds {actual} body bytes")]
    Length { path: PathBuf, declared: u64, actual: u64 },
    #[error("{path}: the header's reserved bytes are not zero (corrupted header)")]
    Reserved { path: PathBuf },
    #[error("{path}: body hash mismatch (the file is corrupted): header says {expected}, body hashes to {found}")]
    Hash {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("{path}: the SAB header inside the body disagrees with the snapshot header ({what})")]
    Inconsistent { path: PathBuf, what: &'static str },
}

const CHUNK: usize = 1 << 20;

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SnapshotError + 'a {
    move |source| SnapshotError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

impl Sab {
    /// Writes the whole SAB to `path` atomically (temp file, fsync, rename). Returns the header.
    /// Signals `EpochIndex::SNAPSHOT` afterwards (so that signal is not in the file).
    pub fn write_snapshot(&self, path: &Path) -> Result<SnapshotHeader, SnapshotError> {
        let file_name = path.file_name().ok_or_else(|| SnapshotError::Io {
            action: "write a snapshot to",
            path: path.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path names no file"),
        })?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(file_name);
        tmp_name.push(format!(".tmp-{}", std::process::id()));
        let tmp = path.with_file_name(tmp_name);

        let result = self.write_snapshot_to(&tmp, path);
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    fn write_snapshot_to(&self, tmp: &Path, path: &Path) -> Result<SnapshotHeader, SnapshotError> {
        let file = File::create(tmp).map_err(io_err("create", tmp))?;
        let mut out = BufWriter::with_capacity(CHUNK, file);
        // Placeholder header first; the real one (with the hash) is written once the body is known.
        out.write_all(&[0u8; SNAPSHOT_HEADER_SIZE])
            .map_err(io_err("write", tmp))?;
        let mut hasher = blake3::Hasher::new();
        let mut chunk = vec![0u8; CHUNK];
        let size = self.len();
        let mut offset = 0;
        while offset < size {
            let n = CHUNK.min(size - offset);
            self.memory()
                .copy_out(offset, &mut chunk[..n])
                .expect("snapshot chunks stay inside the SAB");
            hasher.update(&chunk[..n]);
            out.write_all(&chunk[..n]).map_err(io_err("write", tmp))?;
            offset += n;
        }
        let layout = self.layout();
        let header = SnapshotHeader {
            magic: SNAPSHOT_MAGIC,
            format: SNAPSHOT_FORMAT,
            layout_version: g::LAYOUT_VERSION,
            tier: layout.tier.id(),
            reserved0: 0,
            sab_size: size as u64,
            body_hash: *hasher.finalize().as_bytes(),
            reserved: [0; 64],
        };
        let mut file = out.into_inner().map_err(|e| io_err("write", tmp)(e.into_error()))?;
        use std::io::Seek;
        file.seek(std::io::SeekFrom::Start(0)).map_err(io_err("seek in", tmp))?;
        file.write_all(bytemuck::bytes_of(&header))
            .map_err(io_err("write", tmp))?;
        file.sync_all().map_err(io_err("fsync", tmp))?;
        drop(file);
        std::fs::rename(tmp, path).map_err(io_err("rename the temporary snapshot onto", path))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(dir) = File::open(dir)
        {
            // Persist the rename itself; not every platform lets a directory be fsynced.
            let _ = dir.sync_all();
        }
        self.epochs().signal(EpochIndex::SNAPSHOT);
        Ok(header)
    }

    /// Loads a snapshot to carry on the system it holds: [`Sab::read_snapshot`], then
    /// [`Sab::adopt`] (the claims of the process that took it are released).
    pub fn resume(path: &Path) -> Result<Sab, SnapshotError> {
        let (sab, _) = Self::read_snapshot(path)?;
        sab.adopt();
        Ok(sab)
    }

    /// Loads a snapshot into a new SAB, refusing any file whose header or hash is wrong.
    pub fn read_snapshot(path: &Path) -> Result<(Sab, SnapshotHeader), SnapshotError> {
        let file = File::open(path).map_err(io_err("open", path))?;
        let actual_len = file.metadata().map_err(io_err("read the size of", path))?.len();
        Self::read_snapshot_from(path, BufReader::with_capacity(CHUNK, file), actual_len)
    }

    /// [`Sab::read_snapshot`] from any reader of `actual_len` bytes (`path` names the source in
    /// errors): the same checks, for snapshots that are not files (and for the fuzzer).
    pub fn read_snapshot_from(
        path: &Path,
        mut input: impl Read,
        actual_len: u64,
    ) -> Result<(Sab, SnapshotHeader), SnapshotError> {
        let mut raw = [0u8; SNAPSHOT_HEADER_SIZE];
        if actual_len < SNAPSHOT_HEADER_SIZE as u64 {
            return Err(SnapshotError::Truncated { path: path.into() });
        }
        input.read_exact(&mut raw).map_err(io_err("read", path))?;
        let header: SnapshotHeader = bytemuck::pod_read_unaligned(&raw);
        let layout = validate_header(path, &header, actual_len - SNAPSHOT_HEADER_SIZE as u64)?;

        let sab = Sab::zeroed(layout);
        let mut hasher = blake3::Hasher::new();
        let mut chunk = vec![0u8; CHUNK];
        let mut offset = 0;
        while offset < layout.sab_size {
            let n = CHUNK.min(layout.sab_size - offset);
            input.read_exact(&mut chunk[..n]).map_err(io_err("read", path))?;
            hasher.update(&chunk[..n]);
            sab.memory()
                .copy_in(offset, &chunk[..n])
                .expect("snapshot chunks stay inside the SAB");
            offset += n;
        }
        let found = hasher.finalize();
        if found.as_bytes() != &header.body_hash {
            return Err(SnapshotError::Hash {
                path: path.into(),
                expected: blake3::Hash::from_bytes(header.body_hash).to_hex().to_string(),
                found: found.to_hex().to_string(),
            });
        }
        sab.check_header().map_err(|what| SnapshotError::Inconsistent {
            path: path.into(),
            what,
        })?;
        Ok((sab, header))
    }
}

fn validate_header(path: &Path, header: &SnapshotHeader, body_len: u64) -> Result<SabLayout, SnapshotError> {
    let path = path.to_path_buf();
    if header.magic != SNAPSHOT_MAGIC {
        return Err(SnapshotError::BadMagic {
            path,
            found: String::from_utf8_lossy(&header.magic).into_owned(),
        });
    }
    if header.format != SNAPSHOT_FORMAT {
        return Err(SnapshotError::Format {
            path,
            found: header.format,
        });
    }
    if header.layout_version != g::LAYOUT_VERSION {
        return Err(SnapshotError::LayoutVersion {
            path,
            found: header.layout_version,
            expected: g::LAYOUT_VERSION,
        });
    }
    if header.reserved0 != 0 || header.reserved.iter().any(|&b| b != 0) {
        return Err(SnapshotError::Reserved { path });
    }
    let tier = Tier::from_id(header.tier).ok_or(SnapshotError::Tier {
        path: path.clone(),
        found: header.tier,
    })?;
    let size = usize::try_from(header.sab_size).unwrap_or(usize::MAX);
    let layout = SabLayout::with_size(tier, size).map_err(|source| SnapshotError::Size {
        path: path.clone(),
        source,
    })?;
    if body_len != header.sab_size {
        return Err(SnapshotError::Length {
            path,
            declared: header.sab_size,
            actual: body_len,
        });
    }
    Ok(layout)
}
