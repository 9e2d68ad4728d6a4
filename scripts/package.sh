#!/bin/bash
# Builds the host package: dist/zt_<version>_amd64.deb (cargo-deb; metadata in
# zt-agent/Cargo.toml, files in packaging/). Built with the `deb` profile
# (Cargo.toml: release, stripped, no debug info).
#   scripts/package.sh                 # dist/zt_<version>-1_amd64.deb
#   ZT_DEB_REVISION=0 scripts/package.sh   # another revision (the upgrade test's "previous build")
# Prints the path of the .deb on its last line. Needs cargo-deb, cargo-zigbuild and
# zig (pip install ziglang).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || { echo "cargo-deb missing: cargo install cargo-deb --locked (.ci/run does)" >&2; exit 1; }
revision=${ZT_DEB_REVISION:-1}

# Built against glibc 2.27 (Ubuntu 18.04) with cargo-zigbuild, so one package
# installs on 18.04 to 24.04: glibc skips an NSS or PAM module it cannot load
# without a word. zig links only against its own glibc 2.27 stubs; pam_zt also
# needs libpam, so the link path gets a directory holding just libpam.so
# (nothing else of this machine's newer libraries can slip in).
command -v cargo-zigbuild >/dev/null && python3 -m ziglang version >/dev/null 2>&1 || {
    echo "cargo-zigbuild or zig missing: pip install ziglang; cargo install cargo-zigbuild --locked (.ci/run does)" >&2
    exit 1
}
target=x86_64-unknown-linux-gnu
glibc=2.27
link_dir=$PWD/target/zig-link
mkdir -p "$link_dir"
ln -sf "$(realpath /usr/lib/x86_64-linux-gnu/libpam.so.0)" "$link_dir/libpam.so"
CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-L native=$link_dir" \
    cargo zigbuild --profile deb --locked --target "$target.$glibc" -p zt-agent -p nss_zt -p pam_zt >&2

# man pages, compressed the way Debian wants them (gzip -9n: no name, no time)
mkdir -p dist/man
for page in zt-agent.8 pam_zt.8 libnss_zt.8 agent.toml.5; do
    gzip -9nc "packaging/man/$page" >"dist/man/$page.gz"
done

mkdir -p dist
version=$(cargo metadata --no-deps --format-version 1 |
    python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "zt-agent"))')
out=dist/zt_${version}-${revision}_amd64.deb
cargo deb -p zt-agent --profile deb --target "$target" --no-build --deb-revision "$revision" -o "$out" >&2
# cargo-deb writes no DEBIAN/md5sums (lintian: no-md5sums-control-file), and
# debsums and `dpkg --verify` check installed files against it: the archive
# is rebuilt with one, owners root:root and modes as cargo-deb set them.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dpkg-deb -R "$out" "$work/root"
(cd "$work/root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | LC_ALL=C sort |
    xargs -r md5sum >DEBIAN/md5sums)
chmod 0644 "$work/root/DEBIAN/md5sums"
dpkg-deb -b --root-owner-group "$work/root" "$out" >&2
echo "$out"
