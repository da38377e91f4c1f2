"""`make soak`: container lifecycles in a loop for a set time, then what was left behind.

Several workers loop until --seconds are up, each iteration one of: `run -d` + wait + delete
(under pyrunc-shim, exit status checked), create/start/wait/delete (engine style), and an exec
into one long-lived `run -d` container. At the start and the end it prints the long-lived
container's pyrunc-shim RSS and fd count (a leak in the shim grows them), and at the end the
containers run, the errors, and every leftover (state dirs, cgroups, processes with the soak's
prefix). Not part of CI; exits non-zero on any error or leftover.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid

APPLETS = ("sh", "true", "sleep", "echo", "cat")


def build_bundle(tmp: str) -> str:
    bundle = os.path.join(tmp, "bundle")
    rootfs = os.path.join(bundle, "rootfs")
    for d in ("bin", "proc", "sys", "dev", "tmp", "etc"):
        os.makedirs(os.path.join(rootfs, d))
    shutil.copy2("/bin/busybox", os.path.join(rootfs, "bin", "busybox"))
    for applet in APPLETS:
        os.symlink("busybox", os.path.join(rootfs, "bin", applet))
    return bundle


def write_config(pyrunc: str, bundle: str, args: list[str]) -> None:
    path = os.path.join(bundle, "config.json")
    if os.path.exists(path):
        os.unlink(path)
    subprocess.run([pyrunc, "spec", "--bundle", bundle], check=True)
    with open(path) as f:
        cfg = json.load(f)
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = args
    with open(path, "w") as f:
        json.dump(cfg, f)


def proc_status(pid: int) -> dict[str, str]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                out[key] = value.strip()
    except OSError:
        pass
    return out


def shim_report(root: str, cid: str) -> str:
    with open(os.path.join(root, cid, "state.json")) as f:
        pid = json.load(f)["shim"]["pid"]
    rss = proc_status(pid).get("VmRSS", "?")
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        fds = -1
    return f"pid {pid}, RSS {rss}, {fds} fds"


class Soak:
    def __init__(self, pyrunc: str, root: str, bundles: dict[str, str], prefix: str) -> None:
        self.pyrunc, self.root, self.bundles, self.prefix = pyrunc, root, bundles, prefix
        self.lock = threading.Lock()
        self.counts = {"run -d": 0, "create/start": 0, "exec": 0}
        self.errors: list[str] = []
        self.seq = 0

    def call(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.run([self.pyrunc, "--root", self.root, *args], stdin=subprocess.DEVNULL,
                                  stdout=out, stderr=err, timeout=120)
            out.seek(0)
            err.seek(0)
            proc.stdout, proc.stderr = out.read(), err.read()
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: exit {proc.returncode}: {proc.stderr.decode().strip()}")
        return proc

    def new_id(self) -> str:
        with self.lock:
            self.seq += 1
            return f"{self.prefix}-{self.seq}"

    def wait_stopped(self, cid: str, shim: bool = False) -> dict:
        """Until stopped (and, under pyrunc-shim, until its exit record is there: the init
        reads stopped as soon as it is a zombie, a moment before the shim reaps and records)."""
        deadline = time.monotonic() + 60
        while True:
            st = json.loads(self.call("state", cid).stdout)
            if st["status"] == "stopped" and (not shim or "exitStatus" in st):
                return st
            if time.monotonic() > deadline:
                raise RuntimeError(f"{cid} still {st['status']} after 60s")
            time.sleep(0.02)

    def one(self, kind: int, long_lived: str) -> str:
        cid = self.new_id()
        try:
            if kind == 0:
                self.call("run", "-d", "--bundle", self.bundles["exit3"], cid)
                st = self.wait_stopped(cid, shim=True)
                if st.get("exitStatus") != 3:
                    raise RuntimeError(f"{cid}: exitStatus {st.get('exitStatus')}, expected 3")
                self.call("delete", cid)
                return "run -d"
            if kind == 1:
                self.call("create", "--bundle", self.bundles["true"], cid)
                self.call("start", cid)
                self.wait_stopped(cid)
                self.call("delete", cid)
                return "create/start"
        except Exception:
            self.call("delete", "--force", cid, check=False)  # the error is counted, not left
            raise
        out = self.call("exec", long_lived, "echo", cid).stdout
        if out != f"{cid}\n".encode():
            raise RuntimeError(f"exec printed {out!r}")
        return "exec"

    def worker(self, index: int, deadline: float, long_lived: str) -> None:
        i = index
        while time.monotonic() < deadline:
            try:
                kind = self.one(i % 3, long_lived)
                with self.lock:
                    self.counts[kind] += 1
            except Exception as exc:  # noqa: BLE001 - counted and reported, the soak goes on
                with self.lock:
                    self.errors.append(str(exc))
            i += 1


def leftovers(root: str, prefix: str) -> list[str]:
    found = [f"state dir: {name}" for name in os.listdir(root)] if os.path.isdir(root) else []
    for hier in os.listdir("/sys/fs/cgroup"):
        for dirpath, dirnames, _ in os.walk(os.path.join("/sys/fs/cgroup", hier)):
            found += [f"cgroup: {dirpath}/{d}" for d in dirnames if d.startswith(prefix)]
            if dirpath.count("/") > 8:
                dirnames.clear()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                cgroup = f.read()
            state = proc_status(int(pid)).get("State", "")
        except OSError:
            continue
        if prefix in cgroup and not state.startswith("Z"):
            found.append(f"process: {pid}")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pyrunc", default="/usr/local/bin/pyrunc")
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", "600")))
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("soak: needs root", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="pyrunc-soak-")
    prefix = "soak" + uuid.uuid4().hex[:6]
    root = os.path.join(tmp, "state")
    bundles = {}
    base = build_bundle(tmp)
    for name, argv in (("true", ["true"]), ("exit3", ["sh", "-c", "exit 3"]), ("sleep", ["sleep", "1000000"])):
        bundles[name] = os.path.join(tmp, name)
        os.makedirs(bundles[name])
        os.symlink(os.path.join(base, "rootfs"), os.path.join(bundles[name], "rootfs"))
        write_config(args.pyrunc, bundles[name], argv)
    soak = Soak(args.pyrunc, root, bundles, prefix)
    long_lived = f"{prefix}-long"
    soak.call("run", "-d", "--bundle", bundles["sleep"], long_lived)
    print(f"soak: {args.seconds:.0f} s, {args.workers} workers, pyrunc {args.pyrunc}")
    print(f"shim at start: {shim_report(root, long_lived)}")
    started = time.monotonic()
    deadline = started + args.seconds
    threads = [threading.Thread(target=soak.worker, args=(i, deadline, long_lived)) for i in range(args.workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    print(f"shim at end:   {shim_report(root, long_lived)}")
    total = sum(soak.counts.values())
    print(f"containers run: {soak.counts['run -d'] + soak.counts['create/start']} "
          f"({', '.join(f'{k} {v}' for k, v in soak.counts.items())}; {total} operations in {elapsed:.0f} s)")
    print(f"errors: {len(soak.errors)}")
    for err in soak.errors[:10]:
        print(f"  {err}")
    soak.call("delete", "--force", long_lived)
    left = leftovers(root, prefix)
    print(f"leftovers: {len(left)}")
    for item in left[:20]:
        print(f"  {item}")
    if not left:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if soak.errors or left else 0


if __name__ == "__main__":
    sys.exit(main())
