"""The scale-out topology's network: one namespace per host, all on one private bridge.

Names and addresses are fixed, so that ``down`` finds what an earlier ``up`` made by its name
prefix alone, also when the state file is gone or ``up`` died half-way: the namespaces
``thor-h1``..``thor-hN``, one veth pair per host (``thorv<K>`` in the root namespace, ``eth0`` in
the host's), and the bridge ``thorbr0`` holding 10.77.0.254/24; host K has 10.77.0.K. Nothing
leaves the machine: the namespaces get no default route and the bridge no uplink and no NAT, so a
host reaches the other hosts and the bridge address, nothing else.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from dataclasses import dataclass
from typing import Any

from thorcut.errors import ThorcutError, UsageError

NETNS_PREFIX = "thor-h"
VETH_PREFIX = "thorv"
BRIDGE = "thorbr0"
BRIDGE_PREFIX = "thorbr"
SUBNET = ipaddress.IPv4Network("10.77.0.0/24")
BRIDGE_ADDRESS = str(SUBNET[254])
#: Enough for any benchmark a 2-core machine can run; the addresses would allow 253.
MAX_HOSTS = 16


@dataclass(frozen=True)
class Host:
    """Host ``index`` (from 1) of the topology: its namespace, address and veth."""

    index: int

    @property
    def name(self) -> str:
        return f"h{self.index}"

    @property
    def netns(self) -> str:
        return f"{NETNS_PREFIX}{self.index}"

    @property
    def address(self) -> str:
        return str(SUBNET[self.index])

    @property
    def veth(self) -> str:
        return f"{VETH_PREFIX}{self.index}"


def hosts(count: int) -> list[Host]:
    """Return hosts 1..``count``; raise UsageError outside 2..MAX_HOSTS (a replica needs a second host)."""
    if not 2 <= count <= MAX_HOSTS:
        raise UsageError(f"--hosts must be from 2 to {MAX_HOSTS}, not {count}")
    return [Host(k) for k in range(1, count + 1)]


def ip(*args: str, check: bool = True) -> str:
    """Run ``ip ARGS``; return its output; raise ThorcutError with its message when it fails and ``check``."""
    try:
        proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False, timeout=30)
    except FileNotFoundError:
        raise UsageError("no `ip` command: install the iproute2 package (apt-get install -y iproute2)") from None
    if check and proc.returncode != 0:
        raise ThorcutError(f"`ip {' '.join(args)}` failed: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


def _json(*args: str) -> list[dict[str, Any]]:
    text = ip("-j", *args)
    data = json.loads(text) if text.strip() else []
    return [item for item in data if isinstance(item, dict)]


def namespaces() -> list[str]:
    """Return the network namespaces whose name has the topology's prefix."""
    names = (line.split()[0] for line in ip("netns", "list").splitlines() if line.strip())
    return sorted(name for name in names if name.startswith(NETNS_PREFIX))


def links() -> list[str]:
    """Return the root namespace's interfaces whose name has one of the topology's prefixes."""
    names = (str(link.get("ifname", "")) for link in _json("link", "show"))
    return sorted(name for name in names if name.startswith((VETH_PREFIX, BRIDGE_PREFIX)))


def clashes() -> list[str]:
    """Return what on this machine stands in the topology's way (empty when nothing does).

    Leftovers of an earlier run (the names' prefixes are ours) are told apart from somebody
    else's addresses and routes in the subnet, which ``down`` must never remove.
    """
    found = []
    left = namespaces() + links()
    if left:
        found.append(f"left over from an earlier run: {', '.join(left)} (`make scale-down` removes them)")
    for link in _json("addr", "show"):
        for info in link.get("addr_info", []):
            if info.get("family") != "inet" or str(link.get("ifname", "")).startswith(BRIDGE_PREFIX):
                continue
            held = ipaddress.IPv4Interface(f"{info['local']}/{info.get('prefixlen', 32)}")
            if held.network.overlaps(SUBNET):
                found.append(f"interface {link.get('ifname')} already has {held} in {SUBNET}")
    for route in _json("route", "show"):
        dst, dev = str(route.get("dst", "")), str(route.get("dev", ""))
        if dst == "default" or dev.startswith(BRIDGE_PREFIX):
            continue  # the default route covers everything; it is the more specific routes that clash
        try:
            net = ipaddress.IPv4Network(dst, strict=False)
        except ValueError:
            continue
        if net.overlaps(SUBNET):
            found.append(f"a route to {dst} (dev {dev or '?'}) overlaps {SUBNET}")
    return found


def create(members: list[Host]) -> None:
    """Make the bridge and, for each of ``members``, its namespace wired to the bridge.

    Raises ThorcutError when an ``ip`` command fails (the caller removes what was made).
    """
    ip("link", "add", BRIDGE, "type", "bridge")
    ip("addr", "add", f"{BRIDGE_ADDRESS}/{SUBNET.prefixlen}", "dev", BRIDGE)
    ip("link", "set", BRIDGE, "up")
    for host in members:
        ip("netns", "add", host.netns)
        ip("-n", host.netns, "link", "set", "lo", "up")  # services bind the host address, tools use lo
        # The peer is made inside the namespace at once: no second interface ever sits in the root one.
        ip("link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
        ip("-n", host.netns, "addr", "add", f"{host.address}/{SUBNET.prefixlen}", "dev", "eth0")
        ip("-n", host.netns, "link", "set", "eth0", "up")
        ip("link", "set", host.veth, "master", BRIDGE)
        ip("link", "set", host.veth, "up")


def remove() -> list[str]:
    """Remove every veth, namespace and bridge with the topology's prefixes; return their names.

    The veths go first: deleting a namespace destroys its end (and so the pair) only
    asynchronously, and the bridge last, once nothing is attached to it.
    """
    removed = []
    present = links()
    for name in [n for n in present if n.startswith(VETH_PREFIX)]:
        ip("link", "del", name, check=False)
        removed.append(f"veth {name}")
    for name in namespaces():
        ip("netns", "del", name, check=False)
        removed.append(f"namespace {name}")
    for name in [n for n in present if n.startswith(BRIDGE_PREFIX)]:
        ip("link", "del", name, check=False)
        removed.append(f"bridge {name}")
    left = namespaces() + links()
    if left:
        raise ThorcutError(f"could not remove {', '.join(left)}: remove them with `ip netns del` / `ip link del`")
    return removed


def pids(netns: str) -> list[int]:
    """Return the processes running in the namespace ``netns`` (none when it does not exist)."""
    return sorted(int(p) for p in ip("netns", "pids", netns, check=False).split() if p.isdigit())
