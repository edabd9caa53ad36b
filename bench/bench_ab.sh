#!/usr/bin/env bash
# Side-by-side speed of two trees: `testbed bench --json` alternately on REV (a git worktree) and on
# this working tree, N rounds; prints one line per run: tree, ratio, requests/s, SimPy floor/s, events.
# Usage: bench/bench_ab.sh REV [N]
set -euo pipefail
rev=${1:?usage: bench/bench_ab.sh REV [N]}
rounds=${2:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
other=$(mktemp -d)
trap 'git -C "$here" worktree remove --force "$other" >/dev/null 2>&1 || true' EXIT
git -C "$here" worktree add --detach -f "$other" "$rev" >/dev/null 2>&1
for _ in $(seq "$rounds"); do
    for tree in "$other" "$here"; do
        label=$([ "$tree" = "$here" ] && echo "this" || echo "$rev")
        (cd /tmp && python -c "import sys; sys.path.insert(0, '$tree'); from testbed.cli import main; main(['bench', '--json'])") \
            | python -c "import json, sys; d = json.load(sys.stdin); print('$label', round(d['ratio'], 3), int(d['requests_per_s']), int(d['simpy_floor_per_s']), d['events'])"
    done
done
