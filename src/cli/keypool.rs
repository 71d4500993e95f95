//! `qsfs keypool ...`: make and inspect the key pool files of QKD-keyed links.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use crate::qkd::pool::{self as keypool, DirCounts, GenOptions, LOW_FRACTION, PoolStatus};

#[derive(Subcommand, Debug)]
pub enum KeypoolCommand {
    /// Make the two files of a link's key pool (end A for the vault side,
    /// end B for the node side) from the OS random source: a simulated QKD
    /// link. Existing files are never overwritten.
    Gen(GenArgs),
    /// Show a pool file's link, end, and keys left and used per direction.
    Status(StatusArgs),
}

#[derive(Args, Debug)]
pub struct GenArgs {
    /// The link's name (e.g. the node's name), shown in every message.
    #[arg(long, value_name = "NAME")]
    link: String,
    /// Keys in the pool, both directions together (256 bits each).
    #[arg(long, value_name = "N")]
    keys: u64,
    /// End A's file (the vault side).
    #[arg(long, value_name = "A")]
    out: PathBuf,
    /// End B's file (the node side; give it to the node server).
    #[arg(long, value_name = "B")]
    peer_out: PathBuf,
    /// Mark the pair as coming from QKD equipment: qsfs never refills it.
    #[arg(long)]
    no_refill: bool,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The pool file.
    file: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

pub fn run(c: KeypoolCommand) -> Result<i32> {
    match c {
        KeypoolCommand::Gen(a) => gen_pair(a),
        KeypoolCommand::Status(a) => status(a),
    }
}

fn gen_pair(a: GenArgs) -> Result<i32> {
    // A missing folder for a pool (VAULT/links of a vault made with
    // --direct) is made owner-only: the pools are key material, and a vault
    // whose links folder others can read is refused.
    for path in [&a.out, &a.peer_out] {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
            && !dir.exists()
        {
            crate::perms::create_private_dir_all(dir).with_context(|| {
                format!("create the folder {} for {}", dir.display(), path.display())
            })?;
        }
    }
    keypool::generate(
        &GenOptions {
            link: &a.link,
            keys: a.keys,
            a_path: &a.out,
            b_path: &a.peer_out,
            refill: !a.no_refill,
        },
        keypool::os_random,
    )?;
    println!(
        "link {}: {} keys ({} each way); end A {}, end B {}{}",
        a.link,
        a.keys,
        a.keys / 2,
        a.out.display(),
        a.peer_out.display(),
        if a.no_refill {
            " (never refilled)"
        } else {
            " (simulated link: refilled by qsfs)"
        }
    );
    Ok(0)
}

#[derive(serde::Serialize)]
struct StatusJson<'a> {
    #[serde(flatten)]
    status: &'a PoolStatus,
    left: u64,
    used: u64,
    total: u64,
    low: bool,
}

fn status(a: StatusArgs) -> Result<i32> {
    let s = keypool::inspect(&a.file)?;
    let low = s.low(LOW_FRACTION);
    let mut out = std::io::stdout().lock();
    if a.json {
        let j = StatusJson {
            status: &s,
            left: s.left(),
            used: s.used(),
            total: s.total(),
            low,
        };
        serde_json::to_writer_pretty(&mut out, &j)?;
        writeln!(out)?;
    } else {
        let dir = |d: &DirCounts| format!("{} left, {} used of {}", d.left, d.used, d.total);
        writeln!(out, "pool      {}", s.path.display())?;
        writeln!(out, "link      {} (id {})", s.link, s.link_id)?;
        writeln!(out, "end       {}", s.end)?;
        writeln!(out, "A->B      {}", dir(&s.a_to_b))?;
        writeln!(out, "B->A      {}", dir(&s.b_to_a))?;
        writeln!(
            out,
            "total     {} left, {} used of {} (generated with {})",
            s.left(),
            s.used(),
            s.total(),
            s.capacity
        )?;
        writeln!(
            out,
            "refills   {}",
            if s.refills {
                "yes (simulated link)"
            } else {
                "no (keys from QKD equipment)"
            }
        )?;
        writeln!(
            out,
            "keys      {}",
            if s.sealed {
                "sealed under its vault's key (only that vault uses them)"
            } else {
                "in clear (guard this file like the link itself)"
            }
        )?;
    }
    if low {
        eprintln!(
            "qsfs: warning: key pool {} of link {} is low (under {:.0}% left in a direction); {}",
            s.path.display(),
            s.link,
            LOW_FRACTION * 100.0,
            if s.refills {
                "the simulated link refills it while qsfs runs"
            } else {
                "install a new pool pair at both ends"
            }
        );
    }
    Ok(0)
}
