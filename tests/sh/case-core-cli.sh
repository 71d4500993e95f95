# The qsfs CLI with ordinary tools: put -r of a tree with odd names and
# every file read back with cmp; tar through stdin and stdout; 20 MiB from
# dd through a pipe; status counts; ls -l. Runs in a fresh temp folder
# under `bash -euo pipefail` with $QSFS_BIN set (see tests/sh/run.sh).
Q="$QSFS_BIN"

fail() { echo "FAIL: $*" >&2; exit 1; }

# (Output is captured before grep -q: grep -q exits at its first match and
# a qsfs still writing would see a broken pipe.)
# A file per shard (`--no-packs`): the checks below find, damage and
# count shard files by path.
init=$("$Q" init v --no-packs --max-chunk 65536)
[ "$(head -n1 <<<"$init")" = "created vault v (3 of 5 shards rebuild a file, write quorum 4, 5 nodes)" ] || fail "init said: $init"
# Without a terminal, the vault key is wrapped under a new key file.
[[ "$(sed -n 2p <<<"$init")" == "unlock: key file $XDG_CONFIG_HOME/qsfs/"*".key (mode 0600)"* ]] || fail "init said: $init"
# keypool gen into a folder that does not exist yet (VAULT/links of a
# --direct vault, as the README's remote-node steps do) makes it owner-only.
(umask 022 && "$Q" keypool gen --link t --keys 100 --out kp/links/t.pool --peer-out kp-b/t.pool >/dev/null) \
    || fail "keypool gen into new folders failed"
[ "$(stat -c %a kp/links) $(stat -c %a kp-b)" = "700 700" ] || fail "keypool gen made $(stat -c %a kp/links) $(stat -c %a kp-b)"
# Where the node folders are: in the vault, or (QSFS_TEST_CLUSTER) served
# by five node servers of scripts/local-cluster.sh.
nodes=v/nodes
if [ -n "${QSFS_TEST_CLUSTER:-}" ]; then
    "$QSFS_CLUSTER_SCRIPT" start v >/dev/null
    trap '"$QSFS_CLUSTER_SCRIPT" stop v' EXIT
    # A vault the script creates itself opens under a user's usual umask:
    # the links/ folder it makes holds key material and must be owner-only.
    (umask 022 && "$QSFS_CLUSTER_SCRIPT" start fresh >/dev/null) || fail "local-cluster start of a new vault failed"
    trap '"$QSFS_CLUSTER_SCRIPT" stop v; "$QSFS_CLUSTER_SCRIPT" stop fresh' EXIT
    [ "$(stat -c %a fresh/links)" = 700 ] || fail "local-cluster made fresh/links $(stat -c %a fresh/links)"
    "$Q" status fresh >/dev/null || fail "a vault made by local-cluster does not open: $("$Q" status fresh 2>&1)"
    "$QSFS_CLUSTER_SCRIPT" stop fresh
    trap '"$QSFS_CLUSTER_SCRIPT" stop v' EXIT
    nodes=v.cluster
    st=$("$Q" status v)
    grep -q "qkd pool" <<<"$st" || fail "the cluster's links are not QKD-keyed: $st"
fi

# A source tree: nested folders, spaces, UTF-8, quotes, a leading dash,
# empty files, files spanning many stripes.
mkdir -p "src/a/b/c/deep folder" "src/with space" "src/ünïcødé/日本語" src/empty-dir
printf 'hello\n' > "src/hello.txt"
: > "src/empty file"
printf 'x' > "src/a/one byte"
head -c 4096 /dev/urandom > "src/a/b/4k.bin"
head -c 300001 /dev/urandom > "src/a/b/c/deep folder/300k.bin"
head -c 2000000 /dev/urandom > "src/with space/two MB.bin"
printf 'Grüße, 世界\n' > "src/ünïcødé/日本語/挨拶.txt"
printf 'quote\n' > "src/with space/it's \$HOME \"quoted\".txt"
printf 'dash\n' > "src/a/-leading-dash"
for i in $(seq 1 40); do head -c $((i * 37)) /dev/urandom > "src/a/b/c/small $i"; done
ln -s hello.txt src/link-to-hello

"$Q" put v -r src /dst 2> put.err
grep -q "skipping src/link-to-hello (not a regular file or folder)" put.err || fail "symlink not reported: $(cat put.err)"

# Every file back, byte for byte.
nfiles=0
while IFS= read -r -d '' f; do
    rel="${f#src/}"
    mkdir -p "out/$(dirname "$rel")"
    "$Q" get v "/dst/$rel" "out/$rel"
    cmp "$f" "out/$rel" || fail "content of $rel differs"
    nfiles=$((nfiles + 1))
done < <(find src -type f -print0)
[ "$nfiles" -eq 49 ] || fail "expected 49 files, compared $nfiles"

# ls shows the odd names as they are.
ls_space=$("$Q" ls v "/dst/with space")
grep -qx "it's \$HOME \"quoted\".txt" <<<"$ls_space" || fail "quoted name not listed: $ls_space"
grep -qx "two MB.bin" <<<"$ls_space" || fail "name with a space not listed: $ls_space"
grep -qx "挨拶.txt" <<<"$("$Q" ls v "/dst/ünïcødé/日本語")" || fail "UTF-8 name not listed"
ls_dst=$("$Q" ls v /dst)
grep -qx "empty-dir" <<<"$ls_dst" || fail "empty folder not stored: $ls_dst"
if grep -qx "link-to-hello" <<<"$ls_dst"; then fail "symlink was stored"; fi

# tar through stdin and stdout.
tar cf - -C src . | "$Q" put v - /t.tar
mkdir untarred
"$Q" get v /t.tar - | tar xf - -C untarred
diff -r src untarred || fail "tar round trip differs"

# 20 MiB through pipes.
dd if=/dev/urandom bs=1M count=20 status=none | tee big.src | "$Q" put v - /big
"$Q" get v /big - | cmp - big.src || fail "20 MiB through stdin/stdout differs"
"$Q" get v /big - | cmp - <(cat big.src) || fail "second read differs"

# Nothing left in the staging folder.
[ -z "$(ls -A v/staging)" ] || fail "staging not empty: $(ls -A v/staging)"

# status counts: 49 files + t.tar + big; folders: root, /dst and the 8
# folders under src; objects: non-empty files.
folders=$(( $(find src -type d | wc -l) + 1 ))
objects=$(( $(find src -type f -size +0c | wc -l) + 2 ))
"$Q" status v > status.txt
grep -q "content   51 files, $folders folders, $objects objects" status.txt || fail "status counts: $(cat status.txt)"
grep -q "repair    nothing owed" status.txt || fail "unexpected repair debt: $(cat status.txt)"
[ "$(grep -c ' ok  ' status.txt)" -eq 5 ] || fail "not all five nodes ok: $(cat status.txt)"
grep -q "\"objects\": $objects," <<<"$("$Q" status v --json)" || fail "status --json objects"

# ls -l: mode, size, time as ls -l shows it, name.
when='[A-Z][a-z]{2} [ 1-3][0-9] ( [0-9]{4}|[0-9]{2}:[0-9]{2})'
"$Q" ls v / -l > ls.txt
grep -Eq "^-rw-r--r-- +1 +[0-9]+ +[0-9]+ +20971520 $when big\$" ls.txt || fail "ls -l /big: $(cat ls.txt)"
grep -Eq '^drwxr-xr-x .* dst$' ls.txt || fail "ls -l /dst: $(cat ls.txt)"
grep -Eq " 2000000 $when two MB.bin\$" <<<"$("$Q" ls v "/dst/with space/two MB.bin" -l)" || fail "ls -l of one file"

# The time column is what ls -l prints for the same mtime (C locale): the
# time of day within the last six months, the year for older times and
# times in the future; local time, in three time zones (POSIX TZ strings,
# no tzdata needed). --json keeps the raw seconds and nanoseconds.
mkdir times
now=$(date +%s)
TZ=UTC0 touch -d "2020-03-04 05:06:07.123456789" times/old
touch -d "@$((now - 86400))" times/yesterday
touch -d "@$((now - 150 * 86400))" times/five-months
touch -d "@$((now - 200 * 86400))" times/seven-months
touch -d "@$((now + 40 * 86400))" times/future
"$Q" put v -r times /times
for tz in UTC0 IST-5:30 PST8PDT,M3.2.0,M11.1.0; do
    for f in old yesterday five-months seven-months future; do
        want=$(TZ=$tz LC_ALL=C ls -l "times/$f" | grep -Eo "$when times/$f\$")
        [ -n "$want" ] || fail "no time column in ls -l times/$f: $(TZ=$tz LC_ALL=C ls -l "times/$f")"
        got=$(TZ=$tz "$Q" ls v "/times/$f" -l)
        [[ "$got" == *" ${want% "times/$f"} $f" ]] || fail "TZ=$tz qsfs ls -l /times/$f: [$got], ls -l: [$want]"
    done
done
[[ "$(TZ=UTC0 "$Q" ls v /times/old -l)" == *" Mar  4  2020 old" ]] || fail "ls -l of a 2020 time: $("$Q" ls v /times/old -l)"
grep -q '"secs": 1583298367' <<<"$(TZ=UTC0 "$Q" ls v /times/old --json)" || fail "ls --json mtime: $("$Q" ls v /times/old --json)"
grep -q '"nanos": 123456789' <<<"$("$Q" ls v /times/old --json)" || fail "ls --json mtime nanoseconds: $("$Q" ls v /times/old --json)"

# Losing the node that holds shard 0 of /t.tar does not change what comes
# out, and the read says so.
obj=$("$Q" ls v /t.tar --json | sed -n 's/.*"object": "\([0-9a-f]*\)".*/\1/p')
[ ${#obj} -eq 32 ] || fail "no object id for /t.tar"
shard0=$(find "$nodes" -name "$obj.0")
node=$(basename "$(dirname "$(dirname "$(dirname "$shard0")")")")
rm -rf "${nodes:?}/$node"
rm -rf untarred && mkdir untarred
"$Q" get v /t.tar - 2> warn.txt | tar xf - -C untarred
diff -r src untarred || fail "tar round trip with a node missing differs"
grep -q "/t.tar: shard 0 of object $obj on $node is bad (missing)" warn.txt || fail "no warning for $node: $(cat warn.txt)"

# rm -r leaves no shard of the tree behind.
"$Q" rm v -r /dst /t.tar /big /times
[ -z "$("$Q" ls v /)" ] || fail "vault not empty after rm"
[ "$(find "$nodes" -path '*/shards/*' -type f -name '*.[0-9]*' ! -name '.*' | wc -l)" -eq 0 ] || fail "shards left after rm -r"
[ "$("$Q" keys verify v)" = "0 objects checked, 0 with key problems" ] || fail "keys left after rm -r"
echo "core CLI case passed"
