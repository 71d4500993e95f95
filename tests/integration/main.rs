//! The integration suite in one binary: one link instead of one per file.
//! Each module drives real processes, node folders and servers.

#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

mod audit;
mod backup_on_nodes;
mod bad_input;
mod cli_basics;
mod common;
mod crash;
mod custody;
mod entropy_sources;
mod envelope_cli;
mod envelope_props;
mod envelope_vectors;
mod etsi014;
mod frozen_vault;
mod fsck;
mod fuzz_replay;
mod hostile_nodes;
mod key_faults;
mod keyholders;
mod keypool;
mod link;
mod migration;
mod node_faults;
mod perms;
mod remote_nodes;
mod safety;
mod scrub;
