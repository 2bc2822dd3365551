//! Seqlock halves shared by the SAB's records: a sequence word that is odd while its writer
//! works and even when the data is stable. Writers must already exclude each other (a lock or a
//! single-writer guard); readers never block them and retry a copy the writer disturbed.

use std::sync::atomic::{AtomicU32, Ordering, fence};

use bytemuck::{AnyBitPattern, NoUninit};

/// Runs `write` between the odd and the even store of `seq`.
pub(crate) fn write<R>(seq: &AtomicU32, write: impl FnOnce() -> R) -> R {
    let s = seq.load(Ordering::Relaxed);
    seq.store(s.wrapping_add(1) | 1, Ordering::Relaxed);
    fence(Ordering::Release);
    let result = write();
    seq.store((s.wrapping_add(1) | 1).wrapping_add(1), Ordering::Release);
    result
}

/// Copies a reader tries before it gives up on a record. The first [`SPINS`] spin; the others
/// yield the CPU first, so that a writer preempted in the middle of a write gets time to finish,
/// while a record whose sequence word was left odd for good (a writer that died mid-write, or a
/// snapshot taken then) is reported within milliseconds instead of hanging its reader.
pub const READ_ATTEMPTS: u32 = 4096;
const SPINS: u32 = 64;

/// A record that no read could copy consistently: its sequence word stayed odd, or kept moving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("being written (no consistent copy in {attempts} reads: its sequence word stayed odd or kept moving)")]
pub struct BeingWritten {
    pub attempts: u32,
}

/// Runs `copy` until it ran entirely inside one even value of `seq`; returns its result and the
/// number of attempts, or [`BeingWritten`] when `attempts` copies were all disturbed.
pub(crate) fn read<T>(seq: &AtomicU32, attempts: u32, mut copy: impl FnMut() -> T) -> Result<(T, u32), BeingWritten> {
    for attempt in 1..=attempts {
        if attempt > SPINS {
            std::thread::yield_now();
        }
        let s = seq.load(Ordering::Acquire);
        if s % 2 == 1 {
            std::hint::spin_loop();
            continue;
        }
        let value = copy();
        fence(Ordering::Acquire);
        if seq.load(Ordering::Relaxed) == s {
            return Ok((value, attempt));
        }
    }
    Err(BeingWritten { attempts })
}

/// A consistent copy of a record whose own seqlock word is word `seq` of `words` (that word reads
/// as 0 in the copy), within [`READ_ATTEMPTS`] tries.
pub(crate) fn read_record<T: AnyBitPattern + NoUninit>(words: &[AtomicU32], seq: usize) -> Result<T, BeingWritten> {
    let mut record = T::zeroed();
    let out = bytemuck::bytes_of_mut(&mut record);
    read(&words[seq], READ_ATTEMPTS, || {
        for (i, (word, bytes)) in words.iter().zip(out.chunks_exact_mut(4)).enumerate() {
            if i != seq {
                bytes.copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
            }
        }
    })?;
    Ok(record)
}

/// Writes a record under its own seqlock word (word `seq` of `words`, which the record's own
/// value for that word does not overwrite). The caller must be the record's only writer.
pub(crate) fn write_record<T: NoUninit>(words: &[AtomicU32], seq: usize, record: &T) {
    let bytes = bytemuck::bytes_of(record);
    write(&words[seq], || {
        for (i, (word, b)) in words.iter().zip(bytes.chunks_exact(4)).enumerate() {
            if i != seq {
                word.store(u32::from_le_bytes([b[0], b[1], b[2], b[3]]), Ordering::Relaxed);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_moves_the_sequence_by_two_and_reads_see_even_values() {
        let seq = AtomicU32::new(0);
        assert_eq!(read(&seq, 1, || 7), Ok((7, 1)));
        write(&seq, || assert_eq!(seq.load(Ordering::Relaxed) % 2, 1));
        assert_eq!(seq.load(Ordering::Relaxed), 2);
        // A read whose copy is disturbed by a write is retried.
        let mut first = true;
        let got = read(&seq, 3, || {
            if std::mem::take(&mut first) {
                write(&seq, || ());
            }
            seq.load(Ordering::Relaxed)
        });
        assert_eq!(got, Ok((4, 2)));
        // An odd (stuck) sequence gives up.
        seq.store(5, Ordering::Relaxed);
        assert_eq!(read(&seq, 3, || ()), Err(BeingWritten { attempts: 3 }));
        // And a stuck record gives up after its bounded attempts, quickly.
        let words: Vec<AtomicU32> = (0..4).map(AtomicU32::new).collect();
        words[1].store(7, Ordering::Relaxed);
        let started = std::time::Instant::now();
        assert_eq!(
            read_record::<[u32; 4]>(&words, 1),
            Err(BeingWritten {
                attempts: READ_ATTEMPTS
            })
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        words[1].store(8, Ordering::Relaxed);
        assert_eq!(read_record::<[u32; 4]>(&words, 1), Ok([0, 0, 2, 3]));
    }
}
