# kill -9 of the mount process while files are being written: every file
# whose cp (or dd conv=fsync) returned 0 before the kill reads back
# intact after the dead mount is cleaned up and the vault mounted again
# (recovery reseals staged data). Four rounds, each killed at a random
# moment 0-300 ms after the writer recorded its second file. Afterwards:
# no repair debt, no leftover or unaccounted shard files, keys verify
# clean, staging empty.
source "$(dirname "$0")/lib-mount.sh"

ROUNDS=4

# A pool of sources: 1 B to ~1.5 MB.
mkdir pool
sizes=(1 17 512 4096 4097 65536 65537 100000 300001 1048576 1500000 7 2048 131072 777777 10 9999 250000)
for i in "${!sizes[@]}"; do head -c "${sizes[$i]}" /dev/urandom > "pool/$i"; done
for i in "${!sizes[@]}"; do sha256sum < "pool/$i" | cut -d' ' -f1 > "pool/$i.sum"; done
npool=${#sizes[@]}

mount_fresh
: > recorded

# Writes files into $MNT/r$1 until a write fails; appends "path sum" to
# `recorded` only after cp/dd returned 0.
writer() {
    local round="$1" i=0 k
    while :; do
        k=$(((i * 7 + round) % npool))
        if [ $((i % 3)) -eq 2 ]; then
            dd if="pool/$k" of="$MNT/r$round/f$i" bs=64k conv=fsync status=none 2>/dev/null || break
        else
            cp "pool/$k" "$MNT/r$round/f$i" 2>/dev/null || break
        fi
        echo "r$round/f$i $(cat "pool/$k.sum")" >> recorded
        i=$((i + 1))
    done
}

check_recorded() {
    local path sum n=0
    while read -r path sum; do
        [ -f "$MNT/$path" ] || fail "$1: $path (cp returned 0) is missing"
        got=$(sha256sum < "$MNT/$path" | cut -d' ' -f1)
        [ "$got" = "$sum" ] || fail "$1: $path (cp returned 0) has the wrong content"
        n=$((n + 1))
    done < recorded
    echo "$1: $n recorded files intact"
}

# True once the writer of this round recorded 2 files; fails the case if
# the writer stopped before that (a write failed on a live mount).
two_recorded() {
    [ $(($(wc -l < recorded) - before)) -ge 2 ] && return 0
    kill -0 "$wpid" 2>/dev/null ||
        fail "round $round: the writer stopped after $(($(wc -l < recorded) - before)) files, before the kill"
    return 1
}
writer_stopped() { ! kill -0 "$wpid" 2>/dev/null; }

for round in $(seq 1 "$ROUNDS"); do
    mkdir "$MNT/r$round"
    before=$(wc -l < recorded)
    writer "$round" &
    wpid=$!
    # Not a fixed sleep: a dd conv=fsync waits for a group commit (up to
    # 500 ms of gathering), and a loaded machine is slower still.
    wait_until 60 "round $round: the writer to record 2 files" two_recorded
    sleep "$(printf '0.%03d' $((RANDOM % 301)))"
    pid=$(mount_pid)
    ours_alive "$pid" || fail "round $round: mount process $pid is not running"
    kill -9 "$pid"
    # The writer stops at its first failed write (the connection is gone).
    wait_until 60 "round $round: the writer to stop after the kill" writer_stopped
    wait "$wpid" || true
    wait_exited "$pid"
    fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT" || fail "round $round: cannot clean up the dead mount"
    ! is_mounted "$MNT" || fail "round $round: still mounted after cleanup"
    written=$(($(wc -l < recorded) - before))
    echo "round $round: $written files written before the kill"
    [ "$written" -ge 2 ] || fail "round $round: only $written files recorded, 2 were before the kill"
    mount_vault
    check_recorded "round $round"
done
[ "$(wc -l < recorded)" -ge $((2 * ROUNDS)) ] || fail "only $(wc -l < recorded) files recorded over $ROUNDS rounds"

# A file written and closed (its seal committed), opened again and one
# byte written without a close, then the kill: the closed content and the
# unclosed byte must both survive (the staging journal keeps the byte). The fsync before the close
# returns once the seal's group commit is durable (a sleep could end
# before the committer's 500 ms of gathering, and then this tested a
# closed but uncommitted file, which the rounds above cover). The python
# keeps the reopened file open until the mount process is dead, so the
# byte is never closed.
pid=$(mount_pid)
python3 - "$MNT/reopened" "$pid" <<'PY'
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
os.write(fd, b"A" * 1048576)
os.fsync(fd)
os.close(fd)
fd = os.open(sys.argv[1], os.O_RDWR)
os.pwrite(fd, b"B", 0)
pid = int(sys.argv[2])
os.kill(pid, 9)
deadline = time.monotonic() + 60
while True:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            alive = f.read() != b""  # empty for a zombie
    except OSError:
        alive = False
    if not alive:
        break
    if time.monotonic() > deadline:
        sys.exit(f"mount process {pid} still alive 60 s after kill -9")
    time.sleep(0.05)
PY
wait_exited "$pid"
fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT" || fail "cannot clean up the dead mount"
mount_vault
verdict=$(python3 - "$MNT/reopened" <<'PY'
import sys
d = open(sys.argv[1], "rb").read()
A = b"A" * 1048576
if d == b"B" + A[1:]:
    print("ok")
elif d == A:
    print("the unclosed byte was lost")
elif d == b"B" + bytes(1048575):
    print("zeros")
else:
    print(f"other: {len(d)} bytes, {d.count(b'A')} A, {d.count(0)} zero bytes, starts {d[:8]!r}")
PY
)
assert_eq ok "$verdict" "a reopened file with an unclosed write after kill -9"

# A clean unmount: nothing staged, nothing owed, nothing left over.
unmount
# Recovery after the kills logged no error...
errors=$(grep ' ERROR ' "$VAULT/qsfs.log" || true)
[ -z "$errors" ] || fail "errors in qsfs.log after the kills:
$errors"
[ -z "$(ls -A "$VAULT/staging")" ] || fail "staging not empty after a clean unmount: $(ls -A "$VAULT/staging")"
"$Q" status "$VAULT" > status.txt
grep -q "repair    nothing owed" status.txt || fail "repair debt after the kills: $(cat status.txt)"
"$Q" status "$VAULT" --json > status.json
python3 - status.json <<'PY' || fail "status --json after the kills: $(cat status.json)"
import json, sys
s = json.load(open(sys.argv[1]))
bad = []
for key in ("degraded_objects", "missing_shards", "pending_deletions"):
    if s[key] != 0:
        bad.append(f"{key}={s[key]}")
for n in s["nodes"]:
    if n["health"]["state"] != "ok":
        bad.append(f"{n['name']} health {n['health']}")
    if n["leftovers"] != 0:
        bad.append(f"{n['name']} leftovers={n['leftovers']}")
    if n["shards_found"] != n["shards_expected"]:
        bad.append(f"{n['name']} shards found {n['shards_found']} expected {n['shards_expected']}")
if bad:
    print("; ".join(bad), file=sys.stderr)
    sys.exit(1)
PY
"$Q" keys verify "$VAULT" > verify.txt 2>&1 || fail "qsfs keys verify: $(cat verify.txt)"
# Every recorded file once more, through the CLI.
while read -r path sum; do
    got=$("$Q" get "$VAULT" "/$path" - | sha256sum | cut -d' ' -f1)
    [ "$got" = "$sum" ] || fail "qsfs get /$path after the kills: wrong content"
done < recorded
