//! Human-readable formatting for the command line.

use crate::namespace::{Inode, Kind, Time};

/// `1.5 MiB`-style sizes.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `drwxr-xr-x`-style mode string.
pub fn mode_string(kind: Kind, mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(kind.letter());
    let bits = [
        (0o400, 'r'),
        (0o200, 'w'),
        (0o100, 'x'),
        (0o040, 'r'),
        (0o020, 'w'),
        (0o010, 'x'),
        (0o004, 'r'),
        (0o002, 'w'),
        (0o001, 'x'),
    ];
    for (i, (bit, c)) in bits.iter().enumerate() {
        let set = mode & bit != 0;
        let special = match i {
            2 if mode & 0o4000 != 0 => Some(if set { 's' } else { 'S' }),
            5 if mode & 0o2000 != 0 => Some(if set { 's' } else { 'S' }),
            8 if mode & 0o1000 != 0 => Some(if set { 't' } else { 'T' }),
            _ => None,
        };
        s.push(special.unwrap_or(if set { *c } else { '-' }));
    }
    s
}

/// A time as `ls -l` shows it in the C locale: local time, "Dec  5 11:56"
/// within the last six months, "Dec  5  2025" for anything older or in
/// the future (GNU ls's rule; `now` is the current time).
pub fn ls_time(t: Time, now: Time) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // Half of an average Gregorian year, as GNU ls counts it.
    const SIX_MONTHS: i64 = 31_556_952 / 2;
    let Some(lt) = qsfs_sys::local_time(t.secs) else {
        // Beyond what the C library can break down: the raw seconds.
        return t.secs.to_string();
    };
    let when = (t.secs, t.nanos);
    let recent = (now.secs - SIX_MONTHS, now.nanos) < when && when < (now.secs, now.nanos);
    let month = MONTHS.get(lt.month as usize).copied().unwrap_or("???");
    if recent {
        format!("{month} {:>2} {:02}:{:02}", lt.day, lt.hour, lt.minute)
    } else {
        format!("{month} {:>2} {:>5}", lt.day, lt.year)
    }
}

/// One `ls -l` line.
pub fn long_line(name: &str, i: &Inode) -> String {
    let link = if i.kind == Kind::Symlink {
        format!(" -> {}", String::from_utf8_lossy(&i.target))
    } else {
        String::new()
    };
    format!(
        "{} {:>3} {:>5} {:>5} {:>14} {} {}{}",
        mode_string(i.kind, i.mode),
        i.nlink,
        i.uid,
        i.gid,
        i.size,
        ls_time(i.mtime, Time::now()),
        name,
        link
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(bytes(10), "10 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(mode_string(Kind::Dir, 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(Kind::File, 0o4754), "-rwsr-xr--");
        assert_eq!(mode_string(Kind::File, 0o1600), "-rw------T");
    }

    /// The test process's time zone is whatever the machine has, so the
    /// expected strings come from the same C library call; the rule for
    /// recent and old times is what is checked (against `ls -l` itself in
    /// tests/sh/case-core-cli.sh).
    #[test]
    fn ls_times() {
        let now = Time {
            secs: 1_765_000_000,
            nanos: 5,
        };
        let at = |secs: i64| Time { secs, nanos: 0 };
        let clock = |secs: i64| {
            let t = qsfs_sys::local_time(secs).expect("a time localtime_r breaks down");
            format!("{:02}:{:02}", t.hour, t.minute)
        };
        let year = |secs: i64| {
            format!(
                " {}",
                qsfs_sys::local_time(secs)
                    .expect("a time localtime_r breaks down")
                    .year
            )
        };
        // An hour ago and five months ago: the time of day.
        for secs in [now.secs - 3600, now.secs - 150 * 86_400] {
            let s = ls_time(at(secs), now);
            assert_eq!(s.len(), 12, "{s}");
            assert!(s.ends_with(&clock(secs)), "{s}");
        }
        // Seven months ago, and a day ahead: the year.
        for secs in [now.secs - 213 * 86_400, now.secs + 86_400] {
            let s = ls_time(at(secs), now);
            assert_eq!(s.len(), 12, "{s}");
            assert!(s.ends_with(&year(secs)), "{s}");
        }
        // Day of the month padded like %e.
        let s = ls_time(at(now.secs - 3600), now);
        assert!(s[4..6].trim_start().parse::<u32>().is_ok(), "{s}");
    }
}
