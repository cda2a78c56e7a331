#!/usr/bin/env bash
# Peak memory and speed of inspecting a large manifest (streaming readers), against reading the
# same file with a plain JSON.parse, the obvious alternative.
#
#   bench/inspect-memory.sh [entries=1000000] [shape=furniture|fashion|csv|jsonl] [node flags...]
#
# Generates the manifest into a temporary folder (removed afterwards) and reports peak RSS from
# /usr/bin/time -v. The stated target: a 1M-entry Furniture manifest inspected in <= 300 MB.
set -euo pipefail

entries=${1:-1000000}
shape=${2:-furniture}
shift $(( $# > 2 ? 2 : $# ))
node_flags=("$@")

here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
case $shape in
  csv) file=$work/manifest.csv ;;
  jsonl) file=$work/manifest.jsonl ;;
  *) file=$work/manifest.json ;;
esac

node "$here/gen-manifest.ts" --entries "$entries" --shape "$shape" --out "$file"
size_mb=$(( $(stat -c %s "$file") / 1000000 ))

peak_kb() { grep 'Maximum resident set size' "$1" | awk '{print $NF}'; }
elapsed() { grep 'Elapsed (wall clock)' "$1" | awk '{print $NF}'; }

/usr/bin/time -v -o "$work/time.txt" node "${node_flags[@]}" "$here/inspect-driver.ts" "$file" > "$work/report.txt"
tail -n 1 "$work/report.txt"
streaming_kb=$(peak_kb "$work/time.txt")
echo "inspect (streaming): ${size_mb} MB, ${entries} entries, peak RSS $(( streaming_kb / 1024 )) MiB, wall $(elapsed "$work/time.txt")"

if [[ $shape == furniture || $shape == fashion ]]; then
  /usr/bin/time -v -o "$work/time-parse.txt" node -e '
    const d = JSON.parse(require("node:fs").readFileSync(process.argv[1], "utf8"));
    console.log(`JSON.parse: ${d.images.length} images`);' "$file"
  parse_kb=$(peak_kb "$work/time-parse.txt")
  echo "baseline JSON.parse of the whole file (no inspection): peak RSS $(( parse_kb / 1024 )) MiB, wall $(elapsed "$work/time-parse.txt")"
fi
