#!/bin/bash
# `zt-agent principals USER` as a whole process (sshd's AuthorizedPrincipalsCommand:
# it runs on every certificate login), at 30 and 100,000 directory users.
#
#   bash bench/ssh/principals.sh            # build (release), publish, time, table
#   RUNS=500 bash bench/ssh/principals.sh
#
# What it does:
#  1. cargo build --release -p zt-agent;
#  2. writes, with python3, two deterministic directories and agent.toml files into
#     $OUT (default /tmp/zt-bench-principals): "small" (30 users) and "large"
#     (100,000 users); each has a login group holding every user and a shared account
#     `sysadmin` reached by the IdP group g-ops of 200 members;
#  3. publishes each with `zt-agent --state-dir $OUT/<set>/state sync --once` (the
#     state dir is the script's own: nothing under /var/lib, /etc or /run is touched);
#  4. times with hyperfine (RUNS runs each, 20 warm-up, no shell): a directory user,
#     the shared account (200 principals printed), an unknown user, and the process
#     start-up floor in the same run: /bin/true (first and last) and `cat` of a small file;
#  5. prints a markdown table of medians (and mean, min, max) with the ratio of each
#     to the floor (the lower /bin/true median), also written to $OUT/principals.md.
#
# Needs hyperfine (apt-get install hyperfine), python3, cargo. Root is not needed.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
WS=$(cd "$HERE/../.." && pwd)
OUT=${OUT:-/tmp/zt-bench-principals}
RUNS=${RUNS:-200}
command -v hyperfine >/dev/null || { echo "principals.sh: needs hyperfine (apt-get install hyperfine)" >&2; exit 1; }

echo "== building zt-agent (release)" >&2
(cd "$WS" && cargo build --release -p zt-agent >&2)
TARGET_DIR=$(cd "$WS" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
AGENT=${ZT_AGENT:-$TARGET_DIR/release/zt-agent}
[ -x "$AGENT" ]

rm -rf "$OUT"
mkdir -p "$OUT"
python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
for name, n in (("small", 30), ("large", 100_000)):
    d = os.path.join(out, name)
    os.makedirs(os.path.join(d, "state"), exist_ok=True)
    users = [{"id": f"u-{i:06d}", "email": f"u{i:06d}@example.com",
              "display_name": f"User {i}"} for i in range(n)]
    # g-ops: 200 members spread over the directory (all of them for a smaller one)
    step = max(1, n // 200)
    ops = [f"u-{i:06d}" for i in range(0, n, step)][:200]
    groups = [{"id": "g-all", "name": "All", "members": [u["id"] for u in users]},
              {"id": "g-ops", "name": "Ops", "members": ops}]
    with open(os.path.join(d, "directory.json"), "w") as f:
        json.dump({"users": users, "groups": groups}, f)
    with open(os.path.join(d, "agent.toml"), "w") as f:
        f.write(f'''[directory]
kind = "file"
path = "{d}/directory.json"
sync_interval = "60s"

[users]
name_from = "email-local-part"
domains = ["example.com"]
home = "/home/{{name}}"
shell = "/bin/bash"

[ssh]
principals = ["email-local-part"]

[[groups]]
id = "g-all"
name = "all"
login = true

[[groups]]
id = "g-ops"
name = "ops"
login = false

[[shared_accounts]]
name = "sysadmin"
groups = ["g-ops"]
''')
    print(f"{name}: {n} users, g-ops {len(ops)} members", file=sys.stderr)
PY
echo "hello" >"$OUT/small-file"

for set in small large; do
    D=$OUT/$set
    s=$(date +%s.%N)
    "$AGENT" --config "$D/agent.toml" --state-dir "$D/state" --run-dir "$D/run" sync --once >&2
    e=$(date +%s.%N)
    echo "$set: published in $(python3 -c "print(round($e-$s,2))") s; $(du -sh "$D/state" | cut -f1) state" >&2
    # sanity: what each case prints
    user=u000010; [ "$set" = large ] && user=u050000
    p_user=$("$AGENT" --state-dir "$D/state" principals "$user" | wc -l)
    p_shared=$("$AGENT" --state-dir "$D/state" principals sysadmin | wc -l)
    p_unknown=$("$AGENT" --state-dir "$D/state" principals nosuchuser | wc -l)
    echo "$set: principals lines: user $p_user, sysadmin $p_shared, unknown $p_unknown" >&2
    [ "$p_user" = 1 ] && [ "$p_unknown" = 0 ] && [ "$p_shared" -ge 30 ] ||
        { echo "principals.sh: unexpected principals output" >&2; exit 1; }
done

hyperfine -N --runs "$RUNS" --warmup 20 --style none --export-json "$OUT/hyperfine.json" \
    -n "floor: /bin/true" "/bin/true" \
    -n "floor: cat small file" "cat $OUT/small-file" \
    -n "30 users: directory user" "$AGENT --state-dir $OUT/small/state principals u000010" \
    -n "30 users: shared account (30 principals)" "$AGENT --state-dir $OUT/small/state principals sysadmin" \
    -n "30 users: unknown user" "$AGENT --state-dir $OUT/small/state principals nosuchuser" \
    -n "100k users: directory user" "$AGENT --state-dir $OUT/large/state principals u050000" \
    -n "100k users: shared account (200 principals)" "$AGENT --state-dir $OUT/large/state principals sysadmin" \
    -n "100k users: unknown user" "$AGENT --state-dir $OUT/large/state principals nosuchuser" \
    -n "floor again: /bin/true" "/bin/true" \
    >&2

python3 - "$OUT/hyperfine.json" "$RUNS" "$(cd "$WS" && git rev-parse --short HEAD)$(cd "$WS" && git diff --quiet HEAD || echo ' (uncommitted changes)')" <<'PY' | tee "$OUT/principals.md"
import json, statistics, sys
res = json.load(open(sys.argv[1]))["results"]
floor = min(statistics.median(r["times"]) for r in res if r["command"].endswith("/bin/true"))
print(f"zt {sys.argv[3]}, {sys.argv[2]} runs each (hyperfine -N, 20 warm-up), times in ms; floor: the lower of the two `/bin/true` medians\n")
print("| command | median | mean | min | max | median / floor | median - floor |")
print("|---|---:|---:|---:|---:|---:|---:|")
for r in res:
    t = r["times"]; m = statistics.median(t)
    print(f"| {r['command']} | {m*1e3:.3f} | {statistics.mean(t)*1e3:.3f} | {min(t)*1e3:.3f} | "
          f"{max(t)*1e3:.3f} | {m/floor:.2f} | {(m-floor)*1e3:+.3f} |")
PY
