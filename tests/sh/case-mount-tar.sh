# tar through the mount: a varied tree and 800 files of the Python
# standard library are archived into the mount and extracted inside it
# (pax format: nanosecond mtimes, xattrs, owners, hard links, FIFO);
# diff -r and metadata match; then tar c of the mounted trees back out,
# extracted elsewhere, matches again (also after a remount).
source "$(dirname "$0")/lib-mount.sh"

TAR_OPTS=(--format=posix --xattrs --xattrs-include='user.*' --numeric-owner)

make_tree src
pylib=$(ls -d /usr/lib/python3.[0-9]* | sort -V | tail -n 1)
[ -d "$pylib" ] || fail "no /usr/lib/python3.* to archive"
(cd "$pylib" && find . -path ./__pycache__ -prune -o -type f -print | LC_ALL=C sort | awk 'NR <= 800') > py.list
[ "$(wc -l < py.list)" -eq 800 ] || fail "expected 800 files under $pylib, got $(wc -l < py.list)"
# The same 800 files on ext4, as the reference.
mkdir py.ref
tar cf - -C "$pylib" -T py.list | tar xf - -C py.ref

mount_fresh

# An archive written into the mount, extracted inside the mount.
tar cf "$MNT/src.tar" "${TAR_OPTS[@]}" src
tar cf src.tar "${TAR_OPTS[@]}" src
cp "$MNT/src.tar" src.mnt.tar
[ "$(tar tf "$MNT/src.tar" | LC_ALL=C sort)" = "$(tar tf src.tar | LC_ALL=C sort)" ] || fail "tar tf of the archive in the mount"
mkdir "$MNT/x"
tar xf "$MNT/src.tar" "${TAR_OPTS[@]}" -C "$MNT/x" || fail "tar x inside the mount"
compare_trees src "$MNT/x/src"

# A stream into the mount: the Python files.
mkdir "$MNT/py"
tar cf - -C "$pylib" -T py.list | tar xf - -C "$MNT/py" || fail "tar x of $pylib into the mount"
diff -r py.ref "$MNT/py" || fail "diff -r of the Python files"
assert_eq 800 "$(find "$MNT/py" -type f | wc -l)" "Python files in the mount"

remount
compare_trees src "$MNT/x/src"
diff -r py.ref "$MNT/py" || fail "diff -r of the Python files after remount"

# Back out.
mkdir out
tar cf - "${TAR_OPTS[@]}" -C "$MNT" x py | tar xf - "${TAR_OPTS[@]}" -C out || fail "tar c of the mount back out"
compare_trees src out/x/src
diff -r py.ref out/py || fail "diff -r of the Python files out of the mount"

# rm -rf of both extracted trees: only the archive is left, and after the
# unmount every other object and shard is gone.
rm -rf "$MNT/x" "$MNT/py" || fail "rm -rf of the extracted trees"
assert_eq "src.tar" "$(ls -A "$MNT")" "what is left after rm -rf"
unmount
[ -z "$(ls -A "$VAULT/staging")" ] || fail "staging not empty after unmount: $(ls -A "$VAULT/staging")"
"$Q" status "$VAULT" --json > status.json
python3 - status.json <<'PY' || fail "status after rm -rf: $(cat status.json)"
import json, sys
s = json.load(open(sys.argv[1]))
got = {k: s[k] for k in ("files", "directories", "objects", "pending_deletions", "degraded_objects")}
want = {"files": 1, "directories": 1, "objects": 1, "pending_deletions": 0, "degraded_objects": 0}
assert got == want, got
assert all(n["shards_found"] == 1 and n["shards_expected"] == 1 for n in s["nodes"]), [(n["shards_found"], n["shards_expected"]) for n in s["nodes"]]
PY
"$Q" get "$VAULT" /src.tar - | cmp - src.mnt.tar || fail "qsfs get of the archive"
