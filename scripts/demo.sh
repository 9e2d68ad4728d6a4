#!/bin/bash
# Self-contained demo: builds zt, syncs the bundled example directory
# (packaging/examples/directory.json) and shows what glibc answers for its
# people. Nothing on this machine changes: everything happens in a private mount
# namespace with bind mounts over /etc/passwd, /etc/group, /etc/nsswitch.conf and
# /var/lib (as root; otherwise in a user namespace with `unshare -Urm`).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet -p zt-agent -p nss_zt
T=$(mktemp -d /tmp/zt-demo.XXXXXX)
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/etc/zt" "$T/var/lib/zt" "$T/lib"
cp /etc/passwd /etc/group "$T/etc/"
sed -E '/^(passwd|group):/d' /etc/nsswitch.conf > "$T/etc/nsswitch.conf"
printf 'passwd: files zt\ngroup: files zt\n' >> "$T/etc/nsswitch.conf"
cp target/debug/libnss_zt.so "$T/lib/libnss_zt.so.2"
cp target/debug/zt-agent "$T/zt-agent"
cp packaging/examples/directory.json "$T/etc/zt/directory.json"
sed "s#/etc/zt/directory.json#$T/etc/zt/directory.json#" packaging/agent.toml > "$T/etc/zt/agent.toml"

cat > "$T/inside.sh" <<INNER
set -e
mount --bind $T/etc/passwd /etc/passwd
mount --bind $T/etc/group /etc/group
mount --bind $T/etc/nsswitch.conf /etc/nsswitch.conf
mount --bind $T/var/lib /var/lib
export LD_LIBRARY_PATH=$T/lib
show() { echo; echo "\\\$ \$*"; "\$@" || echo "(exit \$?)"; }
show $T/zt-agent --config $T/etc/zt/agent.toml sync --once
show getent passwd alice bob.smith
show id alice
show getent group sre developers
show getent passwd carol        # disabled in the directory
show $T/zt-agent --config $T/etc/zt/agent.toml lookup dave@example.com
show $T/zt-agent --config $T/etc/zt/agent.toml lookup root@example.com
show getent passwd root         # the real root, never shadowed
show $T/zt-agent --config $T/etc/zt/agent.toml status
INNER
if [ "$(id -u)" = 0 ]; then
    unshare -m --propagation private bash "$T/inside.sh"
else
    unshare -Urm --propagation private bash "$T/inside.sh"
fi
