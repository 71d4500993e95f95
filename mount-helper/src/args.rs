//! What mount(8) passes to an external helper, parsed.
//!
//! mount(8) runs `/sbin/mount.fuse.qsfs SPEC DIR [-sfnv] [-N NS] [-o OPTS]
//! [-t TYPE]` (see "EXTERNAL HELPERS" in mount(8)). Options may come in any
//! position after SPEC and DIR (and before them too: getopt style), short
//! flags may be grouped (`-sfnv`, `-fo ro`), `-o` may repeat and `--` ends
//! the options.
//!
//! Each `-o` word is one of:
//! - an option `qsfs mount -o` knows (passed on),
//! - one of mount(8)'s own (`defaults`, `noauto`, `nofail`, `x-*`, ...;
//!   dropped),
//! - one of the helper's own: `threads=N` and `log_level=LEVEL` become
//!   `--threads` and `--log-level`, `setuid=USER` runs qsfs as USER,
//! - anything else: an error, or with `-s` (sloppy) dropped.

use std::ffi::OsString;

/// `-o` words `qsfs mount` takes (src/fs/mount.rs, `parse_options`).
pub const QSFS_OPTIONS: &[&str] = &[
    "allow_other",
    "allow_root",
    "default_permissions",
    "ro",
    "rw",
    "dev",
    "nodev",
    "suid",
    "nosuid",
    "exec",
    "noexec",
    "atime",
    "relatime",
    "strictatime",
    "noatime",
    "sync",
    "async",
    "dirsync",
    "auto_unmount",
];

/// Log levels `log_level=` takes.
const LOG_LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

/// Filesystem types this helper serves (`-t`).
const TYPES: &[&str] = &["fuse.qsfs", "qsfs"];

/// One mount request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    /// The vault folder (mount(8)'s "spec", fstab's first field).
    pub spec: OsString,
    /// The mount point.
    pub dir: OsString,
    /// Options for `qsfs mount -o`, in the order given.
    pub options: Vec<String>,
    /// `threads=N`: FUSE worker threads.
    pub threads: Option<u32>,
    /// `log_level=LEVEL`: level of VAULT/qsfs.log.
    pub log_level: Option<String>,
    /// `setuid=USER`: run qsfs as this user (name or uid).
    pub setuid: Option<String>,
    /// Options dropped (mount(8)'s own, or unknown ones under `-s`), with why.
    pub dropped: Vec<(String, &'static str)>,
    /// `-s`: ignore unknown options.
    pub sloppy: bool,
    /// `-f`: do everything but the mount.
    pub fake: bool,
    /// `-v`: say what runs.
    pub verbose: bool,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Mount (or with `-f` pretend to).
    Mount(Request),
    /// `-h` / `--help`.
    Help,
    /// `-V` / `--version`.
    Version,
}

/// How to call the helper.
pub const USAGE: &str = "usage: mount.qsfs VAULT DIR [-sfnv] [-o OPTIONS] [-t fuse.qsfs]";

/// How one `-o` word is treated.
#[derive(Debug, PartialEq, Eq)]
enum Class {
    /// Passed to `qsfs mount -o`.
    Qsfs,
    /// mount(8)'s own: dropped.
    MountOwn,
    /// `threads=`, `log_level=`, `setuid=`.
    Helper,
    /// Not known.
    Unknown,
}

fn classify(opt: &str) -> Class {
    let key = opt.split_once('=').map_or(opt, |(k, _)| k);
    if QSFS_OPTIONS.contains(&opt) {
        return Class::Qsfs;
    }
    match key {
        "threads" | "log_level" | "setuid" => Class::Helper,
        // fstab/mount(8) words that are not for the filesystem: what mount(8)
        // handles itself (auto, user, nofail, _netdev, x-*/X-* for systemd
        // and libmount, comment=, loop devices) and may still pass on.
        "defaults" | "auto" | "noauto" | "user" | "users" | "nouser" | "owner" | "group"
        | "nofail" | "_netdev" | "comment" | "loop" | "offset" | "sizelimit" | "encryption"
        | "helper" => Class::MountOwn,
        k if k.starts_with("x-") || k.starts_with("X-") => Class::MountOwn,
        _ => Class::Unknown,
    }
}

fn opt_str(value: OsString, what: &str) -> Result<String, String> {
    value
        .into_string()
        .map_err(|v| format!("{what} {:?} is not valid UTF-8", v))
}

/// Parses the helper's arguments (without the program name).
pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<Parsed, String> {
    let mut req = Request::default();
    let mut positional: Vec<OsString> = Vec::new();
    let mut option_lists: Vec<String> = Vec::new();
    let mut args = args.into_iter();
    let mut only_positional = false;

    while let Some(arg) = args.next() {
        let bytes = arg.as_encoded_bytes();
        if only_positional || bytes.len() < 2 || bytes[0] != b'-' {
            positional.push(arg);
            continue;
        }
        if bytes == b"--" {
            only_positional = true;
            continue;
        }
        let text = opt_str(arg, "argument")?;
        if let Some(long) = text.strip_prefix("--") {
            match long {
                "help" => return Ok(Parsed::Help),
                "version" => return Ok(Parsed::Version),
                _ => return Err(format!("unknown argument --{long}")),
            }
        }
        // A group of short flags; o, t and N take a value (the rest of the
        // group, or the next argument).
        for (i, c) in text[1..].char_indices() {
            match c {
                's' => req.sloppy = true,
                'f' => req.fake = true,
                'v' => req.verbose = true,
                // Not writing /etc/mtab is all qsfs ever does.
                'n' => {}
                'r' => option_lists.push("ro".into()),
                'w' => option_lists.push("rw".into()),
                'h' => return Ok(Parsed::Help),
                'V' => return Ok(Parsed::Version),
                'o' | 't' | 'N' => {
                    let rest = &text[1 + i + c.len_utf8()..];
                    let value = if rest.is_empty() {
                        let v = args.next().ok_or_else(|| format!("-{c} needs a value"))?;
                        opt_str(v, &format!("the value of -{c}"))?
                    } else {
                        rest.to_string()
                    };
                    match c {
                        'o' => option_lists.push(value),
                        't' => {
                            if !TYPES.contains(&value.as_str()) {
                                return Err(format!(
                                    "this helper mounts qsfs vaults (type fuse.qsfs), not type {value:?}"
                                ));
                            }
                        }
                        _ => {
                            return Err(format!(
                                "-N {value}: mounting into another namespace is not supported; run mount inside it"
                            ));
                        }
                    }
                    break;
                }
                other => return Err(format!("unknown flag -{other}")),
            }
        }
    }

    let mut positional = positional.into_iter();
    req.spec = positional.next().ok_or("missing VAULT and DIR")?;
    req.dir = positional.next().ok_or("missing DIR (the mount point)")?;
    if let Some(extra) = positional.next() {
        return Err(format!(
            "unexpected argument {:?} after VAULT and DIR",
            extra
        ));
    }
    if req.spec.is_empty() {
        return Err("the vault path is empty".into());
    }
    if req.dir.is_empty() {
        return Err("the mount point is empty".into());
    }

    for opt in option_lists
        .iter()
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|o| !o.is_empty())
    {
        match classify(opt) {
            Class::Qsfs => {
                if !req.options.iter().any(|o| o == opt) {
                    req.options.push(opt.to_string());
                }
            }
            Class::MountOwn => req.dropped.push((opt.to_string(), "handled by mount(8)")),
            Class::Helper => helper_option(&mut req, opt)?,
            Class::Unknown if req.sloppy => {
                req.dropped.push((opt.to_string(), "unknown, ignored (-s)"))
            }
            Class::Unknown => {
                return Err(format!(
                    "unknown mount option {opt:?} (qsfs takes: {}; the helper also takes threads=N, log_level=LEVEL, setuid=USER; -s ignores unknown options)",
                    QSFS_OPTIONS.join(", ")
                ));
            }
        }
    }
    Ok(Parsed::Mount(req))
}

/// `threads=N`, `log_level=LEVEL`, `setuid=USER`.
fn helper_option(req: &mut Request, opt: &str) -> Result<(), String> {
    let (key, value) = opt
        .split_once('=')
        .ok_or_else(|| format!("mount option {opt} needs a value ({opt}=...)"))?;
    match key {
        "threads" => match value.parse::<u32>() {
            Ok(n) if (1..=1024).contains(&n) => req.threads = Some(n),
            _ => {
                return Err(format!(
                    "threads={value}: want a number of threads from 1 to 1024"
                ));
            }
        },
        "log_level" => {
            if !LOG_LEVELS.contains(&value) {
                return Err(format!(
                    "log_level={value}: want one of {}",
                    LOG_LEVELS.join(", ")
                ));
            }
            req.log_level = Some(value.to_string());
        }
        _ => {
            if value.is_empty() || value.contains(':') {
                return Err(format!("setuid={value}: want a user name or uid"));
            }
            req.setuid = Some(value.to_string());
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Parsed, String> {
        parse(args.iter().map(OsString::from))
    }

    fn req(args: &[&str]) -> Request {
        match p(args) {
            Ok(Parsed::Mount(r)) => r,
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    #[test]
    fn plain_spec_dir() {
        let r = req(&["/srv/vault", "/mnt/x"]);
        assert_eq!(r.spec, "/srv/vault");
        assert_eq!(r.dir, "/mnt/x");
        assert!(r.options.is_empty() && !r.fake && !r.sloppy && !r.verbose);
    }

    #[test]
    fn what_mount8_passes() {
        let r = req(&[
            "/srv/vault",
            "/mnt/x",
            "-n",
            "-o",
            "rw,noatime,allow_other",
            "-t",
            "fuse.qsfs",
        ]);
        assert_eq!(r.options, ["rw", "noatime", "allow_other"]);
        let r = req(&["/srv/vault", "/mnt/x", "-sfnv", "-o", "ro"]);
        assert!(r.sloppy && r.fake && r.verbose);
        assert_eq!(r.options, ["ro"]);
    }

    #[test]
    fn options_anywhere_and_repeated() {
        let r = req(&[
            "-v",
            "/srv/vault",
            "-o",
            "ro",
            "/mnt/x",
            "-onoatime",
            "-o",
            "allow_other,ro",
        ]);
        assert_eq!(r.spec, "/srv/vault");
        assert_eq!(r.dir, "/mnt/x");
        // Duplicates collapse, order stays.
        assert_eq!(r.options, ["ro", "noatime", "allow_other"]);
        assert!(r.verbose);
    }

    #[test]
    fn grouped_flags_with_value() {
        let r = req(&["v", "m", "-fvo", "nodev,nosuid"]);
        assert!(r.fake && r.verbose);
        assert_eq!(r.options, ["nodev", "nosuid"]);
        let r = req(&["v", "m", "-vonoexec"]);
        assert_eq!(r.options, ["noexec"]);
        let r = req(&["v", "m", "-tqsfs", "-r"]);
        assert_eq!(r.options, ["ro"]);
    }

    #[test]
    fn mount8_words_are_dropped() {
        let r = req(&[
            "v",
            "m",
            "-o",
            "defaults,auto,noauto,user,users,nouser,user=alice,nofail,_netdev,x-systemd.automount,X-mount.mkdir,comment=hi,noatime",
        ]);
        assert_eq!(r.options, ["noatime"]);
        assert_eq!(r.dropped.len(), 12);
        assert!(
            r.dropped
                .iter()
                .all(|(_, why)| *why == "handled by mount(8)")
        );
    }

    #[test]
    fn unknown_options_fail_unless_sloppy() {
        let e = p(&["v", "m", "-o", "noatime,bogus"]).unwrap_err();
        assert!(
            e.contains("unknown mount option \"bogus\"") && e.contains("-s ignores"),
            "{e}"
        );
        let r = req(&["v", "m", "-s", "-o", "noatime,bogus,fsname=x"]);
        assert_eq!(r.options, ["noatime"]);
        assert_eq!(
            r.dropped,
            [
                ("bogus".to_string(), "unknown, ignored (-s)"),
                ("fsname=x".to_string(), "unknown, ignored (-s)")
            ]
        );
        // -s may come after -o.
        assert_eq!(
            req(&["v", "m", "-o", "bogus", "-s"]).options,
            Vec::<String>::new()
        );
    }

    #[test]
    fn helper_options() {
        let r = req(&["v", "m", "-o", "threads=8,log_level=debug,setuid=alice,ro"]);
        assert_eq!(r.threads, Some(8));
        assert_eq!(r.log_level.as_deref(), Some("debug"));
        assert_eq!(r.setuid.as_deref(), Some("alice"));
        assert_eq!(r.options, ["ro"]);
        for bad in [
            "threads=0",
            "threads=x",
            "threads",
            "log_level=loud",
            "setuid=",
            "setuid=a:b",
        ] {
            assert!(p(&["v", "m", "-o", bad]).is_err(), "{bad} accepted");
            // Malformed helper options are errors even when sloppy.
            assert!(
                p(&["v", "m", "-s", "-o", bad]).is_err(),
                "{bad} accepted with -s"
            );
        }
    }

    #[test]
    fn usage_errors() {
        assert!(p(&[]).unwrap_err().contains("missing VAULT and DIR"));
        assert!(p(&["/srv/vault"]).unwrap_err().contains("missing DIR"));
        assert!(
            p(&["/srv/vault", "-o", "ro"])
                .unwrap_err()
                .contains("missing DIR")
        );
        assert!(
            p(&["a", "b", "c"])
                .unwrap_err()
                .contains("unexpected argument \"c\"")
        );
        assert!(
            p(&["a", "b", "-o"])
                .unwrap_err()
                .contains("-o needs a value")
        );
        assert!(
            p(&["a", "b", "-x"])
                .unwrap_err()
                .contains("unknown flag -x")
        );
        assert!(
            p(&["a", "b", "--bogus"])
                .unwrap_err()
                .contains("unknown argument --bogus")
        );
        assert!(
            p(&["a", "b", "-t", "fuse.sshfs"])
                .unwrap_err()
                .contains("not type \"fuse.sshfs\"")
        );
        assert!(
            p(&["a", "b", "-N", "/proc/1/ns/mnt"])
                .unwrap_err()
                .contains("not supported")
        );
        assert!(p(&["", "b"]).unwrap_err().contains("vault path is empty"));
    }

    #[test]
    fn help_version_and_dashes() {
        assert_eq!(p(&["-h"]), Ok(Parsed::Help));
        assert_eq!(p(&["--help"]), Ok(Parsed::Help));
        assert_eq!(p(&["-V"]), Ok(Parsed::Version));
        // After --, names starting with a dash are paths.
        let r = req(&["-o", "ro", "--", "-vault", "-mnt"]);
        assert_eq!(
            (r.spec.as_os_str(), r.dir.as_os_str()),
            ("-vault".as_ref(), "-mnt".as_ref())
        );
        // A lone "-" is a path too.
        assert_eq!(req(&["-", "m"]).spec, "-");
    }

    #[test]
    fn non_utf8_paths_pass_through() {
        use std::os::unix::ffi::OsStringExt;
        let spec = OsString::from_vec(b"/srv/v\xff".to_vec());
        let r = match parse([spec.clone(), OsString::from("/mnt/x")]) {
            Ok(Parsed::Mount(r)) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(r.spec, spec);
    }

    #[test]
    fn known_options_all_pass() {
        let all = QSFS_OPTIONS.join(",");
        assert_eq!(req(&["v", "m", "-o", &all]).options, QSFS_OPTIONS);
    }
}
