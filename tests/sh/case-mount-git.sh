# git on the mount: init, add a source tree (qsfs's own src/ and tests/sh),
# commit, change/rename/delete files and commit again, git gc (packs,
# deletes loose objects), git fsck --full, git log, git status clean; a
# clone from the repo in the mount to outside matches the work tree
# (diff -r); all of it again after a remount.
source "$(dirname "$0")/lib-mount.sh"

here="$(cd "$(dirname "$0")" && pwd)"
export GIT_AUTHOR_NAME=qsfs GIT_AUTHOR_EMAIL=qsfs@example.org GIT_COMMITTER_NAME=qsfs GIT_COMMITTER_EMAIL=qsfs@example.org
export GIT_CONFIG_NOSYSTEM=1 HOME="$CASE_DIR"
git config --global init.defaultBranch main
git config --global gc.autoDetach false

mkdir tree
cp -r "$here/../../src" tree/src
cp -r "$here" tree/sh
[ "$(find tree -type f | wc -l)" -gt 50 ] || fail "source tree too small: $(find tree -type f | wc -l) files"

mount_fresh
R="$MNT/repo"
mkdir "$R"
cp -r tree/. "$R/"
git -C "$R" init -q
git -C "$R" add -A
git -C "$R" commit -q -m "first: the source tree"
nfiles=$(git -C "$R" ls-files | wc -l)
assert_eq "$(find tree -type f | wc -l)" "$nfiles" "files in the first commit"

# Second commit: edits, a rename, a delete, a new binary file.
printf '\n// edited on qsfs\n' >> "$R/src/lib.rs"
sed -i 's/^/    /' "$R/src/main.rs"
git -C "$R" mv src/cache.rs src/cache_renamed.rs
git -C "$R" rm -q src/object_id.rs
head -c 200000 /dev/urandom > "$R/blob.bin"
git -C "$R" add -A
git -C "$R" commit -q -m "second: edits, rename, delete, binary"
assert_eq 2 "$(git -C "$R" rev-list --count HEAD)" "commits"
[ -z "$(git -C "$R" status --porcelain)" ] || fail "git status not clean after commit: $(git -C "$R" status --porcelain)"

loose_before=$(find "$R/.git/objects" -type f -path '*/objects/??/*' | wc -l)
git -C "$R" gc -q || fail "git gc"
loose_after=$(find "$R/.git/objects" -type f -path '*/objects/??/*' | wc -l)
[ "$loose_after" -lt "$loose_before" ] || fail "git gc left $loose_after of $loose_before loose objects"
ls "$R"/.git/objects/pack/*.pack > /dev/null || fail "git gc made no pack"
git -C "$R" fsck --full --strict 2> fsck.err || fail "git fsck --full: $(cat fsck.err)"
log=$(git -C "$R" log --format=%s)
assert_eq "second: edits, rename, delete, binary
first: the source tree" "$log" "git log"
[ -z "$(git -C "$R" status --porcelain)" ] || fail "git status not clean after gc: $(git -C "$R" status --porcelain)"
git -C "$R" diff --stat HEAD~1 HEAD > diffstat
grep -q '5 files changed' diffstat || fail "diff --stat HEAD~1: $(cat diffstat)"

# Clone out of the mount, compare with the work tree in the mount.
git clone -q "$R" clone1 || fail "git clone from the mount"
diff -r -x .git "$R" clone1 || fail "clone differs from the work tree in the mount"
git -C clone1 fsck --full 2> fsck.err || fail "git fsck of the clone: $(cat fsck.err)"

remount
git -C "$R" fsck --full --strict 2> fsck.err || fail "git fsck --full after remount: $(cat fsck.err)"
assert_eq "$log" "$(git -C "$R" log --format=%s)" "git log after remount"
[ -z "$(git -C "$R" status --porcelain)" ] || fail "git status not clean after remount: $(git -C "$R" status --porcelain)"
git clone -q "$R" clone2 || fail "git clone from the mount after remount"
diff -r -x .git clone1 clone2 || fail "clone after remount differs"
diff -r -x .git "$R" clone2 || fail "clone after remount differs from the work tree"
# And a clone into the mount from outside.
git clone -q clone1 "$MNT/clone3" || fail "git clone into the mount"
diff -r -x .git clone1 "$MNT/clone3" || fail "clone into the mount differs"
git -C "$MNT/clone3" fsck --full 2> fsck.err || fail "git fsck of the clone in the mount: $(cat fsck.err)"
unmount
