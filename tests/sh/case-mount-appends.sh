# Appends and re-closes, as shell scripts and build tools do them: 3,000
# `echo >>` (each an open, a write and a close of the same file), ten
# `echo x > same.txt` in a row, and a zlib-style configure log. Every line
# must be there in order, through the mount, after a remount and through
# the CLI. (How fast this runs is a benchmark, scripts/bench-fs.sh; this
# checks what a re-close that does not wait for the last seal keeps.)
source "$(dirname "$0")/lib-mount.sh"

mount_fresh

for i in $(seq 3000); do echo "line $i" >> "$MNT/app.log"; done
seq 3000 | sed 's/^/line /' > want.log
cmp "$MNT/app.log" want.log || fail "app.log after 3000 appends differs"

for i in $(seq 10); do echo "x $i" > "$MNT/same.txt"; done
assert_eq "x 10" "$(cat "$MNT/same.txt")" "same.txt after ten rewrites"

# Appends from two writers to two files, interleaved, with a reader in
# between (what `./configure` does with config.log and conftest files).
for i in $(seq 500); do
    echo "checking for thing $i... yes" >> "$MNT/config.log"
    printf 'int main(void) { return %d; }\n' "$i" > "$MNT/conftest.c"
    grep -q "return $i;" "$MNT/conftest.c" || fail "conftest.c round $i reads stale content"
    echo "result $i" >> "$MNT/config.status"
done
assert_eq 500 "$(wc -l < "$MNT/config.log")" "config.log lines"
assert_eq "result 500" "$(tail -n 1 "$MNT/config.status")" "last line of config.status"

# A file appended to and fsynced, then appended to again without fsync.
python3 - "$MNT/synced.log" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
for i in range(200):
    os.write(fd, b"s%d\n" % i)
    if i % 50 == 0:
        os.fsync(fd)
os.close(fd)
PY
assert_eq 200 "$(wc -l < "$MNT/synced.log")" "synced.log lines"

remount
cmp "$MNT/app.log" want.log || fail "app.log after the remount differs"
assert_eq "x 10" "$(cat "$MNT/same.txt")" "same.txt after the remount"
assert_eq 500 "$(wc -l < "$MNT/config.log")" "config.log lines after the remount"
assert_eq 200 "$(wc -l < "$MNT/synced.log")" "synced.log lines after the remount"
unmount
"$Q" get "$VAULT" /app.log - | cmp - want.log || fail "qsfs get /app.log differs"
[ -z "$(ls -A "$VAULT/staging")" ] || fail "staging not empty after a clean unmount: $(ls -A "$VAULT/staging")"
errors=$(grep -E ' (ERROR|WARN) ' "$VAULT/qsfs.log" || true)
[ -z "$errors" ] || fail "warnings or errors in qsfs.log:
$errors"
