#!/bin/sh
# The first of README's two commands: install everything, then run the demo container.
set -eu
cd "$(dirname "$0")/.."
sh contrib/setup.sh
PYRUNC="${PREFIX:-/usr/local}/bin/pyrunc" sh contrib/demo.sh
