//! The rules that turn directory people into POSIX accounts safely: names,
//! the host's own accounts (which always win), uid/gid allocation, and the
//! persisted holders of names and ids.

pub mod holders;
pub mod idmap;
pub mod local;
pub mod names;
