//! Any byte sequence handed to the snapshot readers (public, private, or the
//! two as a pair) must produce answers or errors, never a panic or an
//! out-of-bounds read (nss_zt runs inside every process on the host, pam_zt
//! inside sshd and sudo). The input is read as either file, or as a pair when
//! it starts with `zt_snapshot::fuzzing::PAIR_MAGIC`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    zt_snapshot::fuzzing::exercise(bytes);
});
