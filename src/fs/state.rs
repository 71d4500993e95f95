//! What a file's bytes are while it has unsealed changes: its size, the
//! extents last committed, the ranges newer in its staging file, and the
//! seal on its way to the nodes. Pure logic, no I/O.
//!
//! The hard part is the merge when a seal commits: the file may have been
//! written, shrunk, grown or punched while the seal was sealing and
//! committing. A seal's extents describe the file at its snapshot, so what
//! happened since is kept beside it (`rewritten`, `holes`) and applied on
//! top when it lands: bytes written since stay dirty, bytes cut since stay
//! cut. The property test below checks every read against a byte model
//! while writes, truncates, punches, seals and commits interleave.

use super::ranges::{RangeSet, cut, overlay};
use crate::namespace::{Extent, truncate_extents};

/// The content of one file, as the mount serves it.
#[derive(Debug, Clone)]
pub struct Content {
    size: u64,
    /// Sealed extents as last committed, with every cut since applied.
    base: Vec<Extent>,
    /// Bytes newer in the staging file than in `base`.
    dirty: RangeSet,
    /// Size or extents changed and must be committed.
    meta_dirty: bool,
    in_flight: Option<InFlight>,
    /// Ranges cut (truncated away, punched) that no committed seal holds
    /// yet: the journal keeps them until one does.
    cuts: RangeSet,
}

/// The seal on its way: what it took, and what changed since.
#[derive(Debug, Clone)]
struct InFlight {
    ranges: RangeSet,
    /// Written since its snapshot: these bytes stay dirty when it commits.
    rewritten: RangeSet,
    /// Cut since its snapshot: its extents must not bring them back.
    holes: RangeSet,
}

/// What one seal takes: the ranges to seal from the staging file, the
/// size, and the extents they are laid over.
#[derive(Debug, Clone)]
pub struct SealPlan {
    /// Dirty ranges to seal.
    pub ranges: RangeSet,
    /// The file's size at the snapshot.
    pub size: u64,
    base: Vec<Extent>,
}

impl SealPlan {
    /// The file's extents once `sealed` (the new objects, one extent per
    /// sealed range) are laid over the snapshot's extents.
    pub fn extents(&self, sealed: &[Extent]) -> Vec<Extent> {
        truncate_extents(&overlay(&self.base, sealed), self.size)
    }
}

impl Content {
    /// A file as the namespace has it.
    pub fn new(size: u64, extents: Vec<Extent>) -> Content {
        Content {
            size,
            base: extents,
            dirty: RangeSet::new(),
            meta_dirty: false,
            in_flight: None,
            cuts: RangeSet::new(),
        }
    }

    /// A file recovered after a crash: the namespace's extents with the
    /// journal's cuts applied, the journal's dirty ranges and size; all of
    /// it to be committed.
    pub fn recovered(size: u64, extents: &[Extent], dirty: RangeSet, cuts: RangeSet) -> Content {
        let mut dirty = dirty;
        dirty.remove(size, u64::MAX);
        Content {
            size,
            base: truncate_extents(&cut(extents, &cuts), size),
            dirty,
            meta_dirty: true,
            in_flight: None,
            cuts,
        }
    }

    /// Logical size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The committed extents (cuts since applied).
    pub fn base(&self) -> &[Extent] {
        &self.base
    }

    /// Bytes to be read from the staging file.
    pub fn dirty(&self) -> &RangeSet {
        &self.dirty
    }

    /// Cut ranges no committed seal holds yet.
    pub fn cuts(&self) -> &RangeSet {
        &self.cuts
    }

    /// A seal is on its way.
    pub fn sealing(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Something is not sealed yet.
    pub fn unsealed(&self) -> bool {
        !self.dirty.is_empty() || self.meta_dirty
    }

    /// Nothing waits to be sealed or committed.
    pub fn settled(&self) -> bool {
        !self.unsealed() && !self.sealing()
    }

    /// Bytes stored or staged, for `stat`'s block count.
    pub fn stored_bytes(&self) -> u64 {
        self.base.iter().map(|e| e.len).sum::<u64>() + self.dirty.len()
    }

    /// Bytes waiting in the staging file.
    pub fn staged_bytes(&self) -> u64 {
        self.dirty.len()
    }

    /// `len` bytes at `offset` were written to the staging file.
    pub fn write(&mut self, offset: u64, len: u64) {
        let end = offset.saturating_add(len);
        self.dirty.insert(offset, end);
        if let Some(f) = &mut self.in_flight {
            f.rewritten.insert(offset, end);
        }
        self.size = self.size.max(end);
    }

    /// Sets the size: growing adds a hole; shrinking cuts everything past
    /// it, so growing again reads zeros. True when it shrank (the staging
    /// file must be cut too).
    pub fn set_size(&mut self, size: u64) -> bool {
        let shrunk = size < self.size;
        if shrunk {
            self.forget(size, u64::MAX);
            self.base = truncate_extents(&self.base, size);
        }
        self.size = size;
        self.meta_dirty = true;
        shrunk
    }

    /// Bytes `[start, end)` read as zeros from now on (a punched hole or a
    /// zeroed range); the size does not change.
    pub fn zero(&mut self, start: u64, end: u64) {
        let end = end.min(self.size);
        if start >= end {
            return;
        }
        self.forget(start, end);
        self.base = cut(&self.base, &RangeSet::from_ranges([(start, end)]));
        self.meta_dirty = true;
    }

    /// Drops `[start, end)` from every record of content.
    fn forget(&mut self, start: u64, end: u64) {
        self.dirty.remove(start, end);
        self.cuts.insert(start, end);
        if let Some(f) = &mut self.in_flight {
            f.rewritten.remove(start, end);
            f.holes.insert(start, end);
        }
    }

    /// Starts a seal of what is unsealed; None when nothing is, or a seal
    /// is already on its way (only one at a time: the next one is laid
    /// over its result).
    pub fn begin_seal(&mut self) -> Option<SealPlan> {
        if self.sealing() || !self.unsealed() {
            return None;
        }
        let mut ranges = self.dirty.clone();
        ranges.remove(self.size, u64::MAX);
        self.in_flight = Some(InFlight {
            ranges: ranges.clone(),
            rewritten: RangeSet::new(),
            holes: RangeSet::new(),
        });
        self.meta_dirty = false;
        Some(SealPlan {
            ranges,
            size: self.size,
            base: self.base.clone(),
        })
    }

    /// The seal of `plan` committed with `extents` (its [`SealPlan::extents`]).
    pub fn seal_committed(&mut self, plan_size: u64, extents: &[Extent]) {
        let Some(f) = self.in_flight.take() else {
            return;
        };
        self.base = truncate_extents(&cut(extents, &f.holes), self.size);
        if self.size != plan_size || !f.holes.is_empty() {
            // The namespace holds the snapshot; what changed since must follow.
            self.meta_dirty = true;
        }
        let mut done = f.ranges;
        done.subtract(&f.rewritten);
        self.dirty.subtract(&done);
        // The commit made every cut up to the snapshot durable.
        self.cuts = f.holes;
    }

    /// The seal in flight failed: everything it took is unsealed again.
    pub fn seal_failed(&mut self) {
        if self.in_flight.take().is_some() {
            self.meta_dirty = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ObjectId;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// One step of the simulation.
    #[derive(Debug, Clone)]
    enum Op {
        Write(u64, u64, u8),
        SetSize(u64),
        Zero(u64, u64),
        BeginSeal,
        /// The seal reads its ranges from the staging file (now, whatever
        /// was written or cut since its snapshot).
        SealRead,
        Commit,
        Fail,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u64..300, 1u64..80, any::<u8>()).prop_map(|(o, l, b)| Op::Write(o, l, b)),
            2 => (0u64..350).prop_map(Op::SetSize),
            1 => (0u64..300, 1u64..100).prop_map(|(a, l)| Op::Zero(a, a + l)),
            2 => Just(Op::BeginSeal),
            2 => Just(Op::SealRead),
            2 => Just(Op::Commit),
            1 => Just(Op::Fail),
        ]
    }

    /// The file as the mount reads it: dirty bytes from staging, the rest
    /// from the base extents' objects, zeros in holes.
    fn read_all(c: &Content, staging: &[u8], objects: &HashMap<ObjectId, Vec<u8>>) -> Vec<u8> {
        let mut out = vec![0u8; c.size() as usize];
        for e in c.base() {
            let obj = &objects[&e.object];
            for i in 0..e.len {
                out[(e.offset + i) as usize] = obj[(e.object_offset + i) as usize];
            }
        }
        for &(a, b) in c.dirty().ranges() {
            for i in a..b {
                out[i as usize] = staging.get(i as usize).copied().unwrap_or(0);
            }
        }
        out
    }

    /// Seals `p`'s ranges from the staging file as it is now: one object
    /// per range.
    fn seal_now(
        p: &SealPlan,
        staging: &[u8],
        objects: &mut HashMap<ObjectId, Vec<u8>>,
        next_id: &mut u32,
    ) -> Vec<Extent> {
        let mut sealed = Vec::new();
        for &(a, b) in p.ranges.ranges() {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&next_id.to_le_bytes());
            *next_id += 1;
            let bytes = (a..b)
                .map(|i| staging.get(i as usize).copied().unwrap_or(0))
                .collect();
            objects.insert(ObjectId(id), bytes);
            sealed.push(Extent {
                offset: a,
                len: b - a,
                object: ObjectId(id),
                object_offset: 0,
            });
        }
        p.extents(&sealed)
    }

    enum Seal {
        Planned(SealPlan),
        Read(SealPlan, Vec<Extent>),
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn reads_match_a_byte_model(ops in proptest::collection::vec(op(), 1..60)) {
            let mut c = Content::new(0, Vec::new());
            let mut model: Vec<u8> = Vec::new();
            let mut staging: Vec<u8> = Vec::new();
            let mut objects: HashMap<ObjectId, Vec<u8>> = HashMap::new();
            let mut seal: Option<Seal> = None;
            let mut next_id = 1u32;
            for op in ops {
                match op {
                    Op::Write(o, l, b) => {
                        let end = (o + l) as usize;
                        if staging.len() < end { staging.resize(end, 0); }
                        if model.len() < end { model.resize(end, 0); }
                        staging[o as usize..end].fill(b);
                        model[o as usize..end].fill(b);
                        c.write(o, l);
                    }
                    Op::SetSize(s) => {
                        if c.set_size(s) { staging.truncate(s as usize); }
                        model.resize(s as usize, 0);
                    }
                    Op::Zero(a, b) => {
                        c.zero(a, b);
                        let end = (b as usize).min(model.len());
                        if (a as usize) < end { model[a as usize..end].fill(0); }
                    }
                    Op::BeginSeal => {
                        if seal.is_none() && let Some(p) = c.begin_seal() {
                            seal = Some(Seal::Planned(p));
                        }
                    }
                    Op::SealRead => {
                        seal = match seal.take() {
                            Some(Seal::Planned(p)) => {
                                let ext = seal_now(&p, &staging, &mut objects, &mut next_id);
                                Some(Seal::Read(p, ext))
                            }
                            other => other,
                        };
                    }
                    Op::Commit => {
                        seal = match seal.take() {
                            Some(Seal::Read(p, ext)) => {
                                c.seal_committed(p.size, &ext);
                                None
                            }
                            other => other,
                        };
                    }
                    Op::Fail => {
                        if seal.take().is_some() { c.seal_failed(); }
                    }
                }
                prop_assert_eq!(read_all(&c, &staging, &objects), model.clone());
            }
            // Sealing until settled leaves the model's bytes in the extents.
            if seal.is_some() { c.seal_failed(); }
            for _ in 0..3 {
                if let Some(p) = c.begin_seal() {
                    let ext = seal_now(&p, &staging, &mut objects, &mut next_id);
                    c.seal_committed(p.size, &ext);
                }
            }
            prop_assert!(c.settled());
            prop_assert!(c.cuts().is_empty());
            prop_assert_eq!(read_all(&c, &[], &objects), model);
        }
    }

    #[test]
    fn shrink_and_grow_during_a_seal_reads_zeros() {
        // The reproduction: 64 KiB of 'A', sealed; shrunk to 4 KiB
        // and grown back while that seal commits.
        let mut c = Content::new(0, Vec::new());
        c.write(0, 65536);
        let p = c.begin_seal().expect("a seal");
        let obj = ObjectId([7; 16]);
        let ext = p.extents(&[Extent {
            offset: 0,
            len: 65536,
            object: obj,
            object_offset: 0,
        }]);
        assert!(c.set_size(4096));
        assert!(!c.set_size(65536));
        c.seal_committed(p.size, &ext);
        assert_eq!(
            c.base(),
            &[Extent {
                offset: 0,
                len: 4096,
                object: obj,
                object_offset: 0
            }]
        );
        assert!(c.dirty().is_empty());
        assert!(c.unsealed(), "the cut must be committed too");
    }
}
