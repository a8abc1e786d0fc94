//! The commands: the only code that sees the command line (`cli.rs`).

pub mod device;
