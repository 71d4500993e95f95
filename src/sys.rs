//! Thin wrappers over the few Linux syscalls std does not expose.
