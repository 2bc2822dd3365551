//! Seqlock halves shared by the SAB's records: a sequence word that is odd while its writer
//! works and even when the data is stable. Writers must already exclude each other (a lock or a
//! single-writer guard); readers never block them and retry a copy the writer disturbed.

use std::sync::atomic::{AtomicU32, Ordering, fence};

/// Runs `write` between the odd and the even store of `seq`.
pub(crate) fn write<R>(seq: &AtomicU32, write: impl FnOnce() -> R) -> R {
    let s = seq.load(Ordering::Relaxed);
    seq.store(s.wrapping_add(1) | 1, Ordering::Relaxed);
    fence(Ordering::Release);
    let result = write();
    seq.store((s.wrapping_add(1) | 1).wrapping_add(1), Ordering::Release);
    result
}

/// Runs `copy` until it ran entirely inside one even value of `seq`; returns its result and the
/// number of attempts, or `None` when `attempts` copies were all disturbed.
pub(crate) fn read<T>(seq: &AtomicU32, attempts: u32, mut copy: impl FnMut() -> T) -> Option<(T, u32)> {
    for attempt in 1..=attempts {
        let s = seq.load(Ordering::Acquire);
        if s % 2 == 1 {
            std::hint::spin_loop();
            continue;
        }
        let value = copy();
        fence(Ordering::Acquire);
        if seq.load(Ordering::Relaxed) == s {
            return Some((value, attempt));
        }
    }
    None
}

/// Copies a record's words into `out`, except the word at `skip` (the record's own seq word).
pub(crate) fn copy_words_except(src: &[AtomicU32], out: &mut [u32], skip: usize) {
    for (i, (word, out)) in src.iter().zip(out.iter_mut()).enumerate() {
        if i != skip {
            *out = word.load(Ordering::Relaxed);
        }
    }
}

/// Stores `words` into `dst`, except the word at `skip`.
pub(crate) fn store_words_except(dst: &[AtomicU32], words: &[u32], skip: usize) {
    for (i, (word, value)) in dst.iter().zip(words).enumerate() {
        if i != skip {
            word.store(*value, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_moves_the_sequence_by_two_and_reads_see_even_values() {
        let seq = AtomicU32::new(0);
        assert_eq!(read(&seq, 1, || 7), Some((7, 1)));
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
        assert_eq!(got, Some((4, 2)));
        // An odd (stuck) sequence gives up.
        seq.store(5, Ordering::Relaxed);
        assert_eq!(read(&seq, 3, || ()), None);
    }
}
