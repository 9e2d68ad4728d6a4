#!/bin/sh
# Smoke test of target/debug/libpam_zt.so through the real Linux-PAM with
# pamtester, in a private mount namespace (the host's /etc/pam.d is not
# changed). Root only. Needs: cargo build -p pam_zt; apt-get install pamtester.
# Shows: a password is PAM_IGNORE'd (and left to the next module), a token
# with no snapshot is refused (AUTHINFO_UNAVAIL), a non-local name without a
# snapshot is never let through the account stage, and the audit lines.
set -eu
so="$(cd "$(dirname "$0")/../.." && pwd)/target/debug/libpam_zt.so"
t="$(mktemp -d)"
trap 'rm -rf "$t"' EXIT
cp -a /etc/pam.d "$t/pam.d"
a="state_dir=$t/state audit_log=$t/log/auth.jsonl"
cat > "$t/pam.d/zt-smoke" <<PAM
auth     [success=done ignore=ignore default=die] $so $a
auth     required pam_permit.so
account  required $so $a
account  required pam_permit.so
PAM
unshare -m --propagation private sh -c "
mount --bind '$t/pam.d' /etc/pam.d
echo hunter2 | pamtester zt-smoke root authenticate acct_mgmt && echo 'ok: password left to the next module'
echo eyJhbGciOiJSUzI1NiIsImtpZCI6ImsifQ.e30.AAAA | pamtester zt-smoke alice authenticate || echo 'ok: token refused without a snapshot'
pamtester zt-smoke alice acct_mgmt || echo 'ok: unvouched name refused'
"
cat "$t/log/auth.jsonl"
