#!/usr/bin/env bash
# Lighthouse scores of three pages of a built site: the index, the seed post and a post with
# two matplotlib figures (bench/lighthouse/posts/: not in posts/, so the example site builds
# without matplotlib). Prints Performance, Accessibility, Best Practices and SEO per page.
#
#   bash bench/lighthouse.sh              # the example site + the figure post, built now
#   RUNS=3 bash bench/lighthouse.sh       # each page 3 times; the median score is shown
#
# Needs: npm (Lighthouse 12.8.2 is installed from bench/lighthouse/package-lock.json into
# bench/lighthouse/node_modules on first use), Debian's chromium (CHROME_PATH, default
# /usr/bin/chromium), and raypress with matplotlib (pip install -c constraints.txt -e
# '.[test]'). Lighthouse's defaults: a mobile device, simulated throttling (slow 4G, 4x CPU
# slowdown) computed from a trace, so Performance still depends on the machine's load: the
# load average is printed with the scores.
set -euo pipefail
cd "$(dirname "$0")/.."
here=$PWD
python=${PYTHON:-$here/.venv/bin/python}
[ -x "$python" ] || python=python3
export CHROME_PATH=${CHROME_PATH:-/usr/bin/chromium}
runs=${RUNS:-1}
lighthouse=bench/lighthouse/node_modules/.bin/lighthouse

if [ ! -x "$lighthouse" ]; then
  npm ci --prefix bench/lighthouse --no-audit --no-fund --loglevel=error
fi

work=$(mktemp -d)
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
site=$work/site
mkdir -p "$site"
cp -r posts snippets templates "$site/"
cp bench/lighthouse/posts/*.md "$site/posts/"
cp pyproject.toml "$site/"
echo "building the site (the figure post's snippets run) ..."
"$python" -m raypress build --root "$site" --url "http://127.0.0.1:$port" --quiet
"$python" -m http.server "$port" --bind 127.0.0.1 --directory "$site/_site" >/dev/null 2>&1 &
server=$!
for _ in $(seq 50); do
  "$python" -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$port/')" 2>/dev/null && break
  sleep 0.2
done

pages=(
  "index|/"
  "seed post|/2025/10/27/using-the-ray-library/"
  "figure post|/2025/11/24/two-figures/"
)
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) CPUs); lighthouse $("$lighthouse" --version), $("$CHROME_PATH" --version 2>/dev/null)"
printf '%-12s %11s %13s %14s %4s\n' page Performance Accessibility "Best Practices" SEO
for entry in "${pages[@]}"; do
  name=${entry%%|*}
  path=${entry#*|}
  reports=()
  for run in $(seq "$runs"); do
    report=$work/report-$run.json
    "$lighthouse" "http://127.0.0.1:$port$path" --quiet --output=json --output-path="$report" \
      --only-categories=performance,accessibility,best-practices,seo \
      --chrome-flags="--headless=new --no-sandbox --disable-gpu" >/dev/null
    reports+=("$report")
    cp "$report" "$work/$(echo "$name" | tr ' ' -)-$run.json"
  done
  "$python" - "$name" "${reports[@]}" <<'PY'
import json, statistics, sys
name, paths = sys.argv[1], sys.argv[2:]
keys = ("performance", "accessibility", "best-practices", "seo")
scores = {k: [] for k in keys}
failed = set()
for path in paths:
    report = json.load(open(path))
    for key in keys:
        scores[key].append(round(100 * report["categories"][key]["score"]))
        for ref in report["categories"][key]["auditRefs"]:  # audits that count in the score
            audit = report["audits"][ref["id"]]
            if ref["weight"] > 0 and audit.get("score") is not None and audit["score"] < 0.9:
                failed.add(f"{ref['id']} ({audit.get('displayValue') or audit['score']})")
row = [round(statistics.median(scores[k])) for k in keys]
print(f"{name:<12} {row[0]:>11} {row[1]:>13} {row[2]:>14} {row[3]:>4}")
if failed:
    print(f"{'':<12} scored below 0.9: {', '.join(sorted(failed))}")
PY
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
