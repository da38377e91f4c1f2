#!/bin/sh
# Builds a busybox bundle from Debian's busybox-static and runs it with pyrunc: the container
# prints its hostname, its identity and its process list (the command is PID 1).
set -eu
PYRUNC=${PYRUNC:-pyrunc}
B=$(mktemp -d /tmp/pyrunc-demo.XXXXXX)
trap 'rm -rf "$B"' EXIT
mkdir -p "$B/rootfs/bin" "$B/rootfs/etc"
cp /bin/busybox "$B/rootfs/bin/busybox"
for c in sh hostname id ps echo; do ln -s busybox "$B/rootfs/bin/$c"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$B/rootfs/etc/passwd"
echo 'root:x:0:' > "$B/rootfs/etc/group"
cd "$B"
"$PYRUNC" spec
# The starter config wants a terminal; the demo prints and exits, so plain stdio is enough.
sed -i -e 's/"terminal": true/"terminal": false/' \
    -e 's/"sh"$/"sh", "-c", "echo hostname: $(hostname); id; ps; exit 0"/' config.json
"$PYRUNC" run "demo-$$"
