//! `qsfs scrub VAULT [--repair] [--json]`: renders a [`ScrubReport`].

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Result;
use clap::Args;

use super::progress::Bar;
use super::{Ctx, VaultArg, format::bytes};
use crate::maint::{Finding, Outcome, ScrubOptions, ScrubReport};

/// Exit status when damage remains that a repair could still fix.
pub const EXIT_DAMAGED: i32 = 1;
/// Exit status when files are lost (some stripe has fewer than k good chunks).
pub const EXIT_LOST: i32 = 2;

/// Findings listed one per line before "... and N more".
const MAX_LINES: usize = 40;

/// The exit statuses, for `qsfs scrub --help`.
pub const EXIT_HELP: &str = "Exit status: 0 when everything is healthy or everything found was \
repaired; 1 when damage remains (run with --repair, or read the notes on what blocks the \
repair); 2 when files are lost (a stripe has fewer than k good chunks: restore those files \
from a backup). Errors that stop the scrub also exit with 1.";

#[derive(Args, Debug)]
pub struct ScrubArgs {
    #[command(flatten)]
    vault: VaultArg,
    /// Rebuild missing and damaged shards (on their own node, or on a free
    /// node when theirs is gone), clear stale repair debt, add audit roots
    /// to old manifests, and remove orphaned shard files. Lost files are
    /// never touched.
    #[arg(long)]
    repair: bool,
    /// Print the report as JSON on stdout (no progress bar).
    #[arg(long)]
    json: bool,
}

pub fn scrub(ctx: &Ctx, a: ScrubArgs) -> Result<i32> {
    let bar = Bar::new(a.json);
    let opts = ScrubOptions { repair: a.repair };
    // Inside the mount process when the vault is mounted.
    let report: ScrubReport =
        super::maint::run(ctx, &a.vault.vault, "scrub", &opts, &bar, |v, p| {
            v.scrub(&opts, p)
        })?;
    super::maint::print(a.json, &report, |mut out, r| render(&mut out, r))?;
    Ok(exit_status(&report))
}

/// 0 healthy, 1 damage remains, 2 files lost.
pub fn exit_status(r: &ScrubReport) -> i32 {
    if !r.lost.is_empty() {
        EXIT_LOST
    } else if !r.healthy() {
        EXIT_DAMAGED
    } else {
        0
    }
}

fn render(out: &mut impl Write, r: &ScrubReport) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<10} {:>7} {:>7} {:>7} {:>7} {:>8} {:>10}  health",
        "node", "ok", "missing", "corrupt", "orphans", "repaired", "read"
    )?;
    let mut total = crate::maint::NodeScrub::default();
    for n in &r.nodes {
        writeln!(
            out,
            "{:<10} {:>7} {:>7} {:>7} {:>7} {:>8} {:>10}  {}",
            n.name,
            n.ok,
            n.missing,
            n.corrupt,
            n.orphans,
            n.repaired,
            bytes(n.bytes_read),
            n.health
        )?;
        total.ok += n.ok;
        total.missing += n.missing;
        total.corrupt += n.corrupt;
        total.orphans += n.orphans;
        total.repaired += n.repaired;
        total.bytes_read += n.bytes_read;
    }
    writeln!(
        out,
        "{:<10} {:>7} {:>7} {:>7} {:>7} {:>8} {:>10}",
        "total",
        total.ok,
        total.missing,
        total.corrupt,
        total.orphans,
        total.repaired,
        bytes(total.bytes_read)
    )?;
    let rate = if r.elapsed_secs > 0.0 {
        r.bytes_read as f64 / r.elapsed_secs / 1e6
    } else {
        0.0
    };
    writeln!(
        out,
        "\nscrubbed {} objects, {} shards: read {} in {:.1} s ({rate:.1} MB/s)",
        r.objects,
        r.shards,
        bytes(r.bytes_read),
        r.elapsed_secs
    )?;
    writeln!(
        out,
        "found     {} missing, {} corrupt, {} orphaned, {} stale repair-debt records",
        r.missing, r.corrupt, r.orphans, r.debt
    )?;
    if r.repair {
        writeln!(
            out,
            "repaired  {} shards rebuilt, {} orphans removed, {} debt records cleared, {} manifests given audit roots",
            r.repaired, r.orphans_removed, r.debt_cleared, r.roots_added
        )?;
    } else if r.without_roots > 0 {
        writeln!(
            out,
            "note      {} objects have no audit roots yet (older manifests); `qsfs scrub --repair` adds them",
            r.without_roots
        )?;
    }
    let shown: Vec<_> = r
        .findings
        .iter()
        .filter(|f| !r.repair || f.outcome != Outcome::Found)
        .collect();
    if !shown.is_empty() {
        writeln!(out, "\nfindings:")?;
        for f in shown.iter().take(MAX_LINES) {
            let shard = f.shard.map(|s| format!("/{s}")).unwrap_or_default();
            let mut line = format!(
                "  {:<8} {:<10} {}{shard}: {}",
                f.kind.as_str(),
                f.node,
                f.object,
                f.detail
            );
            if f.outcome != Outcome::Found {
                line.push_str(&format!(" -> {}", f.outcome.as_str()));
                if let Some(on) = &f.repaired_on {
                    line.push_str(&format!(" on {on}"));
                }
                if let Some(n) = &f.note {
                    line.push_str(&format!(" ({n})"));
                }
            }
            writeln!(out, "{line}")?;
        }
        if shown.len() > MAX_LINES {
            writeln!(
                out,
                "  ... and {} more (`--json` lists them all)",
                shown.len() - MAX_LINES
            )?;
        }
    }
    // Why the findings that remain were not settled: one line per node,
    // kind and outcome with its count and a reason, however many findings
    // there are and however few of them the list above showed.
    let groups = unsettled_groups(r);
    if r.repair && !groups.is_empty() {
        writeln!(out, "\nnot repaired, by node and cause:")?;
        for ((node, kind, outcome), (count, f)) in &groups {
            let shard = f.shard.map(|s| format!(" shard {s}")).unwrap_or_default();
            writeln!(
                out,
                "  {:<10} {count} {kind} -> {outcome}: {} (e.g. object {}{shard})",
                if node.is_empty() { "-" } else { node },
                f.note.as_deref().unwrap_or(&f.detail),
                f.object
            )?;
        }
    }
    if !r.lost.is_empty() {
        writeln!(
            out,
            "\nLOST: {} objects cannot be rebuilt (fewer than k good chunks); nothing about them was changed:",
            r.lost.len()
        )?;
        for l in &r.lost {
            let paths = if l.paths.is_empty() {
                "(no file uses it)".to_string()
            } else {
                l.paths.join(", ")
            };
            writeln!(out, "  {paths}  object {}: {}", l.object, l.detail)?;
        }
        writeln!(
            out,
            "restore these files from a backup (or bring back a node that holds their shards)"
        )?;
    } else if r.healthy() {
        writeln!(
            out,
            "\n{}",
            if r.findings.is_empty() {
                "healthy: every shard verified"
            } else {
                "healthy: everything found was repaired"
            }
        )?;
    } else {
        writeln!(
            out,
            "\n{} findings need attention{}",
            r.unsettled(),
            if r.repair {
                "; the reasons, and what to do, are under \"not repaired\" above"
            } else {
                "; run `qsfs scrub --repair`"
            }
        )?;
    }
    Ok(())
}

/// Findings not settled, except lost ones (their own section names
/// them), grouped by (node, kind, outcome): the count and the first one.
fn unsettled_groups(r: &ScrubReport) -> BTreeMap<(&str, &str, &str), (usize, &Finding)> {
    let mut groups: BTreeMap<(&str, &str, &str), (usize, &Finding)> = BTreeMap::new();
    for f in r
        .findings
        .iter()
        .filter(|f| !f.outcome.settled() && f.outcome != Outcome::Lost)
    {
        groups
            .entry((f.node.as_str(), f.kind.as_str(), f.outcome.as_str()))
            .or_insert((0, f))
            .0 += 1;
    }
    groups
}
