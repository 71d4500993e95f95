//! `qsfs audit`: proof of possession and the deletion check, per node
//! (src/maint/audit.rs does the work; this file renders the report).

use std::io::Write;

use anyhow::Result;
use clap::Args;

use super::progress::Bar;
use super::{Ctx, VaultArg, format::bytes};
use crate::maint::audit::{
    AuditOptions, AuditReport, DEFAULT_FRACTIONS, DEFAULT_SAMPLES, NodeAudit, Verdict,
};

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(flatten)]
    vault: VaultArg,
    /// Audit only this node (default: every node).
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
    /// Random 8 KiB blocks challenged per node (at least 1). A node missing 1% of its
    /// blocks escapes 300 samples with probability 5%, 1375 with one in a
    /// million.
    #[arg(long, value_name = "S", default_value_t = DEFAULT_SAMPLES,
          value_parser = clap::value_parser!(u32).range(1..))]
    samples: u32,
    /// Skip the deletion check (the root over everything a node holds).
    #[arg(long)]
    no_deletion_check: bool,
    /// Machine-readable report on stdout.
    #[arg(long)]
    json: bool,
}

/// Exit status: 0 every node passed; 1 a node lost or altered data, or
/// holds shards it should not; 2 nothing wrong was found but a node could
/// not be audited.
pub fn audit(ctx: &Ctx, a: AuditArgs) -> Result<i32> {
    let opts = AuditOptions {
        node: a.node.clone(),
        samples: a.samples,
        fractions: DEFAULT_FRACTIONS.to_vec(),
        deletion_check: !a.no_deletion_check,
    };
    let bar = Bar::new(a.json);
    // Inside the mount process when the vault is mounted.
    let report: AuditReport =
        super::maint::run(ctx, &a.vault.vault, "audit", &opts, &bar, |v, p| {
            v.audit(&opts, p)
        })?;
    super::maint::print(a.json, &report, |mut out, r| render(&mut out, r))?;
    Ok(if report.found_problems() {
        1
    } else if report.incomplete() {
        2
    } else {
        0
    })
}

/// "1 SHARD", "2 SHARDS".
fn shards(n: usize) -> String {
    if n == 1 {
        "1 SHARD".into()
    } else {
        format!("{n} SHARDS")
    }
}

fn pct(p: f64) -> String {
    if p >= 0.01 {
        format!("{:.1}%", p * 100.0)
    } else if p >= 1e-4 {
        format!("{:.2}%", p * 100.0)
    } else if p > 0.0 {
        format!("{p:.0e}")
    } else {
        "0".into()
    }
}

fn escape_cell(n: &NodeAudit) -> String {
    n.escape
        .iter()
        .map(|e| pct(e.probability))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn render(out: &mut impl Write, r: &AuditReport) -> std::io::Result<()> {
    let fractions: Vec<String> = DEFAULT_FRACTIONS
        .iter()
        .map(|f| format!("{:.0}%", f * 100.0))
        .collect();
    writeln!(
        out,
        "proof of possession: {} random 4 KiB blocks per node, each checked against the root in the manifest",
        r.samples
    )?;
    writeln!(
        out,
        "  {:<10} {:>7} {:>8} {:>8} {:>7} {:>10} {:>10} {:>8}  {:<21}  verdict",
        "node",
        "shards",
        "blocks",
        "checked",
        "failed",
        "moved",
        "held",
        "time",
        format!("escape {}", fractions.join("/"))
    )?;
    for n in &r.nodes {
        writeln!(
            out,
            "  {:<10} {:>7} {:>8} {:>8} {:>7} {:>10} {:>10} {:>6}ms  {:<21}  {}",
            n.name,
            n.shards,
            n.blocks,
            n.blocks_challenged,
            n.failed_blocks,
            bytes(n.bytes_moved),
            bytes(n.bytes_held),
            n.elapsed_ms,
            if n.verdict == Verdict::Unreachable {
                "-".to_string()
            } else {
                escape_cell(n)
            },
            n.verdict.text()
        )?;
        if let Some(why) = &n.unreachable {
            writeln!(out, "      {}: {why}", n.location)?;
        }
        for f in &n.failing_shards {
            writeln!(
                out,
                "      shard {} of object {}: {} challenged blocks failed: {}",
                f.index, f.object, f.blocks, f.why
            )?;
        }
        if n.changed_during_audit > 0 {
            writeln!(
                out,
                "      {} shards changed during the audit (deleted, moved or repaired) and were left out",
                n.changed_during_audit
            )?;
        }
    }
    if r.nodes.iter().any(|n| n.deletion.is_some()) {
        writeln!(
            out,
            "deletion check: the root over what each node holds against the root over what the manifests place there"
        )?;
        for n in &r.nodes {
            let Some(d) = &n.deletion else { continue };
            let summary = if d.root_matches {
                format!("holds exactly the {} expected shards", d.expected_shards)
            } else if d.holds_exactly_expected {
                format!(
                    "holds the {} expected shards ({} differences were writes, deletes or moves in progress)",
                    d.expected_shards, d.ignored
                )
            } else if let Some(e) = &d.error {
                format!("roots differ: {e}")
            } else {
                let mut parts = Vec::new();
                if !d.extra.is_empty() {
                    parts.push(format!("HOLDS {} IT SHOULD NOT", shards(d.extra.len())));
                }
                if !d.missing.is_empty() {
                    parts.push(format!("MISSING {}", shards(d.missing.len())));
                }
                if !d.wrong_size.is_empty() {
                    parts.push(format!("{} OF THE WRONG SIZE", shards(d.wrong_size.len())));
                }
                format!(
                    "{} (holds {}, should hold {})",
                    parts.join(", "),
                    d.held_shards,
                    d.expected_shards
                )
            };
            writeln!(out, "  {:<10} {summary}", n.name)?;
            for (label, list) in [
                ("extra", &d.extra),
                ("missing", &d.missing),
                ("wrong size", &d.wrong_size),
            ] {
                for s in list {
                    writeln!(
                        out,
                        "      {label}: shard {} of object {}: {}",
                        s.index, s.object, s.why
                    )?;
                }
            }
        }
    }
    let t = &r.totals;
    let frac = if t.bytes_held > 0 {
        format!(
            " ({:.3}% of the {} held)",
            t.bytes_moved as f64 * 100.0 / t.bytes_held as f64,
            bytes(t.bytes_held)
        )
    } else {
        String::new()
    };
    writeln!(
        out,
        "total: {} nodes: {} ok, {} failed, {} unreachable, {} holding extra shards; {} blocks checked, {} failed; {} moved{frac}; {} ms",
        t.nodes,
        t.nodes_ok,
        t.nodes_failed,
        t.nodes_unreachable,
        t.nodes_holding_extra,
        t.blocks_challenged,
        t.failed_blocks,
        bytes(t.bytes_moved),
        t.elapsed_ms
    )?;
    for line in &r.advice {
        writeln!(out, "note: {line}")?;
    }
    Ok(())
}
