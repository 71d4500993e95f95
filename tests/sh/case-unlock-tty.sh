# On a terminal (a pseudo-terminal here): `qsfs init` asks for a new
# passphrase twice and refuses two that differ, making nothing; `qsfs
# mount` asks for it before going to the background and mounts; a wrong
# one typed is refused by name; without a terminal the same vault says how
# to give the passphrase instead.
source "$(dirname "$0")/lib-mount.sh"

# on_pty.py EXPECTED-EXIT CMD... < answers: runs CMD on a pty, answering each
# prompt ("...: ") in turn with the next line of stdin; prints what the
# terminal showed. Fails on a wrong exit status or after 60 s.
cat > on_pty.py <<'PY'
import os, pty, select, sys, time
want, argv = int(sys.argv[1]), sys.argv[2:]
answers = sys.stdin.read().splitlines()
pid, fd = pty.fork()
if pid == 0:
    os.execvp(argv[0], argv)
seen, answered, deadline = b"", 0, time.time() + 60
while time.time() < deadline:
    r, _, _ = select.select([fd], [], [], 0.2)
    if fd in r:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        seen += data
    # A prompt ends with ": " and waits for a line. Typed a moment later,
    # as a person would: the program turns echo off after the prompt.
    if answered < len(answers) and seen.count(b": ") > answered and seen.rstrip(b" ").endswith(b":"):
        time.sleep(0.3)
        os.write(fd, answers[answered].encode() + b"\n")
        answered += 1
else:
    os.kill(pid, 9)
    sys.exit("timed out; the terminal showed: " + seen.decode(errors="replace"))
_, status = os.waitpid(pid, 0)
code = os.waitstatus_to_exitcode(status)
sys.stdout.write(seen.decode(errors="replace"))
if code != want:
    sys.exit(f"exit {code}, want {want}")
PY

# init: two prompts, two equal answers.
printf 'typed passphrase\ntyped passphrase\n' | python3 on_pty.py 0 "$Q" init "$VAULT" > init.out || fail "init on a tty: $(cat init.out)"
grep -q 'New passphrase:' init.out || fail "init did not ask: $(cat init.out)"
grep -q 'Repeat the passphrase:' init.out || fail "init did not ask twice: $(cat init.out)"
grep -q 'unlock: passphrase (Argon2id' init.out || fail "init said: $(cat init.out)"
grep -q 'typed passphrase' init.out && fail "the passphrase was echoed: $(cat init.out)"

# Two that differ: refused, nothing made.
printf 'one\ntwo\n' | python3 on_pty.py 1 "$Q" init v2 > init2.out || fail "init with differing passphrases: $(cat init2.out)"
grep -q 'the two passphrases differ; nothing was changed' init2.out || fail "init said: $(cat init2.out)"
[ ! -e v2 ] || fail "a refused init left v2 behind"

# mount asks on the terminal, then runs in the background.
mkdir -p "$MNT"
printf 'typed passphrase\n' | python3 on_pty.py 0 "$Q" mount "$VAULT" "$MNT" > mount.out || fail "mount on a tty: $(cat mount.out)"
grep -q "Passphrase for vault $VAULT:" mount.out || fail "mount did not ask: $(cat mount.out)"
is_mounted "$MNT" || fail "nothing mounted: $(cat mount.out)"
MOUNTED_PID=$(mount_pid)
STARTED_PIDS+=("$MOUNTED_PID")
echo "typed in" > "$MNT/f"
unmount

# A wrong passphrase typed: refused by name.
printf 'wrong one\n' | python3 on_pty.py 1 "$Q" ls "$VAULT" / > ls.out || fail "ls with a wrong passphrase: $(cat ls.out)"
grep -q 'the passphrase is wrong' ls.out || fail "ls said: $(cat ls.out)"
# The right one: the file is there.
printf 'typed passphrase\n' | python3 on_pty.py 0 "$Q" get "$VAULT" /f - > get.out || fail "get: $(cat get.out)"
grep -q 'typed in' get.out || fail "get said: $(cat get.out)"
# No terminal: says how to give it.
rc=0
"$Q" ls "$VAULT" / < /dev/null > out.txt 2> err.txt || rc=$?
[ "$rc" -eq 1 ] || fail "ls without a terminal exited $rc"
grep -q 'no passphrase given (run on a terminal, or give --passphrase-file FILE or QSFS_PASSPHRASE_FILE)' err.txt || fail "ls said: $(cat err.txt)"
