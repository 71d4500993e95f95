# Every command works while mounted: `qsfs status`, `ls`, `get`, `put`,
# `rm`, `mkdir` and `keys verify|repair` on a mounted vault go through the mount
# process (VAULT/control.sock) and agree with what the mount shows, at
# once: a put is readable through the mount (also over a file the kernel
# has cached, and over one a process holds open, which keeps its old
# version), a file written through the mount (closed, or still open and
# unsealed) comes back from `qsfs get`, `ls --json` matches stat(2) of the
# mount, an rm is gone from the mount (a file open there stays readable
# through its handle, as after unlink). Output and exit statuses of
# failing commands are the same mounted and unmounted; get and put of a
# 256 MiB file keep both processes' memory far below the file's size; a
# get whose reader goes away leaves the mount alive; a read-only mount
# refuses changes. A mount process that is stopped costs a command its
# 30 s silence limit, not a hang; one killed with -9 makes every command
# exit 1 at once naming `qsfs umount` and `fusermount3 -u`.
source "$(dirname "$0")/lib-mount.sh"

# Runs qsfs; records stdout, stderr and the exit status under NAME.
run_as() {
    local name="$1" rc=0
    shift
    "$Q" "$@" > "$name.out" 2> "$name.err" || rc=$?
    echo "$rc" > "$name.rc"
}

# The JSON of `qsfs ls --json VAULT-DIR` against stat(2) of MOUNT-DIR:
# the same names, and per entry the same kind, mode, size and mtime.
ls_matches_mount() {
    local vdir="$1" mdir="$2"
    "$Q" ls "$VAULT" "$vdir" --json > ls.json || fail "qsfs ls $vdir --json while mounted"
    python3 - ls.json "$mdir" <<'PY' || fail "qsfs ls --json $vdir disagrees with the mount (see above)"
import json, os, stat, sys
entries = json.load(open(sys.argv[1]))
mdir = sys.argv[2]
names = sorted(e["name"] for e in entries)
seen = sorted(os.listdir(mdir))
bad = []
if names != seen:
    bad.append(f"names: qsfs ls {names} vs the mount {seen}")
kinds = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink"}
for e in entries:
    p = os.path.join(mdir, e["name"])
    try:
        st = os.lstat(p)
    except OSError as x:
        bad.append(f"{e['name']}: {x}")
        continue
    i = e["inode"]
    mtime_ns = i["mtime"]["secs"] * 10**9 + i["mtime"]["nanos"]
    want = (kinds.get(stat.S_IFMT(st.st_mode)), stat.S_IMODE(st.st_mode), st.st_mtime_ns)
    got = (i["kind"], i["mode"], mtime_ns)
    if want != got:
        bad.append(f"{e['name']}: qsfs ls {got} vs the mount {want}")
    if i["kind"] == "file" and i["size"] != st.st_size:
        bad.append(f"{e['name']}: qsfs ls size {i['size']} vs the mount {st.st_size}")
if bad:
    print("\n".join(bad), file=sys.stderr)
    sys.exit(1)
PY
}

status_json() { "$Q" status "$VAULT" --json > status.json || fail "qsfs status --json while mounted"; }
json_field() { python3 -c "import json,sys; d=json.load(open('status.json')); print(eval('d' + sys.argv[1]))" "$1"; }

# A file per shard (`--no-packs`): an object's shard files are counted
# by name below.
mount_fresh --no-packs
mkdir "$MNT/d"
printf 'through the mount\n' > "$MNT/d/mounted.txt"

# status through the socket: the mount's view (files written meanwhile).
status_json
[ "$(json_field '["files"]')" -ge 1 ] || fail "status counts no file: $(cat status.json)"
[ "$(json_field '["mount"] is not None')" = True ] || fail "status --json of a mounted vault has no mount section: $(cat status.json)"

# put: readable through the mount at once, at a name the kernel had just
# been asked about (and found missing).
head -c 3000001 /dev/urandom > big.bin
printf 'first version\n' > v1.txt
printf 'the second version, longer than the first\n' > v2.txt
if stat "$MNT/d/put.bin" > /dev/null 2>&1; then fail "put.bin exists before the put"; fi
"$Q" put "$VAULT" big.bin /d/put.bin || fail "qsfs put while mounted"
cmp big.bin "$MNT/d/put.bin" || fail "a qsfs put is not what the mount reads"
# Over a file the kernel has cached (read through the mount first).
"$Q" put "$VAULT" v1.txt /d/replaced.txt
cmp v1.txt "$MNT/d/replaced.txt" || fail "first version through the mount"
chmod 0600 "$MNT/d/replaced.txt"
"$Q" put "$VAULT" v2.txt /d/replaced.txt
cmp v2.txt "$MNT/d/replaced.txt" || fail "a put over a file the mount had read: the mount still shows the old content"
assert_eq 600 "$(stat -c %a "$MNT/d/replaced.txt")" "mode of a file replaced by qsfs put (kept, as unmounted)"
# stdin, and -r of a tree (folders made through the mount too).
printf 'from stdin\n' | "$Q" put "$VAULT" - /d/stdin.txt
assert_eq "from stdin" "$(cat "$MNT/d/stdin.txt")" "a put from stdin, read through the mount"
mkdir -p tree/a/b "tree/with space"
for i in 1 2 3 4 5; do head -c $((i * 70001)) /dev/urandom > "tree/a/b/f$i"; done
printf 'x' > "tree/with space/one"
: > tree/empty
"$Q" put "$VAULT" -r tree /d/tree || fail "qsfs put -r while mounted"
diff -r tree "$MNT/d/tree" || fail "a qsfs put -r tree differs from the mount's copy"

# put over a file a process holds open: the mount shows the new version
# at once, the holder keeps reading the old one (as after a rename over it).
head -c 200000 /dev/urandom > old.bin
head -c 150000 /dev/urandom > new.bin
cp old.bin "$MNT/d/held.bin"
exec 3< "$MNT/d/held.bin"
head -c 100000 <&3 > held.part1
"$Q" put "$VAULT" new.bin /d/held.bin
cmp new.bin "$MNT/d/held.bin" || fail "a put over an open file: the mount does not show the new version"
cat <&3 > held.part2
exec 3<&-
cat held.part1 held.part2 | cmp - old.bin || fail "a process holding the replaced file open did not keep reading the old version"

# get: a file written and closed through the mount; then one still open
# for writing (its bytes unsealed, served from the mount's staging).
head -c 2500003 /dev/urandom > written.bin
cp written.bin "$MNT/d/written.bin"
"$Q" get "$VAULT" /d/written.bin got.bin || fail "qsfs get of a file written through the mount"
cmp written.bin got.bin || fail "qsfs get differs from what was written through the mount"
"$Q" get "$VAULT" /d/written.bin - | cmp - written.bin || fail "qsfs get - differs from what was written through the mount"
python3 - "$MNT/d/open.bin" <<'PY' &
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
os.write(fd, bytes(range(256)) * 400)
open("open.ready", "w").close()
deadline = time.monotonic() + 120
while not os.path.exists("open.done") and time.monotonic() < deadline:
    time.sleep(0.05)
os.write(fd, b"tail")
os.close(fd)
PY
writer=$!
wait_until 60 "the writer to write its first bytes" test -e open.ready
python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(256)) * 400)' > open.expect
"$Q" get "$VAULT" /d/open.bin - > open.got || fail "qsfs get of a file open for writing in the mount"
cmp open.expect open.got || fail "qsfs get of a file open for writing is not what the mount reads"
cmp open.expect "$MNT/d/open.bin" || fail "the mount's own read of the open file"
ls_matches_mount /d "$MNT/d"
touch open.done
wait "$writer" || fail "the writer of the open file failed"
printf 'tail' >> open.expect
"$Q" get "$VAULT" /d/open.bin - | cmp - open.expect || fail "qsfs get after the writer closed"

# ls: the mount's view, entry for entry (including files just written).
ls_matches_mount / "$MNT"
ls_matches_mount /d "$MNT/d"
ls_matches_mount "/d/tree/a/b" "$MNT/d/tree/a/b"
"$Q" ls "$VAULT" /d > ls.txt
ls -A "$MNT/d" | LC_ALL=C sort > ls.mount
LC_ALL=C sort ls.txt | diff - ls.mount || fail "qsfs ls /d differs from ls of the mount"

# mkdir: visible through the mount at once (also after a failed lookup).
if stat "$MNT/d/new/deep" > /dev/null 2>&1; then fail "new/deep exists before mkdir"; fi
"$Q" mkdir "$VAULT" -p /d/new/deep || fail "qsfs mkdir -p while mounted"
[ -d "$MNT/d/new/deep" ] || fail "a qsfs mkdir is not a folder in the mount"
"$Q" mkdir "$VAULT" /d/new2 -m 700
assert_eq 700 "$(stat -c %a "$MNT/d/new2")" "mode of a folder made by qsfs mkdir -m 700"

# rm: gone from the mount at once; a file open in the mount stays
# readable through its handle and goes at its close.
"$Q" rm "$VAULT" /d/put.bin || fail "qsfs rm while mounted"
[ ! -e "$MNT/d/put.bin" ] || fail "a file removed by qsfs rm is still in the mount"
head -c 500000 /dev/urandom > gone.bin
cp gone.bin "$MNT/d/open-rm.bin"
settled() { status_json; [ "$(json_field '["mount"]["staged_files"]')" -eq 0 ]; }
wait_until 60 "the mount to seal open-rm.bin" settled
"$Q" ls "$VAULT" /d/open-rm.bin --json > open-rm.json
obj=$(python3 -c 'import json; print(json.load(open("open-rm.json"))[0]["inode"]["extents"][0]["object"])')
shards() { find "$VAULT" -name "$obj.*" -path '*/shards/*' | wc -l; }
[ "$(shards)" -eq 5 ] || fail "open-rm.bin's object $obj has $(shards) shard files before the rm"
exec 3< "$MNT/d/open-rm.bin"
"$Q" rm "$VAULT" /d/open-rm.bin || fail "qsfs rm of a file open in the mount"
[ ! -e "$MNT/d/open-rm.bin" ] || fail "a removed open file is still listed in the mount"
[ "$(shards)" -eq 5 ] || fail "qsfs rm destroyed a file open in the mount ($(shards) of 5 shard files left)"
cmp gone.bin - <&3 || fail "a file removed while open no longer reads through its handle"
exec 3<&-
no_shards() { [ "$(shards)" -eq 0 ]; }
wait_until 60 "the removed file's shards to be destroyed after its last close" no_shards
"$Q" rm "$VAULT" -r /d/tree /d/new || fail "qsfs rm -r while mounted"
[ ! -e "$MNT/d/tree" ] && [ ! -e "$MNT/d/new" ] || fail "folders removed by qsfs rm -r are still in the mount"

# keys verify through the mount.
"$Q" keys verify "$VAULT" > keys.txt 2>&1 || fail "qsfs keys verify while mounted: $(cat keys.txt)"
grep -q "objects checked, 0 with key problems" keys.txt || fail "keys verify said: $(cat keys.txt)"
"$Q" keys verify "$VAULT" --json > keys.json || fail "qsfs keys verify --json while mounted"
python3 -c 'import json,sys; r=json.load(open("keys.json")); sys.exit(0 if r["checked"] >= 5 and not r["problems"] else 1)' ||
    fail "keys verify --json while mounted: $(cat keys.json)"

# status agrees with the mount's files, once everything is sealed.
wait_until 60 "the mount to seal everything" settled
assert_eq "$(find "$MNT" -type f | wc -l)" "$(json_field '["files"]')" "files in status --json vs find in the mount"

# Streaming: 256 MiB through put and get; neither process comes near it
# in memory. The mount's peak is reset before each (clear_refs) and may
# grow by its working set (seal and read pipelines), not by the file.
head -c 268435456 /dev/urandom > huge.bin
pid=$(mount_pid)
rss() { awk "/^$1/ {print \$2}" "/proc/$pid/status"; }
reset_peak() { echo 5 > "/proc/$pid/clear_refs"; rss VmRSS; }
base=$(reset_peak)
/usr/bin/time -f %M -o put.rss "$Q" put "$VAULT" huge.bin /huge.bin || fail "qsfs put of 256 MiB while mounted"
put_grew=$(($(rss VmHWM) - base))
base=$(reset_peak)
/usr/bin/time -f %M -o get.rss "$Q" get "$VAULT" /huge.bin - | cmp - huge.bin || fail "qsfs get of 256 MiB while mounted"
get_grew=$(($(rss VmHWM) - base))
cmp huge.bin "$MNT/huge.bin" || fail "the 256 MiB put read through the mount"
echo "256 MiB: peak of qsfs put $(cat put.rss) KiB, of qsfs get $(cat get.rss) KiB; the mount's peak grew by $put_grew KiB (put) and $get_grew KiB (get)"
[ "$(cat put.rss)" -lt 65536 ] || fail "qsfs put of 256 MiB used $(cat put.rss) KiB"
[ "$(cat get.rss)" -lt 65536 ] || fail "qsfs get of 256 MiB used $(cat get.rss) KiB"
[ "$put_grew" -lt 131072 ] || fail "the mount's peak memory grew by $put_grew KiB for a 256 MiB put"
[ "$get_grew" -lt 131072 ] || fail "the mount's peak memory grew by $get_grew KiB for a 256 MiB get"
# A reader that goes away mid-file (SIGPIPE on its side) leaves the mount
# serving.
"$Q" get "$VAULT" /huge.bin - | head -c 1000 > /dev/null || true
ours_alive "$pid" || fail "the mount process died when a qsfs get reader went away"
cmp v2.txt "$MNT/d/replaced.txt" || fail "the mount after a reader went away"
"$Q" rm "$VAULT" /huge.bin
rm -f huge.bin

# Failing commands: recorded mounted, compared after the unmount.
fails=(
    "get|get $VAULT /missing -"
    "getdir|get $VAULT /d -"
    "ls|ls $VAULT /missing"
    "rm|rm $VAULT /missing /d/also-missing"
    "rmdir|rm $VAULT /d"
    "mkdir|mkdir $VAULT /d"
    "mkdirp|mkdir $VAULT /no/such/parent"
    "putdir|put $VAULT v1.txt /no-such-folder/x"
    "putlocal|put $VAULT no-such-local-file /x"
    "putfolder|put $VAULT tree /x"
    "putmany|put $VAULT v1.txt v2.txt /d/stdin.txt"
)
mkdir -p mounted unmounted
for f in "${fails[@]}"; do
    IFS='|' read -r name args <<<"$f"
    # shellcheck disable=SC2086
    run_as "mounted/$name" $args
    [ "$(cat "mounted/$name.rc")" -ne 0 ] || fail "qsfs $args succeeded while mounted"
done
"$Q" ls "$VAULT" /d -l > mounted/ls-l.out
"$Q" ls "$VAULT" /d --json > mounted/ls-json.out
"$Q" keys verify "$VAULT" > mounted/keys.out
"$Q" keys repair "$VAULT" --json > mounted/keys-repair.out
unmount
for f in "${fails[@]}"; do
    IFS='|' read -r name args <<<"$f"
    # shellcheck disable=SC2086
    run_as "unmounted/$name" $args
    for x in rc out err; do
        diff "unmounted/$name.$x" "mounted/$name.$x" > diff.txt ||
            fail "qsfs $args: its $x differs mounted (+) from unmounted (-): $(cat diff.txt)"
    done
done
"$Q" ls "$VAULT" /d -l > unmounted/ls-l.out
"$Q" ls "$VAULT" /d --json > unmounted/ls-json.out
"$Q" keys verify "$VAULT" > unmounted/keys.out
"$Q" keys repair "$VAULT" --json > unmounted/keys-repair.out
for x in ls-l ls-json keys keys-repair; do
    diff "unmounted/$x.out" "mounted/$x.out" > diff.txt ||
        fail "$x: the output differs mounted (+) from unmounted (-): $(cat diff.txt)"
done
grep -qx "stdin.txt" <<<"$("$Q" ls "$VAULT" /d)" || fail "qsfs ls after the unmount misses stdin.txt"

# A read-only mount: reads work, changes are refused.
MOUNT_OPTS=(-o ro)
mount_vault
"$Q" get "$VAULT" /d/written.bin - | cmp - written.bin || fail "qsfs get on a read-only mount"
for args in "put $VAULT v1.txt /d/ro.txt" "rm $VAULT /d/stdin.txt" "mkdir $VAULT /d/ro"; do
    # shellcheck disable=SC2086
    run_as ro $args
    assert_eq 1 "$(cat ro.rc)" "exit status of qsfs $args on a read-only mount"
    grep -q "mounted read-only" ro.err || fail "qsfs $args on a read-only mount said: $(cat ro.err)"
done
[ -e "$MNT/d/stdin.txt" ] || fail "qsfs rm on a read-only mount removed the file"
unmount
MOUNT_OPTS=()

# A stopped mount process: the command gives up after its silence limit.
mount_vault
pid=$MOUNTED_PID
kill -STOP "$pid"
start=$SECONDS
rc=0
timeout 120 "$Q" ls "$VAULT" / > /dev/null 2> stopped.err || rc=$?
took=$((SECONDS - start))
kill -CONT "$pid"
assert_eq 1 "$rc" "exit status of qsfs ls on a stopped mount process (after $took s): $(cat stopped.err)"
grep -q "did not answer" stopped.err || fail "qsfs ls on a stopped mount process said: $(cat stopped.err)"
[ "$took" -lt 90 ] || fail "qsfs ls on a stopped mount process took $took s"
stopped_took=$took
assert_eq "through the mount" "$(cat "$MNT/d/mounted.txt")" "the mount after SIGCONT"

# The mount process killed with -9: its socket file stays; every command
# fails at once, naming the fix.
kill -9 "$pid"
wait_exited "$pid"
[ -S "$VAULT/control.sock" ] || fail "the killed mount's control socket file is gone (the case needs it)"
mnt_real=$(realpath "$MNT")
for args in "status $VAULT" "ls $VAULT /" "get $VAULT /d/stdin.txt -" "put $VAULT v1.txt /x" \
    "rm $VAULT /d/stdin.txt" "mkdir $VAULT /y" "keys verify $VAULT" "scrub $VAULT"; do
    start=$SECONDS
    rc=0
    # shellcheck disable=SC2086
    timeout 60 "$Q" $args > dead.out 2> dead.err || rc=$?
    took=$((SECONDS - start))
    assert_eq 1 "$rc" "exit status of qsfs $args after the mount process was killed: $(cat dead.err)"
    [ "$took" -le 5 ] || fail "qsfs $args took $took s after the mount process was killed"
    grep -qF "qsfs umount $mnt_real" dead.err || fail "qsfs $args after kill -9 does not name qsfs umount: $(cat dead.err)"
    grep -qF "fusermount3 -u $mnt_real" dead.err || fail "qsfs $args after kill -9 does not name fusermount3 -u: $(cat dead.err)"
done
fusermount3 -u "$MNT" || fail "fusermount3 -u of the dead mount"
! is_mounted "$MNT" || fail "still mounted after fusermount3 -u"
assert_eq "from stdin" "$("$Q" get "$VAULT" /d/stdin.txt -)" "qsfs get after the dead mount was cleared"
echo "every command agreed with the mount; a stopped mount process cost a command $stopped_took s, a killed one none"
