//! Which shard owns a name: rendezvous (highest random weight) hashing.
//!
//! Every shard gets a weight for the name, computed from the shard's id and the
//! name alone; the heaviest shard owns it. Adding a shard moves only the names the
//! new shard now outweighs (about 1/(n+1) of them, all to the new shard), and
//! removing one moves only its own names. The hash is FNV-1a with a MurmurHash3
//! finalizer, written out here so that the mapping never changes with a Rust
//! version or a dependency: every node of a cluster must agree on it forever.

/// FNV-1a, 64 bits.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// MurmurHash3's 64-bit finalizer: every input bit flips about half the output bits.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// The shards' seeds, in the order of their ids.
#[derive(Clone, Debug)]
pub(crate) struct Ring {
    seeds: Vec<u64>,
}

impl Ring {
    /// A ring over shards with these ids (each shard's stable identity).
    pub(crate) fn new<S: AsRef<str>>(ids: &[S]) -> Self {
        Self {
            seeds: ids
                .iter()
                .map(|id| fmix64(fnv1a(id.as_ref().as_bytes())))
                .collect(),
        }
    }

    /// The index of the shard that owns `name`.
    pub(crate) fn pick(&self, name: &str) -> usize {
        if self.seeds.len() <= 1 {
            return 0;
        }
        let h = fnv1a(name.as_bytes());
        let mut best = (0usize, 0u64);
        for (i, seed) in self.seeds.iter().enumerate() {
            let w = fmix64(h ^ seed);
            if i == 0 || w > best.1 {
                best = (i, w);
            }
        }
        best.0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:6379/0")).collect()
    }

    #[test]
    fn adding_a_fourth_shard_moves_about_a_quarter_all_to_the_new_one() {
        let three = Ring::new(&ids(3));
        let four = Ring::new(&ids(4));
        let names: Vec<String> = (0..10_000)
            .map(|i| format!("app-{}/chat:room-{i}", i % 7))
            .collect();
        let mut moved = 0;
        let mut load = [0usize; 4];
        for n in &names {
            let (a, b) = (three.pick(n), four.pick(n));
            load[b] += 1;
            if a != b {
                moved += 1;
                assert_eq!(b, 3, "a name only ever moves to the new shard");
            }
        }
        assert!(
            (2_000..=3_000).contains(&moved),
            "about a quarter moved, got {moved} of 10000"
        );
        for l in load {
            assert!((2_000..=3_000).contains(&l), "balanced: {load:?}");
        }
    }

    #[test]
    fn the_mapping_is_stable() {
        // Frozen: changing these values would move channels between the shards of
        // a running cluster (nodes of different versions would disagree).
        let ring = Ring::new(&ids(4));
        let got: Vec<usize> = (0..16).map(|i| ring.pick(&format!("app/channel-{i}"))).collect();
        assert_eq!(got, FROZEN);
        // The order the shards are listed in does not matter, only their ids.
        let mut rev = ids(4);
        rev.reverse();
        let ring_rev = Ring::new(&rev);
        for i in 0..1000 {
            let name = format!("app/c{i}");
            assert_eq!(rev[ring_rev.pick(&name)], ids(4)[ring.pick(&name)]);
        }
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c, "FNV-1a reference value");
        assert_eq!(Ring::new(&ids(1)).pick("anything"), 0);
    }

    const FROZEN: [usize; 16] = [2, 2, 0, 3, 1, 0, 3, 0, 2, 0, 2, 1, 1, 0, 3, 2];
}
