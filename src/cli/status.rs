//! `qsfs status`.

use std::io::Write;

use anyhow::Result;
use clap::Args;

use super::{Ctx, VaultArg, format::bytes};
use crate::control::{self, ControlError};
use crate::maint::Status;
use crate::node::NodeHealth;
use crate::vault::LinkKind;

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    vault: VaultArg,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// Pools below this fraction get a warning line.
const LOW_POOL: f64 = 0.10;

pub fn status(ctx: &Ctx, a: StatusArgs) -> Result<i32> {
    // A mounted vault answers through its mount process, which adds what
    // it holds unsealed.
    let s: Status = match control::call(&a.vault.vault, "status", serde_json::json!(null), &|_| {})
    {
        Ok(v) => serde_json::from_value(v)
            .map_err(|e| anyhow::anyhow!("undecodable status from the mount process: {e}"))?,
        Err(ControlError::NotMounted(_)) => match ctx.open(&a.vault.vault) {
            Ok(v) => v.status()?,
            Err(e) => {
                // Locked out: what unlocks it and who answers is what helps.
                if matches!(
                    e.downcast_ref::<crate::vault::VaultError>(),
                    Some(crate::vault::VaultError::Unlock(_))
                ) {
                    print_locked(&a.vault.vault);
                }
                return Err(e);
            }
        },
        Err(e) => return Err(e.into()),
    };
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &s)?;
        writeln!(out)?;
        return Ok(0);
    }
    writeln!(out, "vault     {} (id {})", s.vault.display(), s.vault_id)?;
    writeln!(
        out,
        "erasure   any {} of {} shards rebuild a file; write quorum {}; codec {}",
        s.k, s.n, s.write_quorum, s.codec
    )?;
    let r = &s.random;
    let mut random = r.kind.clone();
    if let Some(p) = &r.path {
        random.push_str(&format!(" {}", p.display()));
    }
    if let (Some(left), Some(total)) = (r.remaining, r.total) {
        let frac = if total > 0 {
            left as f64 / total as f64
        } else {
            0.0
        };
        random.push_str(&format!(
            ": {} of {} left ({:.1}%)",
            bytes(left),
            bytes(total),
            frac * 100.0
        ));
        if frac < LOW_POOL {
            random.push_str(" -- LOW: load a new pool file soon");
        }
    }
    if let Some(note) = &r.note {
        random.push_str(&format!(" ({note})"));
    }
    writeln!(out, "random    {random}")?;
    writeln!(
        out,
        "keystore  R1 {}; R2 {}{}",
        s.keystore_r1.display(),
        s.keystore_r2.display(),
        if s.keystore_r2_available {
            ""
        } else {
            " (NOT AVAILABLE)"
        }
    )?;
    if s.unlock.is_empty() {
        writeln!(
            out,
            "unlock    NONE SET: key records are kept in clear (vault from an older qsfs); seal them with `qsfs unlock add {} passphrase`",
            s.vault.display()
        )?;
    }
    for m in &s.unlock {
        if m.kind == "none" {
            writeln!(
                out,
                "unlock    {} NONE: the vault key is stored in clear; anyone with a copy of the vault folder reads every file (tests only; `qsfs unlock add` fixes it)",
                m.name
            )?;
        } else {
            writeln!(out, "unlock    {} ({}: {})", m.name, m.kind, m.detail)?;
        }
    }
    for h in &s.holders {
        match &h.problem {
            None => writeln!(
                out,
                "holder    {} at {} ({}): answers",
                h.name, h.addr, h.method
            )?,
            Some(p) => writeln!(
                out,
                "holder    {} at {} ({}): {p}",
                h.name, h.addr, h.method
            )?,
        }
    }
    writeln!(
        out,
        "shred     {} live epoch key(s); {} deleted key record(s) waiting for a shred pass",
        s.epochs, s.pending_shreds
    )?;
    if s.backup_records == "nodes" {
        writeln!(
            out,
            "backup B  on the nodes: each file's backup record is split {}-of-{} beside its shards; this machine keeps none",
            s.k, s.n
        )?;
    } else {
        writeln!(
            out,
            "backup B  on this machine, sealed in the keystore (`qsfs init --backup-records nodes` keeps it off)"
        )?;
    }
    if s.meta_backup > 0 {
        writeln!(
            out,
            "metadata  backed up to the nodes: the last snapshot this vault wrote is {}, with {} journal entr{} after it (a mount journals every change within a second; changes made outside a mount wait for `qsfs backup`)",
            s.meta_backup,
            s.meta_journal_entries,
            if s.meta_journal_entries == 1 {
                "y"
            } else {
                "ies"
            }
        )?;
    } else {
        writeln!(
            out,
            "metadata  not backed up to the nodes: the vault folder is the only copy of names and keys (`qsfs backup VAULT` starts backups)"
        )?;
    }
    writeln!(
        out,
        "content   {} files, {} folders, {} objects",
        s.files, s.directories, s.objects
    )?;
    writeln!(
        out,
        "bytes     {} logical (file sizes), {} stored, overhead {:.2}x",
        bytes(s.logical_bytes),
        bytes(s.stored_bytes),
        s.overhead
    )?;
    if let Some(line) = reach_line(&s) {
        writeln!(out, "{line}")?;
    }
    if s.degraded_objects == 0 && s.placed_missing == 0 {
        writeln!(out, "repair    nothing owed")?;
    } else if s.degraded_objects == 0 {
        writeln!(
            out,
            "repair    nothing recorded as owed, but {} missing from their nodes (below)",
            shards(s.placed_missing)
        )?;
    } else {
        writeln!(
            out,
            "repair    {} objects below full redundancy miss {} shards (degraded writes or lost shards; still readable while at least k remain; `qsfs scrub --repair` rebuilds them)",
            s.degraded_objects, s.missing_shards
        )?;
    }
    writeln!(
        out,
        "unplaced  {} (recorded missing in their manifests: never placed, or found missing since)",
        shards(s.shards_unplaced)
    )?;
    let per_node = |count: fn(&crate::maint::NodeStatus) -> u64| {
        s.nodes
            .iter()
            .filter(|n| count(n) > 0)
            .map(|n| format!("{} {}", n.name, count(n)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if s.placed_missing == 0 {
        writeln!(
            out,
            "missing   0 shards (placed on a checked node, not recorded missing, and not there)"
        )?;
    } else {
        writeln!(
            out,
            "missing   {} (placed on a checked node, not recorded missing, and not there: {}); `qsfs fsck --repair` records them, `qsfs scrub --repair` rebuilds them",
            shards(s.placed_missing),
            per_node(|n| n.placed_missing)
        )?;
    }
    if s.placed_unchecked > 0 || s.nodes.iter().any(|n| n.not_checked.is_some()) {
        writeln!(
            out,
            "unchecked {} placed on nodes that could not be checked ({}); see the nodes below",
            shards(s.placed_unchecked),
            s.nodes
                .iter()
                .filter_map(|n| n.not_checked.as_ref().map(|w| format!("{}: {w}", n.name)))
                .collect::<Vec<_>>()
                .join("; ")
        )?;
    }
    if let Some(m) = &s.mount {
        if m.staged_files == 0 {
            writeln!(
                out,
                "staged    nothing: the mount has sealed everything written"
            )?;
        } else {
            writeln!(
                out,
                "staged    {} files with {} written and not sealed yet{}",
                m.staged_files,
                bytes(m.staged_bytes),
                if m.failing_files > 0 {
                    format!(
                        "; {} failing to seal, retried in the background (see VAULT/qsfs.log)",
                        m.failing_files
                    )
                } else {
                    String::new()
                }
            )?;
        }
    }
    if s.pending_deletions > 0 {
        writeln!(
            out,
            "deletes   {} objects waiting to be destroyed",
            s.pending_deletions
        )?;
    }
    writeln!(out, "nodes")?;
    writeln!(
        out,
        "  {:<10} {:<9} {:>9} {:>10} {:>10}  location",
        "name", "health", "shards", "bytes", "free"
    )?;
    for n in &s.nodes {
        let damage;
        let (health, detail) = match &n.health {
            NodeHealth::Ok if n.shards_missing > 0 => {
                damage = format!(
                    "{} placed here are missing; reads go around them; run `qsfs scrub --repair`",
                    match n.shards_missing {
                        1 => "1 shard".to_string(),
                        m => format!("{m} shards"),
                    }
                );
                ("DAMAGED", Some(&damage))
            }
            NodeHealth::Ok => match &n.degraded {
                Some(d) => ("DEGRADED", Some(d)),
                None => ("ok", None),
            },
            NodeHealth::Offline(d) => ("OFFLINE", Some(d)),
            NodeHealth::ReadOnly(d) => ("READONLY", Some(d)),
            NodeHealth::Foreign(d) => ("FOREIGN", Some(d)),
        };
        writeln!(
            out,
            "  {:<10} {:<9} {:>9} {:>10} {:>10}  {}",
            n.name,
            health,
            format!("{}/{}", n.shards_found, n.shards_expected),
            bytes(n.bytes),
            n.space
                .map(|s| bytes(s.available))
                .unwrap_or_else(|| "-".into()),
            n.location
        )?;
        if n.dead_bytes > 0 {
            writeln!(
                out,
                "  {:<10} {} of its packs hold deleted shards (reclaimed online once half a pack is dead)",
                "",
                bytes(n.dead_bytes)
            )?;
        }
        if let Some(d) = detail {
            writeln!(out, "             {d}")?;
        }
        if let Some(why) = &n.not_checked {
            writeln!(
                out,
                "             shards not checked: {why}; next: {}",
                n.next_step.as_deref().unwrap_or("")
            )?;
        } else if n.placed_missing > 0 && n.placed_missing < n.shards_missing {
            writeln!(
                out,
                "             of them {} not recorded as repair debt yet (`qsfs fsck` lists them)",
                n.placed_missing
            )?;
        }
        if n.leftovers > 0 {
            writeln!(
                out,
                "             {} temporary files of interrupted writes",
                n.leftovers
            )?;
        }
    }
    writeln!(out, "links")?;
    writeln!(
        out,
        "  {:<10} {:<12} {:>10} {:>10}  source",
        "node", "kind", "keys left", "keys used"
    )?;
    for l in &s.links {
        let kind = match l.kind {
            LinkKind::Direct => "direct",
            LinkKind::InProcess => "qkd local",
            LinkKind::PoolFile => "qkd pool",
            LinkKind::Kme => "qkd kme",
            LinkKind::Plaintext => "PLAINTEXT",
        };
        let (left, used) = match l.counts {
            Some(c) => (c.left.to_string(), c.used.to_string()),
            None => ("-".into(), "-".into()),
        };
        let mut source = l.source.clone().unwrap_or_else(|| "-".into());
        if l.refills {
            source.push_str(" (simulated link, refilled)");
        }
        match l.sealed {
            Some(true) => source.push_str(", sealed"),
            Some(false) => source.push_str(", KEYS IN CLEAR"),
            None => {}
        }
        writeln!(
            out,
            "  {:<10} {:<12} {:>10} {:>10}  {}",
            l.node, kind, left, used, source
        )?;
        if let Some(p) = &l.problem {
            writeln!(out, "             PROBLEM: {p}")?;
        }
        if l.sealed == Some(false) {
            writeln!(
                out,
                "             its key pool is not behind the vault's unlock: keep it off any copy of the \
                 vault folder, or take it in with `qsfs node remove` and `qsfs node add --keypool`"
            )?;
        }
        if l.low {
            writeln!(
                out,
                "             LOW: under 10% of its keys left; {}",
                if l.refills {
                    "it refills at the configured key rate while qsfs runs"
                } else {
                    "load fresh keys (a new key pool pair, or ask the KME operator)"
                }
            )?;
        }
    }
    Ok(0)
}

/// "1 shard", "6 shards".
fn shards(n: u64) -> String {
    if n == 1 {
        "1 shard".into()
    } else {
        format!("{n} shards")
    }
}

/// A warning when too few nodes answer to read (fewer than k) or to write
/// (fewer than the write quorum): the per-node table says which, this line
/// says what it means for the files.
fn reach_line(s: &Status) -> Option<String> {
    let readable = s
        .nodes
        .iter()
        .filter(|n| matches!(n.health, NodeHealth::Ok | NodeHealth::ReadOnly(_)))
        .count();
    let writable = s
        .nodes
        .iter()
        .filter(|n| n.health == NodeHealth::Ok)
        .count();
    if readable < s.k {
        Some(format!(
            "reach     ONLY {readable} of {} nodes answer, fewer than the k={} a file needs: files cannot be read or written until nodes return (see the nodes below)",
            s.nodes.len(),
            s.k
        ))
    } else if writable < s.write_quorum {
        Some(format!(
            "reach     only {writable} of {} nodes take writes, fewer than the write quorum {}: files read, but new data stays staged until nodes return",
            s.nodes.len(),
            s.write_quorum
        ))
    } else {
        None
    }
}

/// The unlock methods and key holders of a vault that did not open.
fn print_locked(vault: &std::path::Path) {
    let Ok(cfg) = crate::vault::Config::load(vault) else {
        return;
    };
    if let Ok(methods) = crate::unlock::list(vault, &cfg.vault_id) {
        for m in methods {
            println!("unlock    {} ({}: {})", m.name, m.kind, m.detail);
        }
    }
    if let Ok(holders) = crate::unlock::holder_health(vault, &cfg.vault_id) {
        for h in holders {
            match h.problem {
                None => println!("holder    {} at {} ({}): answers", h.name, h.addr, h.method),
                Some(p) => println!("holder    {} at {} ({}): {p}", h.name, h.addr, h.method),
            }
        }
    }
}
