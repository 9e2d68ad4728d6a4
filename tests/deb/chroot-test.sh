#!/bin/bash
# The package's life on a host, in a Debian bookworm chroot: install, resolve a
# directory user, sign in with a token through the installed PAM profile,
# upgrade with an edited conffile, remove, purge, install again; and the ways it
# can go wrong: sss on the passwd line, an sshd that refuses the drop-in, a
# postinst that dies midway. Driven by tests/e2e/tests/deb.rs, which makes the
# .deb, the chroot tarball (tests/deb/make-chroot.sh), a key server and a token:
#   chroot-test.sh TARBALL DEB CERTS_URL TOKEN_FILE DIRECTORY_JSON
# Run as root inside `unshare -m` (and the network namespace of the key server).
# Touches nothing outside a fresh directory under /var/tmp, removed at the end.
set -euo pipefail
TARBALL=$1 DEB=$2 CERTS_URL=$3 TOKEN_FILE=$4 DIRECTORY_JSON=$5

R=$(mktemp -d /var/tmp/zt-deb-test.XXXXXX)
cleanup() { umount -l "$R/proc" 2>/dev/null || true; rm -rf "$R"; }
trap cleanup EXIT
tar -C "$R" -xf "$TARBALL"
mount -t proc proc "$R/proc"

step() { echo; echo "==> $*"; }
fail() { echo "FAILED: $*" >&2; exit 1; }
# (pipelines into grep use -c, not -q: -q stops reading early and the writer
# dies of SIGPIPE, which pipefail reports as a failure)
# in the chroot, as a login shell would run it
in_root() { chroot "$R" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive sh -c "$1"; }
apt_install() { in_root "apt-get install -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold $1"; }
expect_line() { grep -qE "$2" "$R$1" || { cat "$R$1" >&2; fail "$1 has no line matching $2"; }; }
expect_no_line() { ! grep -qE "$2" "$R$1" || { cat "$R$1" >&2; fail "$1 still matches $2"; }; }
same_file() { cmp "$R$1" "$2" || { diff "$2" "$R$1" >&2 || true; fail "$1 differs from before install"; }; }

# The "previous build" for the upgrade: the same package as version -0, whose
# shipped agent.toml differs (so dpkg has a conffile decision to make).
prev=$R/tmp/prev
dpkg-deb -R "$DEB" "$prev"
sed -i -E 's/^Version: (.*)-[0-9]+$/Version: \1-0/' "$prev/DEBIAN/control"
echo "# (the previous build's version of this file)" >>"$prev/etc/zt/agent.toml"
# an older drop-in: an upgrade replaces the untouched installed copy
echo "# (the previous build's drop-in)" >>"$prev/usr/share/zt/sshd_config.d-zt.conf"
(cd "$prev" && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | sort | xargs md5sum >DEBIAN/md5sums)
dpkg-deb -b --root-owner-group "$prev" "$R/tmp/zt-prev.deb" >/dev/null
rm -rf "$prev"
cp "$DEB" "$R/tmp/zt.deb"

# What install must give back on purge.
mkdir -p "$R/tmp/before"
cp -a "$R/etc/nsswitch.conf" "$R"/etc/pam.d/common-* "$R/tmp/before/"
before=$R/tmp/before

step "install the previous build"
apt_install /tmp/zt-prev.deb
expect_line /etc/nsswitch.conf '^passwd:[[:space:]]+files zt$'
expect_line /etc/nsswitch.conf '^group:[[:space:]]+files zt$'
expect_line /etc/pam.d/common-auth '^auth[[:space:]]+\[success=[0-9]+ default=ignore\][[:space:]]+pam_zt\.so[[:space:]]*$'
expect_line /etc/pam.d/common-account '^account[[:space:]]+required[[:space:]]+pam_zt\.so[[:space:]]*$'
expect_line /etc/pam.d/common-session '^session[[:space:]]+optional[[:space:]]+pam_zt\.so[[:space:]]*$'
expect_no_line /etc/pam.d/common-session-noninteractive 'pam_zt'
# pam_zt comes before pam_unix, and pam_unix then checks a non-token answer
in_root 'grep -nE "pam_(zt|unix)" /etc/pam.d/common-auth'
in_root 'awk "/pam_zt/ {z=NR} /pam_unix/ {u=NR} END {exit !(z && u && z < u)}" /etc/pam.d/common-auth' ||
    fail "pam_zt is not before pam_unix in common-auth"
expect_line /etc/pam.d/common-auth 'pam_unix\.so .*try_first_pass'
in_root 'getent passwd zt && getent group zt' >/dev/null || fail "no zt system user/group"
[ "$(stat -c '%U %a' "$R/var/lib/zt")" = "root 755" ] || fail "/var/lib/zt is not root 0755"
[ "$(stat -c '%U %a' "$R/etc/zt/agent.toml")" = "root 600" ] || fail "agent.toml is not root 0600"
[ -f "$R/etc/ssh/sshd_config.d/zt.conf" ] || fail "sshd drop-in not installed"
grep -qx "# (the previous build's drop-in)" "$R/etc/ssh/sshd_config.d/zt.conf" || fail "not the previous build's drop-in"
[ "$(sha256sum <"$R/etc/ssh/sshd_config.d/zt.conf" | cut -d' ' -f1)" = "$(cat "$R/var/lib/zt/sshd-dropin.sha256")" ] ||
    fail "postinst did not record the drop-in's sha256"
in_root '/usr/sbin/sshd -t' || fail "sshd -t fails with the drop-in"
in_root '/usr/sbin/sshd -T' | grep -cx 'authorizedprincipalscommand /usr/sbin/zt-agent principals %u' >/dev/null ||
    fail "sshd -T does not show the drop-in's AuthorizedPrincipalsCommand"
in_root 'ldconfig -p' | grep -c 'libnss_zt.so.2 .*=> /lib/x86_64-linux-gnu/libnss_zt.so.2' >/dev/null ||
    fail "the ldconfig trigger did not run"

step "not configured yet: the agent says so, lookups fail fast"
set +e
out=$(in_root 'timeout 3 zt-agent run' 2>&1)
status=$?
set -e
echo "$out"
[ "$status" = 124 ] || fail "zt-agent run exited $status instead of running until killed"
grep -q 'not configured' <<<"$out" || fail "zt-agent run does not say it is not configured"
start=$(date +%s%N)
set +e
in_root 'getent passwd alice'
status=$?
set -e
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
echo "getent passwd alice without a snapshot: exit $status in ${elapsed_ms} ms"
[ "$status" = 2 ] || fail "getent passwd alice exited $status, not 2 (not found)"
[ "$elapsed_ms" -lt 1000 ] || fail "a lookup without a snapshot took ${elapsed_ms} ms"
in_root 'getent passwd root' >/dev/null || fail "root does not resolve"

step "configure: a file directory and a token issuer (an admin edit of the conffile)"
install -m 0644 "$DIRECTORY_JSON" "$R/etc/zt/directory.json"
cat >>"$R/etc/zt/agent.toml" <<TOML

# added by the admin
[[issuers]]
kind = "cloudflare-access"
team = "zt-test"
audiences = ["4714c1358e65fe4b408ad6d432a5f878f08194bdb4752441fd56faefa9b2b6f2"]
certs_url = "$CERTS_URL"

[monitoring]
textfile = "/var/lib/prometheus/node-exporter/zt.prom"
TOML
mkdir -p "$R/var/lib/prometheus/node-exporter" # node_exporter's package makes it
in_root 'zt-agent sync --once'
grep -qE '^zt_users [1-9][0-9]*$' "$R/var/lib/prometheus/node-exporter/zt.prom" ||
    { cat "$R/var/lib/prometheus/node-exporter/zt.prom" >&2; fail "the textfile counts no users"; }
grep -qx 'zt_healthy 1' "$R/var/lib/prometheus/node-exporter/zt.prom" || fail "the textfile does not say healthy"
in_root 'getent passwd alice' | grep -E '^alice:\*:[0-9]+:[0-9]+:Alice Liddell:/home/alice:/bin/bash$' ||
    fail "the installed module does not resolve alice"
in_root 'id alice' | grep -c '(sre)' >/dev/null || fail "alice is not in sre"

step "a token signs alice in through the installed PAM profile (pamtester, service sshd)"
cp "$TOKEN_FILE" "$R/tmp/token"
in_root 'pamtester -v sshd alice authenticate acct_mgmt </tmp/token' || fail "token login refused"
# a token whose signature is broken is refused, and pam_unix does not let it in either
sed -E 's/.$/A/' "$TOKEN_FILE" | sed -E 's/(\.[^.]+)$/\1xx/' >"$R/tmp/bad-token"
if in_root 'pamtester sshd alice authenticate </tmp/bad-token' >/dev/null 2>&1; then fail "a tampered token was accepted"; fi
# sudo reaches pam_zt's account stage through common-account
in_root 'pamtester sudo alice acct_mgmt' || fail "sudo account stage refused alice"
grep -q '"result":"success"' "$R/var/log/zt/auth.jsonl" || fail "no audit record of the token login"

step "zt-agent doctor: names what is missing, exits 0 once it is fixed"
set +e
out=$(in_root 'zt-agent doctor' 2>&1)
status=$?
set -e
echo "$out"
[ "$status" = 1 ] || fail "doctor exited $status on a host without a CA file"
grep -q '^FAIL  CA file /etc/ssh/zt_trusted_user_ca_keys' <<<"$out" || fail "doctor does not name the missing CA file"
grep -q '^FAIL  sudo: .*Set group_source dynamic' <<<"$out" || fail "doctor does not ask for group_source dynamic"
grep -q '^ok    nsswitch: ' <<<"$out" || fail "doctor does not accept the installed nsswitch.conf"
grep -q '^ok    PAM sudo: pam_zt in account' <<<"$out" || fail "doctor does not see pam_zt in sudo's account stack"
grep -q '^ok    issuer https://zt-test.cloudflareaccess.com: 1 key' <<<"$out" || fail "doctor did not fetch the issuer's keys"
echo 'ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBtest open-ssh-ca@cloudflareaccess.org' \
    >"$R/etc/ssh/zt_trusted_user_ca_keys"
chmod 0644 "$R/etc/ssh/zt_trusted_user_ca_keys"
cp "$R/etc/sudo.conf" "$R/tmp/sudo.conf.orig"
echo 'Set group_source dynamic' >>"$R/etc/sudo.conf"
in_root 'zt-agent doctor' || fail "doctor still unhappy after the fixes"
# doctor changed nothing itself: sudo.conf is sudo's conffile
in_root 'zt-agent status --json' | grep -c '"healthy": true' >/dev/null || fail "status --json is not healthy"

step "sshd accepts a certificate login through the installed drop-in (principals from zt-agent)"
in_root 'cd /tmp && ssh-keygen -q -t ed25519 -N "" -C test-ca -f ca && ssh-keygen -q -t ed25519 -N "" -f alice &&
    ssh-keygen -q -s ca -I 0123456789abcdef0123456789abcdef -n alice -V +5m alice.pub &&
    cp alice.pub bob.pub && cp alice bob && ssh-keygen -q -s ca -I other -n bob -V +5m bob.pub'
cp "$R/tmp/ca.pub" "$R/etc/ssh/zt_trusted_user_ca_keys"
[ "$(in_root 'zt-agent principals alice')" = alice ] || fail "zt-agent principals alice does not print alice"
mkdir -p "$R/run/sshd"
chroot "$R" /usr/sbin/sshd -D -p 2222 -o ListenAddress=127.0.0.1 -E /tmp/sshd.log &
sshd_pid=$!
trap 'kill $sshd_pid 2>/dev/null || true; cleanup' EXIT
for _ in $(seq 50); do grep -q 'Server listening' "$R/tmp/sshd.log" 2>/dev/null && break; sleep 0.1; done
ssh_as() { # ssh_as KEY USER: the remote `id -un`
    in_root "ssh -F /dev/null -p 2222 -i /tmp/$1 -o CertificateFile=/tmp/$1-cert.pub -o IdentitiesOnly=yes \
        -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
        $2@127.0.0.1 id -un"
}
[ "$(ssh_as alice alice)" = alice ] || { cat "$R/tmp/sshd.log" >&2; fail "alice's certificate login failed"; }
if ssh_as bob alice 2>/dev/null; then fail "a certificate for principal bob logged in as alice"; fi
kill "$sshd_pid"
wait "$sshd_pid" 2>/dev/null || true
trap cleanup EXIT

step "upgrade to this build keeps the edited conffile"
apt_install /tmp/zt.deb
in_root 'dpkg-query -W -f="\${Version}\n" zt'
expect_line /etc/zt/agent.toml '^# added by the admin$'
[ -f "$R/etc/zt/agent.toml.dpkg-dist" ] || fail "the new shipped agent.toml was not put beside the edited one"
[ "$(grep -c 'pam_zt' "$R/etc/pam.d/common-auth")" = 1 ] || fail "pam_zt twice in common-auth after upgrade"
[ "$(grep -cE '^(passwd|group):.* zt( |$)' "$R/etc/nsswitch.conf")" = 2 ] || fail "nsswitch lines changed by upgrade"
expect_line /etc/nsswitch.conf '^passwd:[[:space:]]+files zt$'
in_root 'getent passwd alice' >/dev/null || fail "alice lost in the upgrade"
cmp "$R/etc/ssh/sshd_config.d/zt.conf" "$R/usr/share/zt/sshd_config.d-zt.conf" ||
    fail "the untouched drop-in of the previous build was not upgraded"

step "remove: config and state stay, nsswitch.conf and PAM are as before install"
in_root 'zt-agent sync --once' >/dev/null
echo '%zt-test ALL=(ALL) ALL' >"$R/etc/sudoers.d/zt" # as if the agent had written rules
in_root 'apt-get remove -y -q zt'
same_file /etc/nsswitch.conf "$before/nsswitch.conf"
for f in common-auth common-account common-session common-session-noninteractive common-password; do
    same_file "/etc/pam.d/$f" "$before/$f"
done
[ -f "$R/etc/zt/agent.toml" ] || fail "remove deleted agent.toml"
[ -f "$R/var/lib/zt/snapshot" ] || fail "remove deleted the state"
[ ! -e "$R/etc/ssh/sshd_config.d/zt.conf" ] || fail "the sshd drop-in outlived the package"
[ ! -e "$R/etc/sudoers.d/zt" ] || fail "the agent's sudo rules outlived the package"
in_root '/usr/sbin/sshd -t' || fail "sshd -t fails after remove"
in_root 'getent passwd root' >/dev/null || fail "root does not resolve after remove"

step "purge: files, config and state gone; an admin's own file stays"
echo "admin's notes" >"$R/etc/zt/notes.txt"
[ -f "$R/var/lib/zt/ids.json" ] || fail "no ids.json before purge"
out=$(in_root 'apt-get purge -y -q zt' 2>&1) || { echo "$out"; fail "purge failed"; }
grep -q 'purge removes /var/lib/zt/ids.json' <<<"$out" || { echo "$out"; fail "purge did not warn that the uid map goes"; }
for gone in /etc/zt/agent.toml /var/lib/zt /var/log/zt /usr/sbin/zt-agent /lib/x86_64-linux-gnu/libnss_zt.so.2 \
    /lib/x86_64-linux-gnu/security/pam_zt.so /usr/share/pam-configs/zt /lib/systemd/system/zt-agent.service; do
    [ ! -e "$R$gone" ] || fail "$gone outlived purge"
done
[ -f "$R/etc/zt/notes.txt" ] || fail "purge deleted a file the admin added"
same_file /etc/nsswitch.conf "$before/nsswitch.conf"
for f in common-auth common-account common-session common-session-noninteractive common-password; do
    same_file "/etc/pam.d/$f" "$before/$f"
done
if in_root 'getent passwd zt' >/dev/null; then fail "zt user outlived purge"; fi
if in_root 'ldconfig -p' | grep -c libnss_zt >/dev/null; then fail "ld.so.cache still names libnss_zt after purge"; fi

step "install again (directory.json is the admin's and stayed): alice resolves after a sync"
apt_install /tmp/zt.deb
in_root 'zt-agent sync --once' >/dev/null
in_root 'getent passwd alice' >/dev/null || fail "alice does not resolve after reinstall"
# the admin takes zt out again; an upgrade (here: the same version once more) leaves it out
sed -i -E 's/^(passwd|group):(.*) zt$/\1:\2/' "$R/etc/nsswitch.conf"
same_file /etc/nsswitch.conf "$before/nsswitch.conf"
in_root 'dpkg -i /tmp/zt.deb' >/dev/null
same_file /etc/nsswitch.conf "$before/nsswitch.conf"
in_root 'apt-get purge -y -q zt' >/dev/null
same_file /etc/nsswitch.conf "$before/nsswitch.conf"

step "a host with sss: zt goes right after files, everything else stays; purge gives the file back"
# (files' [SUCCESS=merge] on the group line belongs to files: that line is the admin's to change)
printf '# site nsswitch\npasswd:\tfiles sss systemd\ngroup:  files [SUCCESS=merge] sss systemd\nshadow: files sss\n' >"$R/etc/nsswitch.conf"
cp "$R/etc/nsswitch.conf" "$R/tmp/nsswitch.sss"
out=$(apt_install /tmp/zt.deb 2>&1)
grep -q 'the group line of /etc/nsswitch.conf has an action block' <<<"$out" || { echo "$out"; fail "no note about the action block"; }
expect_line /etc/nsswitch.conf $'^passwd:\tfiles zt sss systemd$'
expect_line /etc/nsswitch.conf '^group:  files \[SUCCESS=merge\] sss systemd$'
expect_line /etc/nsswitch.conf '^shadow: files sss$'
# an admin edit after install (zt moved to the end) is kept, only zt leaves
sed -i -E 's/^(passwd:\tfiles) zt (sss systemd)$/\1 \2 zt/' "$R/etc/nsswitch.conf"
in_root 'apt-get purge -y -q zt' >/dev/null
same_file /etc/nsswitch.conf "$R/tmp/nsswitch.sss"
cp "$before/nsswitch.conf" "$R/etc/nsswitch.conf"

step "no snapshot: a user of another NSS source (extrausers) passes the account stage, a zt user does not"
printf 'passwd:         files extrausers\ngroup:          files extrausers\nshadow:         files extrausers\n' >"$R/etc/nsswitch.conf"
cp "$R/etc/nsswitch.conf" "$R/tmp/nsswitch.extrausers"
mkdir -p "$R/var/lib/extrausers"
echo 'carol:x:5001:5001:Carol:/home/carol:/bin/bash' >"$R/var/lib/extrausers/passwd"
echo 'carol:x:5001:' >"$R/var/lib/extrausers/group"
echo 'carol:*:19000:0:99999:7:::' >"$R/var/lib/extrausers/shadow"
# a "zt" of another source is not the system account: postinst stops and says so
echo 'zt:x:5002:5002:not the system user:/home/zt:/bin/bash' >>"$R/var/lib/extrausers/passwd"
if out=$(in_root 'dpkg -i /tmp/zt.deb' 2>&1); then echo "$out"; fail "postinst took extrausers' zt for the system user"; fi
grep -q 'the name zt resolves (passwd) from another NSS source' <<<"$out" || { echo "$out"; fail "postinst did not say why"; }
sed -i '/^zt:/d' "$R/var/lib/extrausers/passwd"
in_root 'dpkg --configure -a' >/dev/null
grep -q '^zt:' "$R/etc/passwd" || fail "no local zt system user"
expect_line /etc/nsswitch.conf '^passwd:[[:space:]]+files zt extrausers$'
[ ! -e "$R/var/lib/zt/snapshot" ] || fail "a snapshot exists before any sync"
in_root 'getent passwd carol' >/dev/null || fail "carol does not resolve through extrausers"
in_root 'pamtester sshd carol acct_mgmt' || fail "zt without a snapshot locked out carol, a user of extrausers"
in_root 'pamtester sudo carol acct_mgmt' || fail "sudo's account stage refused carol"
if in_root 'pamtester sshd alice acct_mgmt' >/dev/null 2>&1; then fail "alice passed the account stage without a snapshot"; fi
in_root 'apt-get purge -y -q zt' >/dev/null
same_file /etc/nsswitch.conf "$R/tmp/nsswitch.extrausers"
cp "$before/nsswitch.conf" "$R/etc/nsswitch.conf"

step "the admin's own CA, principals or keyboard-interactive settings: no drop-in, a note"
dropin_refused() { # dropin_refused KEYWORD: install, expect no drop-in and a note naming KEYWORD
    out=$(apt_install /tmp/zt.deb 2>&1) || { echo "$out"; fail "install failed"; }
    grep -q "zt.conf not installed: sshd's config already sets.* $1" <<<"$out" ||
        { echo "$out"; fail "postinst did not say the admin sets $1"; }
    [ ! -e "$R/etc/ssh/sshd_config.d/zt.conf" ] || fail "the drop-in went in over the admin's $1"
    in_root 'apt-get purge -y -q zt' >/dev/null
}
echo 'TrustedUserCAKeys /etc/ssh/admin_ca.pub' >"$R/etc/ssh/sshd_config.d/10-admin.conf"
cp "$R/tmp/ca.pub" "$R/etc/ssh/admin_ca.pub"
dropin_refused trustedusercakeys
in_root '/usr/sbin/sshd -T' | grep -cx 'trustedusercakeys /etc/ssh/admin_ca.pub' >/dev/null || fail "the admin's CA lost"
in_root '/usr/sbin/sshd -T' | grep -cx 'authorizedprincipalscommand none' >/dev/null || fail "a principals command is set"
echo 'AuthorizedPrincipalsFile /etc/ssh/principals/%u' >"$R/etc/ssh/sshd_config.d/10-admin.conf"
dropin_refused authorizedprincipalsfile
echo 'AuthorizedKeysCommand /usr/bin/true' >"$R/etc/ssh/sshd_config.d/10-admin.conf"
echo 'AuthorizedKeysCommandUser nobody' >>"$R/etc/ssh/sshd_config.d/10-admin.conf"
dropin_refused authorizedkeyscommand
# in the main file, not Debian's stock line: the admin's
cp "$R/etc/ssh/sshd_config" "$R/tmp/sshd_config.orig"
rm "$R/etc/ssh/sshd_config.d/10-admin.conf"
echo 'KbdInteractiveAuthentication no' >>"$R/etc/ssh/sshd_config"
dropin_refused kbdinteractiveauthentication
cp "$R/tmp/sshd_config.orig" "$R/etc/ssh/sshd_config"
echo 'KbdInteractiveAuthentication no' >"$R/etc/ssh/sshd_config.d/10-admin.conf"
dropin_refused kbdinteractiveauthentication
rm "$R/etc/ssh/sshd_config.d/10-admin.conf"
same_file /etc/nsswitch.conf "$before/nsswitch.conf"

step "an edited drop-in stays on remove, with a note"
apt_install /tmp/zt.deb >/dev/null
[ -f "$R/etc/ssh/sshd_config.d/zt.conf" ] || fail "no drop-in on a stock sshd config"
echo '# the admin was here' >>"$R/etc/ssh/sshd_config.d/zt.conf"
out=$(in_root 'apt-get remove -y -q zt' 2>&1)
grep -q 'zt.conf was edited, so it stays' <<<"$out" || { echo "$out"; fail "remove did not say the edited drop-in stays"; }
[ -f "$R/etc/ssh/sshd_config.d/zt.conf" ] || fail "remove deleted an edited drop-in"
in_root 'apt-get purge -y -q zt' >/dev/null
[ ! -e "$R/etc/ssh/sshd_config.d/zt.conf" ] || fail "purge left the drop-in"
same_file /etc/nsswitch.conf "$before/nsswitch.conf"

# (simulated: every sshd the package targets knows every keyword of the drop-in,
# ExposeAuthInfo included, which came with OpenSSH 7.6, Ubuntu 18.04's; this
# stands for a patched or locked-down sshd that rejects one of them)
step "an sshd that refuses the drop-in: rolled back, install succeeds"
mv "$R/usr/sbin/sshd" "$R/usr/sbin/sshd.real"
cat >"$R/usr/sbin/sshd" <<'SH'
#!/bin/sh
if [ -e /etc/ssh/sshd_config.d/zt.conf ]; then
    echo "/etc/ssh/sshd_config.d/zt.conf line 40: Bad configuration option: ExposeAuthInfo" >&2; exit 255
fi
exec /usr/sbin/sshd.real "$@"
SH
chmod 755 "$R/usr/sbin/sshd"
out=$(apt_install /tmp/zt.deb 2>&1) || { echo "$out"; fail "install failed with a refusing sshd"; }
grep -q 'sshd -t refused' <<<"$out" || { echo "$out"; fail "postinst did not say it rolled the drop-in back"; }
[ ! -e "$R/etc/ssh/sshd_config.d/zt.conf" ] || fail "a drop-in sshd refuses was left in place"
in_root '/usr/sbin/sshd -t' || fail "sshd -t fails after the rollback"
mv "$R/usr/sbin/sshd.real" "$R/usr/sbin/sshd"
in_root 'apt-get purge -y -q zt' >/dev/null
same_file /etc/nsswitch.conf "$before/nsswitch.conf"

step "an sshd_config that includes no drop-in directory (Ubuntu 18.04): no drop-in, a note"
cp "$R/etc/ssh/sshd_config" "$R/tmp/sshd_config.orig"
sed -i '/^Include /d' "$R/etc/ssh/sshd_config"
out=$(apt_install /tmp/zt.deb 2>&1)
grep -q 'does not include sshd_config.d' <<<"$out" || { echo "$out"; fail "postinst did not say sshd_config includes no drop-ins"; }
[ ! -e "$R/etc/ssh/sshd_config.d/zt.conf" ] || fail "a drop-in sshd never reads was installed"
in_root 'apt-get purge -y -q zt' >/dev/null
cp "$R/tmp/sshd_config.orig" "$R/etc/ssh/sshd_config"
same_file /etc/nsswitch.conf "$before/nsswitch.conf"

step "postinst dies midway (pam-auth-update fails): dpkg --configure -a finishes it, purge still restores"
mv "$R/usr/sbin/pam-auth-update" "$R/usr/sbin/pam-auth-update.real"
printf '#!/bin/sh\necho "pam-auth-update: simulated crash" >&2\nexit 1\n' >"$R/usr/sbin/pam-auth-update"
chmod 755 "$R/usr/sbin/pam-auth-update"
if in_root 'dpkg -i /tmp/zt.deb' >/dev/null 2>&1; then fail "dpkg -i succeeded although postinst failed"; fi
in_root 'dpkg-query -W -f="\${Status}\n" zt' | grep -c 'half-configured' >/dev/null || fail "zt is not half-configured"
expect_line /etc/nsswitch.conf '^passwd:[[:space:]]+files zt$'
mv "$R/usr/sbin/pam-auth-update.real" "$R/usr/sbin/pam-auth-update"
in_root 'dpkg --configure -a'
[ "$(grep -cE '^(passwd|group):.* zt( |$)' "$R/etc/nsswitch.conf")" = 2 ] || fail "nsswitch.conf changed twice"
expect_line /etc/nsswitch.conf '^passwd:[[:space:]]+files zt$'
expect_line /etc/pam.d/common-auth '^auth[[:space:]]+\[success=[0-9]+ default=ignore\][[:space:]]+pam_zt\.so[[:space:]]*$'
in_root 'apt-get purge -y -q zt' >/dev/null
same_file /etc/nsswitch.conf "$before/nsswitch.conf"
for f in common-auth common-account common-session; do same_file "/etc/pam.d/$f" "$before/$f"; done

echo
echo "ALL DEB CHECKS PASSED"
