//! Property tests of the envelope: round trips, tamper detection, bad-share reporting.
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

use proptest::prelude::*;
use qsfs::envelope::{
    Backup, LocalShares, SEG, SealKeys, Share, open_bytes, open_stream, recover_keys, seal_bytes,
    seal_stream,
};

/// Plaintext lengths: anywhere in 0..300 KB, and often right around a multiple of SEG.
fn plain_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        0usize..300_000,
        (0usize..=4, -3i64..=3).prop_map(|(k, d)| (k as i64 * SEG as i64 + d).max(0) as usize),
    ]
}

/// Deterministic filler, so large plaintexts are cheap to generate.
fn fill(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        })
        .collect()
}

fn flip(share: &Share, byte: usize, bit: u8) -> Share {
    let mut b = *share.as_bytes();
    b[byte % 33] ^= 1 << (bit % 8);
    Share::from_bytes(&b).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn open_of_seal_is_identity(len in plain_len(), seed: u64, k: [u8; 32], r: [u8; 32], cs: [u8; 32], threads in 1usize..4) {
        let d = fill(len, seed);
        let keys = SealKeys::split(k, r, cs);
        let (n, b) = seal_bytes(&d, &keys).unwrap();
        prop_assert_eq!(n.len() as u64, qsfs::envelope::sealed_len(len as u64));

        let mut streamed = Vec::new();
        let sealed = seal_stream(&keys, len as u64, &d[..], &mut streamed, threads).unwrap();
        prop_assert!(streamed == n, "seal_stream and seal_bytes differ");
        prop_assert_eq!(sealed.backup, b.clone());

        let local = LocalShares::both(keys.r1().clone(), keys.r2().clone());
        let o = open_bytes(&n, &local, None).unwrap();
        prop_assert!(o.plaintext == d);

        let mut src: &[u8] = &n;
        let rec = recover_keys(&mut src, n.len() as u64, &local, Some(&b)).unwrap();
        let mut out = Vec::new();
        open_stream(&n[..], &rec, &mut out, threads).unwrap();
        prop_assert!(out == d);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_flipped_bit_in_n_is_refused(len in prop_oneof![0usize..3000, 65_530usize..65_600], seed: u64, k: [u8; 32], r: [u8; 32], cs: [u8; 32], at: prop::sample::Index, bit in 0u8..8) {
        let d = fill(len, seed);
        let keys = SealKeys::split(k, r, cs);
        let (mut n, _) = seal_bytes(&d, &keys).unwrap();
        let i = at.index(n.len());
        n[i] ^= 1 << bit;
        let local = LocalShares::both(keys.r1().clone(), keys.r2().clone());
        match open_bytes(&n, &local, None) {
            Ok(_) => prop_assert!(false, "flipped bit {} of byte {} was not detected", bit, i),
            Err(e) => prop_assert!(e.is_integrity(), "byte {}: not an integrity error: {}", i, e),
        }
    }

    #[test]
    fn a_corrupt_local_share_is_reported_and_survived(len in 0usize..5000, seed: u64, k: [u8; 32], r: [u8; 32], cs: [u8; 32], which_r1: bool, byte in 0usize..33, bit in 0u8..8) {
        let d = fill(len, seed);
        let keys = SealKeys::split(k, r, cs);
        let (n, b) = seal_bytes(&d, &keys).unwrap();
        let b = Backup::parse(&b.to_bytes()).unwrap();
        let local = if which_r1 {
            LocalShares::both(flip(keys.r1(), byte, bit), keys.r2().clone())
        } else {
            LocalShares::both(keys.r1().clone(), flip(keys.r2(), byte, bit))
        };
        let o = open_bytes(&n, &local, Some(&b)).unwrap();
        prop_assert!(o.plaintext == d);
        prop_assert_eq!(o.bad.r1, which_r1);
        prop_assert_eq!(o.bad.r2, !which_r1);
        prop_assert!(!o.bad.backup);
        let healed = o.recovered.regenerate(if which_r1 { 1 } else { 2 }).unwrap();
        prop_assert_eq!(&healed, if which_r1 { keys.r1() } else { keys.r2() });
    }
}
