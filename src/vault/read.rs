//! The read path: fetch any `k` verified shards, recover the keys from the
//! local shares (or one share plus `B`), decrypt, and report what was bad.

use std::io::Write;

use super::{Vault, VaultError};
use crate::ObjectId;
use crate::dispersal::{Dispersal, Manifest, ReadReport};
use crate::envelope::{self, Backup, BadShares, LocalShares, ObjectSource, Recovered, Share};
use crate::keystore::Stored;

/// What a read found besides the data.
#[derive(Debug, Clone, Default)]
pub struct ReadOutcome {
    /// Plaintext bytes delivered.
    pub bytes: u64,
    /// Shards that failed verification and were read around.
    pub bad_shards: Vec<(ObjectId, u8, String, String)>,
    /// Key material found damaged or missing (healed by `qsfs keys repair`).
    pub key_warnings: Vec<String>,
}

/// Random access into an object through the erasure-coding side.
struct EcSource<'a> {
    ec: &'a Dispersal,
    manifest: &'a Manifest,
    report: ReadReport,
}

impl ObjectSource for EcSource<'_> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.ec
            .read_at(self.manifest, offset, buf, &mut self.report)
            .map_err(std::io::Error::other)
    }
}

use super::records::StoredBackup;

impl Vault {
    /// The local shares and backup record of `id`, with warnings for
    /// anything damaged or missing.
    pub(crate) fn key_material(
        &self,
        id: &ObjectId,
        warnings: &mut Vec<String>,
    ) -> Result<(LocalShares, Option<Backup>), VaultError> {
        let (s1, s2) = self.keys.get(id)?;
        let mut share = |stored: Stored, name: &str| match stored {
            Stored::Present(b) => match Share::from_bytes(&b) {
                Ok(s) => Some(s),
                Err(_) => {
                    warnings.push(format!("{name} record is damaged"));
                    None
                }
            },
            Stored::Missing => {
                warnings.push(format!("{name} is missing from the keystore"));
                None
            }
            Stored::Damaged => {
                warnings.push(format!("{name} record is damaged"));
                None
            }
        };
        let local = LocalShares {
            r1: share(s1, "R1"),
            r2: share(s2, "R2"),
        };
        // A `B` on the nodes costs a round trip to each: fetch it only when
        // a local share is missing or damaged (`M` still checks R1 + R2).
        if local.r1.is_some() && local.r2.is_some() && self.backup_on_nodes(id)? {
            return Ok((local, None));
        }
        let backup = match self.backup_of(id)? {
            StoredBackup::Present(b) => match Backup::parse(&b) {
                Ok(b) => Some(b),
                Err(e) => {
                    warnings.push(format!("backup record B is corrupt ({e})"));
                    None
                }
            },
            StoredBackup::Missing => {
                warnings.push("backup record B is missing".to_string());
                None
            }
            StoredBackup::Damaged(why) => {
                warnings.push(format!("backup record B is damaged ({why})"));
                None
            }
        };
        Ok((local, backup))
    }

    /// Recovers the keys of an object (reads only the stripes holding
    /// `R3` and `KR`).
    pub(crate) fn recover(
        &self,
        manifest: &Manifest,
        warnings: &mut Vec<String>,
        report: &mut ReadReport,
    ) -> Result<Recovered, String> {
        let (local, backup) = self
            .key_material(&manifest.id, warnings)
            .map_err(|e| e.to_string())?;
        let mut src = EcSource {
            ec: &self.ec,
            manifest,
            report: ReadReport::default(),
        };
        let rec = envelope::recover_keys(
            &mut src,
            manifest.layout.object_len,
            &local,
            backup.as_ref(),
        );
        merge(report, src.report);
        let rec = rec.map_err(|e| e.to_string())?;
        describe_bad(rec.bad_shares(), warnings);
        Ok(rec)
    }

    /// Decrypts object `id` into `sink`. With `verify_first`, the whole
    /// object is authenticated (`M`) before any plaintext is written (for
    /// sinks that cannot be taken back, like stdout); otherwise `M` is
    /// checked at the end and the caller discards the output on error.
    pub fn open_object(
        &self,
        id: &ObjectId,
        sink: &mut dyn Write,
        verify_first: bool,
        what: &str,
        outcome: &mut ReadOutcome,
    ) -> Result<(), VaultError> {
        let fail = |detail: String| VaultError::Read {
            path: what.to_string(),
            object: *id,
            detail,
        };
        let manifest = self.ec.manifest(id).map_err(|e| fail(e.to_string()))?;
        let mut report = ReadReport::default();
        let mut warnings = Vec::new();
        let result = (|| -> Result<(), String> {
            let rec = self.recover(&manifest, &mut warnings, &mut report)?;
            if verify_first {
                let (r, rep) = self
                    .ec
                    .read_stream(&manifest, |s| envelope::verify_stream(s, &rec))
                    .map_err(|e| e.to_string())?;
                merge(&mut report, rep);
                r.map_err(describe_stream_error)?;
            }
            let threads = self.threads;
            let (r, rep) = self
                .ec
                .read_stream(&manifest, |s| envelope::open_stream(s, &rec, sink, threads))
                .map_err(|e| e.to_string())?;
            merge(&mut report, rep);
            r.map_err(describe_stream_error)
        })();
        self.warn_bad_shards(Some(what), id, &report);
        for b in &report.bad {
            outcome
                .bad_shards
                .push((*id, b.index, b.node.clone(), b.why.clone()));
        }
        for w in &warnings {
            self.warnings.warn(
                "keystore",
                crate::logsum::Cause::KeyDamaged,
                crate::logsum::item(id, None),
                || format!("{what}: {w}; run `qsfs keys repair` to heal it"),
            );
            outcome.key_warnings.push(format!("{what}: {w}"));
        }
        self.record_debt(&manifest, report.mask());
        result.map_err(fail)?;
        outcome.bytes += manifest.plain_len;
        Ok(())
    }

    /// Logs the shards a read of object `id` (file `what`) went around:
    /// the first of each node and cause in full, later ones summarised
    /// (logsum.rs), so a node whose shards are gone does not write a line
    /// per read.
    pub(crate) fn warn_bad_shards(&self, what: Option<&str>, id: &ObjectId, report: &ReadReport) {
        for b in &report.bad {
            self.warnings.warn(
                &b.node,
                b.cause,
                crate::logsum::item(id, Some(b.index)),
                || {
                    format!(
                        "{}shard {} of object {id} on {} is bad ({}); read around it; {}",
                        what.map(|w| format!("{w}: ")).unwrap_or_default(),
                        b.index,
                        b.node,
                        b.why,
                        match b.cause {
                            // A shard gone from a node that answers: scrub
                            // rebuilds that one shard.
                            crate::logsum::Cause::ShardMissing
                            | crate::logsum::Cause::ShardCorrupt => {
                                "`qsfs scrub --repair` rebuilds it".to_string()
                            }
                            other => other.next_step(&b.node),
                        }
                    )
                },
            );
        }
    }

    /// Logs the summaries of repeated warnings that are due (called
    /// periodically by a mount).
    pub fn tick_warnings(&self) {
        self.warnings.tick();
    }

    /// Logs everything the summaries of repeated warnings still hold (at
    /// the end of a mount; dropping the vault does it too).
    pub fn flush_warnings(&self) {
        self.warnings.flush();
    }

    /// The summariser of repeated warnings, for other repeating ones.
    pub(crate) fn warnings(&self) -> &crate::logsum::Warnings {
        &self.warnings
    }

    /// Records shards found bad as repair debt in the manifest.
    pub(crate) fn record_debt(&self, manifest: &Manifest, bad: u32) {
        if bad & !manifest.missing == 0 {
            return;
        }
        let mut m = manifest.clone();
        m.missing |= bad;
        // A stale view (the object was repaired, moved or deleted since it
        // was read) records nothing: scrub finds what is still wrong.
        if let Err(e) = self.ec.store().replace_manifest(manifest, &m) {
            tracing::warn!("could not record repair debt of object {}: {e}", m.id);
        }
    }
}

/// The stream's "source" is the object coming from the nodes here.
fn describe_stream_error(e: envelope::StreamError) -> String {
    match e {
        envelope::StreamError::Source(e) => e.to_string(),
        envelope::StreamError::Sink(e) => format!("writing the output failed: {e}"),
        other => other.to_string(),
    }
}

fn merge(into: &mut ReadReport, from: ReadReport) {
    for b in from.bad {
        into.push(b);
    }
}

fn describe_bad(bad: BadShares, warnings: &mut Vec<String>) {
    if bad.r1 {
        warnings.push("R1 is corrupt (it fails its check M14 in the backup record)".into());
    }
    if bad.r2 {
        warnings.push("R2 is corrupt (it fails its check M24 in the backup record)".into());
    }
    if bad.backup {
        warnings.push("the backup record B is corrupt (it fails its checks M14/M24)".into());
    }
}
