#!/bin/sh
# Rebuilds layout.btf from layout.c the way the kernel's BTF is made: gcc's DWARF,
# turned into BTF by pahole (Debian's dwarves), written as a raw BTF blob.
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
gcc -g -c layout.c -o "$tmp/layout.o"
pahole --btf_gen_all --btf_encode_detached=layout.btf "$tmp/layout.o"
rm -rf "$tmp"
bpftool btf dump file layout.btf format raw > layout.btf.txt
