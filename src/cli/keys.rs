//! `qsfs keys verify|repair` (through the mount process while mounted).

use std::io::Write;

use anyhow::Result;
use clap::{Args, Subcommand};

use super::{Ctx, VaultArg};

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Check every object's R1 and R2 against its backup record B.
    Verify(KeysArgs),
    /// Check, then rebuild lost or corrupt shares and backup records.
    Repair(RepairArgs),
    /// Expert only: print the key records (R1, R2, B) of a file's objects
    /// in hex. With the nodes' shards these decrypt the file: use them for
    /// interoperability tests or recovery by hand, and never store them.
    Show(ShowArgs),
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    #[command(flatten)]
    vault: VaultArg,
    /// The file's vault path.
    path: String,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

fn show(ctx: &Ctx, a: ShowArgs) -> Result<i32> {
    let path = crate::namespace::VaultPath::parse(&a.path)?;
    let vault = ctx.open_offline(&a.vault.vault, "show key records")?;
    let dump = vault.key_dump(&path)?;
    eprintln!(
        "qsfs: expert output: these key records, with the nodes' shards, decrypt {}; do not store or share them",
        a.path
    );
    if a.json {
        println!("{}", serde_json::to_string_pretty(&dump)?);
        return Ok(0);
    }
    let none = || "-".to_string();
    for d in dump {
        println!("object {}", d.object);
        println!("  R1 {}", d.r1.unwrap_or_else(none));
        println!("  R2 {}", d.r2.unwrap_or_else(none));
        println!("  B  {}", d.b.unwrap_or_else(none));
    }
    Ok(0)
}

#[derive(Args, Debug)]
pub struct KeysArgs {
    #[command(flatten)]
    vault: VaultArg,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct RepairArgs {
    #[command(flatten)]
    keys: KeysArgs,
    /// The separate R2 drive is lost for good: build a new R2 store at the
    /// configured `r2_path` and refill it from R1, the objects and B. (Plug
    /// in the new drive first; without this flag a missing R2 store is
    /// treated as a drive that is away, never recreated.)
    #[arg(long)]
    rebuild_r2: bool,
}

pub fn run(ctx: &Ctx, c: KeysCommand) -> Result<i32> {
    let (args, repair, rebuild) = match c {
        KeysCommand::Show(a) => return show(ctx, a),
        KeysCommand::Verify(a) => (a, false, false),
        KeysCommand::Repair(a) => (a.keys, true, a.rebuild_r2),
    };
    let root = &args.vault.vault;
    // While mounted, the mount process checks (a new R2 store needs the
    // vault unmounted: opening it here says so).
    let report = if rebuild {
        ctx.open_rebuilding_r2(root)?.check_keys(true)?
    } else if let Some(report) = super::live::keys(root, repair)? {
        report
    } else {
        ctx.open(root)?.check_keys(repair)?
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        for p in &report.problems {
            let issues: Vec<String> = p
                .issues
                .iter()
                .map(|i| {
                    serde_json::to_value(i)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default()
                })
                .collect();
            let lost = p.issues.iter().any(|i| {
                matches!(
                    i,
                    crate::maint::KeyIssue::ManifestMissing
                        | crate::maint::KeyIssue::ManifestDamaged
                )
            });
            let state = if p.repaired {
                "repaired".to_string()
            } else if lost && !repair {
                "the file cannot be read; key repair cannot help (see `qsfs fsck`)".to_string()
            } else if let Some(e) = &p.error {
                format!("NOT repaired: {e}")
            } else {
                "run `qsfs keys repair` to heal".to_string()
            };
            writeln!(
                out,
                "{} ({}): {} -- {state}",
                p.path.as_deref().unwrap_or("<no file>"),
                p.object,
                issues.join(", ")
            )?;
        }
        if !report.stray_shares.is_empty() {
            writeln!(
                out,
                "{} share records belong to no object (left by an interrupted write)",
                report.stray_shares.len()
            )?;
        }
        if !report.stray_backups.is_empty() {
            writeln!(
                out,
                "{} backup records belong to no object (left by an interrupted write or delete; `qsfs fsck --repair` removes them)",
                report.stray_backups.len()
            )?;
        }
        writeln!(
            out,
            "{} objects checked, {} with key problems{}",
            report.checked,
            report.problems.len(),
            if repair {
                format!(
                    ", {} repaired",
                    report.problems.iter().filter(|p| p.repaired).count()
                )
            } else {
                String::new()
            }
        )?;
    }
    if repair && !report.healthy() {
        let left = report.problems.iter().filter(|p| !p.repaired).count();
        eprintln!("qsfs: error: {left} objects could not be repaired; see the reasons above");
        return Ok(1);
    }
    if !repair && !report.problems.is_empty() {
        eprintln!(
            "qsfs: error: {} objects have key problems; run `qsfs keys repair`",
            report.problems.len()
        );
        return Ok(1);
    }
    Ok(0)
}
