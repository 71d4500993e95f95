# A vault protected by a passphrase, as a user runs it: the mount asks
# for the passphrase before it goes to the background (here: from
# QSFS_PASSPHRASE_FILE), a wrong one is refused with nothing mounted,
# changing the unlock methods while mounted is refused, files deleted in
# the mount have their keys shredded by the mount itself (and by `qsfs
# shred` through the mount), and the vault folder copied while mounted
# opens nothing without the passphrase.
source "$(dirname "$0")/lib-mount.sh"

printf 'a long passphrase\n' > pass
printf 'not it\n' > wrong
"$Q" init "$VAULT" --passphrase-file pass > init.out
grep -q '^unlock: passphrase (Argon2id' init.out || fail "init said: $(cat init.out)"

# Wrong passphrase: a clear error, nothing mounted, no process left.
mkdir -p "$MNT"
rc=0
QSFS_PASSPHRASE_FILE="$PWD/wrong" "$Q" mount "$VAULT" "$MNT" > out.txt 2> err.txt || rc=$?
[ "$rc" -eq 1 ] || fail "mount with a wrong passphrase exited $rc: $(cat err.txt)"
grep -q 'cannot unlock vault .*the passphrase is wrong' err.txt || fail "mount said: $(cat err.txt)"
! is_mounted "$MNT" || fail "mounted with a wrong passphrase"
rc=0
"$Q" mount "$VAULT" "$MNT" < /dev/null > out.txt 2> err.txt || rc=$?
[ "$rc" -eq 1 ] || fail "mount with no passphrase exited $rc"
grep -q 'no passphrase given' err.txt || fail "mount said: $(cat err.txt)"

export QSFS_PASSPHRASE_FILE="$PWD/pass"
mount_vault
for i in $(seq 1 40); do
    head -c $((i * 997)) /dev/urandom > "$MNT/f$i"
done
mkdir "$MNT/keep"
cp "$MNT/f3" "$MNT/keep/three"
cp "$MNT/f3" ref3
sync "$MNT/keep/three"

# The unlock methods cannot change under a mount.
rc=0
"$Q" unlock add "$VAULT" key-file --key-file "$PWD/k.key" > out.txt 2> err.txt || rc=$?
[ "$rc" -eq 1 ] || fail "unlock add while mounted exited $rc"
grep -q "is mounted at $MNT; unmount it first" err.txt || fail "unlock add said: $(cat err.txt)"
[ ! -e k.key ] || fail "a refused unlock add made a key file"

# Deleted in the mount: their keys wait for a shred pass, which `qsfs
# shred` runs now through the mount.
rm "$MNT"/f*
wait_until 30 "deleted keys counted" bash -c "\"$Q\" status \"$VAULT\" --json | grep -q '\"pending_shreds\": [1-9]'"
"$Q" shred "$VAULT" > shred.out || fail "shred failed: $(cat shred.out)"
grep -q '^shredded [1-9][0-9]* deleted key record' shred.out || fail "shred said: $(cat shred.out)"
json=$("$Q" status "$VAULT" --json)
grep -q '"pending_shreds": 0' <<<"$json" || fail "keys still wait after shred"

# More deletions: the mount's own pass takes them within its delay.
for i in 1 2 3; do echo "$i" > "$MNT/g$i"; done
sync "$MNT/g3"
rm "$MNT"/g*
wait_until 30 "deleted keys counted" bash -c "\"$Q\" status \"$VAULT\" --json | grep -q '\"pending_shreds\": [1-9]'"
wait_until 90 "the mount's shred pass" bash -c "\"$Q\" status \"$VAULT\" --json | grep -q '\"pending_shreds\": 0'"

unmount

# A copy of the vault folder opens nothing without the passphrase.
cp -a "$VAULT" stolen
rc=0
env -u QSFS_PASSPHRASE_FILE "$Q" get stolen /keep/three - < /dev/null > got 2> err.txt || rc=$?
[ "$rc" -eq 1 ] || fail "the stolen copy read with exit $rc"
[ ! -s got ] || fail "the stolen copy gave bytes"
grep -q 'cannot unlock vault' err.txt || fail "get on the copy said: $(cat err.txt)"

mount_vault
cmp ref3 "$MNT/keep/three" || fail "keep/three differs after the shred passes and a remount"
unmount
