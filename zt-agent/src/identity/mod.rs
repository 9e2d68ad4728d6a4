//! The rules that turn directory people into POSIX accounts safely: names,
//! the host's own accounts (which always win), and uid/gid allocation.

pub mod idmap;
pub mod local;
pub mod names;
