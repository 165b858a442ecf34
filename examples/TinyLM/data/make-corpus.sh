#!/usr/bin/env bash
# Rebuilds fortunes.txt.gz from Debian's fortunes and fortunes-min packages (1:1.99.1-7.3).
#
#   apt-get download fortunes fortunes-min       # or fetch the two .deb files named below
#   examples/TinyLM/data/make-corpus.sh [DIR-WITH-THE-DEBS] [OUT-FILE]
#
# Checks both packages against the SHA-256 sums of Debian 12's archive, unpacks them with
# dpkg-deb, and concatenates the fortune files listed below (their .dat indexes and .u8 links are
# not read) in that order. Each file is a list of epigrams separated by lines holding one "%";
# a file whose last epigram lacks the closing "%" line gets one, so the corpus keeps that format
# throughout. gzip -n -9 leaves out the name and time, so the same input gives the same bytes.
set -euo pipefail

debs=${1:-.}
out=${2:-$(dirname "$0")/fortunes.txt.gz}

declare -A sha256=(
  [fortunes]=41d0551dc0ff52f875a2ecef7c39da2f672ab468c37e170119f7e0245a9d63c5
  [fortunes-min]=9eed5b45064e41133dae0967cf3a17588ad77c014fcc7bf1527fa3ea48e44d07
)
# fortunes-min ships fortunes, literature and riddles; fortunes the rest. The pictures of ascii-art
# are left out, and so are the other files of fortunes (about half its text), to keep the shipped file small.
files=(
  fortunes literature riddles
  computers science wisdom linux people humorists work songs-poems
)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for package in fortunes fortunes-min; do
  deb=$(ls "$debs"/"${package}"_*1.99.1-7.3_all.deb 2>/dev/null | head -n 1 || true)
  if [[ -z "$deb" ]]; then
    echo "make-corpus: no ${package}_1.99.1-7.3_all.deb in $debs (apt-get download $package)" >&2
    exit 1
  fi
  actual=$(sha256sum "$deb" | cut -d' ' -f1)
  if [[ "$actual" != "${sha256[$package]}" ]]; then
    echo "make-corpus: $deb has SHA-256 $actual, expected ${sha256[$package]}" >&2
    exit 1
  fi
  dpkg-deb -x "$deb" "$work/root"
done

corpus="$work/fortunes.txt"
: > "$corpus"
for name in "${files[@]}"; do
  file="$work/root/usr/share/games/fortunes/$name"
  [[ -f "$file" ]] || { echo "make-corpus: the packages hold no fortune file '$name'" >&2; exit 1; }
  cat "$file" >> "$corpus"
  # Close the file's last epigram if it is not closed yet.
  [[ "$(tail -c 1 "$file" | od -An -c | tr -d ' ')" == '\n' ]] || printf '\n' >> "$corpus"
  [[ "$(tail -n 1 "$file")" == '%' ]] || printf '%%\n' >> "$corpus"
done

gzip -n -9 -c "$corpus" > "$out"
echo "make-corpus: $(wc -c < "$corpus") bytes of text, $(grep -c '^%$' "$corpus") epigrams -> $out ($(wc -c < "$out") bytes)"
