//! A set of addresses (live regions, a scope's PERSIST blocks) and a map keyed by addresses (an
//! arena's dedicated chunks by their blocks): std's hash set and map with a hash made for
//! pointer keys, one multiply instead of SipHash. Keys are addresses the library handed
//! out, not attacker-chosen, so flooding resistance buys nothing here.

use core::hash::{BuildHasherDefault, Hasher};
use std::collections::{HashMap, HashSet};

/// Hashes one `usize` (an address) by a multiply and a fold, so both the low bits (the bucket)
/// and the high bits (the table's tag byte) depend on every bit of the address.
#[derive(Default, Clone, Copy)]
pub(crate) struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only addresses are hashed; any other key still hashes correctly, byte by byte.
        for &b in bytes {
            self.write_u64(u64::from(b) ^ self.0.rotate_left(8));
        }
    }

    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64);
    }

    fn write_u64(&mut self, x: u64) {
        let h = (x ^ self.0).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 32);
    }
}

/// A set of addresses.
pub(crate) type AddrSet = HashSet<usize, BuildHasherDefault<AddrHasher>>;

/// A map keyed by addresses (`AddrMap::default()` allocates nothing until the first insert).
pub(crate) type AddrMap<V> = HashMap<usize, V, BuildHasherDefault<AddrHasher>>;

/// An empty set (allocates nothing until the first insert).
pub(crate) const fn addr_set() -> AddrSet {
    HashSet::with_hasher(BuildHasherDefault::new())
}

/// An empty map keyed by addresses, in a `const` context (a static's initialiser).
pub(crate) const fn addr_map<V>() -> AddrMap<V> {
    HashMap::with_hasher(BuildHasherDefault::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_in_and_out() {
        let n = if cfg!(miri) { 500 } else { 10_000 };
        let mut s = addr_set();
        for i in 0..n {
            assert!(s.insert(0x7f00_0000_0000 + i * 64));
        }
        assert!(!s.insert(0x7f00_0000_0000));
        assert!(s.contains(&(0x7f00_0000_0000 + (n - 1) * 64)));
        assert!(!s.contains(&(0x7f00_0000_0000 + n * 64)));
        for i in (0..n).step_by(2) {
            assert!(s.remove(&(0x7f00_0000_0000 + i * 64)));
        }
        assert_eq!(s.len(), n / 2);
    }
}
