#!/usr/bin/env python3
"""Adds the zt backends to a *copy* of the shared nssbench harness.

    patch_harness.py DIR     # DIR holds copies of run.sh, inner.sh, summarize.py

Backends added:
  zt       nsswitch "passwd: zt" / "group: zt": the module alone (as the harness
           measures "sss" alone); /etc/passwd and /etc/group hold the data set
           as for files, but glibc never reads them.
  ztfiles  "passwd: files zt" / "group: files zt": the real install. /etc/passwd
           and /etc/group are the host's own, the data set's users and groups
           are served by zt only, so every zt hit first costs a files miss.
Both get /var/lib/zt/{snapshot,generation} (root-owned, 0644) built from the
data set's passwd/group by `snapshot-from-files` ($ZT_SNAPSHOT_FROM_FILES), and
libnss_zt.so.2 ($ZT_NSS_LIB) joins the other modules in nsslib/ and the test
ld.so.cache.

Every edit is an exact text replacement that must match exactly once, so a
changed harness makes this script fail loudly instead of patching the wrong
place. Running it twice on the same copy fails (the anchors are gone): copy
the harness afresh first, as bench/nss/run.sh does.
"""
import os
import sys

D = sys.argv[1]

PATCHES = {
    "run.sh": [
        # module name(s) in nsswitch.conf for the new backends
        (
            "cache) echo cache ;; esac",
            'cache) echo cache ;; zt) echo zt ;; ztfiles) echo "files zt" ;; esac',
        ),
        # libnss_zt.so.2 beside the other modules, so the test ld.so.cache lists it
        (
            "    ln -sf libnss_cache.so.2.0 nsslib/libnss_cache.so.2\n",
            "    ln -sf libnss_cache.so.2.0 nsslib/libnss_cache.so.2\n"
            '    install -m 644 "$ZT_NSS_LIB" nsslib/libnss_zt.so.2\n',
        ),
        # per-config snapshot in the config's /var/lib copy
        (
            "    sssd)\n        mkdir -p \"$C/etc/sssd\"\n",
            "    zt | ztfiles)\n"
            "        # ztfiles: the host's own passwd/group for files, the data set in zt only\n"
            '        if [ "$B" = ztfiles ]; then cp /etc/passwd /etc/group "$C/etc/"; fi\n'
            '        mkdir -p "$C/varlib/zt"\n'
            '        "$ZT_SNAPSHOT_FROM_FILES" "data/$DS/passwd" "data/$DS/group" "$C/varlib/zt/snapshot"\n'
            '        chown -R 0:0 "$C/varlib/zt"\n'
            '        chmod 755 "$C/varlib/zt"\n'
            '        chmod 644 "$C/varlib/zt/snapshot" "$C/varlib/zt/generation"\n'
            "        ;;\n"
            "    sssd)\n        mkdir -p \"$C/etc/sssd\"\n",
        ),
        # the floor runs in the files-small config: make it if files is not benchmarked
        (
            "    gcc -O2 -o floor floor.c\n",
            "    gcc -O2 -o floor floor.c\n"
            '    [ -d "$T/cfg/files-small" ] || make_cfg files small\n',
        ),
    ],
    "inner.sh": [
        # the files sanity check does not hold for ztfiles (host passwd): check
        # the snapshot is there, root-owned, 0644 instead
        (
            "grep -q '^u000003:' /etc/passwd    # sanity: we see the test data\n",
            "case $B in\n"
            "zt | ztfiles) # sanity: the snapshot nss_zt will trust is there\n"
            '    [ "$(stat -c %u:%a /var/lib/zt/snapshot)" = 0:644 ] ;;\n'
            "*) grep -q '^u000003:' /etc/passwd ;;   # sanity: we see the test data\n"
            "esac\n",
        ),
    ],
    "summarize.py": [
        (
            'BACKENDS = ["files", "nscd", "extrausers", "sssd", "cache"]',
            'BACKENDS = ["files", "nscd", "extrausers", "sssd", "cache", "zt", "ztfiles"]',
        ),
        (
            '"sssd": "sssd (proxy→files)", "cache": "libnss-cache"}',
            '"sssd": "sssd (proxy→files)", "cache": "libnss-cache", "zt": "zt", "ztfiles": "files+zt"}',
        ),
        # importable (bench/nss/zt_tables.py reuses load())
        ("\n\nmain()\n", '\n\nif __name__ == "__main__":\n    main()\n'),
    ],
}

for name, edits in PATCHES.items():
    path = os.path.join(D, name)
    with open(path) as f:
        text = f.read()
    for old, new in edits:
        n = text.count(old)
        if n != 1:
            sys.exit(f"patch_harness: {name}: anchor found {n} times, expected once:\n{old}")
        text = text.replace(old, new)
    with open(path, "w") as f:
        f.write(text)
print(f"patched {', '.join(PATCHES)} in {D}")
