//! `qsfs rebalance`: spread shards evenly over the nodes.

use std::io::Write;

use anyhow::Result;
use clap::{Args, ValueEnum};

use super::format::bytes;
use super::progress::Bar;
use super::{Ctx, VaultArg};
use crate::maint::{BalanceBy, RebalanceOptions, RebalanceReport};

#[derive(Args, Debug)]
pub struct RebalanceArgs {
    #[command(flatten)]
    vault: VaultArg,
    /// Even out shard counts or bytes.
    #[arg(long, value_enum, default_value_t = By::Shards)]
    by: By,
    /// Stop after this many balancing moves.
    #[arg(long, value_name = "N")]
    max_moves: Option<u64>,
    /// Machine-readable report.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum By {
    Shards,
    Bytes,
}

pub fn rebalance(ctx: &Ctx, a: RebalanceArgs) -> Result<i32> {
    let bar = Bar::new(a.quiet || a.json);
    let opts = RebalanceOptions {
        by: match a.by {
            By::Shards => BalanceBy::Shards,
            By::Bytes => BalanceBy::Bytes,
        },
        max_moves: a.max_moves,
    };
    let r: RebalanceReport =
        super::maint::run(ctx, &a.vault.vault, "rebalance", &opts, &bar, |v, p| {
            v.rebalance(&opts, p)
        })?;
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &r)?;
        writeln!(out)?;
        return Ok(i32::from(!r.ok()));
    }
    for d in &r.drained {
        super::node::print_drain(&mut out, d)?;
    }
    writeln!(
        out,
        "rebalanced in {:.1} s: {} shards moved ({} to separate shards of one object), {} skipped",
        r.elapsed_secs,
        r.moves.len(),
        r.duplicates_fixed,
        r.skipped
    )?;
    writeln!(
        out,
        "  chunks    {} copied after verification, {} rebuilt; {} written",
        r.chunks_copied,
        r.chunks_rebuilt,
        bytes(r.bytes_written)
    )?;
    writeln!(
        out,
        "  {:<12} {:>8} {:>11}   {:>8} {:>11}",
        "NODE", "BEFORE", "", "AFTER", ""
    )?;
    for (b, after) in r.before.iter().zip(&r.after) {
        writeln!(
            out,
            "  {:<12} {:>8} {:>11}   {:>8} {:>11}",
            b.node,
            b.shards,
            bytes(b.bytes),
            after.shards,
            bytes(after.bytes)
        )?;
    }
    for f in &r.failures {
        writeln!(out, "  FAILED    {f}")?;
    }
    Ok(i32::from(!r.ok()))
}
