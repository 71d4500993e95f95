# The client is not a single point of loss: a vault filled through the
# mount (a varied tree with hard links, symlinks, xattrs, odd modes and
# nanosecond times, plus a sparse file) has its whole vault folder deleted;
# `qsfs recover` rebuilds it on "a new machine" from the node folders and
# the passphrase alone, and every file reads back identical (rsync -aHAXc
# finds nothing to change, fsck is clean). Then the same with the vault
# key held by three key holders (any two unlock), two of the five node
# folders lost as well.
source "$(dirname "$0")/lib-mount.sh"

RSYNC=(rsync -aHAX --numeric-ids)
nothing_to_do() { # SRC DST WHAT
    local out
    out=$("${RSYNC[@]}" -c --dry-run --itemize-changes "$1/" "$2/" 2>&1) || fail "rsync --dry-run failed: $out"
    [ -z "$out" ] || fail "rsync -aHAXc --dry-run ($3) wants to change:
$out"
}

make_tree src
truncate -s 64M src/sparse.img
printf 'middle' | dd of=src/sparse.img bs=1 seek=$((32 << 20)) conv=notrunc status=none
mkdir nodes
printf 'recover me\n' > pass
export QSFS_PASSPHRASE_FILE="$PWD/pass"
"$Q" init "$VAULT" --nodes "$(printf "$PWD/nodes/n%s," 0 1 2 3 4 | sed 's/,$//')" > /dev/null
mount_vault
# Backups start with the first `qsfs backup` (here through the mount);
# from then on the mount keeps them fresh, and unmount writes the last.
"$Q" backup "$VAULT" > backup.txt || fail "qsfs backup: $(cat backup.txt)"
grep -q '^metadata snapshot 1 ' backup.txt || fail "backup said: $(cat backup.txt)"
"${RSYNC[@]}" src/ "$MNT/tree/" || fail "rsync -aHAX into the mount"
nothing_to_do src "$MNT/tree" "in the mount"
unmount
"$Q" status "$VAULT" > status.txt
grep -q '^metadata  backed up to the nodes' status.txt || fail "no metadata backup after unmount: $(cat status.txt)"

# The machine is gone: only the node folders and the passphrase are left.
rm -rf "$VAULT" "$XDG_CONFIG_HOME"
rc=0
env -u QSFS_PASSPHRASE_FILE "$Q" recover v2 --node nodes/n0 --node nodes/n1 --node nodes/n2 --node nodes/n3 --node nodes/n4 < /dev/null > out.txt 2> err.txt || rc=$?
[ "$rc" -eq 1 ] || fail "recover without the passphrase exited $rc"
grep -q 'cannot unlock vault' err.txt || fail "recover without the passphrase said: $(cat err.txt)"
rm -rf v2
"$Q" recover v2 --node nodes/n0 --node nodes/n1 --node nodes/n2 --node nodes/n3 --node nodes/n4 > out.txt 2>&1 || fail "recover: $(cat out.txt)"
grep -q '^recovered vault v2 ' out.txt || fail "recover said: $(cat out.txt)"
VAULT="$PWD/v2"
"$Q" fsck "$VAULT" > fsck.txt 2>&1 || fail "fsck of the recovered vault: $(cat fsck.txt)"
mount_vault
nothing_to_do src "$MNT/tree" "after recovery"
compare_trees src "$MNT/tree"
unmount

# --- the same with key holders, and two node folders lost too ----------
mkdir h
specs=()
holder_pids=()
for i in 1 2 3; do
    "$Q" keypool gen --link "h$i" --keys 5000 --out "h/h$i.a" --peer-out "h/h$i.b" > /dev/null
    "$Q" keyholder serve --dir "h/h$i" --listen 127.0.0.1:0 --keypool "h/h$i.b" > "h/h$i.out" &
    holder_pids+=($!)
done
stop_holders() { for p in "${holder_pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap 'stop_holders; _mount_cleanup' EXIT
for i in 1 2 3; do
    wait_until 10 "holder h$i" grep -q listening "h/h$i.out"
    specs+=(--holder "name=h$i,addr=$(sed -n 's/^key holder listening on //p' "h/h$i.out"),pool=$PWD/h/h$i.a")
done
"$Q" unlock add "$VAULT" holders --threshold 2 "${specs[@]}" > add.txt || fail "unlock add holders: $(cat add.txt)"
"$Q" unlock remove "$VAULT" passphrase > /dev/null
unset QSFS_PASSPHRASE_FILE
mount_vault
echo "after the holders" > "$MNT/tree/new.txt"
unmount
rm -rf "$VAULT" nodes/n1 nodes/n4
kill "${holder_pids[0]}"
"$Q" recover v3 --node nodes/n0 --node nodes/n2 --node nodes/n3 > out.txt 2>&1 || fail "recover with 2 of 3 holders: $(cat out.txt)"
VAULT="$PWD/v3"
mount_vault
nothing_to_do src "$MNT/tree" "after recovery with key holders"
[ "$(cat "$MNT/tree/new.txt")" = "after the holders" ] || fail "the file written last is not there"
cmp src/sparse.img "$MNT/tree/sparse.img" || fail "sparse.img differs"
unmount
