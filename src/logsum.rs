//! Repeated warnings, summarised: one line per node and cause, not one per
//! read.
//!
//! Why: while a node's shards are gone every read goes around them, and a
//! warning per read and per shard buried the log (18,508 lines in two
//! minutes in one report) under the same fact. Here the first occurrence
//! of a (node, cause) is logged at once, in full; later ones are counted,
//! and at most once per interval a summary says how many shards and reads
//! were concerned and what to do ("node-1: 4477 shards missing in the last
//! 60 s (9012 reads went around them); run `qsfs scrub --repair`"). A
//! (node, cause) quiet for a whole interval starts over: its next
//! occurrence is logged in full again.
//!
//! [`Repeats`] is the pure logic, driven by the instants it is given (the
//! tests step a clock by hand); [`Warnings`] wraps it with a clock and the
//! log. Summaries are due when the next warning comes, when
//! [`Warnings::tick`] runs (the mount's committer calls it every couple of
//! seconds while idle) and, for whatever is left, when it is dropped.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::ObjectId;

/// How often a repeating warning is summarised.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// Distinct shards (or objects) counted per summary; past that the
/// summary says "at least".
const MAX_DISTINCT: usize = 1 << 16;

/// Why a warning repeats. Each cause has its own words and next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cause {
    /// A shard file the manifest places on the node is not there.
    ShardMissing,
    /// A shard is there but damaged (a chunk fails its hash, it is short).
    ShardCorrupt,
    /// The node could not be read (an I/O error, a link failure) while it
    /// looked usable.
    NodeUnreadable,
    /// The node is offline: its folder is missing or has no node marker,
    /// or its server does not answer. Apart from [`Cause::NodeUnreadable`]
    /// because the next step differs: `qsfs scrub --repair` never writes
    /// into a missing or unmarked folder (it may be an unmounted disk's
    /// mount point), so the folder must come back or a replacement be
    /// adopted, which needs the vault unmounted.
    NodeOffline,
    /// A write could not place its shard on the node (repair debt).
    WriteFailed,
    /// An object's key share or backup record is damaged or missing
    /// (reads use the other share; the subject is the keystore).
    KeyDamaged,
    /// A file's seal reached fewer nodes than the write quorum; its data
    /// stays staged and the mount retries it (the subject is the mount).
    QuorumMissed,
}

impl Cause {
    /// What was counted (one, many), and what the reads or writes did
    /// about it.
    fn words(self) -> (&'static str, &'static str, &'static str) {
        const AROUND: &str = "reads went around them";
        match self {
            Cause::ShardMissing => ("shard missing", "shards missing", AROUND),
            Cause::ShardCorrupt => ("shard damaged", "shards damaged", AROUND),
            Cause::NodeUnreadable => ("shard unreadable", "shards unreadable", AROUND),
            Cause::NodeOffline => (
                "shard unreadable (node offline)",
                "shards unreadable (node offline)",
                AROUND,
            ),
            Cause::WriteFailed => (
                "object written without its shard there",
                "objects written without their shard there",
                "writes recorded repair debt",
            ),
            Cause::QuorumMissed => (
                "file not sealed (too few nodes for the write quorum)",
                "files not sealed (too few nodes for the write quorum)",
                "their data stays staged and is retried in the background",
            ),
            Cause::KeyDamaged => (
                "object with damaged or missing key material",
                "objects with damaged or missing key material",
                "reads used the other key share",
            ),
        }
    }

    /// What to do about it on `node`. The log has no vault path at hand,
    /// so commands name it `VAULT` (and the mount point `MOUNTPOINT`), as
    /// the node's own messages do.
    pub fn next_step(self, node: &str) -> String {
        match self {
            Cause::ShardMissing | Cause::ShardCorrupt => {
                "run `qsfs scrub --repair` to rebuild them".into()
            }
            Cause::NodeUnreadable => {
                "check the node (`qsfs node list`), then run `qsfs scrub --repair`".into()
            }
            Cause::NodeOffline => format!(
                "restore {node}'s folder (mount its disk, or start its node server); if it is lost \
                 for good, after `qsfs umount MOUNTPOINT` (when mounted) run `qsfs node adopt VAULT \
                 {node}` on an empty replacement folder, then `qsfs scrub --repair` rebuilds its \
                 shards"
            ),
            Cause::WriteFailed => format!(
                "bring {node} back (if its folder is missing or has no node marker: restore it, or \
                 after `qsfs umount MOUNTPOINT` run `qsfs node adopt VAULT {node}` on an empty \
                 replacement folder), then run `qsfs scrub --repair`"
            ),
            Cause::QuorumMissed => {
                "bring the nodes back (`qsfs node list`); `qsfs status` shows what is staged".into()
            }
            Cause::KeyDamaged => "run `qsfs keys repair` (after unmounting)".into(),
        }
    }
}

/// The item a warning is about: a shard (`object`, `index`) or a whole
/// object (`index` none); distinct items are what a summary counts.
pub fn item(object: &ObjectId, index: Option<u8>) -> u128 {
    let base = u128::from_be_bytes(object.0);
    match index {
        Some(i) => base.rotate_left(8) ^ (u128::from(i) + 1),
        None => base,
    }
}

/// A line to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// The first occurrence of a (node, cause), in full.
    First {
        /// The node.
        node: String,
        /// The cause.
        cause: Cause,
        /// The caller's full message.
        detail: String,
        /// The summary interval, for the note that more are summarised.
        every: Duration,
    },
    /// What happened since the last line about a (node, cause).
    Summary {
        /// The node.
        node: String,
        /// The cause.
        cause: Cause,
        /// Occurrences (reads, writes) counted.
        events: u64,
        /// Distinct shards or objects among them.
        distinct: u64,
        /// More distinct items than were kept count of.
        at_least: bool,
        /// Length of the period summarised.
        period: Duration,
        /// One of the messages summarised.
        example: String,
    },
}

impl Line {
    /// The text to log.
    pub fn text(&self) -> String {
        match self {
            Line::First {
                node,
                detail,
                every,
                ..
            } => format!(
                "{detail} (further warnings like this about {node} are summarised every {} s)",
                every.as_secs()
            ),
            Line::Summary {
                node,
                cause,
                events,
                distinct,
                at_least,
                period,
                example,
            } => {
                let (one, many, done) = cause.words();
                format!(
                    "{node}: {}{distinct} {} in the last {} s ({events} {}: {done}); {}; for example: {example}",
                    if *at_least { "at least " } else { "" },
                    if *distinct == 1 { one } else { many },
                    period.as_secs().max(1),
                    if *events == 1 { "time" } else { "times" },
                    cause.next_step(node),
                )
            }
        }
    }
}

#[derive(Debug)]
struct Entry {
    /// Start of the current period (the first line, or the last summary).
    since: Instant,
    /// Occurrences in this period not logged yet.
    events: u64,
    /// Distinct items among them (up to [`MAX_DISTINCT`]).
    items: HashSet<u128>,
    at_least: bool,
    /// The first message of this period.
    example: Option<String>,
}

/// The counting, by the instants given: no clock, no log.
#[derive(Debug)]
pub struct Repeats {
    every: Duration,
    entries: BTreeMap<(String, Cause), Entry>,
}

impl Repeats {
    /// Summaries at most every `every`.
    pub fn new(every: Duration) -> Repeats {
        Repeats {
            every,
            entries: BTreeMap::new(),
        }
    }

    /// One occurrence of `cause` on `node` about `item` at `now`; returns
    /// the lines to log now (the first occurrence in full, and summaries
    /// that are due, of this or any other node). `detail` is only called
    /// for a message that may be shown.
    pub fn record(
        &mut self,
        now: Instant,
        node: &str,
        cause: Cause,
        item: u128,
        detail: impl FnOnce() -> String,
    ) -> Vec<Line> {
        let mut out = self.due(now);
        let key = (node.to_string(), cause);
        match self.entries.get_mut(&key) {
            None => {
                out.push(Line::First {
                    node: node.to_string(),
                    cause,
                    detail: detail(),
                    every: self.every,
                });
                self.entries.insert(
                    key,
                    Entry {
                        since: now,
                        events: 0,
                        items: HashSet::new(),
                        at_least: false,
                        example: None,
                    },
                );
            }
            Some(e) => {
                e.events += 1;
                if e.items.len() < MAX_DISTINCT {
                    e.items.insert(item);
                } else if !e.items.contains(&item) {
                    e.at_least = true;
                }
                if e.example.is_none() {
                    e.example = Some(detail());
                }
            }
        }
        out
    }

    /// Summaries due at `now`; forgets (node, cause) pairs quiet for a
    /// whole period, so their next occurrence is logged in full.
    pub fn due(&mut self, now: Instant) -> Vec<Line> {
        let every = self.every;
        let mut out = Vec::new();
        self.entries.retain(|(node, cause), e| {
            let period = now.saturating_duration_since(e.since);
            if period < every {
                return true;
            }
            if e.events == 0 {
                return false;
            }
            out.push(summary(node, *cause, e, period));
            *e = Entry {
                since: now,
                events: 0,
                items: HashSet::new(),
                at_least: false,
                example: None,
            };
            true
        });
        out
    }

    /// Summaries of everything counted and not yet logged (at the end).
    pub fn flush(&mut self, now: Instant) -> Vec<Line> {
        let entries = std::mem::take(&mut self.entries);
        entries
            .into_iter()
            .filter(|(_, e)| e.events > 0)
            .map(|((node, cause), e)| {
                let period = now.saturating_duration_since(e.since);
                summary(&node, cause, &e, period)
            })
            .collect()
    }
}

fn summary(node: &str, cause: Cause, e: &Entry, period: Duration) -> Line {
    Line::Summary {
        node: node.to_string(),
        cause,
        events: e.events,
        distinct: e.items.len() as u64,
        at_least: e.at_least,
        period,
        example: e.example.clone().unwrap_or_default(),
    }
}

/// [`Repeats`] on the system clock, writing to the log at WARN level.
pub struct Warnings {
    repeats: Mutex<Repeats>,
    clock: Box<dyn Fn() -> Instant + Send + Sync>,
}

impl std::fmt::Debug for Warnings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Warnings").finish_non_exhaustive()
    }
}

impl Default for Warnings {
    fn default() -> Self {
        Warnings::new(SUMMARY_EVERY)
    }
}

impl Warnings {
    /// Summaries at most every `every`, on the system clock.
    pub fn new(every: Duration) -> Warnings {
        Warnings::with_clock(every, Box::new(Instant::now))
    }

    /// Summaries at most every `every`, on `clock`.
    pub fn with_clock(every: Duration, clock: Box<dyn Fn() -> Instant + Send + Sync>) -> Warnings {
        Warnings {
            repeats: Mutex::new(Repeats::new(every)),
            clock,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Repeats> {
        self.repeats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Warns about `cause` on `node` (see [`Repeats::record`]).
    pub fn warn(&self, node: &str, cause: Cause, item: u128, detail: impl FnOnce() -> String) {
        let now = (self.clock)();
        let lines = self.lock().record(now, node, cause, item, detail);
        log(lines);
    }

    /// Logs the summaries that are due.
    pub fn tick(&self) {
        let now = (self.clock)();
        let lines = self.lock().due(now);
        log(lines);
    }

    /// Logs everything counted and not yet logged.
    pub fn flush(&self) {
        let now = (self.clock)();
        let lines = self.lock().flush(now);
        log(lines);
    }
}

impl Drop for Warnings {
    fn drop(&mut self) {
        self.flush();
    }
}

fn log(lines: Vec<Line>) {
    for l in lines {
        tracing::warn!("{}", l.text());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn shard(i: u8) -> u128 {
        item(&ObjectId([7; 16]), Some(i))
    }

    #[test]
    fn first_in_full_then_one_summary_per_period() {
        let t0 = Instant::now();
        let mut r = Repeats::new(MIN);
        let first = r.record(t0, "node-1", Cause::ShardMissing, shard(0), || "one".into());
        assert_eq!(first.len(), 1);
        assert!(matches!(&first[0], Line::First { detail, .. } if detail == "one"));
        assert!(first[0].text().contains("summarised every 60 s"));
        // 10,000 reads over 59 s: nothing more.
        for n in 0..10_000u32 {
            let at = t0 + Duration::from_millis(u64::from(n) * 5);
            let lines = r.record(
                at,
                "node-1",
                Cause::ShardMissing,
                shard((n % 50) as u8),
                || format!("read {n}"),
            );
            assert!(lines.is_empty(), "line at read {n}: {lines:?}");
        }
        // The next one after the period brings the summary of the period.
        let lines = r.record(t0 + MIN, "node-1", Cause::ShardMissing, shard(1), || {
            "late".into()
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        match &lines[0] {
            Line::Summary {
                events,
                distinct,
                at_least,
                period,
                example,
                ..
            } => {
                assert_eq!((*events, *distinct, *at_least), (10_000, 50, false));
                assert_eq!(*period, MIN);
                assert_eq!(example, "read 0");
            }
            other => panic!("{other:?}"),
        }
        let text = lines[0].text();
        assert!(
            text.starts_with("node-1: 50 shards missing in the last 60 s (10000 times"),
            "{text}"
        );
        assert!(text.contains("qsfs scrub --repair"), "{text}");
        // The one that came with the summary counts for the next period.
        let end = r.flush(t0 + MIN + Duration::from_secs(1));
        assert!(
            matches!(
                &end[..],
                [Line::Summary {
                    events: 1,
                    distinct: 1,
                    ..
                }]
            ),
            "{end:?}"
        );
    }

    #[test]
    fn nodes_and_causes_are_counted_apart() {
        let t0 = Instant::now();
        let mut r = Repeats::new(MIN);
        let mut lines = Vec::new();
        for node in ["node-1", "node-3"] {
            for cause in [Cause::ShardMissing, Cause::ShardCorrupt] {
                for i in 0..3 {
                    lines.extend(
                        r.record(t0, node, cause, shard(i), || format!("{node} {cause:?}")),
                    );
                }
            }
        }
        let firsts: Vec<_> = lines
            .iter()
            .filter(|l| matches!(l, Line::First { .. }))
            .collect();
        assert_eq!(firsts.len(), 4, "{lines:?}");
        assert_eq!(lines.len(), 4);
        let due = r.due(t0 + MIN);
        assert_eq!(due.len(), 4, "{due:?}");
        assert!(due.iter().all(|l| matches!(
            l,
            Line::Summary {
                events: 2,
                distinct: 2,
                ..
            }
        )));
    }

    #[test]
    fn an_offline_node_is_told_to_come_back_or_be_adopted_after_umount() {
        let t0 = Instant::now();
        let mut r = Repeats::new(MIN);
        for i in 0..3 {
            r.record(t0, "node-2", Cause::NodeOffline, shard(i), || "x".into());
        }
        let due = r.due(t0 + MIN);
        let text = due[0].text();
        assert!(
            text.starts_with("node-2: 2 shards unreadable (node offline) in the last 60 s"),
            "{text}"
        );
        for want in [
            "restore node-2's folder",
            "after `qsfs umount MOUNTPOINT` (when mounted) run `qsfs node adopt VAULT node-2`",
            "`qsfs scrub --repair`",
        ] {
            assert!(text.contains(want), "{want:?} not in {text}");
        }
        // Missing shards on a node that answers: scrub rebuilds them in
        // place, no adopting.
        assert!(!Cause::ShardMissing.next_step("node-2").contains("adopt"));
        assert!(
            Cause::WriteFailed
                .next_step("node-2")
                .contains("node adopt VAULT node-2")
        );
    }

    #[test]
    fn a_quiet_period_starts_over() {
        let t0 = Instant::now();
        let mut r = Repeats::new(MIN);
        r.record(t0, "node-2", Cause::WriteFailed, 1, || "a".into());
        // Nothing counted since the first line: no summary, and after a
        // quiet period the next occurrence is logged in full again.
        assert!(r.due(t0 + MIN).is_empty());
        let again = r.record(t0 + MIN * 2, "node-2", Cause::WriteFailed, 2, || "b".into());
        assert!(
            matches!(&again[..], [Line::First { detail, .. }] if detail == "b"),
            "{again:?}"
        );
        // Not before the period is over.
        let t1 = t0 + MIN * 2;
        r.record(t1, "node-2", Cause::WriteFailed, 3, || "c".into());
        assert!(
            r.due((t1 + MIN).checked_sub(Duration::from_millis(1)).unwrap())
                .is_empty()
        );
        assert_eq!(r.due(t1 + MIN).len(), 1);
        assert!(r.flush(t1 + MIN * 3).is_empty(), "nothing left to say");
    }

    #[test]
    fn detail_is_built_only_when_shown() {
        let t0 = Instant::now();
        let mut r = Repeats::new(MIN);
        let mut built = 0;
        for i in 0..100u8 {
            r.record(t0, "node-0", Cause::ShardCorrupt, shard(i), || {
                built += 1;
                String::new()
            });
        }
        assert_eq!(built, 2, "the first line and one example");
    }

    #[test]
    fn distinct_items_are_capped() {
        let t0 = Instant::now();
        let mut r = Repeats::new(MIN);
        for i in 0..(MAX_DISTINCT as u128 + 10) {
            r.record(t0, "node-4", Cause::ShardMissing, i, String::new);
        }
        let due = r.due(t0 + MIN);
        assert!(
            matches!(&due[..], [Line::Summary { at_least: true, distinct, .. }] if *distinct == MAX_DISTINCT as u64),
            "{due:?}"
        );
        assert!(due[0].text().contains("at least"));
    }

    #[test]
    fn warnings_use_the_given_clock() {
        let now = std::sync::Arc::new(Mutex::new(Instant::now()));
        let c = std::sync::Arc::clone(&now);
        let w = Warnings::with_clock(
            MIN,
            Box::new(move || *c.lock().unwrap_or_else(std::sync::PoisonError::into_inner)),
        );
        for i in 0..5 {
            w.warn("node-1", Cause::ShardMissing, shard(i), || "x".into());
        }
        let pending = |w: &Warnings| w.lock().entries.values().map(|e| e.events).sum::<u64>();
        assert_eq!(pending(&w), 4);
        w.tick();
        assert_eq!(pending(&w), 4, "not due yet");
        *now.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) += MIN;
        w.tick();
        assert_eq!(pending(&w), 0, "summarised");
    }
}
