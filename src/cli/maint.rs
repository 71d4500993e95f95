//! Running a maintenance operation where the vault is: through the
//! control socket of the mount process when the vault is mounted
//! (control.rs), on a directly opened vault otherwise.

use std::path::Path;

use std::io::Write as _;

use anyhow::Result;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Ctx;
use super::progress::Bar;
use crate::control::{self, ControlError};
use crate::maint::ProgressFn;
use crate::vault::Vault;

/// Runs `op` with `opts`: via the mount when mounted, else `local` on the
/// opened vault. Progress goes to `bar` either way.
pub fn run<O: Serialize, R: DeserializeOwned>(
    ctx: &Ctx,
    vault: &Path,
    op: &str,
    opts: &O,
    bar: &Bar,
    local: impl FnOnce(&Vault, ProgressFn) -> Result<R, crate::vault::VaultError>,
) -> Result<R> {
    let args = serde_json::to_value(opts)?;
    let result = match control::call(vault, op, args, &|p| bar.event(p)) {
        Ok(v) => serde_json::from_value(v)
            .map_err(|e| anyhow::anyhow!("undecodable {op} report from the mount process: {e}")),
        Err(ControlError::NotMounted(_)) => {
            let v = ctx.open(vault)?;
            local(&v, &|p| bar.event(p)).map_err(Into::into)
        }
        Err(e) => Err(e.into()),
    };
    bar.finish();
    result
}

/// Prints a maintenance report: pretty JSON with `json`, else `render`.
pub fn print<R: Serialize>(
    json: bool,
    report: &R,
    render: impl FnOnce(&mut dyn std::io::Write, &R) -> std::io::Result<()>,
) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, report)?;
        writeln!(out)?;
    } else {
        render(&mut out, report)?;
    }
    Ok(())
}
