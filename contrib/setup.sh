#!/bin/sh
# Installs what pyrunc needs on Debian 12 (as root), then pyrunc itself under $PREFIX (default
# /usr/local). Safe to run again.
set -eu
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# python3-dev, gcc, libcap-dev: python-prctl is built from source against Debian's python3.
# libseccomp2: loaded through ctypes. busybox-static: the test and demo rootfs. runc: the oracle
# some tests compare against. util-linux and iproute2: namespace holders and checks in tests.
# golang-github-containers-common: podman's default seccomp profile, loaded by a test.
# tmux: drives an interactive `pyrunc run` in a test.
# containernetworking-plugins: the CNI plugins contrib/cni-hook runs (bridge, host-local, loopback).
# libc6-dev: a test compiles a static sd_notify client (NOTIFY_SOCKET) with gcc.
# passwd (useradd), mount, uidmap (newuidmap): rootless and idmap tests (throwaway user, submounts).
apt-get install -y -qq --no-install-recommends make gcc python3 python3-venv python3-dev \
    libcap-dev libseccomp2 busybox-static runc util-linux iproute2 git ca-certificates \
    golang-github-containers-common tmux containernetworking-plugins libc6-dev passwd mount uidmap >/dev/null
# qemu-user: tests/test_exeguard.py runs the aarch64 encoding of the exec trampoline.
apt-get install -y -qq --no-install-recommends qemu-user >/dev/null
# The engines tests (tests/engines): podman (with conmon, netavark), containerd (ctr, the runc
# shim) and docker.io (dockerd); the tests start private daemons themselves (no systemd here).
# iptables: netavark's default network, inside a private network namespace.
apt-get install -y -qq podman containerd docker.io iptables >/dev/null
make install PREFIX="${PREFIX:-/usr/local}"
