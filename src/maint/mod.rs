//! Maintenance: everything that inspects or reshapes a vault after its
//! files were written, kept apart from the vault core (`crate::vault`:
//! open, config, lock, init, links, intents, seal, read, gc).
//!
//! Each run works over the vault's narrow API (`Vault::dispersal`,
//! `namespace`, `keystore`, `intents`, `config`) and is shaped like
//! `fsck/`: an orchestration that does the I/O, a serde report, and a pure
//! classifier where there are rules.
//!
//! ```text
//! scrub/     find and repair missing or corrupt shards (check, fix, orphans)
//! audit/     proof-of-possession audits and the deletion check
//! fsck/      whole-vault consistency (classify is pure, report is serde)
//! drain      move a node's shards elsewhere before it leaves
//! rebalance  even out shards over nodes
//! migrate    one verified shard move, used by drain and rebalance
//! keys       verify and repair key shares
//! nodes      add, remove and describe nodes
//! status     the vault at a glance
//! ```
//!
//! Long runs report progress as [`Progress`] events: the command line
//! draws a bar from them, and a mounted vault's control socket forwards
//! them to the command that asked, so both look the same.

pub mod audit;
mod drain;
pub mod fsck;
mod keys;
mod migrate;
mod nodes;
mod rebalance;
mod scrub;
mod status;

pub use audit::{AuditOptions, AuditReport};
pub use drain::{DeletionCheck, DrainOptions, DrainReport};
pub use fsck::{
    BrokenFile, FileProblem, FsckOptions, FsckReport, Leftover, NodeScan, Orphan, OrphanReason,
    OrphanShard, PendingDeletions, ShardFault, ShardProblem, StagingState,
};
pub use keys::{KeyIssue, KeyReport, KeysOptions, ObjectKeyState};
pub use migrate::ShardMove;
pub use nodes::{
    AddNodeOptions, AddNodeReport, DAMAGED, NodeInfo, NotChecked, RemoveNodeOptions,
    RemoveNodeReport, damage_detail,
};
pub use rebalance::{BalanceBy, NodeLoad, RebalanceOptions, RebalanceReport};
pub use scrub::{Finding, FindingKind, LostObject, NodeScrub, Outcome, ScrubOptions, ScrubReport};
pub use status::{MountStatus, NodeStatus, Status};

use serde::{Deserialize, Serialize};

/// One progress event of a maintenance run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Progress {
    /// A phase begins; `total` is its size in bytes (0: unknown).
    Phase {
        /// What the phase does ("scrub", "drain node-2", ...).
        name: String,
        /// Bytes the phase will process.
        total: u64,
    },
    /// `bytes` more were processed.
    Advance {
        /// Bytes processed since the last event.
        bytes: u64,
    },
    /// A finding worth a line of its own while the bar runs.
    Note {
        /// The text.
        text: String,
    },
}

/// Where a maintenance run sends its progress (called from any thread).
pub type ProgressFn<'a> = &'a (dyn Fn(Progress) + Sync);

/// A progress sink that drops everything.
pub fn no_progress(_: Progress) {}

/// Runs maintenance operation `op` with JSON `args` on `vault` and returns
/// its report as JSON: what the control socket of a mounted vault calls
/// (control.rs), so a command behaves the same mounted or not.
pub fn dispatch(
    vault: &crate::vault::Vault,
    op: &str,
    args: serde_json::Value,
    progress: ProgressFn,
) -> Result<serde_json::Value, String> {
    match op {
        "scrub" => call(args, |o| vault.scrub(o, progress)),
        "audit" => call(args, |o| vault.audit(o, progress)),
        "fsck" => call(args, |o| vault.fsck(o, progress)),
        "drain" => call(args, |o| vault.drain(o, progress)),
        "rebalance" => call(args, |o| vault.rebalance(o, progress)),
        "node-list" => call(args, |(): &()| vault.node_list()),
        "status" => call(args, |(): &()| vault.status()),
        "shred" => call(args, |(): &()| vault.shred()),
        "backup" => call(args, |(): &()| vault.backup_metadata()),
        "keys" => call(args, |o: &crate::maint::keys::KeysOptions| {
            vault.check_keys(o.repair)
        }),
        _ => Err(format!("unknown maintenance operation {op:?}")),
    }
}

/// Decodes the options, runs `f`, encodes the report.
fn call<O: serde::de::DeserializeOwned, R: Serialize>(
    args: serde_json::Value,
    f: impl FnOnce(&O) -> Result<R, crate::vault::VaultError>,
) -> Result<serde_json::Value, String> {
    let opts: O = serde_json::from_value(args).map_err(|e| format!("bad options: {e}"))?;
    let report = f(&opts).map_err(|e| e.to_string())?;
    serde_json::to_value(report).map_err(|e| format!("cannot encode the report: {e}"))
}
