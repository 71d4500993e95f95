# Helpers for the shell cases of the FUSE mount (tests/sh/case-mount-*.sh).
# Sourced by each case, which runs under `bash -euo pipefail` in a fresh
# temp folder with $QSFS_BIN set (see tests/sh/run.sh).
#
#   mount_fresh [INIT-ARGS...]  init a vault at $PWD/v, mount it at $PWD/mnt
#                               (options from the MOUNT_OPTS array), and
#                               arrange for the EXIT trap to unmount it;
#                               with QSFS_TEST_NO_PACKS=1, init --no-packs
#   mount_vault                 mount the existing $VAULT at $MNT
#   remount                     `qsfs umount` (waits for every seal), mount again
#   unmount                     `qsfs umount` with a check that nothing stays mounted
#   mount_pid                   pid of the mount process from $VAULT/.lock
#   fail MSG / assert_eq EXPECTED ACTUAL [WHAT]
#   wait_until SECONDS WHAT CMD...
#                               run CMD every 50 ms until it succeeds; fail
#                               ("WHAT") if it has not within SECONDS
#   make_tree DIR               a varied tree (see below)
#   tree_meta DIR               one line per entry: type, mode, owner, size,
#                               links, mtime with nanoseconds, target, xattrs
#   compare_trees A B           diff -r (following and not following symlinks)
#                               plus tree_meta of both
#   log_tail [N]                last lines of $VAULT/qsfs.log (for messages)

Q="${QSFS_BIN:?set QSFS_BIN to the qsfs binary}"
VAULT="$PWD/v"
MNT="$PWD/mnt"
MOUNT_OPTS=()
# Every mount process this case started (by pid), for the EXIT trap.
STARTED_PIDS=()

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

assert_eq() {
    [ "$1" = "$2" ] || fail "${3:-value}: expected [$1], got [$2]"
}

# Instead of a sleep before an assertion: poll a condition with a deadline
# far above what a slow, loaded machine needs. CMD may itself `fail` to
# stop early (say, when the process it waits on died).
wait_until() {
    local limit="$1" what="$2" deadline
    shift 2
    deadline=$((SECONDS + limit))
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || fail "waited $limit s for $what"
        sleep 0.05
    done
}

log_tail() {
    [ -f "$VAULT/qsfs.log" ] && tail -n "${1:-20}" "$VAULT/qsfs.log" | sed 's/^/    log: /' >&2
    return 0
}

# (mountpoint(1) says no for a dead mount, whose stat fails: ask findmnt too.)
is_mounted() {
    mountpoint -q "$1" 2>/dev/null ||
        findmnt -n --mountpoint "$(realpath -m "$1")" >/dev/null 2>&1
}

mount_pid() {
    local text
    text=$(cat "$VAULT/.lock" 2>/dev/null) || return 1
    [[ "$text" =~ ^pid\ ([0-9]+)\ \(qsfs\ mount\) ]] || return 1
    echo "${BASH_REMATCH[1]}"
}

# True while PID is alive and still one of our qsfs mount processes.
ours_alive() {
    local pid="$1" cmd
    [ -r "/proc/$pid/cmdline" ] || return 1
    cmd=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ "$cmd" == *qsfs*mount*"$VAULT"* ]]
}

# True once PID has fully exited: gone, or a zombie. An exiting process's
# cmdline empties (its memory goes) before its files close, so `ours_alive`
# turns false while the FUSE device is still open; a request made then is
# aborted with ECONNABORTED instead of failing with ENOTCONN.
#
# The thread group leader of a killed process can show as a zombie while
# its other threads are still exiting, and they share its open files (the
# vault lock among them): so a zombie counts only once it is the last
# thread left.
exited() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    stat=${stat##*) }
    [[ "$stat" == Z* || "$stat" == X* ]] || return 1
    [ "$(ls "/proc/$1/task" 2>/dev/null | wc -l)" -le 1 ]
}

# Waits until PID (a mount process just killed with -9) has fully exited.
wait_exited() {
    wait_until 60 "mount process $1 to exit after kill -9" exited "$1"
}

_mount_cleanup() {
    local rc=$?
    set +e
    if [ "$rc" -ne 0 ]; then
        echo "case failed (status $rc); end of $VAULT/qsfs.log:" >&2
        log_tail 30
    fi
    cd "${CASE_DIR:-/}" 2>/dev/null || cd /
    # Anything a case left running in the background inside the mount.
    local j
    for j in $(jobs -p); do kill "$j" 2>/dev/null; done
    wait 2>/dev/null
    for m in "$MNT" ${EXTRA_MOUNTS[@]+"${EXTRA_MOUNTS[@]}"}; do
        if is_mounted "$m"; then
            timeout 60 "$Q" umount "$m" >/dev/null 2>&1 ||
                fusermount3 -u "$m" 2>/dev/null ||
                umount -l "$m" 2>/dev/null
        fi
    done
    local pid n
    for pid in ${STARTED_PIDS[@]+"${STARTED_PIDS[@]}"}; do
        n=0
        while ours_alive "$pid" && [ "$n" -lt 50 ]; do
            sleep 0.1
            n=$((n + 1))
        done
        if ours_alive "$pid"; then
            echo "mount process $pid still alive after unmount: killing it" >&2
            kill -9 "$pid" 2>/dev/null
        fi
    done
    if [ -n "${QSFS_TEST_CLUSTER:-}" ]; then
        "$QSFS_CLUSTER_SCRIPT" stop "$VAULT"
    fi
    exit "$rc"
}
CASE_DIR="$PWD"
EXTRA_MOUNTS=()
trap _mount_cleanup EXIT

mount_vault() {
    mkdir -p "$MNT"
    local out pid
    # debug: the cases read the per-seal lines (shards written, bytes).
    out=$("$Q" mount "$VAULT" "$MNT" --log-level "${QSFS_TEST_LOG_LEVEL:-debug}" ${MOUNT_OPTS[@]+"${MOUNT_OPTS[@]}"} 2>&1) || fail "qsfs mount failed: $out"
    [[ "$out" == "mounted $VAULT at $MNT (qsfs pid "*"; log: $VAULT/qsfs.log)" ]] || fail "qsfs mount said: $out"
    is_mounted "$MNT" || fail "qsfs mount returned but nothing is mounted at $MNT"
    pid=$(mount_pid) || fail "no pid in $VAULT/.lock: $(cat "$VAULT/.lock" 2>&1)"
    [[ "$out" == *"(qsfs pid $pid;"* ]] || fail "mount said [$out] but $VAULT/.lock has pid $pid"
    STARTED_PIDS+=("$pid")
    MOUNTED_PID="$pid"
}

mount_fresh() {
    local out
    # QSFS_TEST_NO_PACKS=1 (run.sh): a file per shard in the node folders.
    if [ -n "${QSFS_TEST_NO_PACKS:-}" ]; then set -- --no-packs "$@"; fi
    if [ -n "${QSFS_TEST_CLUSTER:-}" ]; then
        out=$("$Q" init --direct "$VAULT" "$@" 2>&1) || fail "qsfs init failed: $out"
        out=$("$QSFS_CLUSTER_SCRIPT" start "$VAULT" 2>&1) || fail "local-cluster start failed: $out"
    else
        out=$("$Q" init "$VAULT" "$@" 2>&1) || fail "qsfs init failed: $out"
    fi
    mount_vault
}

unmount() {
    local out
    out=$("$Q" umount "$MNT" 2>&1) || fail "qsfs umount $MNT failed: $out"
    ! is_mounted "$MNT" || fail "qsfs umount returned but $MNT is still mounted"
    ! ours_alive "$MOUNTED_PID" || fail "qsfs umount returned but mount process $MOUNTED_PID is still alive"
}

# qsfs umount while N files cannot be sealed: it exits 3 and says so.
unmount_staged() {
    local want="$1" out rc=0
    out=$("$Q" umount "$MNT" 2>&1) || rc=$?
    [ "$rc" -eq 3 ] || fail "qsfs umount with $want unsealed file(s) exited $rc (want 3): $out"
    [[ "$out" == *"$want file(s) could not be sealed"* ]] || fail "qsfs umount said: $out"
    ! is_mounted "$MNT" || fail "qsfs umount returned but $MNT is still mounted"
    ! ours_alive "$MOUNTED_PID" || fail "qsfs umount returned but mount process $MOUNTED_PID is still alive"
}

remount() {
    unmount
    mount_vault
}

# A varied tree: nested folders, files of 0 B, 1 B, a few KB, ~1 MB and
# ~10 MB of random bytes, names with spaces, quotes and UTF-8, hard links,
# symlinks (relative, absolute, dangling), user xattrs (text, binary,
# empty, on a folder), odd modes (0600 0755 4755 2750 1777 0640 0444),
# other owners, a FIFO, and a distinct mtime with nanoseconds on every
# entry (folders last, so their mtime sticks).
make_tree() {
    local d="$1"
    mkdir -p "$d/a/b/c/deep folder" "$d/with space" "$d/ünïcødé/日本語" "$d/empty-dir" "$d/sticky" "$d/sgid"
    : > "$d/empty"
    printf 'x' > "$d/one-byte"
    printf 'hello\n' > "$d/hello.txt"
    head -c 3001 /dev/urandom > "$d/a/3k.bin"
    head -c 4096 /dev/urandom > "$d/a/b/4k.bin"
    head -c 1048577 /dev/urandom > "$d/a/b/c/1M.bin"
    head -c 10485763 /dev/urandom > "$d/with space/ten MB random.bin"
    printf 'Grüße, 世界\n' > "$d/ünïcødé/日本語/挨拶.txt"
    printf 'quoted\n' > "$d/with space/it's \"quoted\" & \$HOME.txt"
    printf 'dash\n' > "$d/a/-leading-dash"
    for i in 1 2 3 4 5 6 7 8; do head -c $((i * 517)) /dev/urandom > "$d/a/b/c/deep folder/small $i"; done
    # Hard links: a pair and a triple, across folders.
    ln "$d/a/3k.bin" "$d/a/b/3k hard link"
    ln "$d/hello.txt" "$d/with space/hello link 2"
    ln "$d/hello.txt" "$d/ünïcødé/hello link 3"
    # Symlinks.
    ln -s ../3k.bin "$d/a/b/rel-link"
    ln -s "../with space/ten MB random.bin" "$d/a/rel link to big"
    ln -s /etc/passwd "$d/abs-link"
    ln -s "nowhere/does not exist" "$d/dangling"
    ln -s c "$d/a/b/dir-link"
    # A FIFO.
    mkfifo "$d/a/fifo"
    # Owners, then modes (chown clears set-user-id bits).
    printf 'owned by 1000\n' > "$d/a/user-file"
    printf 'owned by 1234\n' > "$d/a/other-owner"
    chown 1000:1000 "$d/a/user-file"
    chown 1234:5678 "$d/a/other-owner" "$d/empty-dir"
    printf 'secret\n' > "$d/a/secret"
    printf '#!/bin/sh\necho hi\n' > "$d/a/script.sh"
    printf 'suid\n' > "$d/a/suid-file"
    chmod 0600 "$d/a/secret"
    chmod 0755 "$d/a/script.sh"
    chmod 4755 "$d/a/suid-file"
    chmod 0640 "$d/a/fifo"
    chmod 0444 "$d/one-byte"
    chmod 2750 "$d/sgid"
    chmod 1777 "$d/sticky"
    printf 'in sgid\n' > "$d/sgid/inside"
    printf 'in sticky\n' > "$d/sticky/inside"
    # Extended attributes in the user namespace.
    setfattr -n user.comment -v "hello world" "$d/hello.txt"
    setfattr -n user.binary -v 0x00ff10fe7f "$d/a/3k.bin"
    setfattr -n user.empty "$d/a/3k.bin"
    setfattr -n user.long -v "$(head -c 300 /dev/zero | tr '\0' 'L')" "$d/a/b/c/1M.bin"
    setfattr -n user.utf8 -v "ünï 日本" "$d/ünïcødé/日本語/挨拶.txt"
    setfattr -n user.dir -v "a folder" "$d/a/b"
    # Distinct mtimes (and atimes) with nanoseconds, children before parents.
    local i=0 p
    while IFS= read -r -d '' p; do
        i=$((i + 1))
        touch -h -d "@$((1500000000 + i * 86413)).$(printf '%09d' $(((i * 123456791) % 1000000000)))" "$p"
    done < <(find "$d" -depth -print0)
}

# One line per entry of DIR (sorted by path): path, type, mode, owner,
# size (not for folders), link count, mtime with nanoseconds, symlink
# target and the user xattrs in hex.
tree_meta() {
    (
        cd "$1"
        find . -print0 | LC_ALL=C sort -z | while IFS= read -r -d '' p; do
            if [ -d "$p" ] && [ ! -L "$p" ]; then
                stat -c '%n|%F|%a|%u:%g|-|%h|%y' -- "$p"
            else
                stat -c '%n|%F|%a|%u:%g|%s|%h|%y|%N' -- "$p"
            fi
            getfattr -h -d -m '^user\.' -e hex -- "$p" 2>/dev/null | grep -v '^# file:' | grep -v '^$' | LC_ALL=C sort | sed 's/^/    /' || true
        done
    )
}

compare_trees() {
    local a="$1" b="$2"
    # (diff reports two FIFOs as differing: their type is checked by tree_meta.)
    diff -r --no-dereference -x fifo "$a" "$b" || fail "diff -r --no-dereference $a $b"
    # Following symlinks too (the dangling one cannot be followed).
    diff -r -x dangling -x fifo "$a" "$b" || fail "diff -r $a $b"
    tree_meta "$a" > "$CASE_DIR/meta.a"
    tree_meta "$b" > "$CASE_DIR/meta.b"
    if ! diff -u "$CASE_DIR/meta.a" "$CASE_DIR/meta.b" > "$CASE_DIR/meta.diff"; then
        cat "$CASE_DIR/meta.diff" >&2
        fail "metadata of $b differs from $a (- $a, + $b)"
    fi
    [ "$(wc -l < "$CASE_DIR/meta.a")" -gt 40 ] || fail "tree_meta of $a is too short: $(cat "$CASE_DIR/meta.a")"
}
