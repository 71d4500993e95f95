//! The `qsfs` command line: thin glue from arguments to the library.
//!
//! Library errors are typed; here they become one `error:` line (with the
//! chain of causes) and exit status 1. Usage errors exit with 2 (clap).

fn main() {
    std::process::exit(qsfs::cli::run());
}
