#!/usr/bin/env bash
# Filesystem benchmark: qsfs mounted with FUSE against a plain folder,
# gocryptfs and securefs, on the same disk in one run. Prints a markdown
# table (see docs/BENCHMARKS.md, "Filesystem benchmark"). A benchmark, not a
# test: it fails only if a tool fails or data read back differs.
#
#   scripts/bench-fs.sh                  full run: 1 GiB file, ~4,300-file tree, 3 repetitions
#                                        (about 7 minutes here)
#   scripts/bench-fs.sh --quick          256 MiB file, ~700-file tree
#   scripts/bench-fs.sh --only qsfs,plain   a subset of plain,gocryptfs,securefs,qsfs,qsfs-direct,qsfs-backup,qsfs-files
#                                        (qsfs: the default vault, nodes behind in-process QKD links;
#                                        qsfs-direct: `qsfs init --direct`, node folders written directly;
#                                        qsfs-files: `qsfs init --no-packs`, a file per shard (the layout
#                                        before packs were the default);
#                                        qsfs-backup: the default vault with metadata backups started
#                                        (`qsfs backup` after each mount), so the mount journals every change)
#   scripts/bench-fs.sh --dir DIR        work folder parent (default /var/tmp; a disk, not tmpfs)
#   scripts/bench-fs.sh --reps N         repetitions (default 3, --quick 1); cells show
#                                        the median [lowest-highest]
#   scripts/bench-fs.sh --tree DIR,...   folders to tar for the tree rows instead
#   scripts/bench-fs.sh --steps LIST     a subset of big,tree,small,partial (default all):
#                                        big = write and read the big file; tree = tar x,
#                                        rsync, ls -lR, cat, rm -rf; small = 3,000 appends,
#                                        an autotools ./configure, fsstress -n 2000 -p 4;
#                                        partial = SQLite (DELETE and WAL journals, single-row
#                                        updates), 3,000 appends of 200 B with a cold read,
#                                        1,000 random 4 KiB writes into the big file with a
#                                        cold read, and the bytes stored after them
#
# QSFS_BIN=/path/to/qsfs measures that binary instead of building this tree.
#
# fsstress (xfstests) is not packaged by Debian: the fsstress row runs when
# `fsstress` is on PATH or FSSTRESS=/path/to/fsstress is set, and shows "-"
# otherwise. Build it yourself from xfstests (ltp/fsstress.c).
#
# Needs root (apt-get for missing tools, drop_caches for the cold rows);
# installs gocryptfs and securefs if missing (apt-get update only then).
# Every mount is made fresh in a work folder that is removed at exit; the
# EXIT trap unmounts only the mounts this script made and stops only the
# processes it started (by PID).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

dir=/var/tmp
quick=0
reps=
only=plain,gocryptfs,securefs,qsfs,qsfs-direct,qsfs-backup,qsfs-files
trees=
steps=big,tree,small,partial
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1 ;;
        --only) [ $# -ge 2 ] || { echo "--only needs a list" >&2; exit 2; }; only=$2; shift ;;
        --only=*) only=${1#--only=} ;;
        --dir) [ $# -ge 2 ] || { echo "--dir needs a folder" >&2; exit 2; }; dir=$2; shift ;;
        --dir=*) dir=${1#--dir=} ;;
        --reps) [ $# -ge 2 ] || { echo "--reps needs a number" >&2; exit 2; }; reps=$2; shift ;;
        --reps=*) reps=${1#--reps=} ;;
        --tree) [ $# -ge 2 ] || { echo "--tree needs folders" >&2; exit 2; }; trees=$2; shift ;;
        --tree=*) trees=${1#--tree=} ;;
        --steps) [ $# -ge 2 ] || { echo "--steps needs a list" >&2; exit 2; }; steps=$2; shift ;;
        --steps=*) steps=${1#--steps=} ;;
        -h|--help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

[ -n "$reps" ] || { [ $quick -eq 1 ] && reps=1 || reps=3; }
[[ "$reps" =~ ^[1-9][0-9]*$ ]] || { echo "--reps: a number from 1" >&2; exit 2; }
all_fs=(plain gocryptfs securefs qsfs qsfs-direct qsfs-backup qsfs-files)
declare -A want=()
IFS=, read -r -a sel <<<"$only"
for f in "${sel[@]}"; do
    case "$f" in plain|gocryptfs|securefs|qsfs|qsfs-direct|qsfs-backup|qsfs-files) want[$f]=1 ;; *) echo "--only: unknown filesystem '$f' (plain,gocryptfs,securefs,qsfs,qsfs-direct,qsfs-backup,qsfs-files)" >&2; exit 2 ;; esac
done
fss=()
for f in "${all_fs[@]}"; do [ -n "${want[$f]:-}" ] && fss+=("$f"); done
declare -A step=()
IFS=, read -r -a sel <<<"$steps"
for s in "${sel[@]}"; do
    case "$s" in big|tree|small|partial) step[$s]=1 ;; *) echo "--steps: unknown step '$s' (big,tree,small,partial)" >&2; exit 2 ;; esac
done
fsstress=${FSSTRESS:-$(command -v fsstress || true)}

log() { echo "[bench-fs $(date +%H:%M:%S)] $*" >&2; }
is_root=0; [ "$(id -u)" -eq 0 ] && is_root=1

# ---- tools ----------------------------------------------------------------
need_pkgs=()
if [ -n "${want[gocryptfs]:-}" ] && ! command -v gocryptfs >/dev/null; then need_pkgs+=(gocryptfs); fi
if [ -n "${want[securefs]:-}" ] && ! command -v securefs >/dev/null; then need_pkgs+=(securefs); fi
if [ -n "${step[small]:-}" ]; then
    command -v autoconf >/dev/null || need_pkgs+=(autoconf)
    # automake ships install-sh, which AC_PROG_INSTALL needs next to configure.
    command -v automake >/dev/null || need_pkgs+=(automake)
fi
if [ -n "${step[small]:-}" ] && ! command -v gcc >/dev/null; then need_pkgs+=(gcc libc6-dev); fi
if [ -n "${step[partial]:-}" ] && ! command -v sqlite3 >/dev/null; then need_pkgs+=(sqlite3); fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
    [ $is_root -eq 1 ] || { echo "missing ${need_pkgs[*]}: run as root or: sudo apt-get install ${need_pkgs[*]}" >&2; exit 1; }
    log "installing ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
scripts/deps.sh  # fuse3, rsync, time, python3 (only if missing) and cargo
[ $is_root -eq 1 ] || log "warning: not root: page cache cannot be dropped; the read rows are warm, not cold"

if [ -n "${QSFS_BIN:-}" ]; then
    QSFS=$QSFS_BIN   # another build, for before/after comparisons
    log "using $QSFS"
else
    log "building qsfs (cargo build --release --bin qsfs)"
    cargo build --release --locked --bin qsfs >&2
    QSFS="$repo/target/release/qsfs"
fi

# ---- work folder ------------------------------------------------------------
mkdir -p "$dir"
fstype=$(stat -f -c %T "$dir")
case "$fstype" in tmpfs|ramfs) log "warning: $dir is on $fstype; the numbers will not include a disk" ;; esac
work=$(mktemp -d -p "$dir" qsfs-bench-fs.XXXXXX)
# Key files `qsfs init` makes go with the run, not ~/.config.
export XDG_CONFIG_HOME="$work/config"

# Mounts and processes this script made: mount point -> kind, pid.
declare -A mount_kind=() mount_pid=()
cleanup() {
    local rc=$? m
    set +e
    for m in "${!mount_kind[@]}"; do
        if mountpoint -q "$m"; then
            log "cleanup: unmounting $m"
            if [[ "${mount_kind[$m]}" == qsfs* ]]; then
                "$QSFS" umount --timeout 120 "$m" >&2 || umount -l "$m"
            else
                fusermount -u "$m" 2>/dev/null || umount "$m" 2>/dev/null || umount -l "$m"
            fi
        fi
        local p=${mount_pid[$m]:-}
        if [ -n "$p" ]; then
            local i
            for i in $(seq 100); do alive "$p" || break; sleep 0.1; done
            if alive "$p"; then log "cleanup: stopping pid $p"; kill "$p"; fi
        fi
    done
    rm -rf -- "$work"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }'; }
drop_caches() { sync; [ $is_root -eq 1 ] && echo 3 > /proc/sys/vm/drop_caches || true; }
wait_mounted() { # MNT PID
    local i
    for i in $(seq 300); do
        mountpoint -q "$1" && return 0
        alive "$2" || { log "$1: the filesystem process $2 exited"; return 1; }
        sleep 0.1
    done
    log "$1: not mounted after 30 s"; return 1
}
alive() { # PID: running, not a zombie (the qsfs daemon is reaped by init, which can take a second)
    local st
    st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}
wait_gone() { # PID
    local i
    for i in $(seq 6000); do alive "$1" || return 0; sleep 0.02; done
    log "pid $1 still running 120 s after unmount"; return 1
}

# ---- sources ---------------------------------------------------------------
if [ $quick -eq 1 ]; then big_mib=256; else big_mib=1024; fi
# Python's standard library as Debian installs it (/usr/lib/python3.N, the
# newest N); the python3 on PATH may be another build with a bigger tree.
py=$(ls -d /usr/lib/python3.[0-9]* 2>/dev/null | grep -E '/python3\.[0-9]+$' | sort -V | tail -n 1 || true)
[ -n "$py" ] || py=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
if [ -z "$trees" ]; then
    if [ $quick -eq 1 ]; then trees=$py; else trees=$py; [ -d /usr/lib/python3/dist-packages ] && trees+=,/usr/lib/python3/dist-packages; fi
fi
IFS=, read -r -a tree_dirs <<<"$trees"
tar_excl=()
[ $quick -eq 1 ] && tar_excl=(--exclude=__pycache__ --exclude="$(basename "$py")/test")

log "making the ${big_mib} MiB random source and the tree tar in $work"
src="$work/src.bin"
{ [ -n "${step[big]:-}" ] || [ -n "${step[partial]:-}" ]; } && head -c $((big_mib << 20)) /dev/urandom > "$src"
tarf="$work/tree.tar"
targs=()
for d in "${tree_dirs[@]}"; do
    [ -d "$d" ] || { echo "--tree: $d is not a folder" >&2; exit 2; }
    targs+=(-C "$(dirname "$d")" "$(basename "$d")")
done
tar cf "$tarf" "${tar_excl[@]}" "${targs[@]}" || [ $? -eq 1 ]  # 1: a file changed while read
# The rsync source: the same tree, extracted once on the same disk.
srctree="$work/srctree"
mkdir -p "$srctree"
tar xf "$tarf" -C "$srctree"
tree_files=$(find "$srctree" -type f | wc -l)
tree_dirs_n=$(find "$srctree" -type d | wc -l)
tree_bytes=$(find "$srctree" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
# The configure row: an autotools configure script, made once here.
cfgsrc="$work/cfgsrc"
if [ -n "${step[small]:-}" ]; then
    mkdir -p "$cfgsrc"
    cp "$repo/scripts/bench-data/configure/configure.ac" "$cfgsrc/"
    cp "$(automake --print-libdir)/install-sh" "$cfgsrc/"
    (cd "$cfgsrc" && autoconf && autoheader) || { log "autoconf failed"; exit 1; }
    rm -rf "$cfgsrc/autom4te.cache"
    [ -n "$fsstress" ] || log "no fsstress on PATH and FSSTRESS unset: the fsstress row is skipped (build it from xfstests)"
fi
sync

# ---- filesystems: create/mount/unmount --------------------------------------
pw="$work/password"
echo "qsfs-bench-fs-$$-$RANDOM" > "$pw"; chmod 600 "$pw"

backing_of() { # where the filesystem keeps its data (for du)
    case "$1" in plain) echo "$work/plain" ;; gocryptfs) echo "$work/gocryptfs.cipher" ;; securefs) echo "$work/securefs.data" ;; qsfs) echo "$work/qsfs.vault" ;; qsfs-direct) echo "$work/qsfs-direct.vault" ;; qsfs-backup) echo "$work/qsfs-backup.vault" ;; qsfs-files) echo "$work/qsfs-files.vault" ;; esac
}
mnt_of() { case "$1" in plain) echo "$work/plain" ;; *) echo "$work/$1.mnt" ;; esac; }

fs_create() {
    case "$1" in
        plain) mkdir -p "$work/plain" ;;
        gocryptfs) mkdir -p "$work/gocryptfs.cipher" "$work/gocryptfs.mnt"
                   gocryptfs -init -q -passfile "$pw" "$work/gocryptfs.cipher" >&2 ;;
        securefs) mkdir -p "$work/securefs.data" "$work/securefs.mnt"
                  securefs create --pass "$(cat "$pw")" "$work/securefs.data" >/dev/null ;;
        qsfs) mkdir -p "$work/qsfs.mnt"; "$QSFS" init "$work/qsfs.vault" >/dev/null ;;
        qsfs-direct) mkdir -p "$work/qsfs-direct.mnt"; "$QSFS" init --direct "$work/qsfs-direct.vault" >/dev/null ;;
        qsfs-backup) mkdir -p "$work/qsfs-backup.mnt"; "$QSFS" init "$work/qsfs-backup.vault" >/dev/null ;;
        qsfs-files) mkdir -p "$work/qsfs-files.mnt"; "$QSFS" init --no-packs "$work/qsfs-files.vault" >/dev/null ;;
    esac
}
fs_mount() {
    local m p
    m=$(mnt_of "$1")
    case "$1" in
        plain) return 0 ;;
        gocryptfs)
            gocryptfs -fg -q -passfile "$pw" "$work/gocryptfs.cipher" "$m" >>"$work/gocryptfs.log" 2>&1 &
            p=$! ;;
        securefs)
            securefs mount --pass "$(cat "$pw")" "$work/securefs.data" "$m" >>"$work/securefs.log" 2>&1 &
            p=$! ;;
        qsfs|qsfs-direct|qsfs-backup|qsfs-files)
            mount_kind[$m]=$1
            "$QSFS" mount "$work/$1.vault" "$m" >&2
            p=$(awk '$1 == "pid" { print $2 }' "$work/$1.vault/.lock")
            if [ "$1" = qsfs-backup ]; then "$QSFS" backup "$work/$1.vault" >/dev/null; fi ;;
    esac
    mount_kind[$m]=$1; mount_pid[$m]=$p
    wait_mounted "$m" "$p"
}
fs_unmount() { # unmounts and waits until the process has exited; then syncs the backing disk
    local m p
    m=$(mnt_of "$1")
    case "$1" in
        plain) ;;
        qsfs|qsfs-direct|qsfs-backup|qsfs-files) "$QSFS" umount "$m" >&2; wait_gone "${mount_pid[$m]}" ;;
        *) fusermount -u "$m" 2>/dev/null || umount "$m"; wait_gone "${mount_pid[$m]}" ;;
    esac
    sync -f "$(backing_of "$1")"
}
fs_pid() { local m; m=$(mnt_of "$1"); echo "${mount_pid[$m]:-}"; }

# ---- the run -----------------------------------------------------------------
declare -A R=()   # R[row,fs] = " value value ..." (one per repetition)
rows=(write read tar tar_umount rsync ls cat rm appends configure fsstress
      sql_delete sql_wal sql_update app200 app200_read randw randw_read)
run_fs() {
    local fs=$1 m t0 bytes
    m=$(mnt_of "$fs")
    log "$fs: create and mount (load $(cut -d' ' -f1-3 /proc/loadavg))"
    fs_create "$fs"
    fs_mount "$fs"

    if [ -n "${step[big]:-}" ]; then
        # 1. write: the source is read once first so dd measures the filesystem
        cat "$src" > /dev/null
        log "$fs: write ${big_mib} MiB (dd conv=fsync)"
        t0=$(now)
        dd if="$src" of="$m/big" bs=1M conv=fsync status=none
        R[write,$fs]+=" $(since "$t0")"
        bytes=$(stat -c %s "$m/big")
        [ "$bytes" -eq $((big_mib << 20)) ] || { log "$fs: big is $bytes bytes"; return 1; }

        # 2. cold read
        drop_caches
        log "$fs: read back (cold)"
        t0=$(now)
        dd if="$m/big" of=/dev/null bs=1M status=none
        R[read,$fs]+=" $(since "$t0")"
        cmp "$src" "$m/big" || { log "$fs: the file read back differs"; return 1; }
        rm -f "$m/big"
    fi

    if [ -n "${step[tree]:-}" ]; then
        # 3. tar x, then unmount (flushes) and sync of the backing disk
        mkdir "$m/x"
        sync
        log "$fs: tar x"
        t0=$(now)
        tar xf "$tarf" -C "$m/x"
        R[tar,$fs]+=" $(since "$t0")"
        fs_unmount "$fs"
        R[tar_umount,$fs]+=" $(since "$t0")"
        R[stored,$fs]+=" $(du -sb "$(backing_of "$fs")" | awk '{ print $1 }')"
        fs_mount "$fs"

        # 4. rsync -a into a fresh folder (source: the same tree on the plain disk, warm)
        find "$srctree" -type f -exec cat {} + > /dev/null
        log "$fs: rsync -a"
        t0=$(now)
        rsync -a "$srctree/" "$m/r/"
        R[rsync,$fs]+=" $(since "$t0")"

        # 5. ls -lR of the extracted tree (fresh mount, page cache not dropped)
        log "$fs: ls -lR"
        t0=$(now)
        ls -lR "$m/x" > /dev/null
        R[ls,$fs]+=" $(since "$t0")"

        # 6. read every file, cold
        drop_caches
        log "$fs: cat every file (cold)"
        t0=$(now)
        find "$m/x" -type f -exec cat {} + > /dev/null
        R[cat,$fs]+=" $(since "$t0")"
        diff -r --no-dereference "$srctree" "$m/x" >/dev/null || { log "$fs: the extracted tree differs"; return 1; }
        diff -r --no-dereference "$srctree" "$m/r" >/dev/null || { log "$fs: the rsynced tree differs"; return 1; }

        # 7. rm -rf
        log "$fs: rm -rf"
        t0=$(now)
        rm -rf "$m/x"
        R[rm,$fs]+=" $(since "$t0")"
        rm -rf "$m/r"
    fi

    if [ -n "${step[small]:-}" ]; then
        # 8. 3,000 appends, each an open, a write and a close (a script's log)
        mkdir "$m/app"
        log "$fs: 3000 appends"
        t0=$(now)
        for i in $(seq 3000); do echo "line $i" >> "$m/app/app.log"; done
        R[appends,$fs]+=" $(since "$t0")"
        [ "$(wc -l < "$m/app/app.log")" -eq 3000 ] || { log "$fs: app.log has $(wc -l < "$m/app/app.log") lines"; return 1; }

        # 9. ./configure of an autotools project (conftest files, config.log appends)
        cp -r "$cfgsrc" "$m/cfg"
        log "$fs: ./configure"
        t0=$(now)
        (cd "$m/cfg" && ./configure > /dev/null) || { log "$fs: configure failed"; return 1; }
        R[configure,$fs]+=" $(since "$t0")"
        grep -q "HAVE_STDLIB_H 1" "$m/cfg/config.h" || { log "$fs: configure wrote no config.h"; return 1; }

        # 10. fsstress -n 2000 -p 4 (xfstests), fixed seed
        if [ -n "$fsstress" ]; then
            mkdir "$m/stress"
            log "$fs: fsstress -n 2000 -p 4"
            t0=$(now)
            "$fsstress" -d "$m/stress" -n 2000 -p 4 -s 1 > /dev/null || { log "$fs: fsstress failed"; return 1; }
            R[fsstress,$fs]+=" $(since "$t0")"
        fi
        rm -rf "$m/app" "$m/cfg" "$m/stress"
    fi

    if [ -n "${step[partial]:-}" ]; then
        run_partial "$fs" "$m"
    fi

    # Peak resident memory of the filesystem process over the whole run.
    local p
    p=$(fs_pid "$fs")
    if [ -n "$p" ] && [ -r "/proc/$p/status" ]; then
        R[rss,$fs]+=" $(awk '$1 == "VmHWM:" { printf "%.0f", $2 / 1024 }' "/proc/$p/status")"
    fi
    t0=$(now)
    fs_unmount "$fs"
    R[final_umount,$fs]+=" $(since "$t0")"
    if [ -n "${step[partial]:-}" ]; then
        # What the partial-write files left stored, once compaction had run
        # (qsfs compacts in the background while mounted: run_partial waits
        # a few seconds before this unmount), over their logical bytes.
        local used
        used=$(du -sb "$(backing_of "$fs")" | awk '{ print $1 }')
        R[partial_stored,$fs]+=" $(awk -v u="$used" -v b="$partial_base" -v l="$partial_logical" 'BEGIN { printf "%.3f", (u - b) / l }')"
    fi
    log "$fs: done (load $(cut -d' ' -f1-3 /proc/loadavg))"
    rm -rf -- "$(backing_of "$fs")" "$m"
}

# The partial-write workloads (issue 14), each timed on its own. Leaves
# partial_logical (bytes the files hold) and partial_base (bytes the
# backing folder held before) for the stored row.
sql_inserts="$work/inserts.sql"
python3 "$repo/scripts/bench-data/sqlite-inserts.py" > "$sql_inserts"
run_partial() { # FS MNT
    local fs=$1 m=$2 t0 i line
    sync
    partial_base=$(du -sb "$(backing_of "$fs")" | awk '{ print $1 }')
    mkdir "$m/p"
    log "$fs: SQLite, 20,000 inserts in 200 transactions (DELETE)"
    t0=$(now)
    { echo "PRAGMA journal_mode=DELETE;"; cat "$sql_inserts"; } | sqlite3 "$m/p/delete.db" > /dev/null
    R[sql_delete,$fs]+=" $(since "$t0")"
    log "$fs: SQLite, the same in WAL mode"
    t0=$(now)
    { echo "PRAGMA journal_mode=WAL;"; cat "$sql_inserts"; } | sqlite3 "$m/p/wal.db" > /dev/null
    R[sql_wal,$fs]+=" $(since "$t0")"
    log "$fs: SQLite, 1,000 single-row UPDATE transactions"
    t0=$(now)
    for i in $(seq 1000); do echo "UPDATE t SET v='u $i' WHERE id=$((i * 37 % 20000 + 1));"; done |
        sqlite3 "$m/p/delete.db"
    R[sql_update,$fs]+=" $(since "$t0")"
    log "$fs: 3,000 appends of 200 bytes"
    line=$(printf '%0199d' 0)
    t0=$(now)
    for i in $(seq 3000); do echo "$line" >> "$m/p/app.log"; done
    R[app200,$fs]+=" $(since "$t0")"
    cp "$src" "$m/p/big"
    log "$fs: 1,000 random 4 KiB writes into the ${big_mib} MiB file, then close"
    t0=$(now)
    python3 - "$m/p/big" "$big_mib" <<'PY'
import os, random, sys
rng = random.Random(14)
fd = os.open(sys.argv[1], os.O_WRONLY)
blocks = (int(sys.argv[2]) << 20) // 4096
for _ in range(1000):
    os.pwrite(fd, rng.randbytes(4096), rng.randrange(blocks) * 4096)
os.close(fd)
PY
    R[randw,$fs]+=" $(since "$t0")"
    # Give background compaction its chance, then remount and read cold.
    sleep 5
    fs_unmount "$fs"
    fs_mount "$fs"
    for i in delete wal; do
        [ "$(sqlite3 "$m/p/$i.db" 'PRAGMA integrity_check;')" = ok ] || { log "$fs: $i.db fails integrity_check after a remount"; return 1; }
    done
    drop_caches
    t0=$(now)
    cat "$m/p/app.log" > /dev/null
    R[app200_read,$fs]+=" $(since "$t0")"
    [ "$(wc -l < "$m/p/app.log")" -eq 3000 ] || { log "$fs: app.log lost lines"; return 1; }
    drop_caches
    t0=$(now)
    cat "$m/p/big" > /dev/null
    R[randw_read,$fs]+=" $(since "$t0")"
    partial_logical=$(du -sb --apparent-size "$m/p" | awk '{ print $1 }')
    sleep 5
}

start=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
# Repetitions go round the filesystems (plain, gocryptfs, securefs, qsfs,
# plain, ...) so that a busy spell on the shared machine hits all of them.
for rep in $(seq "$reps"); do
    for fs in "${fss[@]}"; do
        log "--- repetition $rep of $reps: $fs"
        run_fs "$fs"   # set -e: any failure stops the run (the EXIT trap cleans up)
    done
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
wall=$(( $(date +%s) - start ))

# ---- table -------------------------------------------------------------------
big_bytes=$((big_mib << 20))
mb=$(awk -v b=$big_bytes 'BEGIN { printf "%.0f", b / 1e6 }')
label() {
    case "$1" in
        write) echo "1. write ${big_mib} MiB, dd conv=fsync (MB/s)" ;;
        read) echo "2. read it back, cold (MB/s)" ;;
        tar) echo "3. tar x (s)" ;;
        tar_umount) echo "3b. tar x + unmount + sync (s)" ;;
        rsync) echo "4. rsync -a (s)" ;;
        ls) echo "5. ls -lR (s)" ;;
        cat) echo "6. cat every file, cold (s)" ;;
        rm) echo "7. rm -rf (s)" ;;
        appends) echo "8. 3,000 appends, echo >> (s)" ;;
        configure) echo "9. autotools ./configure (s)" ;;
        fsstress) echo "10. fsstress -n 2000 -p 4 (s)" ;;
        sql_delete) echo "11. SQLite 20,000 inserts in 200 transactions, DELETE journal (s)" ;;
        sql_wal) echo "12. the same in WAL mode (s)" ;;
        sql_update) echo "13. SQLite 1,000 single-row UPDATE transactions (s)" ;;
        app200) echo "14. 3,000 open-append-close of 200 B (s)" ;;
        app200_read) echo "15. cold read of that log after a remount (s)" ;;
        randw) echo "16. 1,000 random 4 KiB writes into the ${big_mib} MiB file, then close (s)" ;;
        randw_read) echo "17. cold read of that file after a remount (s)" ;;
        rss) echo "peak RSS of the filesystem process (MiB)" ;;
        partial_stored) echo "stored / logical bytes after 11-17 (qsfs: n/k = 1.67 is the floor)" ;;
        final_umount) echo "unmount at the end, after rm (s)" ;;
        stored) echo "stored on disk after tar x (MB)" ;;
    esac
}
# agg ROW FS -> "median min max" in the unit shown (MB/s for write/read,
# MB for stored, seconds otherwise); empty if not measured.
agg() {
    local v=${R[$1,$2]:-}
    [ -n "$v" ] || return 0
    echo $v | tr ' ' '\n' | awk -v row="$1" -v b=$big_bytes '
        { print (row == "write" || row == "read") ? b / 1e6 / $1 : (row == "stored" ? $1 / 1e6 : $1) }' |
        sort -g | awk '
        { a[NR] = $1 }
        END {
            n = NR
            med = (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
            print med, a[1], a[n]
        }'
}
fmt() { # value row -> text
    awk -v x="$1" -v row="$2" 'BEGIN {
        if (row == "write" || row == "read" || row == "stored" || row == "rss") printf "%.0f", x
        else if (row == "partial_stored") printf "%.2f", x
        else printf (x < 10 ? "%.2f" : "%.1f"), x }'
}
cell() { # row fs -> "median [min-max]"
    local st med lo hi
    st=$(agg "$1" "$2")
    [ -n "$st" ] || { echo "-"; return; }
    read -r med lo hi <<<"$st"
    if [ "$reps" -gt 1 ]; then echo "$(fmt "$med" "$1") [$(fmt "$lo" "$1")–$(fmt "$hi" "$1")]"; else fmt "$med" "$1"; fi
}
tree_mb=$(awk -v b="$tree_bytes" 'BEGIN { printf "%.1f", b / 1e6 }')
echo
echo "## bench-fs: $(date -u '+%Y-%m-%d %H:%M UTC'), $( [ $quick -eq 1 ] && echo quick || echo full ) run, ${reps} repetition(s), ${wall} s"
echo
echo "File: ${big_mib} MiB (${mb} MB) of random bytes. Tree: ${tree_files} files in ${tree_dirs_n} folders, ${tree_mb} MB (${trees//,/ + }$( [ $quick -eq 1 ] && echo ', without __pycache__ and test')). MB = 10^6 bytes; times in seconds. Each cell: median of the repetitions$( [ "$reps" -gt 1 ] && echo ' [lowest–highest]'). Load average: ${load_start} at the start, ${load_end} at the end."
echo
hdr="| step |"; sep="|---|"
for fs in "${fss[@]}"; do hdr+=" $fs |"; sep+="---:|"; done
hdr+=" qsfs / best peer | target met? | links cost (qsfs vs qsfs-direct) |"; sep+="---:|---|---:|"
echo "$hdr"; echo "$sep"
for row in "${rows[@]}"; do
    line="| $(label "$row") |"
    for fs in "${fss[@]}"; do line+=" $(cell "$row" "$fs") |"; done
    ratio="-"; met="-"
    q=$(agg "$row" qsfs | cut -d' ' -f1)
    best=
    for p in gocryptfs securefs; do
        v=$(agg "$row" "$p" | cut -d' ' -f1)
        [ -n "$v" ] || continue
        case "$row" in
            write|read) better='a > b' ;;   # MB/s: higher is better
            *) better='a < b' ;;
        esac
        if [ -z "$best" ] || awk -v a="$v" -v b="$best" "BEGIN { exit !($better) }"; then best=$v; fi
    done
    if [ -n "$q" ] && [ -n "$best" ]; then
        ratio=$(awk -v q="$q" -v b="$best" 'BEGIN { printf "%.2f", q / b }')
        case "$row" in
            write|read) met=$(awk -v r="$ratio" 'BEGIN { print (r >= 1 ? "yes" : "no") }') ;;
            *) met=$(awk -v r="$ratio" 'BEGIN { print (r <= 1 ? "yes" : "no") }') ;;
        esac
    fi
    # How much slower the in-process QKD links make it: time ratio (for
    # MB/s rows, direct MB/s over linked MB/s); target <= 1.3.
    cost="-"
    d=$(agg "$row" qsfs-direct | cut -d' ' -f1)
    if [ -n "$q" ] && [ -n "$d" ]; then
        case "$row" in
            write|read) cost=$(awk -v q="$q" -v d="$d" 'BEGIN { printf "%.2fx", d / q }') ;;
            *) cost=$(awk -v q="$q" -v d="$d" 'BEGIN { printf "%.2fx", q / d }') ;;
        esac
    fi
    echo "$line $ratio | $met | $cost |"
done
echo
hdr="| also measured |"; sep="|---|"
for fs in "${fss[@]}"; do hdr+=" $fs |"; sep+="---:|"; done
echo "$hdr"; echo "$sep"
for row in final_umount stored rss partial_stored; do
    line="| $(label "$row") |"
    for fs in "${fss[@]}"; do line+=" $(cell "$row" "$fs") |"; done
    echo "$line"
done
echo
echo "Versions: $(gocryptfs -version 2>/dev/null | cut -d';' -f1 || echo 'gocryptfs -'), securefs $(dpkg-query -W -f '${Version}' securefs 2>/dev/null || echo '-'), $("$QSFS" --version 2>/dev/null), $(fusermount3 -V 2>/dev/null); kernel $(uname -r)."
echo "(bench-fs.sh wall time: ${wall} s)"
