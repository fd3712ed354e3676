//! Deterministic sharding of an inventory across replicas.
//!
//! Each replica keeps the proxies whose id hashes to its index with jump
//! consistent hashing (Lamping & Veach, 2014): every replica computes the
//! same owner for every proxy without talking to the others, each proxy has
//! exactly one owner, and growing from `n` to `n+1` replicas moves only about
//! `1/(n+1)` of the proxies. The key hash is FNV-1a (then a 64-bit mixer)
//! rather than std's `DefaultHasher`, whose algorithm may change between Rust
//! releases: replicas built by different compilers must agree.

use std::fmt;

/// This replica's slice of the inventory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based index of this replica.
    pub index: u32,
    /// Number of replicas.
    pub count: u32,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// Validate `index < count`, `count >= 1`.
    pub fn new(index: u32, count: u32) -> Result<Self, String> {
        if count == 0 {
            return Err("shard count must be at least 1".into());
        }
        if index >= count {
            return Err(format!(
                "shard index {index} must be below the shard count {count}"
            ));
        }
        Ok(Shard { index, count })
    }

    /// The index from a Kubernetes StatefulSet pod name (`name-<ordinal>`).
    pub fn index_from_hostname(hostname: &str) -> Result<u32, String> {
        hostname
            .rsplit('-')
            .next()
            .and_then(|o| o.parse::<u32>().ok())
            .ok_or_else(|| {
                format!("hostname {hostname:?} does not end in -<ordinal> (a StatefulSet pod name)")
            })
    }

    /// True when this replica checks the proxy with this id.
    pub fn owns(&self, id: &str) -> bool {
        self.count <= 1 || owner(id, self.count) == self.index
    }
}

fn key_hash(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // FNV's low bits are weak for short, similar keys; finish with splitmix64.
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Jump consistent hash: the bucket in `0..buckets` owning `id`.
pub(crate) fn owner(id: &str, buckets: u32) -> u32 {
    let mut key = key_hash(id);
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < i64::from(buckets) {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b.wrapping_add(1)) as f64
            * ((1u64 << 31) as f64 / ((key >> 33).wrapping_add(1)) as f64)) as i64;
    }
    b as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_proxy_has_exactly_one_owner_and_load_is_even() {
        let ids: Vec<String> = (0..30_000)
            .map(|i| {
                format!(
                    "socks5://10.{}.{}.{}:1080",
                    i / 65536,
                    (i / 256) % 256,
                    i % 256
                )
            })
            .collect();
        let shards: Vec<Shard> = (0..3).map(|i| Shard::new(i, 3).unwrap()).collect();
        let mut per = [0usize; 3];
        for id in &ids {
            let owners: Vec<_> = shards.iter().filter(|s| s.owns(id)).collect();
            assert_eq!(owners.len(), 1, "{id}");
            per[owners[0].index as usize] += 1;
        }
        for n in per {
            assert!((9_000..=11_000).contains(&n), "uneven split {per:?}");
        }
    }

    #[test]
    fn growing_moves_few_proxies_and_hashing_is_stable() {
        let ids: Vec<String> = (0..20_000).map(|i| format!("proxy-{i}")).collect();
        let moved = ids.iter().filter(|id| owner(id, 4) != owner(id, 5)).count();
        // Ideal is 1/5 of the keys; allow some slack.
        assert!(moved < 20_000 / 5 + 600, "moved {moved}");
        for id in &ids {
            let o = owner(id, 5);
            assert!(
                o == owner(id, 4) || o == 4,
                "a key only ever moves to the new bucket"
            );
        }
        // Fixed vectors: a change of hash would silently reshuffle fleets.
        assert_eq!(
            [
                owner("a", 10),
                owner("proxy-1", 10),
                owner("socks5://1.2.3.4:1080", 1000)
            ],
            GOLDEN
        );
    }

    const GOLDEN: [u32; 3] = [9, 7, 833];

    #[test]
    fn shard_validation_and_hostname_ordinals() {
        assert!(Shard::new(3, 3).is_err());
        assert!(Shard::new(0, 0).is_err());
        assert_eq!(Shard::index_from_hostname("pharox-exporter-2"), Ok(2));
        assert!(Shard::index_from_hostname("pharox-exporter").is_err());
        assert!(Shard::default().owns("anything"));
        // As logs and the status page name it.
        assert_eq!(Shard::new(1, 3).unwrap().to_string(), "1/3");
    }
}
