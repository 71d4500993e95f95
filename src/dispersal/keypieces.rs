//! Key pieces on the nodes: in a vault that keeps the backup record `B`
//! off the client, shard `i` ends with piece `x = i + 1` of a `k`-of-`n`
//! Shamir split of `B` (see `node::header` and `envelope::pieces`).
//!
//! Reading gathers the pieces of the shards recorded present and takes the
//! polynomial most of them agree on, so one node that returns a wrong
//! piece is outvoted when more than `k` answer (and `B`'s own MACs catch
//! the rest when it is used). Repair and drain regenerate a piece exactly,
//! by interpolation, so a placed shard is byte for byte the one sealed.

use zeroize::Zeroizing;

use super::manifest::Manifest;
use super::{Dispersal, DispersalError};
use crate::envelope::pieces;
use crate::node::ShardKey;

/// The key pieces of one object as read from its nodes.
#[derive(Debug, Default)]
pub struct GatheredPieces {
    /// Pieces read, in stored form (`x || y`).
    pub pieces: Vec<Zeroizing<Vec<u8>>>,
    /// Shards whose piece could not be read, with why (node named).
    pub failed: Vec<String>,
}

/// Why a key piece or `B` could not be had from the nodes.
#[derive(Debug, thiserror::Error)]
#[error("object {object}: the backup record B is kept on the nodes and {detail}")]
pub struct PiecesError {
    /// The object.
    pub object: crate::ObjectId,
    /// What was missing or wrong.
    pub detail: String,
}

impl Dispersal {
    /// Reads the key pieces of `manifest`'s shards (`skip`: a shard not to
    /// ask, such as one being replaced). Shards recorded missing are asked
    /// last: repair debt is often stale (a node that was away and came
    /// back), and their pieces are cross-checked like any other.
    pub fn read_pieces(&self, manifest: &Manifest, skip: Option<usize>) -> GatheredPieces {
        let mut out = GatheredPieces::default();
        if manifest.piece == 0 {
            return out;
        }
        let n = manifest.layout.n;
        let order = (0..n)
            .filter(|&i| !manifest.is_missing(i))
            .chain((0..n).filter(|&i| manifest.is_missing(i)));
        for i in order {
            if skip == Some(i) {
                continue;
            }
            let name = &manifest.placement[i];
            let Some(node) = self.node(name) else {
                out.failed
                    .push(format!("shard {i}: node {name} is not in qsfs.toml"));
                continue;
            };
            let key = ShardKey {
                object: manifest.id,
                index: i as u8,
            };
            let mut buf = Zeroizing::new(vec![0u8; manifest.piece as usize]);
            match node.read_at(key, manifest.layout.shard_len(), &mut buf) {
                Ok(()) if usize::from(buf[0]) == i + 1 => out.pieces.push(buf),
                Ok(()) => out.failed.push(format!(
                    "shard {i} on {name}: its key piece is for x = {}",
                    buf[0]
                )),
                Err(e) => out.failed.push(format!("shard {i}: {e}")),
            }
        }
        out
    }

    /// `B` of `manifest`, rebuilt from the key pieces on its nodes.
    pub fn backup_from_nodes(
        &self,
        manifest: &Manifest,
    ) -> Result<Zeroizing<Vec<u8>>, PiecesError> {
        let got = self.read_pieces(manifest, None);
        let k = manifest.layout.k as u8;
        let fail = |detail: String| PiecesError {
            object: manifest.id,
            detail,
        };
        if let Some(why) = undecided(&got.pieces, k) {
            return Err(fail(why));
        }
        let agreed = agreed(&got.pieces, k).ok_or_else(|| {
            fail(format!(
                "only {} of the {k} key pieces needed could be read{}; bring back the nodes that \
                 hold its shards (`qsfs status` names them) and retry",
                got.pieces.len(),
                if got.failed.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", got.failed.join("; "))
                }
            ))
        })?;
        pieces::combine(&agreed, k).map_err(|e| fail(e.to_string()))
    }

    /// The key piece of shard `index`, regenerated from the others (and
    /// from its own copy when `own` allows reading it).
    pub(super) fn piece_for(
        &self,
        manifest: &Manifest,
        index: usize,
        own: bool,
    ) -> Result<Zeroizing<Vec<u8>>, DispersalError> {
        let got = self.read_pieces(manifest, (!own).then_some(index));
        let k = manifest.layout.k as u8;
        let x = (index + 1) as u8;
        let undecided = undecided(&got.pieces, k);
        let Some(agreed) = agreed(&got.pieces, k).filter(|_| undecided.is_none()) else {
            return Err(DispersalError::Node {
                source: crate::node::NodeError::new(
                    &manifest.placement[index],
                    "rebuild the key piece",
                    Some(ShardKey {
                        object: manifest.id,
                        index: index as u8,
                    }),
                    crate::node::NodeErrorKind::Corrupt(undecided.unwrap_or_else(|| {
                        format!(
                            "only {} of the {k} key pieces needed are readable ({})",
                            got.pieces.len(),
                            got.failed.join("; ")
                        )
                    })),
                ),
            });
        };
        pieces::regenerate(x, &agreed, k).map_err(|e| DispersalError::Internal(e.to_string()))
    }
}

/// What the key pieces of an object say about each other (scrub).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PieceCheck {
    /// They lie on one polynomial (or too few were read to tell).
    Consistent,
    /// These shards' pieces are off the polynomial at least `k + 1`
    /// pieces agree on: they are damaged.
    Dissent(Vec<usize>),
    /// They disagree, but no `k + 1` of them agree, so which are damaged
    /// cannot be told (pieces read, and how many the best pick explains).
    Undecided(usize, usize),
}

impl Dispersal {
    /// Cross-checks the key pieces of `manifest`'s shards: any `k` define
    /// a polynomial, so a damaged piece shows only against `k + 1` or more
    /// (a read through `B` would catch it by `B`'s MACs, too late to mend).
    pub fn check_pieces(&self, manifest: &Manifest) -> PieceCheck {
        if manifest.piece == 0 {
            return PieceCheck::Consistent;
        }
        let got = self.read_pieces(manifest, None);
        let k = manifest.layout.k as u8;
        let Some((votes, pick)) = best_polynomial(&got.pieces, k) else {
            return PieceCheck::Consistent;
        };
        if votes == got.pieces.len() {
            return PieceCheck::Consistent;
        }
        if votes <= usize::from(k) {
            return PieceCheck::Undecided(got.pieces.len(), votes);
        }
        PieceCheck::Dissent(
            got.pieces
                .iter()
                .filter(|p| pieces::regenerate(p[0], &pick, k).map_or(true, |r| r[..] != p[..]))
                .map(|p| usize::from(p[0]) - 1)
                .collect(),
        )
    }
}

impl Dispersal {
    /// The shards of `manifest` whose key piece is not a piece of `b` (the
    /// true `B`, rebuilt from the keystore), each with the piece it should
    /// hold: any `k` pieces that combine to `b` are the good ones.
    pub fn pieces_against(&self, manifest: &Manifest, b: &[u8]) -> Result<PieceFixes, String> {
        let got = self.read_pieces(manifest, None);
        let k = usize::from(manifest.layout.k as u8);
        let refs: Vec<&[u8]> = got.pieces.iter().map(|p| &p[..]).collect();
        if refs.len() < k || k == 0 {
            return Err(format!(
                "only {} of the {k} key pieces needed could be read",
                refs.len()
            ));
        }
        // Every k-subset that rebuilds `b` names the pieces off its
        // polynomial. Damage that cancels out (the same change to several
        // pieces can) lets two subsets rebuild `b` with different verdicts:
        // then nothing is decided.
        let mut verdict: Option<PieceFixes> = None;
        let mut idx: Vec<usize> = (0..k).collect();
        loop {
            let pick: Vec<&[u8]> = idx.iter().map(|&i| refs[i]).collect();
            if pieces::combine(&pick, k as u8).is_ok_and(|s| s[..] == *b) {
                let mut fixes = Vec::new();
                for p in &refs {
                    let want =
                        pieces::regenerate(p[0], &pick, k as u8).map_err(|e| e.to_string())?;
                    if want[..] != p[..] {
                        fixes.push((usize::from(p[0]) - 1, want));
                    }
                }
                match &verdict {
                    None => verdict = Some(fixes),
                    Some(v) if v.iter().map(|f| f.0).eq(fixes.iter().map(|f| f.0)) => {}
                    Some(_) => {
                        return Err(
                            "two different sets of key pieces rebuild the backup record the \
                             keystore gives (the damage cancels out), so which are damaged \
                             cannot be told"
                                .into(),
                        );
                    }
                }
            }
            if !next_subset(&mut idx, refs.len()) {
                return verdict.ok_or_else(|| {
                    format!(
                        "no {k} of the {} key pieces read rebuild the backup record the keystore \
                         gives",
                        refs.len()
                    )
                });
            }
        }
    }
}

/// Shards whose key piece is wrong, each with the piece it should hold.
pub type PieceFixes = Vec<(usize, Zeroizing<Vec<u8>>)>;

/// Why `all` cannot be trusted: more than `k` pieces that disagree with
/// no `k + 1` of them on one polynomial (any `k` define one, so which are
/// damaged cannot be told). `None` when they can be used.
fn undecided(all: &[Zeroizing<Vec<u8>>], k: u8) -> Option<String> {
    let (votes, _) = best_polynomial(all, k)?;
    (votes < all.len() && votes <= usize::from(k)).then(|| {
        format!(
            "the {} key pieces read disagree and no {} of them agree, so which are damaged \
             cannot be told; `qsfs scrub --repair` rebuilds them from R1 and R2",
            all.len(),
            usize::from(k) + 1
        )
    })
}

/// `k` pieces lying on the polynomial that most of `all` agree on, or
/// `None` with fewer than `k` pieces. With exactly `k` nothing can be
/// cross-checked and they are taken as they are.
pub fn agreed(all: &[Zeroizing<Vec<u8>>], k: u8) -> Option<Vec<&[u8]>> {
    best_polynomial(all, k).map(|(_, p)| p)
}

/// [`agreed`]'s pick with how many of `all` lie on its polynomial.
fn best_polynomial(all: &[Zeroizing<Vec<u8>>], k: u8) -> Option<(usize, Vec<&[u8]>)> {
    let k = usize::from(k);
    if all.len() < k || k == 0 {
        return None;
    }
    let refs: Vec<&[u8]> = all.iter().map(|p| &p[..]).collect();
    let votes = |pick: &[&[u8]]| -> usize {
        refs.iter()
            .filter(|p| pieces::regenerate(p[0], pick, k as u8).is_ok_and(|r| r[..] == p[..]))
            .count()
    };
    let first = &refs[..k];
    if votes(first) == refs.len() {
        return Some((refs.len(), first.to_vec()));
    }
    // Some piece disagrees: try every k-subset (n is small) and keep the
    // one most pieces lie on.
    let mut best: Option<(usize, Vec<&[u8]>)> = None;
    let mut idx: Vec<usize> = (0..k).collect();
    loop {
        let pick: Vec<&[u8]> = idx.iter().map(|&i| refs[i]).collect();
        let v = votes(&pick);
        if best.as_ref().is_none_or(|(b, _)| v > *b) {
            best = Some((v, pick));
        }
        if !next_subset(&mut idx, refs.len()) {
            return best;
        }
    }
}

/// Moves `idx` (sorted indices into `0..len`) to the next combination in
/// lexicographic order; false after the last one.
fn next_subset(idx: &mut [usize], len: usize) -> bool {
    let k = idx.len();
    let mut i = k;
    loop {
        if i == 0 {
            return false;
        }
        i -= 1;
        if idx[i] < len - k + i {
            break;
        }
    }
    idx[i] += 1;
    for j in i + 1..k {
        idx[j] = idx[j - 1] + 1;
    }
    true
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {
    use super::*;

    #[test]
    fn a_wrong_piece_is_outvoted() {
        let secret = [5u8; 105];
        let mut p = pieces::split(&secret, 3, 5, [8; 32]).unwrap();
        p[0][7] ^= 1;
        let pick = agreed(&p, 3).unwrap();
        assert!(pick.iter().all(|q| q[0] != 1), "the bad piece is left out");
        assert_eq!(&pieces::combine(&pick, 3).unwrap()[..], &secret[..]);
        assert!(agreed(&p[..2], 3).is_none());
    }
}
