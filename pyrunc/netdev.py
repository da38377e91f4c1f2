"""linux.netDevices: host interfaces moved into the container's network namespace at create.

What the runtime-spec (1.2+) asks, and how it is done here (netlink through pyroute2, imported
only when a config has netDevices, after the fork, so its ~150 ms import overlaps the init's
rootfs work on the other core):
- before anything exists, every named device must be present in pyrunc's network namespace
  (one cheap SIOCGIFINDEX each): a missing one is one error line naming it;
- each device is moved and renamed in one RTM_NEWLINK (IFLA_NET_NS_FD + IFLA_IFNAME), so the
  new name never has to be free on the host; a `%d` in the new name lets the kernel number it;
- its permanent addresses of global scope (any family) are added again inside (the kernel drops
  addresses on a move) and it is set up; the kernel keeps MTU, MAC and the other link flags;
- if any step fails, the devices already moved go back under their old names with their
  addresses and up state, before the error is reported: nothing is left half-moved. The same
  give-back runs when a later step of create fails, while a pinned fd keeps the container's
  network namespace alive even if its init has died.
- delete does nothing to them, as the spec requires: when the namespace is freed, the kernel
  destroys virtual devices (veth, macvlan, ...) and returns physical ones to the initial
  network namespace, under their container names.
"""

from __future__ import annotations

import _socket
import os

from pyrunc import linux
from pyrunc.errors import ConfigError, PyruncError

IFNAMSIZ = 16
IFF_UP = 0x1
IFA_F_PERMANENT = 0x80
RT_SCOPE_UNIVERSE = 0
# Address flags worth carrying over (the rest describe the address's state, not its setup).
_KEPT_ADDR_FLAGS = 0x100 | 0x200 | 0x400 | 0x800  # managetempaddr, noprefixroute, mcautojoin, stable


def _valid_name(name: object) -> bool:
    return (isinstance(name, str) and 0 < len(name) < IFNAMSIZ and name not in (".", "..")
            and not any(c in name for c in "/: \t\n") and name.isprintable())


def check(cfg: dict) -> None:
    """Config rules (no netlink): valid names, distinct targets, a network namespace to use."""
    linux_cfg = cfg.get("linux") or {}
    devices = linux_cfg.get("netDevices") or {}
    if not devices:
        return
    if not any(ns.get("type") == "network" for ns in linux_cfg.get("namespaces") or []):
        raise ConfigError("config.json: /linux/netDevices: needs a network namespace "
                          "(linux.namespaces has no \"network\")")
    targets: dict[str, str] = {}
    for host_name, dev in devices.items():
        where = f"config.json: /linux/netDevices/{host_name}"
        if not _valid_name(host_name):
            raise ConfigError(f"{where}: invalid network device name")
        target = (dev or {}).get("name") or host_name
        if not _valid_name(target) or target.count("%") > (1 if "%d" in target else 0):
            raise ConfigError(f"{where}/name: invalid network device name {target!r}")
        if target in targets and "%d" not in target:
            raise ConfigError(f"{where}/name: {target!r} is also the name of "
                              f"/linux/netDevices/{targets[target]} in the container")
        targets[target] = host_name


def plan(cfg: dict) -> list[tuple[str, str]]:
    """(host name, name in the container) for each device, checked present right now."""
    out = []
    for host_name, dev in ((cfg.get("linux") or {}).get("netDevices") or {}).items():
        try:
            _socket.if_nametoindex(host_name)
        except OSError:
            raise PyruncError(f"config.json: /linux/netDevices/{host_name}: no such network "
                              "device in pyrunc's network namespace") from None
        out.append((host_name, (dev or {}).get("name") or host_name))
    return out


class _Moved:
    """One device in the container: enough to put it back as it was."""

    def __init__(self, host_name: str, index: int, was_up: bool, addrs: list[dict]) -> None:
        self.host_name = host_name
        self.index = index          # its index inside the container's namespace
        self.was_up = was_up
        self.addrs = addrs


class Mover:
    """Moves devices into the namespace of `init_pid`; can give them all back until closed."""

    def __init__(self, init_pid: int) -> None:
        from pyroute2 import IPRoute  # only here: ~150 ms, and only for netDevices
        self._iproute = IPRoute
        # Pins the container's namespace: a give-back works even if the init is gone by then.
        self.ctr_ns = os.open(f"/proc/{init_pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self.own_ns = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self.host = IPRoute()
        self.ctr = self._open_in(self.ctr_ns)
        self.moved: list[_Moved] = []

    def _open_in(self, ns_fd: int):  # -> IPRoute; its socket belongs to the namespace it is made in
        linux.setns(ns_fd, linux.CLONE_NEWNET)
        try:
            return self._iproute()
        finally:
            linux.setns(self.own_ns, linux.CLONE_NEWNET)

    def close(self) -> None:
        self.host.close()
        self.ctr.close()
        os.close(self.ctr_ns)
        os.close(self.own_ns)

    def move_all(self, devices: list[tuple[str, str]]) -> None:
        """Move every device, or (on the first failure) none: the error names the device."""
        from pyroute2.netlink.exceptions import NetlinkError
        for host_name, target in devices:
            step = "finding it"
            try:
                index = self._index(self.host, host_name)
                link = self.host.link("get", index=index)[0]
                step = "reading its addresses"
                addrs = [_addr_args(a) for a in self.host.addr("dump", index=index)
                         if _movable(a)]
                mac = link.get("address")
                step = f"moving it into the container's network namespace as {target}"
                if "%d" not in target and self.ctr.link_lookup(ifname=target):
                    raise OSError(17, "a device of that name is already there")
                was_up = bool(link["flags"] & IFF_UP)
                try:
                    self.host.link("set", index=index, net_ns_fd=self.ctr_ns, ifname=target)
                except NetlinkError:
                    # The kernel moves first and renames after: a failed rename can leave
                    # the device inside under its old name. Take it back too.
                    if not self.host.link_lookup(index=index):
                        stray = self.ctr.link_lookup(ifname=host_name)
                        if stray:
                            self.moved.append(_Moved(host_name, stray[0], was_up, addrs))
                    raise
                step = "finding it in the container's network namespace"
                new_index = self._find_moved(index, target, mac)
                entry = _Moved(host_name, new_index, was_up, addrs)
                self.moved.append(entry)
                for args in addrs:
                    step = f"adding address {args.get('local') or args['address']}"
                    self.ctr.addr("add", index=new_index, **args)
                step = "setting it up"
                self.ctr.link("set", index=new_index, state="up")
            except (NetlinkError, OSError) as exc:
                message = _one_line(host_name, step, exc)
                self.give_back()
                raise PyruncError(message) from None

    def _index(self, ipr, name: str) -> int:
        found = ipr.link_lookup(ifname=name)
        if not found:
            raise OSError(19, "No such device")
        return found[0]

    def _find_moved(self, old_index: int, target: str, mac: str | None) -> int:
        """Its index inside; for a `%d` name, the numbered link with the device's MAC (the
        kernel keeps the index unless the container's namespace already uses it)."""
        if "%d" not in target:
            return self._index(self.ctr, target)
        head, tail = target.split("%d", 1)
        found = []
        for link in self.ctr.link("dump"):
            name = link.get("ifname") or ""
            number = name[len(head):len(name) - len(tail)]
            if (name.startswith(head) and name.endswith(tail) and number.isdigit()
                    and link.get("address") == mac):
                found.append(link["index"])
        if not found:
            raise OSError(19, "No such device")
        return old_index if old_index in found else found[0]

    def give_back(self) -> None:
        """Every moved device back into pyrunc's namespace under its old name, addresses and
        up state restored. Best effort: it runs on the way out of a failure."""
        while self.moved:
            entry = self.moved.pop()
            try:
                self.ctr.link("set", index=entry.index, state="down")
                self.ctr.link("set", index=entry.index, net_ns_fd=self.own_ns,
                              ifname=entry.host_name)
                index = self._index(self.host, entry.host_name)
                for args in entry.addrs:
                    try:
                        self.host.addr("add", index=index, **args)
                    except Exception:  # noqa: BLE001, S110 - e.g. already there: go on restoring
                        pass
                if entry.was_up:
                    self.host.link("set", index=index, state="up")
            except Exception as exc:  # noqa: BLE001
                from pyrunc.log import Log
                Log.warning(_one_line(entry.host_name, "moving it back out of the container",
                                      exc))


def _movable(addr) -> bool:
    """The spec's rule: permanent (IFA_F_PERMANENT) addresses of global scope, any family."""
    flags = addr.get("IFA_FLAGS") or addr["flags"]
    return bool(flags & IFA_F_PERMANENT) and addr["scope"] == RT_SCOPE_UNIVERSE


def _addr_args(addr) -> dict:
    """An RTM_GETADDR answer turned into RTM_NEWADDR arguments that recreate it."""
    args = {"family": addr["family"], "prefixlen": addr["prefixlen"],
            "address": addr.get("address") or addr.get("local")}
    if addr.get("local") and addr.get("local") != args["address"]:
        args["local"] = addr.get("local")   # point-to-point: local and peer differ
    if addr.get("broadcast"):
        args["broadcast"] = addr.get("broadcast")
    flags = (addr.get("IFA_FLAGS") or 0) & _KEPT_ADDR_FLAGS
    if flags:
        args["IFA_FLAGS"] = flags
    return args


def _one_line(device: str, step: str, exc: BaseException) -> str:
    """The kernel's own words when netlink gave some (extended ack), else strerror."""
    if isinstance(exc, OSError):
        text = exc.strerror or str(exc)
    else:
        code = getattr(exc, "code", 0)
        detail = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], str) else ""
        text = detail or (os.strerror(code) if isinstance(code, int) and code > 0 else str(exc))
    return f"config.json: /linux/netDevices/{device}: {step}: {text[:1].lower()}{text[1:]}"
