//! `qsfs fsck VAULT [--repair] [--json]`: renders the vault's fsck report.

use std::io::Write;

use anyhow::Result;
use clap::Args;

use super::progress::Bar;
use super::{Ctx, VaultArg};
use crate::maint::{FileProblem, FsckOptions, FsckReport, KeyIssue, OrphanReason, ShardFault};

#[derive(Args, Debug)]
pub struct FsckArgs {
    #[command(flatten)]
    vault: VaultArg,
    /// Remove orphans (objects, key and backup records, shard and
    /// temporary files no file uses), finish queued deletions, and record
    /// missing shards as repair debt. Files are never removed.
    #[arg(long)]
    repair: bool,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

pub fn fsck(ctx: &Ctx, a: FsckArgs) -> Result<i32> {
    let bar = Bar::new(a.json);
    let opts = FsckOptions { repair: a.repair };
    // Inside the mount process when the vault is mounted.
    let report: FsckReport =
        super::maint::run(ctx, &a.vault.vault, "fsck", &opts, &bar, |v, p| {
            v.fsck(&opts, p)
        })?;
    super::maint::print(a.json, &report, |mut out, r| render(&mut out, r))?;
    if report.clean {
        return Ok(0);
    }
    let left = report.unresolved();
    if report.nodes_not_checked > 0 {
        // Whatever else was found, the shards of these nodes were not
        // looked at: "clean" cannot be claimed, and the next step differs.
        let names: Vec<&str> = report
            .nodes
            .iter()
            .filter(|n| n.not_checked.is_some())
            .map(|n| n.node.as_str())
            .collect();
        eprintln!(
            "qsfs: error: {} not checked ({}): see the NOT CHECKED lines above for what to do",
            match names.len() {
                1 => "1 node".to_string(),
                k => format!("{k} nodes"),
            },
            names.join(", ")
        );
    }
    // The other findings (a node not checked is none of fsck --repair's
    // business).
    let left = left.saturating_sub(report.nodes_not_checked as usize);
    if left == 0 {
        // Only nodes went unchecked: said above.
    } else if report.repair {
        eprintln!(
            "qsfs: error: {left} problems remain after repair; see the list above (files are never removed by fsck)"
        );
    } else {
        eprintln!(
            "qsfs: error: {left} problems found; `qsfs fsck --repair` removes orphans, files listed as broken need `qsfs keys repair`, `qsfs scrub --repair` or removal"
        );
    }
    Ok(1)
}

fn problem_text(p: &FileProblem) -> String {
    match p {
        FileProblem::ManifestMissing => "no manifest".into(),
        FileProblem::ManifestDamaged { detail } => format!("damaged manifest ({detail})"),
        FileProblem::TooFewShards { present, k } => {
            format!("only {present} of the {k} shards needed are on the nodes")
        }
        FileProblem::Key { issue } => match issue {
            KeyIssue::R1Missing => "R1 missing".into(),
            KeyIssue::R1Corrupt => "R1 fails B".into(),
            KeyIssue::R2Missing => "R2 missing".into(),
            KeyIssue::R2Corrupt => "R2 fails B".into(),
            KeyIssue::BackupMissing => "backup record B missing".into(),
            KeyIssue::BackupCorrupt => "backup record B damaged".into(),
            KeyIssue::ManifestMissing => "no manifest".into(),
            KeyIssue::ManifestDamaged => "damaged manifest".into(),
        },
    }
}

fn state(repair: bool, repaired: bool, note: Option<&str>) -> String {
    match (repaired, note) {
        (true, _) => "removed".into(),
        (false, Some(n)) => format!("kept: {n}"),
        (false, None) if repair => "NOT removed".into(),
        (false, None) => "orphan".into(),
    }
}

fn render(out: &mut impl Write, r: &FsckReport) -> std::io::Result<()> {
    for n in &r.nodes {
        match &n.not_checked {
            Some(why) => writeln!(
                out,
                "node {}: NOT CHECKED: {why}; next: {}",
                n.node,
                n.next_step.as_deref().unwrap_or("run fsck again")
            )?,
            None if n.missing > 0 => writeln!(
                out,
                "node {}: {} shard files, {} temporary files, {} placed shards missing",
                n.node, n.shards, n.leftovers, n.missing
            )?,
            None => writeln!(
                out,
                "node {}: {} shard files, {} temporary files",
                n.node, n.shards, n.leftovers
            )?,
        }
    }
    for b in &r.broken_files {
        let problems: Vec<String> = b.problems.iter().map(problem_text).collect();
        let verdict = if b.readable {
            "readable; heal it with `qsfs keys repair`"
        } else {
            "UNREADABLE"
        };
        writeln!(
            out,
            "broken file {} (object {}): {} -- {verdict}",
            b.path.as_deref().unwrap_or("<unlinked, still open>"),
            b.object,
            problems.join(", ")
        )?;
    }
    for (what, list) in [
        ("orphan object", &r.orphan_objects),
        ("orphan key record", &r.orphan_keys),
        ("orphan backup record", &r.orphan_backups),
    ] {
        for o in list {
            writeln!(
                out,
                "{what} {}: {}",
                o.object,
                state(r.repair, o.repaired, None)
            )?;
        }
    }
    for s in &r.orphan_shards {
        let why = match s.reason {
            OrphanReason::NoManifest => "no object",
            OrphanReason::WrongNode => "stale copy, the manifest places it elsewhere",
            OrphanReason::BadIndex => "no such shard index",
        };
        writeln!(
            out,
            "orphan shard {} on {} ({why}): {}",
            s.shard,
            s.node,
            state(r.repair, s.repaired, s.note.as_deref())
        )?;
    }
    for l in &r.leftovers {
        writeln!(
            out,
            "temporary file {} on {}: {}",
            l.file,
            l.node,
            state(r.repair, l.repaired, l.note.as_deref())
        )?;
    }
    for p in &r.shard_problems {
        let fault = match &p.fault {
            ShardFault::Missing => "missing".to_string(),
            ShardFault::WrongSize { size, expected } => {
                format!("{size} bytes instead of {expected}")
            }
            ShardFault::BadHeader { detail } => format!("bad header: {detail}"),
        };
        let st = if p.repaired {
            "recorded as repair debt; `qsfs scrub --repair` rebuilds it"
        } else {
            "`qsfs fsck --repair` records it, `qsfs scrub --repair` rebuilds it"
        };
        writeln!(out, "shard {} on {}: {fault} -- {st}", p.shard, p.node)?;
    }
    let pending = r.pending.gc.len() + r.pending.r2_cleanup.len();
    if pending > 0 {
        writeln!(
            out,
            "{} queued deletions, {} R2 shares waiting for their store: {}",
            r.pending.gc.len(),
            r.pending.r2_cleanup.len(),
            if r.pending.finished {
                "finished"
            } else {
                "pending"
            }
        )?;
    }
    for e in &r.errors {
        writeln!(out, "repair failed: {e}")?;
    }

    let repaired = |n: usize| {
        if r.repair { n.to_string() } else { "-".into() }
    };
    let count = |it: &mut dyn Iterator<Item = bool>| {
        let v: Vec<bool> = it.collect();
        (v.len(), v.iter().filter(|x| **x).count())
    };
    let rows = [
        ("nodes not checked", (r.nodes_not_checked as usize, 0)),
        ("broken files", (r.broken_files.len(), 0)),
        (
            "orphan objects",
            count(&mut r.orphan_objects.iter().map(|o| o.repaired)),
        ),
        (
            "orphan key records",
            count(&mut r.orphan_keys.iter().map(|o| o.repaired)),
        ),
        (
            "orphan backup records",
            count(&mut r.orphan_backups.iter().map(|o| o.repaired)),
        ),
        (
            "orphan shard files",
            count(&mut r.orphan_shards.iter().map(|o| o.repaired)),
        ),
        (
            "temporary files",
            count(&mut r.leftovers.iter().map(|o| o.repaired)),
        ),
        (
            "missing/damaged shards",
            count(&mut r.shard_problems.iter().map(|o| o.repaired)),
        ),
        (
            "queued deletions",
            (pending, if r.pending.finished { pending } else { 0 }),
        ),
    ];
    writeln!(
        out,
        "checked {} objects ({} named, {} in flight), {} shard files on {} nodes",
        r.objects,
        r.named,
        r.in_flight,
        r.shards,
        r.nodes.len()
    )?;
    writeln!(out, "{:<24} {:>8} {:>9}", "", "found", "repaired")?;
    for (name, (found, fixed)) in rows {
        writeln!(out, "{name:<24} {found:>8} {:>9}", repaired(fixed))?;
    }
    writeln!(
        out,
        "staging: {} files waiting to be sealed, {} files in the staging folder (the next mount seals them)",
        r.staging.pending_seals,
        r.staging.files.len()
    )?;
    for path in &r.staging.kept_stdin {
        writeln!(
            out,
            "staging: {path} is standard input a failed `qsfs put -` kept, in clear: store it with `qsfs put VAULT {path} PATH`, then remove it with `shred -u {path}`"
        )?;
    }
    writeln!(
        out,
        "{}",
        if r.clean {
            if r.found() == 0 {
                "clean"
            } else {
                "clean (everything found was repaired)"
            }
        } else {
            "NOT clean"
        }
    )
}
