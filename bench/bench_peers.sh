#!/usr/bin/env bash
# raypress beside its peers on the shared yardstick (../shared/bench/: one corpus, every
# tool, whole processes, a quiet machine awaited before each run), in one run; prints the
# table of issue 13 (plus the one-edit rebuild and peak memory) ready for the README.
#
#   bash bench/bench_peers.sh                 # median of 5 (REPEAT=5), every peer found
#   REPEAT=3 bash bench/bench_peers.sh --quick  # 200-post render and start-up rows only
#
# The peers run from their venvs under $VENV_ROOT (venv-pelican, venv-mkdocs, venv-mystnb:
# `bash ../shared/bench/run_peers.sh` builds them), Hugo from Debian's `hugo` package, and
# pytest-markdown-docs from $VENV_ROOT/venv-pmd; a missing peer is a "—" in its column.
# raypress runs from this checkout's .venv (or $PYTHON). Environment: REPEAT (5),
# VENV_ROOT ($TMPDIR or the system temp folder), YARDSTICK (the shared bench folder),
# WORK (scratch folder, default $TMPDIR/raypress-peers).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"

find_yardstick() {
  if [ -n "${YARDSTICK:-}" ]; then echo "$YARDSTICK"; return; fi
  # a clone beside shared/; or a git worktree, whose main checkout sits beside it
  local common
  for candidate in "$REPO/../shared/bench" \
      "$(common=$(git -C "$REPO" rev-parse --path-format=absolute --git-common-dir 2>/dev/null) \
         && dirname "$common")/../shared/bench"; do
    if [ -f "$candidate/bench_peers.py" ]; then (cd "$candidate" && pwd); return; fi
  done
}

SHARED="$(find_yardstick || true)"
if [ -z "$SHARED" ] || [ ! -f "$SHARED/bench_peers.py" ] || [ ! -f "$SHARED/make_corpus.py" ]; then
  echo "bench_peers.sh: the shared yardstick is missing: expected bench_peers.py and" \
       "make_corpus.py in $REPO/../shared/bench/ (the shared/ folder beside this clone)," \
       "or set YARDSTICK=/path/to/shared/bench" >&2
  exit 2
fi
PY="${PYTHON:-$REPO/.venv/bin/python}"
if [ ! -x "$PY" ]; then
  echo "bench_peers.sh: no Python with raypress at $PY: create .venv (see README) or set PYTHON" >&2
  exit 2
fi
if ! "$PY" -c "import raypress" 2>/dev/null; then
  echo "bench_peers.sh: $PY cannot import raypress: pip install -e . into it" >&2
  exit 2
fi
export VENV_ROOT="${VENV_ROOT:-${TMPDIR:-$(dirname "$(mktemp -u)")}}"
exec "$PY" "$REPO/bench/peers_table.py" --yardstick "$SHARED" --repeat "${REPEAT:-5}" \
  --venv-root "$VENV_ROOT" --work "${WORK:-${TMPDIR:-/tmp}/raypress-peers}" "$@"
