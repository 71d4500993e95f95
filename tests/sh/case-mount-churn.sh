# Churn on a few names from several processes at once: writes, appends,
# fsyncs, truncates, utimes, chmods, renames and unlinks racing each other
# and the committer (the mix fsstress makes). Every process finishes (an
# unlink, a commit and an eviction once waited for each other's locks
# forever); afterwards every file reads back through the mount exactly as
# `qsfs get` reads it after the unmount, and fsck is clean.
source "$(dirname "$0")/lib-mount.sh"

mount_fresh
mkdir "$MNT/churn"

# Eight workers for 10 s each; a worker that has not ended after 120 s is
# stuck, not slow.
python3 - "$MNT/churn" <<'PY' || fail "the churn workers did not all finish (see above)"
import errno, os, random, sys, time
root = sys.argv[1]
names = [os.path.join(root, f"f{i}") for i in range(8)]

def work(seed):
    rng = random.Random(seed)
    end = time.monotonic() + 10
    ops = 0
    while time.monotonic() < end:
        a, b = rng.choice(names), rng.choice(names)
        op = rng.randrange(9)
        try:
            if op == 0:
                with open(a, "wb") as f:
                    f.write(os.urandom(rng.randrange(1, 20000)))
            elif op == 1:
                with open(a, "ab") as f:
                    f.write(b"x" * rng.randrange(1, 300))
            elif op == 2:
                fd = os.open(a, os.O_WRONLY | os.O_CREAT, 0o644)
                os.pwrite(fd, os.urandom(rng.randrange(1, 5000)), rng.randrange(0, 30000))
                os.fsync(fd)
                os.close(fd)
            elif op == 3:
                os.truncate(a, rng.randrange(0, 40000))
            elif op == 4:
                t = rng.randrange(1, 2_000_000_000)
                os.utime(a, (t, t))
            elif op == 5:
                os.chmod(a, rng.choice([0o600, 0o644, 0o640]))
            elif op == 6:
                os.rename(a, b)
            elif op == 7:
                os.unlink(a)
            else:
                with open(a, "rb") as f:
                    f.read()
        except FileNotFoundError:
            pass
        ops += 1
    return ops

pids = []
for w in range(8):
    pid = os.fork()
    if pid == 0:
        n = work(w)
        print(f"worker {w}: {n} operations")
        os._exit(0)
    pids.append(pid)
deadline = time.monotonic() + 120
left = set(pids)
while left and time.monotonic() < deadline:
    for pid in list(left):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            left.discard(pid)
            if status != 0:
                sys.exit(f"worker pid {pid} failed (status {status})")
    time.sleep(0.1)
if left:
    for pid in left:
        os.kill(pid, 9)
    sys.exit(f"workers {sorted(left)} still running 120 s after they began (10 s of work): the mount is stuck")
PY

# Opens racing unlinks and renames over the name: an open that wins its
# lookup reads the whole file it opened (on ext4 it stays readable); one
# that loses gets ENOENT. Never EIO, never a mix of two versions. (An open
# that loaded a file's state just before an unlink destroyed the inode
# once read objects whose keys were already gone.)
python3 - "$MNT/churn" <<'PY' || fail "opens racing unlinks and renames read wrong bytes or failed (see above)"
import os, random, sys, time
root = sys.argv[1]
names = [os.path.join(root, f"r{i}") for i in range(4)]

def writer(seed):
    rng = random.Random(seed)
    end = time.monotonic() + 5
    k = 0
    while time.monotonic() < end:
        name = rng.choice(names)
        if rng.randrange(3) == 0:
            try:
                os.unlink(name)
            except FileNotFoundError:
                pass
            continue
        k += 1
        tmp = f"{name}.w{seed}.{k}"
        b = bytes([rng.randrange(1, 256)])
        with open(tmp, "wb") as f:
            f.write(b * rng.randrange(1, 30000))
        os.rename(tmp, name)

def reader(seed):
    rng = random.Random(seed)
    end = time.monotonic() + 5
    reads = 0
    while time.monotonic() < end:
        name = rng.choice(names)
        try:
            with open(name, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            continue
        reads += 1
        if not data or data.count(data[:1]) != len(data):
            sys.exit(f"{name}: read {len(data)} bytes that are not one whole version")
    print(f"reader {seed}: {reads} whole reads")
    if reads == 0:
        sys.exit(f"reader {seed}: every open failed with ENOENT: nothing was tested")

pids = []
for w in range(6):
    pid = os.fork()
    if pid == 0:
        try:
            (writer if w < 2 else reader)(w)
            os._exit(0)
        except SystemExit as e:
            print(e, file=sys.stderr)
            os._exit(1)
        except OSError as e:
            print(f"worker {w}: {e}", file=sys.stderr)
            os._exit(1)
    pids.append(pid)
bad = 0
for pid in pids:
    _, status = os.waitpid(pid, 0)
    bad += status != 0
sys.exit(1 if bad else 0)
PY
for f in "$MNT"/churn/r*.w*; do [ -e "$f" ] && rm -f "$f"; done

# Every surviving file, through the mount, then through `qsfs get` after
# the unmount: the same bytes.
mkdir seen
for f in "$MNT"/churn/*; do
    [ -e "$f" ] || continue
    cp "$f" "seen/$(basename "$f")"
done
count=$(ls seen | wc -l)
echo "files left after the churn: $count"
unmount
for f in seen/*; do
    [ -e "$f" ] || continue
    name=$(basename "$f")
    "$Q" get "$VAULT" "/churn/$name" got.bin || fail "qsfs get /churn/$name failed"
    cmp -s "$f" got.bin || fail "/churn/$name: the mount showed other bytes than qsfs get reads after the unmount"
done
out=$("$Q" fsck "$VAULT" 2>&1) || fail "fsck after the churn: $out"
echo "$out" | tail -n 3
