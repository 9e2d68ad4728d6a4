#!/bin/bash
# Makes (once) the Debian chroot the package tests install zt into, and keeps it as a
# tarball so every later run unpacks it in seconds instead of running debootstrap.
#   tests/deb/make-chroot.sh [TARBALL] [SUITE]   (default /var/tmp/zt-deb-chroot-bookworm-2.tar bookworm)
# bullseye (glibc 2.31, OpenSSH 8.4, sudo 1.9.5) is the oldest release Debian's
# mirror still serves.
# Root only. Network: Debian's mirror only (debootstrap's default, the one apt uses).
# What the tests need besides minbase: adduser (postinst makes the zt system user),
# openssh-server (the sshd drop-in and `sshd -t`), sudo (visudo, the sudo PAM stack),
# pamtester (a token login through the installed pam-auth-update profile),
# libnss-extrausers (a second NSS source whose users zt must leave alone).
# The tarball's name carries a version (-2): a change to this list makes a new
# one instead of reusing an older tarball that lacks a package.
set -euo pipefail
TARBALL=${1:-/var/tmp/zt-deb-chroot-bookworm-2.tar}
SUITE=${2:-bookworm}
[ -s "$TARBALL" ] && exit 0
work=$(mktemp -d /var/tmp/zt-chroot-make.XXXXXX)
trap 'umount -l "$work/root/proc" 2>/dev/null || true; rm -rf "$work"' EXIT
debootstrap --variant=minbase "$SUITE" "$work/root" >"$work/debootstrap.log" 2>&1 ||
    { cat "$work/debootstrap.log" >&2; exit 1; }
# never start services inside the chroot (sshd on the machine's port 22)
printf '#!/bin/sh\nexit 101\n' >"$work/root/usr/sbin/policy-rc.d"
chmod 755 "$work/root/usr/sbin/policy-rc.d"
unshare -m --propagation private bash -c "
    set -e
    mount -t proc proc '$work/root/proc'
    chroot '$work/root' sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends adduser openssh-server sudo pamtester libnss-extrausers \
        >/dev/null && apt-get clean'
"
tar -C "$work/root" -cf "$TARBALL.tmp" .
mv "$TARBALL.tmp" "$TARBALL"
