#!/bin/sh
# Rebuild the bundled demo binary (committed, so users need no compiler).
# Built with Debian 12's gcc 12.2.0 and glibc 2.36 (static); any x86-64 gcc with a static libc works.
set -eu
cd "$(dirname "$0")"
gcc -static -g -O0 -o demo demo.c
./demo                      # it must also run natively: prints the banner and the final counter
