//! The parts a worker keeps between jobs, decided on rank 0.
//!
//! Rank 0 keeps a mirror of each worker's cache and decides everything: which parts of a
//! job travel (those the worker has not got) and which cached parts the worker drops (the
//! least recently used, once the cache holds more than its budget). The worker only
//! applies what the job frame says, so the two sides cannot disagree.

use crate::frame::{Hash, PartRef};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Rank 0's record of what one worker holds.
#[derive(Debug)]
pub(crate) struct Mirror {
    budget: u64,
    used: u64,
    /// Hash → (length, last use).
    entries: BTreeMap<Hash, (u64, u64)>,
    tick: u64,
}

impl Mirror {
    /// An empty cache that holds at most `budget` bytes (beyond the current job's parts).
    pub(crate) fn new(budget: u64) -> Self {
        Self {
            budget,
            used: 0,
            entries: BTreeMap::new(),
            tick: 0,
        }
    }

    /// Plans a job with parts `parts` (hash, length): what each part's reference is, and
    /// what the worker evicts after resolving them.
    pub(crate) fn plan(&mut self, parts: &[(Hash, u64)]) -> (Vec<PartRef>, Vec<Hash>) {
        self.tick += 1;
        let refs = parts
            .iter()
            .map(|&(hash, len)| {
                let cached = self.entries.contains_key(&hash);
                if !cached {
                    self.used += len;
                }
                self.entries.insert(hash, (len, self.tick));
                PartRef {
                    hash,
                    inline: (!cached).then_some(len),
                }
            })
            .collect();
        let mut evict = Vec::new();
        while self.used > self.budget {
            // The least recently used part not used by this job.
            let Some((&hash, &(len, _))) = self
                .entries
                .iter()
                .filter(|(_, (_, last))| *last != self.tick)
                .min_by_key(|(hash, (_, last))| (*last, **hash))
            else {
                break;
            };
            self.entries.remove(&hash);
            self.used -= len;
            evict.push(hash);
        }
        (refs, evict)
    }
}

/// A worker's cached parts.
#[derive(Debug, Default)]
pub(crate) struct Store {
    parts: BTreeMap<Hash, Arc<[u8]>>,
}

impl Store {
    /// Resolves a job's parts: inline ones come from `inline` (in order) and are kept;
    /// then the parts of `evict` are dropped.
    pub(crate) fn resolve(
        &mut self,
        refs: &[PartRef],
        inline: &[&[u8]],
        evict: &[Hash],
    ) -> Result<Vec<Arc<[u8]>>, String> {
        let mut inline = inline.iter();
        let mut out = Vec::with_capacity(refs.len());
        for r in refs {
            let part = match r.inline {
                Some(_) => {
                    let bytes: Arc<[u8]> =
                        Arc::from(*inline.next().ok_or("fewer inline parts than announced")?);
                    self.parts.insert(r.hash, bytes.clone());
                    bytes
                }
                None => self.parts.get(&r.hash).cloned().ok_or_else(|| {
                    format!("part {} is not in this worker's cache", hex(&r.hash))
                })?,
            };
            out.push(part);
        }
        for hash in evict {
            self.parts.remove(hash);
        }
        Ok(out)
    }

    /// Bytes held.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> u64 {
        self.parts.values().map(|p| p.len() as u64).sum()
    }
}

/// The first 8 bytes of a hash, in hex, to name a part in errors.
pub(crate) fn hex(hash: &Hash) -> String {
    hash[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the sequence of jobs, the worker applying rank 0's plans always has
        /// every part a job refers to, gets every part's own bytes, and never holds more
        /// than the budget beyond the current job's parts.
        #[test]
        fn mirror_and_store_agree(
            jobs in proptest::collection::vec(
                proptest::collection::vec(0u8..12, 1..4), 1..60),
            budget in 0u64..120,
        ) {
            let mut mirror = Mirror::new(budget);
            let mut store = Store::default();
            for job in jobs {
                let parts: Vec<(Hash, Vec<u8>)> = job
                    .iter()
                    // A part's content is a function of its key, as with a hash.
                    .map(|&k| ([k; 32], vec![k; usize::from(k) * 3 + 1]))
                    .collect();
                let keys: Vec<(Hash, u64)> =
                    parts.iter().map(|(h, b)| (*h, b.len() as u64)).collect();
                let (refs, evict) = mirror.plan(&keys);
                let inline: Vec<&[u8]> = refs
                    .iter()
                    .zip(&parts)
                    .filter(|(r, _)| r.inline.is_some())
                    .map(|(_, (_, b))| b.as_slice())
                    .collect();
                let got = store.resolve(&refs, &inline, &evict).unwrap();
                for (part, (_, bytes)) in got.iter().zip(&parts) {
                    prop_assert_eq!(&part[..], &bytes[..]);
                }
                let job_bytes: u64 = {
                    let mut distinct: Vec<_> = keys.clone();
                    distinct.sort();
                    distinct.dedup();
                    distinct.iter().map(|(_, l)| l).sum()
                };
                prop_assert!(store.bytes() <= budget.max(job_bytes));
            }
        }
    }

    #[test]
    fn a_part_already_sent_is_referred_to_not_resent() {
        let mut mirror = Mirror::new(1 << 20);
        let (first, _) = mirror.plan(&[([1; 32], 100), ([2; 32], 10)]);
        assert!(first.iter().all(|r| r.inline.is_some()));
        let (second, evict) = mirror.plan(&[([1; 32], 100), ([3; 32], 10)]);
        assert_eq!(second[0].inline, None);
        assert_eq!(second[1].inline, Some(10));
        assert!(evict.is_empty());
    }

    #[test]
    fn an_unknown_reference_is_an_error_not_a_panic() {
        let mut store = Store::default();
        let refs = [PartRef {
            hash: [5; 32],
            inline: None,
        }];
        let err = store.resolve(&refs, &[], &[]).unwrap_err();
        assert!(err.contains("0505050505050505"), "{err}");
    }
}
