# POSIX semantics of the mount, each compared with ext4: the same python3
# script runs in a folder on ext4 (under the case's temp folder in /tmp)
# and in the mount and must print the same report, which must also match
# what ext4 is known to do (the golden lines below). Covers rename (over a
# file, over an empty folder, onto a non-empty one, NOREPLACE, EXCHANGE,
# across folders with mv), unlink while open, O_APPEND, O_TRUNC, O_EXCL,
# names over 255 bytes, chmod/chown/utimensat with nanoseconds,
# UTIME_NOW/UTIME_OMIT and the ctime each moves, folder link counts, hard
# links, symlinks, FIFO/socket/device nodes, xattrs with XATTR_CREATE/
# XATTR_REPLACE, a minimal POSIX ACL, set-group-id folders, and clearing
# of set-user-id/set-group-id bits on a write by a non-root user and on
# chown by root. Then qsfs only: statfs, every entry's times and modes
# survive a remount, an unlinked open file is readable to its last close
# (bash `exec 3<`) and its object is destroyed (qsfs status after unmount).
source "$(dirname "$0")/lib-mount.sh"

# uid 1000 must reach the mount and the ext4 folder.
chmod 755 "$CASE_DIR"
MOUNT_OPTS=(-o allow_other)
USER_RUN=(setpriv --reuid=1000 --regid=1000 --clear-groups)

cat > sem.py <<'PY'
import ctypes, errno, os, socket, stat, struct, subprocess, sys, time

D = sys.argv[1]
os.chdir(D)
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def check(r):
    if r != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def renameat2(a, b, flags):
    check(libc.renameat2(AT_FDCWD, a.encode(), AT_FDCWD, b.encode(), flags))


def utimensat(p, atime, mtime, nofollow=False):
    def ts(t):
        if t == "now":
            return Timespec(0, UTIME_NOW)
        if t == "omit":
            return Timespec(0, UTIME_OMIT)
        return Timespec(t // 1_000_000_000, t % 1_000_000_000)
    arr = (Timespec * 2)(ts(atime), ts(mtime))
    check(libc.utimensat(AT_FDCWD, p.encode(), arr, 0x100 if nofollow else 0))


def rec(name, *values):
    print(name + ": " + " ".join(repr(v) for v in values), flush=True)


def err(fn):
    try:
        r = fn()
        return "ok" if r is None else ("ok", r)
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))


def write(p, data, flags=os.O_WRONLY | os.O_CREAT | os.O_TRUNC):
    fd = os.open(p, flags, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read(p):
    with open(p, "rb") as f:
        return f.read()


def ls(p="."):
    return sorted(os.listdir(p))


def mode(p):
    return oct(os.lstat(p).st_mode)


def nlink(p):
    return os.lstat(p).st_nlink


def ctime_moves(label, p, fn, p_after=None):
    """Runs fn and records whether p's ctime (and mtime) moved."""
    before = os.lstat(p)
    time.sleep(0.02)
    r = err(fn)
    after = os.lstat(p_after or p)
    c = "ctime+" if after.st_ctime_ns > before.st_ctime_ns else ("ctime=" if after.st_ctime_ns == before.st_ctime_ns else "ctime-")
    m = "mtime+" if after.st_mtime_ns > before.st_mtime_ns else ("mtime=" if after.st_mtime_ns == before.st_mtime_ns else "mtime-")
    print(f"{label}: {r!r} {c} {m}", flush=True)


# --- rename ---------------------------------------------------------------
os.mkdir("rn")
os.chdir("rn")
write("r1", b"one")
write("r2", b"two")
rec("rename_over_file", err(lambda: os.rename("r1", "r2")), read("r2"), os.path.exists("r1"), nlink("r2"))
os.mkdir("d1")
write("d1/x", b"x")
os.mkdir("d2")
rec("rename_dir_over_empty_dir", err(lambda: os.rename("d1", "d2")), ls("d2"), os.path.exists("d1"), ls())
os.mkdir("d3")
write("d3/y", b"y")
rec("rename_dir_onto_nonempty_dir", err(lambda: os.rename("d3", "d2")), ls("d2"), ls("d3"))
rec("rename_file_over_dir", err(lambda: os.rename("r2", "d3")))
rec("rename_dir_over_file", err(lambda: os.rename("d3", "r2")))
rec("rename_dir_into_itself", err(lambda: os.rename("d3", "d3/sub")))
rec("rename_missing", err(lambda: os.rename("nope", "r9")))
rec("rename_to_itself", err(lambda: os.rename("r2", "r2")), read("r2"))
os.link("r2", "r2-hard")
rec("rename_hardlink_onto_its_twin", err(lambda: os.rename("r2", "r2-hard")), ls(), nlink("r2-hard"))
os.unlink("r2-hard")
write("n1", b"n1")
write("n2", b"n2")
rec("noreplace_onto_existing", err(lambda: renameat2("n1", "n2", RENAME_NOREPLACE)), read("n1"), read("n2"))
rec("noreplace_onto_new", err(lambda: renameat2("n1", "n3", RENAME_NOREPLACE)), read("n3"), os.path.exists("n1"))
os.mkdir("p1")
os.mkdir("p2")
os.mkdir("p1/xd")
write("p1/xd/inside", b"i")
write("p2/xf", b"file")
n1, n2 = nlink("p1"), nlink("p2")
rec("exchange_dir_and_file", err(lambda: renameat2("p1/xd", "p2/xf", RENAME_EXCHANGE)),
    read("p1/xd"), ls("p2/xf"), nlink("p1") - n1, nlink("p2") - n2)
rec("exchange_with_missing", err(lambda: renameat2("p1/xd", "p2/none", RENAME_EXCHANGE)))
rec("exchange_and_noreplace", err(lambda: renameat2("p1/xd", "p2/xf", RENAME_EXCHANGE | RENAME_NOREPLACE)))
write("e1", b"first")
write("e2", b"second")
rec("exchange_files", err(lambda: renameat2("e1", "e2", RENAME_EXCHANGE)), read("e1"), read("e2"))
# A folder moved to another parent: both parents' link counts follow.
os.mkdir("m1")
os.mkdir("m1/sub")
os.mkdir("m2")
a, b = nlink("m1"), nlink("m2")
os.rename("m1/sub", "m2/sub")
rec("move_dir_across_parents", nlink("m1") - a, nlink("m2") - b, ls("m1"), ls("m2"))
# mv(1) of a file and of a tree across folders.
os.makedirs("mvsrc/tree/deep")
write("mvsrc/tree/deep/f", b"deep")
write("mvsrc/file", b"file")
os.mkdir("mvdst")
subprocess.run(["mv", "mvsrc/tree", "mvsrc/file", "mvdst/"], check=True)
rec("mv_across_folders", ls("mvsrc"), sorted(os.path.join(r, n) for r, ds, fs in os.walk("mvdst") for n in ds + fs),
    read("mvdst/tree/deep/f"), nlink("mvsrc"), nlink("mvdst"))
os.chdir("..")

# --- unlink while open ----------------------------------------------------
data = os.urandom(300_000)
write("u", data)
f = open("u", "rb")
os.unlink("u")
first = f.read(1000)
rec("unlinked_open_reads", os.path.exists("u"), os.fstat(f.fileno()).st_nlink, first + f.read() == data)
f.seek(123_456)
rec("unlinked_open_seek", f.read(10) == data[123_456:123_466])
g = open("u2", "w+b")
g.write(b"abc")
g.flush()
os.unlink("u2")
g.write(b"def")
g.flush()
g.seek(0)
rec("unlinked_open_write", g.read(), os.fstat(g.fileno()).st_size)
f.close()
g.close()
rec("unlinked_gone", os.path.exists("u"), os.path.exists("u2"))

# --- O_APPEND / O_TRUNC / O_EXCL ------------------------------------------
write("ap", b"start\n")
fd1 = os.open("ap", os.O_WRONLY | os.O_APPEND)
fd2 = os.open("ap", os.O_WRONLY | os.O_APPEND)
os.write(fd1, b"1")
os.write(fd2, b"2")
os.write(fd1, b"3")
os.pwrite(fd2, b"4", 0)  # Linux: O_APPEND wins over the offset
os.close(fd1)
os.close(fd2)
rec("o_append", read("ap"))
write("tr", b"x" * 1000)
fd = os.open("tr", os.O_WRONLY | os.O_TRUNC)
size_after_open = os.fstat(fd).st_size
os.write(fd, b"y")
os.close(fd)
rec("o_trunc", size_after_open, read("tr"))
fd = os.open("tr", os.O_RDWR | os.O_TRUNC)
os.close(fd)
rec("o_trunc_rdwr_no_write", os.stat("tr").st_size)
rec("o_excl_existing", err(lambda: os.open("tr", os.O_CREAT | os.O_EXCL | os.O_WRONLY)))
os.symlink("dangling-target", "dangle")
rec("o_excl_dangling_symlink", err(lambda: os.open("dangle", os.O_CREAT | os.O_EXCL | os.O_WRONLY)), os.path.exists("dangling-target"))
rec("o_excl_new", err(lambda: os.close(os.open("excl-new", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))), mode("excl-new"))
rec("o_creat_existing_keeps", err(lambda: os.close(os.open("ap", os.O_CREAT | os.O_WRONLY))), read("ap"))

# --- names ----------------------------------------------------------------
n255, n256 = "n" * 255, "n" * 256
u255, u256 = "é" * 127 + "a", "é" * 128  # 255 and 256 bytes of UTF-8
rec("name_255", err(lambda: write(n255, b"ok")), read(n255))
rec("name_255_utf8", err(lambda: write(u255, b"ok")), read(u255))
rec("name_256_create", err(lambda: write(n256, b"no")))
rec("name_256_utf8_create", err(lambda: write(u256, b"no")))
rec("name_256_mkdir", err(lambda: os.mkdir(n256)))
rec("name_256_stat", err(lambda: os.stat(n256)))
rec("name_256_rename", err(lambda: os.rename(n255, n256)))
rec("name_256_symlink", err(lambda: os.symlink("t", n256)))
rec("name_256_link", err(lambda: os.link(n255, n256)))
rec("names_listed", n255 in os.listdir("."), u255 in os.listdir("."), n256 in os.listdir("."))

# --- attributes and the ctime each change moves -----------------------------
write("t", b"data")
ctime_moves("chmod", "t", lambda: os.chmod("t", 0o640))
rec("chmod_mode", mode("t"))
ctime_moves("chown", "t", lambda: os.chown("t", 1234, 5678))
rec("chown_owner", os.stat("t").st_uid, os.stat("t").st_gid)
ctime_moves("chown_unchanged_ids", "t", lambda: os.chown("t", -1, -1))
A, M = 1_234_567_890_123_456_789, 1_600_000_000_987_654_321
ctime_moves("touch_d", "t", lambda: subprocess.run(["touch", "-d", "2001-02-03 04:05:06.123456789 UTC", "t"], check=True) and None)
rec("touch_d_values", os.stat("t").st_atime_ns, os.stat("t").st_mtime_ns)
ctime_moves("touch_m", "t", lambda: subprocess.run(["touch", "-m", "-d", "@1000000000.5", "t"], check=True) and None)
rec("touch_m_values", os.stat("t").st_atime_ns, os.stat("t").st_mtime_ns)
ctime_moves("utime_ns", "t", lambda: os.utime("t", ns=(A, M)))
rec("utime_ns_values", os.stat("t").st_atime_ns, os.stat("t").st_mtime_ns)
ctime_moves("utime_omit_omit", "t", lambda: utimensat("t", "omit", "omit"))
rec("utime_omit_omit_values", os.stat("t").st_atime_ns, os.stat("t").st_mtime_ns)
t0 = time.time_ns()
ctime_moves("utime_now_omit", "t", lambda: utimensat("t", "now", "omit"))
t1 = time.time_ns()
st = os.stat("t")
rec("utime_now_omit_values", t0 - 50_000_000 <= st.st_atime_ns <= t1 + 50_000_000, st.st_mtime_ns)
ctime_moves("utime_omit_specific", "t", lambda: utimensat("t", "omit", 1_700_000_000_000_000_001))
rec("utime_omit_specific_values", os.stat("t").st_atime_ns == st.st_atime_ns, os.stat("t").st_mtime_ns)
t0 = time.time_ns()
ctime_moves("utime_now_now", "t", lambda: os.utime("t"))
t1 = time.time_ns()
st = os.stat("t")
rec("utime_now_now_values", t0 - 50_000_000 <= st.st_atime_ns <= t1 + 50_000_000, t0 - 50_000_000 <= st.st_mtime_ns <= t1 + 50_000_000)
for label, ns in [("before_1970", (-1_500_000_000_000_000_005, -1)), ("year_2100", (4_102_444_800_000_000_001, 4_102_444_800_999_999_999))]:
    rec("utime_" + label, err(lambda: os.utime("t", ns=ns)), os.stat("t").st_atime_ns, os.stat("t").st_mtime_ns)
os.utime("t", ns=(A, M))
ctime_moves("read", "t", lambda: read("t") and None)
ctime_moves("write", "t", lambda: write("t", b"more", os.O_WRONLY | os.O_APPEND))
ctime_moves("truncate_down", "t", lambda: os.truncate("t", 2))
ctime_moves("truncate_same_size", "t", lambda: os.truncate("t", 2))
ctime_moves("setxattr", "t", lambda: os.setxattr("t", "user.a", b"1"))
ctime_moves("removexattr", "t", lambda: os.removexattr("t", "user.a"))
ctime_moves("link", "t", lambda: os.link("t", "t-link"))
ctime_moves("unlink_other_name", "t", lambda: os.unlink("t-link"))
ctime_moves("rename", "t", lambda: os.rename("t", "t2"), "t2")
os.rename("t2", "t")
os.mkdir("pd")
ctime_moves("dir_create_entry", "pd", lambda: write("pd/f", b""))
ctime_moves("dir_mkdir_entry", "pd", lambda: os.mkdir("pd/sub"))
ctime_moves("dir_rename_within", "pd", lambda: os.rename("pd/f", "pd/g"))
ctime_moves("dir_unlink_entry", "pd", lambda: os.unlink("pd/g"))
ctime_moves("dir_write_into_entry", "pd", lambda: write("pd/sub/h", b"h"))
ctime_moves("dir_chmod", "pd", lambda: os.chmod("pd", 0o711))
rec("times_of_symlink", err(lambda: utimensat("dangle", 1_000_000_000_000_000_007, 1_100_000_000_000_000_009, nofollow=True)),
    os.lstat("dangle").st_atime_ns, os.lstat("dangle").st_mtime_ns)

# --- folder link counts, hard links, symlinks -----------------------------
os.mkdir("nl")
rec("dir_nlink_empty", nlink("nl"))
os.mkdir("nl/s1")
os.mkdir("nl/s2")
write("nl/f", b"f")
os.symlink("s1", "nl/l")
rec("dir_nlink_two_subdirs", nlink("nl"), nlink("nl/s1"))
os.rmdir("nl/s1")
rec("dir_nlink_after_rmdir", nlink("nl"))
rec("rmdir_nonempty", err(lambda: os.rmdir(".")), err(lambda: os.rmdir("nl")))
rec("unlink_dir", err(lambda: os.unlink("nl/s2")))
rec("mkdir_existing", err(lambda: os.mkdir("nl/s2")), err(lambda: os.mkdir("nl/f")))
write("h1", b"hard")
os.link("h1", "h2")
os.link("h2", "nl/h3")
rec("hardlink_nlink", nlink("h1"), nlink("h2"), nlink("nl/h3"), os.stat("h1").st_ino == os.stat("nl/h3").st_ino)
write("nl/h3", b"via h3", os.O_WRONLY | os.O_APPEND)
rec("hardlink_shared_content", read("h1"))
os.unlink("h1")
rec("hardlink_after_unlink", nlink("h2"), read("h2"))
rec("hardlink_to_dir", err(lambda: os.link("nl", "nl-link")))
rec("hardlink_existing_name", err(lambda: os.link("h2", "nl/h3")))
os.symlink("h2", "sl-rel")
os.symlink("/etc/hostname-nonexistent/x", "sl-abs")
long_target = "x/" * 1000 + "end"
os.symlink(long_target, "sl-long")
rec("symlink_readlink", os.readlink("sl-rel"), os.readlink("sl-abs"), os.readlink("sl-long") == long_target)
rec("symlink_lstat", mode("sl-rel"), os.lstat("sl-rel").st_size, os.lstat("sl-long").st_size, read("sl-rel"))
rec("readlink_of_file", err(lambda: os.readlink("h2")))
rec("symlink_existing_name", err(lambda: os.symlink("x", "h2")))
rec("symlink_follow_dangling", err(lambda: read("sl-abs")))

# --- special files ---------------------------------------------------------
os.mkfifo("fifo", 0o620)
os.mknod("sock", 0o600 | stat.S_IFSOCK)
os.mknod("chr", 0o640 | stat.S_IFCHR, os.makedev(1, 3))
os.mknod("blk", 0o600 | stat.S_IFBLK, os.makedev(7, 9))
for p in ["fifo", "sock", "chr", "blk"]:
    st = os.lstat(p)
    rec("node_" + p, oct(st.st_mode), os.major(st.st_rdev), os.minor(st.st_rdev), st.st_size)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind("live.sock")
s.listen(1)
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
c.connect("live.sock")
conn, _ = s.accept()
c.sendall(b"ping")
rec("unix_socket", stat.S_ISSOCK(os.lstat("live.sock").st_mode), conn.recv(4))
for x in (c, conn, s):
    x.close()
os.unlink("live.sock")
rec("mknod_dir", err(lambda: os.mknod("mdir", 0o755 | stat.S_IFDIR)))

# --- xattrs ------------------------------------------------------------------
write("x", b"x")
rec("xattr_get_missing", err(lambda: os.getxattr("x", "user.none")))
rec("xattr_set", err(lambda: os.setxattr("x", "user.k", b"v1")), os.getxattr("x", "user.k"))
rec("xattr_create_existing", err(lambda: os.setxattr("x", "user.k", b"v2", os.XATTR_CREATE)), os.getxattr("x", "user.k"))
rec("xattr_create_new", err(lambda: os.setxattr("x", "user.new", b"n", os.XATTR_CREATE)), os.getxattr("x", "user.new"))
rec("xattr_replace_missing", err(lambda: os.setxattr("x", "user.none", b"r", os.XATTR_REPLACE)))
rec("xattr_replace_existing", err(lambda: os.setxattr("x", "user.k", b"v3", os.XATTR_REPLACE)), os.getxattr("x", "user.k"))
rec("xattr_binary_and_empty", err(lambda: os.setxattr("x", "user.bin", bytes(range(256)))), err(lambda: os.setxattr("x", "user.empty", b"")),
    os.getxattr("x", "user.bin") == bytes(range(256)), os.getxattr("x", "user.empty"))
rec("xattr_list", sorted(os.listxattr("x")))
rec("xattr_remove", err(lambda: os.removexattr("x", "user.new")), sorted(os.listxattr("x")))
rec("xattr_remove_missing", err(lambda: os.removexattr("x", "user.new")))
rec("xattr_too_big", err(lambda: os.setxattr("x", "user.big", b"b" * 65537)))
rec("xattr_name_too_long", err(lambda: os.setxattr("x", "user." + "n" * 251, b"v")))
rec("xattr_unknown_namespace", err(lambda: os.setxattr("x", "bogus.k", b"v")))
rec("xattr_trusted_as_root", err(lambda: os.setxattr("x", "trusted.k", b"t")), os.getxattr("x", "trusted.k"))
os.mkdir("xd")
rec("xattr_on_dir", err(lambda: os.setxattr("xd", "user.d", b"dir")), os.getxattr("xd", "user.d"))
rec("xattr_user_on_symlink", err(lambda: os.setxattr("sl-rel", "user.s", b"s", follow_symlinks=False)))
rec("xattr_user_on_fifo", err(lambda: os.setxattr("fifo", "user.f", b"f")))
# A minimal access ACL (u::rw-, g::r--, o::---) is a mode change.
write("acl", b"acl")
os.chmod("acl", 0o666)
acl = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", tag, perm, 0xFFFFFFFF) for tag, perm in [(1, 6), (4, 4), (0x20, 0)])
ctime_moves("acl_minimal", "acl", lambda: os.setxattr("acl", "system.posix_acl_access", acl))
rec("acl_minimal_mode", mode("acl"))

# --- set-group-id folders ----------------------------------------------------
os.mkdir("sg")
os.chown("sg", 0, 4321)
os.chmod("sg", 0o2775)
write("sg/f", b"f")
os.mkdir("sg/d")
os.mknod("sg/fifo", 0o600 | stat.S_IFIFO)
rec("sgid_dir_inherit", os.stat("sg/f").st_gid, os.stat("sg/d").st_gid, mode("sg/d"), os.stat("sg/fifo").st_gid)
PY

# Clearing of set-user-id and set-group-id bits, run in folder $1.
suid_checks() {
    local d="$1"
    mkdir "$d/suid"
    chmod 777 "$d/suid"
    # A file the user owns, 6755: the user's write clears both bits.
    printf 'a' > "$d/suid/mine"
    chown 1000:1000 "$d/suid/mine"
    chmod 6755 "$d/suid/mine"
    "${USER_RUN[@]}" sh -c 'printf b >> "$1"' sh "$d/suid/mine"
    echo "user_write_6755: $(stat -c %a "$d/suid/mine") $(cat "$d/suid/mine")"
    # Same with truncate(1) and with 2745 (group bit not executable: kept).
    printf 'a' > "$d/suid/trunc"
    chown 1000:1000 "$d/suid/trunc"
    chmod 6755 "$d/suid/trunc"
    "${USER_RUN[@]}" truncate -s 10 "$d/suid/trunc"
    echo "user_truncate_6755: $(stat -c '%a %s' "$d/suid/trunc")"
    printf 'a' > "$d/suid/g-noexec"
    chown 1000:1000 "$d/suid/g-noexec"
    chmod 2745 "$d/suid/g-noexec"
    "${USER_RUN[@]}" sh -c 'printf b >> "$1"' sh "$d/suid/g-noexec"
    echo "user_write_2745: $(stat -c %a "$d/suid/g-noexec")"
    # A world-writable 4777 file of root, written by the user: cleared.
    printf 'a' > "$d/suid/roots"
    chmod 4777 "$d/suid/roots"
    "${USER_RUN[@]}" sh -c 'printf b >> "$1"' sh "$d/suid/roots"
    echo "user_write_root_4777: $(stat -c '%a %U' "$d/suid/roots")"
    # fallocate changes the content as a write does: the user's plain,
    # keep-size and punch-hole calls clear the bits, root's do not (FUSE
    # killpriv v2 leaves this to the filesystem).
    for m in plain keep punch; do
        printf 'abcd' > "$d/suid/falloc-$m"
        chown 1000:1000 "$d/suid/falloc-$m"
        chmod 6755 "$d/suid/falloc-$m"
    done
    "${USER_RUN[@]}" fallocate -l 8192 "$d/suid/falloc-plain"
    "${USER_RUN[@]}" fallocate -n -l 8192 "$d/suid/falloc-keep"
    "${USER_RUN[@]}" fallocate -p -o 0 -l 2 "$d/suid/falloc-punch"
    echo "user_fallocate_6755: $(stat -c '%a %s' "$d/suid/falloc-plain") $(stat -c '%a %s' "$d/suid/falloc-keep") $(stat -c '%a %s' "$d/suid/falloc-punch")"
    printf 'abcd' > "$d/suid/falloc-root"
    chmod 6755 "$d/suid/falloc-root"
    fallocate -l 8192 "$d/suid/falloc-root"
    echo "root_fallocate_6755: $(stat -c '%a %s' "$d/suid/falloc-root")"
    # root writing does not clear it (as on ext4).
    printf 'a' > "$d/suid/root-writes"
    chmod 4755 "$d/suid/root-writes"
    printf 'b' >> "$d/suid/root-writes"
    echo "root_write_4755: $(stat -c %a "$d/suid/root-writes")"
    # root's chown of a 4755 file clears set-user-id.
    printf 'a' > "$d/suid/chowned"
    chmod 4755 "$d/suid/chowned"
    chown 1000:1000 "$d/suid/chowned"
    echo "root_chown_4755: $(stat -c '%a %u:%g' "$d/suid/chowned")"
    printf 'a' > "$d/suid/chowned-g"
    chmod 6755 "$d/suid/chowned-g"
    chown :1000 "$d/suid/chowned-g"
    echo "root_chgrp_6755: $(stat -c '%a %u:%g' "$d/suid/chowned-g")"
    # The user's chmod g+s of a file whose group it is not in: dropped.
    printf 'a' > "$d/suid/user-chmod"
    chown 1000:0 "$d/suid/user-chmod"
    "${USER_RUN[@]}" chmod 2755 "$d/suid/user-chmod"
    echo "user_chmod_g+s_foreign_group: $(stat -c %a "$d/suid/user-chmod")"
    # The user may not chown to someone else, nor write root's 0644 file.
    echo "user_chown_other: $("${USER_RUN[@]}" chown 1234 "$d/suid/mine" 2>/dev/null && echo ok || echo refused)"
    printf 'r' > "$d/suid/root-644"
    echo "user_write_root_644: $("${USER_RUN[@]}" sh -c 'printf x >> "$1"' sh "$d/suid/root-644" 2>/dev/null && echo ok || echo refused)"
    # Files the user creates are the user's; in a sticky folder the user
    # may not remove root's file, only its own.
    "${USER_RUN[@]}" sh -c 'umask 022; echo u > "$1"; mkdir "$2"' sh "$d/suid/user-created" "$d/suid/user-dir"
    echo "user_create: $(stat -c '%u:%g %a' "$d/suid/user-created") $(stat -c '%u:%g %a' "$d/suid/user-dir")"
    chmod 1777 "$d/suid"
    echo "sticky_user_rm_roots: $("${USER_RUN[@]}" rm -f "$d/suid/root-644" 2>/dev/null && echo ok || echo refused)"
    echo "sticky_user_rm_own: $("${USER_RUN[@]}" rm -f "$d/suid/user-created" 2>/dev/null && echo ok || echo refused)"
    echo "user_read_0600_root: $("${USER_RUN[@]}" cat "$d/suid/root-644" > /dev/null 2>&1 && echo ok || echo refused) $(chmod 600 "$d/suid/root-644"; "${USER_RUN[@]}" cat "$d/suid/root-644" > /dev/null 2>&1 && echo ok || echo refused)"
}

report() {
    python3 sem.py "$1"
    suid_checks "$1"
}

mkdir ext4
[ "$(stat -f -c %T ext4)" = "ext2/ext3" ] || fail "reference folder is not on ext4: $(stat -f -c %T ext4)"
report "$CASE_DIR/ext4" > report.ext4 2> report.ext4.err || fail "reference run on ext4 failed: $(cat report.ext4.err)"

# What ext4 does (checked so the comparison below means something).
cat > golden <<'EOF'
rename_over_file: 'ok' b'one' False 1
rename_dir_over_empty_dir: 'ok' ['x'] False ['d2', 'r2']
rename_dir_onto_nonempty_dir: 'ENOTEMPTY' ['x'] ['y']
rename_file_over_dir: 'EISDIR'
rename_dir_over_file: 'ENOTDIR'
rename_dir_into_itself: 'EINVAL'
rename_missing: 'ENOENT'
rename_to_itself: 'ok' b'one'
rename_hardlink_onto_its_twin: 'ok' ['d2', 'd3', 'r2', 'r2-hard'] 2
noreplace_onto_existing: 'EEXIST' b'n1' b'n2'
noreplace_onto_new: 'ok' b'n1' False
exchange_dir_and_file: 'ok' b'file' ['inside'] -1 1
exchange_with_missing: 'ENOENT'
exchange_and_noreplace: 'EINVAL'
exchange_files: 'ok' b'second' b'first'
move_dir_across_parents: -1 1 [] ['sub']
unlinked_open_reads: False 0 True
unlinked_open_seek: True
unlinked_open_write: b'abcdef' 6
unlinked_gone: False False
o_append: b'start\n1234'
o_trunc: 0 b'y'
o_trunc_rdwr_no_write: 0
o_excl_existing: 'EEXIST'
o_excl_dangling_symlink: 'EEXIST' False
o_excl_new: 'ok' '0o100600'
o_creat_existing_keeps: 'ok' b'start\n1234'
EOF
missing=$(grep -vxF -f report.ext4 golden || true)
[ -z "$missing" ] || fail "ext4 does not behave as this case expects; lines not in its report:
$missing"
for want in "name_256_create: 'ENAMETOOLONG'" "name_256_utf8_create: 'ENAMETOOLONG'" "name_256_mkdir: 'ENAMETOOLONG'" \
    "name_255_utf8: 'ok' b'ok'" "names_listed: True True False" \
    "chmod: 'ok' ctime+ mtime=" "chown: 'ok' ctime+ mtime=" "chown_owner: 1234 5678" \
    "touch_d_values: 981173106123456789 981173106123456789" "touch_m_values: 981173106123456789 1000000000500000000" \
    "mv_across_folders: [] ['mvdst/file', 'mvdst/tree', 'mvdst/tree/deep', 'mvdst/tree/deep/f'] b'deep' 2 3" \
    "utime_ns: 'ok' ctime+ mtime+" "utime_ns_values: 1234567890123456789 1600000000987654321" \
    "utime_omit_omit: 'ok' ctime= mtime=" "utime_now_omit_values: True 1600000000987654321" \
    "utime_omit_specific_values: True 1700000000000000001" "utime_now_now_values: True True" \
    "read: 'ok' ctime= mtime=" "write: 'ok' ctime+ mtime+" "truncate_down: 'ok' ctime+ mtime+" \
    "setxattr: 'ok' ctime+ mtime=" "link: 'ok' ctime+ mtime=" "rename: 'ok' ctime+ mtime=" \
    "dir_create_entry: 'ok' ctime+ mtime+" "dir_write_into_entry: 'ok' ctime= mtime=" \
    "dir_nlink_empty: 2" "dir_nlink_two_subdirs: 4 2" "dir_nlink_after_rmdir: 3" \
    "hardlink_nlink: 3 3 3 True" "hardlink_shared_content: b'hardvia h3'" "hardlink_after_unlink: 2 b'hardvia h3'" \
    "hardlink_to_dir: 'EPERM'" "readlink_of_file: 'EINVAL'" \
    "node_chr: '0o20640' 1 3 0" "node_sock: '0o140600' 0 0 0" "unix_socket: True b'ping'" \
    "xattr_create_existing: 'EEXIST' b'v1'" "xattr_replace_missing: 'ENODATA'" "xattr_remove_missing: 'ENODATA'" \
    "xattr_too_big: 'E2BIG'" "xattr_user_on_symlink: 'EPERM'" \
    "acl_minimal_mode: '0o100640'" "sgid_dir_inherit: 4321 4321 '0o42755' 4321" \
    "user_write_6755: 755 ab" "user_truncate_6755: 755 10" "user_write_2745: 2745" "user_write_root_4777: 777 root" \
    "user_fallocate_6755: 755 8192 755 4 755 4" "root_fallocate_6755: 6755 8192" \
    "root_write_4755: 4755" "root_chown_4755: 755 1000:1000" "root_chgrp_6755: 755 0:1000" \
    "user_chmod_g+s_foreign_group: 755" "user_chown_other: refused" "user_write_root_644: refused" \
    "user_create: 1000:1000 644 1000:1000 755" "sticky_user_rm_roots: refused" "sticky_user_rm_own: ok" "user_read_0600_root: ok refused"; do
    grep -qxF "$want" report.ext4 || fail "ext4 reference lacks [$want]; it printed:
$(cat report.ext4)"
done

# The same on the mount.
mount_fresh
mkdir "$MNT/sem"
report "$MNT/sem" > report.qsfs 2> report.qsfs.err || fail "the run on the mount failed: $(cat report.qsfs.err)
partial report:
$(cat report.qsfs)"
if ! diff -u report.ext4 report.qsfs > report.diff; then
    cat report.diff >&2
    fail "the mount does not behave as ext4 (- ext4, + qsfs)"
fi
assert_eq "$(wc -l < report.ext4)" "$(wc -l < report.qsfs)" "report lines"

# statfs reports a size.
read -r blocks bsize namemax < <(stat -f -c '%b %S %l' "$MNT")
[ "$blocks" -gt 0 ] && [ "$bsize" -gt 0 ] || fail "stat -f: $blocks blocks of $bsize bytes"
assert_eq 255 "$namemax" "stat -f name length"
df_kb=$(df -k --output=size "$MNT" | tail -n 1 | tr -d ' ')
[ "$df_kb" -gt 0 ] || fail "df reports size $df_kb"

# Times (with nanoseconds), modes, owners, links, device numbers survive
# an unmount and remount.
snapshot() {
    (cd "$MNT/sem" && find . -print0 | LC_ALL=C sort -z | xargs -0 stat -c '%n|%F|%a|%u:%g|%s|%h|%t:%T|%x|%y|%z')
}
snapshot > before.remount
remount
snapshot > after.remount
if ! diff -u before.remount after.remount > remount.diff; then
    cat remount.diff >&2
    fail "metadata changed across unmount + remount"
fi
[ "$(wc -l < after.remount)" -gt 50 ] || fail "snapshot too short: $(cat after.remount)"

# Unlink while open, from bash, and the object going away afterwards.
objects() {
    "$Q" status "$VAULT" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["objects"], d["pending_deletions"])'
}
# Shards the nodes hold, packed or in files of their own (`node list`).
shards() {
    "$Q" node list "$VAULT" --json | python3 -c 'import json,sys; print(sum(n["shards"] for n in json.load(sys.stdin)))'
}
unmount
read -r objects0 pending0 < <(objects)
shards0=$(shards)
assert_eq 0 "$pending0" "pending deletions before"
head -c 3000000 /dev/urandom > held.src
mount_vault
cp held.src "$MNT/held"
unmount
read -r objects1 _ < <(objects)
assert_eq $((objects0 + 1)) "$objects1" "objects after writing one file"
[ "$(shards)" -eq $((shards0 + 5)) ] || fail "shards: $shards0 before, $(shards) after writing one file"
mount_vault
exec 3< "$MNT/held"
rm "$MNT/held"
[ ! -e "$MNT/held" ] || fail "held still listed after rm"
head -c 1000 <&3 > held.part1
cat <&3 > held.part2
cat held.part1 held.part2 | cmp - held.src || fail "content read from the fd after rm differs"
assert_eq 0 "$(stat -L -c %h /proc/$$/fd/3)" "nlink of the unlinked open file"
exec 3<&-
unmount
read -r objects2 pending2 < <(objects)
assert_eq "$objects0" "$objects2" "objects after the unlinked file's last close"
assert_eq 0 "$pending2" "pending deletions after the unlinked file's last close"
assert_eq "$shards0" "$(shards)" "shards after the unlinked file's last close"
