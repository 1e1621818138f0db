#!/usr/bin/env bash
# Vendor Mermaid (npm) into the theme: raypress/theme/assets/mermaid/.
#
#   bash tools/vendor_mermaid.sh            # the version in assets/mermaid/VERSION
#   bash tools/vendor_mermaid.sh 12.4.0     # another version (then review and commit)
#
# Takes the package's minified ES-module build (dist/mermaid.esm.min.mjs and its chunks:
# the browser loads the code of a kind of diagram only when a page draws one), without
# source maps, with the package's LICENSE (MIT). Needs npm (it only downloads the tarball).
set -euo pipefail
cd "$(dirname "$0")/.."
target=raypress/theme/assets/mermaid
version=${1:-$(cat "$target/VERSION")}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent "mermaid@$version" >/dev/null && tar xzf mermaid-*.tgz)
dist="$work/package/dist"
rm -rf "$target"
mkdir -p "$target/chunks/mermaid.esm.min"
strip_map() { sed -e '/^\/\/# sourceMappingURL=/d' "$1" > "$2"; }
strip_map "$dist/mermaid.esm.min.mjs" "$target/mermaid.esm.min.mjs"
for chunk in "$dist"/chunks/mermaid.esm.min/*.mjs; do
  strip_map "$chunk" "$target/chunks/mermaid.esm.min/$(basename "$chunk")"
done
cp "$work/package/LICENSE" "$target/LICENSE"
echo "$version" > "$target/VERSION"
echo "mermaid $version: $(find "$target" -name '*.mjs' | wc -l) files, $(du -sh "$target" | cut -f1)"
