//! Paths inside a vault: `/a/b/c` (the leading slash is optional).
//!
//! Names are bytes, as on Linux. `.` components are skipped; `..` is
//! refused rather than resolved, so a path never escapes or aliases.

use std::fmt;

use super::NamespaceError;

/// A parsed vault path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultPath {
    parts: Vec<Vec<u8>>,
}

/// A name for messages (lossy UTF-8).
pub fn display_name(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

impl VaultPath {
    /// The root.
    pub fn root() -> VaultPath {
        VaultPath { parts: Vec::new() }
    }

    /// Parses a path given by the user.
    pub fn parse(s: &str) -> Result<VaultPath, NamespaceError> {
        Self::parse_bytes(s.as_bytes())
    }

    /// Parses a path of raw bytes.
    pub fn parse_bytes(s: &[u8]) -> Result<VaultPath, NamespaceError> {
        let mut parts = Vec::new();
        for part in s.split(|b| *b == b'/') {
            match part {
                b"" | b"." => {}
                b".." => {
                    return Err(NamespaceError::InvalidPath {
                        path: display_name(s),
                        why: "`..` is not allowed in vault paths",
                    });
                }
                p if p.contains(&0) => {
                    return Err(NamespaceError::InvalidPath {
                        path: display_name(s),
                        why: "contains a NUL byte",
                    });
                }
                p => parts.push(p.to_vec()),
            }
        }
        Ok(VaultPath { parts })
    }

    /// The components.
    pub fn components(&self) -> &[Vec<u8>] {
        &self.parts
    }

    /// True for `/`.
    pub fn is_root(&self) -> bool {
        self.parts.is_empty()
    }

    /// The first `n` components as a path string.
    pub fn prefix(&self, n: usize) -> String {
        VaultPath {
            parts: self.parts[..n.min(self.parts.len())].to_vec(),
        }
        .to_string()
    }

    /// The path of the first `n` components (names kept as bytes).
    pub fn first(&self, n: usize) -> VaultPath {
        VaultPath {
            parts: self.parts[..n.min(self.parts.len())].to_vec(),
        }
    }

    /// Parent path and last name.
    pub fn split_last(&self) -> Option<(VaultPath, &[u8])> {
        let (last, rest) = self.parts.split_last()?;
        Some((
            VaultPath {
                parts: rest.to_vec(),
            },
            last.as_slice(),
        ))
    }

    /// This path with `name` appended.
    pub fn join(&self, name: &[u8]) -> VaultPath {
        let mut parts = self.parts.clone();
        parts.push(name.to_vec());
        VaultPath { parts }
    }
}

impl fmt::Display for VaultPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.parts.is_empty() {
            return f.write_str("/");
        }
        for p in &self.parts {
            write!(f, "/{}", display_name(p))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        let p = VaultPath::parse("a//b/./c/").unwrap();
        assert_eq!(p.to_string(), "/a/b/c");
        assert_eq!(p.prefix(2), "/a/b");
        let (parent, last) = p.split_last().unwrap();
        assert_eq!((parent.to_string().as_str(), last), ("/a/b", &b"c"[..]));
        assert!(VaultPath::parse("/").unwrap().is_root());
        assert!(VaultPath::parse("a/../b").is_err());
        assert_eq!(VaultPath::root().join(b"x").to_string(), "/x");
    }
}
