//! Random bytes for ids (request ids, trace and span ids), from the OS generator a
//! few kilobytes at a time: one `getrandom` call per ~250 ids instead of one per id
//! (several per request). Not for keys or nonces: those call the OS generator
//! directly (`ring`).

use ring::rand::{SecureRandom, SystemRandom};
use std::cell::RefCell;

const POOL: usize = 4096;

struct Pool {
    bytes: [u8; POOL],
    used: usize,
}

thread_local! {
    static RANDOM: RefCell<Pool> = const { RefCell::new(Pool { bytes: [0; POOL], used: POOL }) };
}

/// Fills `out` with random bytes. Falls back to a fresh UUID's random bits if the OS
/// generator fails (it does not, in practice).
pub fn fill(out: &mut [u8]) {
    RANDOM.with(|pool| {
        let mut pool = pool.borrow_mut();
        for chunk in out.chunks_mut(POOL) {
            if pool.used + chunk.len() > POOL {
                if SystemRandom::new().fill(&mut pool.bytes).is_err() {
                    for block in pool.bytes.chunks_mut(16) {
                        let id = uuid::Uuid::new_v4().into_bytes();
                        for (d, s) in block.iter_mut().zip(id.iter()) {
                            *d = *s;
                        }
                    }
                }
                pool.used = 0;
            }
            let start = pool.used;
            if let Some(src) = pool.bytes.get(start..start + chunk.len()) {
                chunk.copy_from_slice(src);
            }
            // Used bytes are wiped so they cannot be handed out twice.
            if let Some(src) = pool.bytes.get_mut(start..start + chunk.len()) {
                src.fill(0);
            }
            pool.used += chunk.len();
        }
    });
}

/// A random (version 4) UUID, as the request id.
pub fn uuid_v4() -> uuid::Uuid {
    let mut bytes = [0u8; 16];
    fill(&mut bytes);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_differ_and_are_version_4() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let id = uuid_v4();
            assert_eq!(id.get_version_num(), 4);
            assert!(seen.insert(id), "a repeated id");
        }
        let mut big = vec![0u8; POOL * 2 + 7];
        fill(&mut big);
        assert!(big.iter().filter(|&&b| b == 0).count() < big.len() / 64);
    }
}
