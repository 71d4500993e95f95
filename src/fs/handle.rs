//! What the mounted filesystem may ask of its vault. The mount holds this
//! handle, not the vault: it seals, publishes through the one commit seam
//! ([`Vault::publish`]), reads objects and works on the namespace, and it
//! cannot reach maintenance, key management or the steps of a commit on
//! their own (those would bypass the durability order).

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use crate::ObjectId;
use crate::dispersal::{ChunkCache, DispersalError, Manifest, ReadReport};
use crate::envelope::Recovered;
use crate::logsum::Warnings;
use crate::namespace::{Inode, Namespace, VaultPath};
use crate::node::Node;
use crate::vault::{
    Config, Linker, ListEntry, Namer, Publication, PutSource, ReadOutcome, SealedObject, Spool,
    Vault, VaultError,
};

/// The mount's view of its vault.
#[derive(Clone)]
pub struct VaultHandle(Arc<Vault>);

impl VaultHandle {
    /// A handle on `vault`.
    pub fn new(vault: Arc<Vault>) -> VaultHandle {
        VaultHandle(vault)
    }

    /// Calls `hook` with the ids of objects destroyed from now on.
    pub fn on_destroy(&self, hook: crate::vault::DestroyHook) {
        self.0.on_destroy(hook);
    }

    /// The namespace the mount shows.
    pub fn namespace(&self) -> &Namespace {
        self.0.namespace()
    }

    /// The vault's settings (layout, quorum).
    pub fn config(&self) -> &Config {
        self.0.config()
    }

    /// Seals `len` bytes of `src` into a new object: [`Vault::seal`], or
    /// [`Vault::seal_awaited`] when an fsync waits for its commit.
    pub fn seal<R: Read + Send>(
        &self,
        src: R,
        len: u64,
        what: &str,
        awaited: bool,
    ) -> Result<SealedObject, VaultError> {
        if awaited {
            self.0.seal_awaited(src, len, what)
        } else {
            self.0.seal(src, len, what)
        }
    }

    /// Makes sealed objects durable and named ([`Vault::publish`]).
    pub fn publish<N: Namer>(
        &self,
        items: Vec<Vec<SealedObject>>,
        namer: &mut N,
    ) -> Publication<N::Error> {
        self.0.publish(items, namer)
    }

    /// Destroys sealed objects that are never published (a file's seal
    /// failed part way).
    pub fn discard(&self, ids: &[ObjectId]) {
        self.0.settle_failed(ids);
    }

    /// Destroys the objects of deleted files.
    pub fn collect_garbage(&self) -> Result<usize, VaultError> {
        self.0.collect_garbage()
    }

    /// Deleted key records waiting for a shred pass.
    pub fn pending_shreds(&self) -> Result<u64, VaultError> {
        self.0.pending_shreds()
    }

    /// Backs up what changed to the nodes' metadata journal now (once
    /// backups are started): what an `fsync(2)` acknowledges.
    pub fn journal_metadata(&self) -> Result<Option<crate::vault::MetaWrite>, VaultError> {
        self.0.journal_metadata()
    }

    /// A shred pass now.
    pub fn shred(&self) -> Result<crate::vault::ShredReport, VaultError> {
        self.0.shred()
    }

    /// The manifest of object `id`.
    pub fn manifest(&self, id: &ObjectId) -> Result<Manifest, DispersalError> {
        self.0.dispersal().manifest(id)
    }

    /// An object's keys, from its shares or its backup record.
    pub fn recover(
        &self,
        manifest: &Manifest,
        warnings: &mut Vec<String>,
        report: &mut ReadReport,
    ) -> Result<Recovered, String> {
        self.0.recover(manifest, warnings, report)
    }

    /// Bytes of an object's sealed form, through `cache`.
    pub fn read_at_cached(
        &self,
        manifest: &Manifest,
        offset: u64,
        buf: &mut [u8],
        report: &mut ReadReport,
        cache: &ChunkCache,
    ) -> Result<(), DispersalError> {
        self.0
            .dispersal()
            .read_at_cached(manifest, offset, buf, report, cache)
    }

    /// Warns about shards a read found bad and records them as repair debt.
    pub fn note_bad_shards(&self, manifest: &Manifest, report: &ReadReport) {
        self.0.warn_bad_shards(None, &manifest.id, report);
        self.0.record_debt(manifest, report.mask());
    }

    /// A sealed file's whole content, as `qsfs get` reads it.
    pub fn read_inode(
        &self,
        inode: &Inode,
        what: &str,
        sink: &mut dyn std::io::Write,
        verify_first: bool,
    ) -> Result<ReadOutcome, VaultError> {
        self.0.read_inode(inode, what, sink, verify_first)
    }

    /// The nodes (their free space, for statfs).
    pub fn nodes(&self) -> &[Arc<dyn Node>] {
        self.0.dispersal().nodes()
    }

    /// Bytes the vault's objects occupy on the nodes.
    pub fn stored_total(&self) -> Result<u64, DispersalError> {
        self.0.dispersal().store().stored_total()
    }

    /// The summarised warnings of the vault's log.
    pub fn warnings(&self) -> &Warnings {
        self.0.warnings()
    }

    /// Writes summaries of repeated warnings that are due.
    pub fn tick_warnings(&self) {
        self.0.tick_warnings();
    }

    /// The staging folder.
    pub fn staging(&self) -> PathBuf {
        self.0.staging()
    }

    /// A new spool file for content a command sends.
    pub fn new_spool(&self) -> Result<(Spool, std::fs::File), VaultError> {
        self.0.new_spool()
    }

    /// `qsfs ls` through the control socket.
    pub fn list(&self, path: &VaultPath) -> Result<Vec<ListEntry>, VaultError> {
        self.0.list(path)
    }

    /// `qsfs mkdir` through the control socket.
    pub fn mkdir_as(
        &self,
        path: &VaultPath,
        parents: bool,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<Vec<VaultPath>, VaultError> {
        self.0.mkdir_as(path, parents, mode, uid, gid)
    }

    /// `qsfs put` through the control socket, with the mount's naming.
    pub fn put_many_with(
        &self,
        items: &[(PutSource, VaultPath)],
        link: &Linker,
    ) -> Vec<Result<u64, VaultError>> {
        self.0.put_many_with(items, link)
    }
}
