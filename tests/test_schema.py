"""spec/*-schema.json and pyrunc.schema, with jsonschema as the oracle.

The oracle is jsonschema's Draft 2020-12 validator with one change that pyrunc.schema makes on purpose:
"integer" excludes 1.0, as Go's decoder (and so runc) does.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, validators

from pyrunc import schema
from pyrunc.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "tests" / "samples"

StrictIntegers = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", lambda checker, x: type(x) is int),
)
ORACLES = {name: StrictIntegers(schema.load_schema(name)) for name in ("config", "state")}


def sample(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / name).read_text())


MINIMAL = {"ociVersion": "1.0.2", "root": {"path": "rootfs"}}
RUNC = sample("runc-default.json")
PODMAN = sample("podman-like.json")
FULL = sample("full-1.3.json")
CONFIGS = {"minimal": MINIMAL, "runc": RUNC, "podman": PODMAN, "full": FULL}
STATES = {
    "running": {"ociVersion": "1.0.2", "id": "abc", "status": "running", "pid": 4422, "bundle": "/b",
                "annotations": {"k": "v"}},
    "runc-stopped": {"ociVersion": "1.0.2-dev", "id": "x", "pid": 0, "status": "stopped", "bundle": "/run/b",
                     "rootfs": "/run/b/rootfs", "created": "2024-01-01T00:00:00Z", "owner": ""},
    "creating": {"ociVersion": "1.3.0", "id": "y", "status": "creating", "bundle": "/b"},
    "paused": {"ociVersion": "1.0.2", "id": "z", "status": "paused", "pid": 7, "bundle": "/b", "x-ours": [1]},
}
DELETE = object()


def changed(base: Any, path: str, value: Any = DELETE) -> Any:
    """A copy of base with the node at a slash path ("linux/namespaces/2/type") replaced or deleted."""
    doc = copy.deepcopy(base)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split("/")]
    node = doc
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[last]
    elif isinstance(node, list) and last == len(node):
        node.append(value)
    else:
        node[last] = value
    return doc


def oracle_valid(instance: Any, name: str = "config") -> bool:
    return ORACLES[name].is_valid(instance)


# Our messages stay one line: a key's C0 control characters are written as \xNN (schema._describe).
CONTROLS = {c: f"\\x{c:02x}" for c in range(32)}


def oracle_paths(instance: Any, name: str = "config") -> set[str]:
    """Instance locations of every error jsonschema finds, including those inside anyOf/oneOf branches,
    written as our messages write them; empty when jsonschema finds the instance valid."""
    def walk(errors: Any) -> Iterator[str]:
        for error in errors:
            yield "".join("/" + str(p).replace("~", "~0").replace("/", "~1").translate(CONTROLS)
                          for p in error.absolute_path)
            yield from walk(error.context or ())
    return set(walk(ORACLES[name].iter_errors(instance)))


def our_pointer(message: str) -> str:
    return message.split(": ", 1)[0] if message.startswith("/") else ""


# (a) the schema files themselves

@pytest.mark.parametrize("name", ["config", "state"])
def test_schema_file_is_valid_draft_2020_12(name: str) -> None:
    Draft202012Validator.check_schema(schema.load_schema(name))


@pytest.mark.parametrize("name", ["config", "state"])
def test_schema_file_uses_only_keywords_we_implement(name: str) -> None:
    schema.compile_schema(schema.load_schema(name), name)  # raises NotImplementedError otherwise


def test_load_schema_is_cached_and_refuses_odd_names() -> None:
    assert schema.load_schema("config") is schema.load_schema("config")
    with pytest.raises(ValueError):
        schema.load_schema("../etc/passwd")


# (b) valid documents

@pytest.mark.parametrize("name", CONFIGS)
def test_valid_config(name: str) -> None:
    assert oracle_valid(CONFIGS[name])
    assert schema.first_error(CONFIGS[name]) is None
    schema.validate(CONFIGS[name])


@pytest.mark.parametrize("path, value", [
    ("linux/resources/pids", {}),  # limit became optional in 1.3
    ("linux/resources/pids", {"limit": -1}),
    ("linux/devices/2", {"type": "p", "path": "/dev/fifo"}),
    ("linux/rootfsPropagation", "rshared"),
    ("linux/rootfsPropagation", "private"),
    ("ociVersion", "1.3.0+dev"),
    ("process/oomScoreAdj", -1000),
    ("linux/resources/memory/limit", -9223372036854775808),
    ("linux/resources/blockIO/weightDevice/0", {"major": 8, "minor": 0, "weight": 0}),
    ("linux/resources/blockIO/weight", 0),  # docker sends 0 for "unset"
    ("linux/seccomp/syscalls/2/args/0/value", 18446744073709551615),
    ("x-vendor", None),
])
def test_valid_variants(path: str, value: Any) -> None:
    doc = changed(FULL, path, value)
    assert oracle_valid(doc)
    assert schema.first_error(doc) is None


@pytest.mark.parametrize("name", STATES)
def test_valid_state(name: str) -> None:
    assert oracle_valid(STATES[name], "state")
    assert schema.first_error(STATES[name], "state") is None


# (c) invalid documents: both reject, and our message names the right place

INVALID_CONFIGS = [
    # (base, path to change, new value or DELETE, expected pointer in our message)
    (MINIMAL, "ociVersion", DELETE, ""),
    (MINIMAL, "ociVersion", 1, "/ociVersion"),
    (MINIMAL, "root/path", DELETE, "/root"),
    (MINIMAL, "root", "rootfs", "/root"),
    (RUNC, "root/readonly", "yes", "/root/readonly"),
    (RUNC, "process", "sh", "/process"),
    (RUNC, "process/args", [], "/process/args"),
    (RUNC, "process/args", DELETE, "/process"),
    (RUNC, "process/args/0", 5, "/process/args/0"),
    (RUNC, "process/cwd", DELETE, "/process"),
    (RUNC, "process/cwd", ["/"], "/process/cwd"),
    (RUNC, "process/terminal", "true", "/process/terminal"),
    (RUNC, "process/user/uid", -1, "/process/user/uid"),
    (RUNC, "process/user/uid", 4294967296, "/process/user/uid"),
    (RUNC, "process/user/uid", True, "/process/user/uid"),
    (RUNC, "process/user/uid", 1.0, "/process/user/uid"),
    (RUNC, "process/user/gid", DELETE, "/process/user"),
    (FULL, "process/user/additionalGids/1", "27", "/process/user/additionalGids/1"),
    (FULL, "process/user/umask", -1, "/process/user/umask"),
    (RUNC, "process/env", "PATH=/bin", "/process/env"),
    (RUNC, "process/env/1", None, "/process/env/1"),
    (RUNC, "process/capabilities/bounding", "CAP_KILL", "/process/capabilities/bounding"),
    (RUNC, "process/capabilities/ambient/2", 12, "/process/capabilities/ambient/2"),
    (RUNC, "process/rlimits/0/soft", DELETE, "/process/rlimits/0"),
    (RUNC, "process/rlimits/0/hard", -1, "/process/rlimits/0/hard"),
    (RUNC, "process/rlimits/0/hard", 18446744073709551616, "/process/rlimits/0/hard"),
    (RUNC, "process/rlimits/0/type", 7, "/process/rlimits/0/type"),
    (FULL, "process/consoleSize/width", DELETE, "/process/consoleSize"),
    (FULL, "process/consoleSize/height", -25, "/process/consoleSize/height"),
    (FULL, "process/oomScoreAdj", "100", "/process/oomScoreAdj"),
    (FULL, "process/ioPriority/class", "IOPRIO_CLASS_FOO", "/process/ioPriority/class"),
    (FULL, "process/ioPriority/priority", 8, "/process/ioPriority/priority"),
    (FULL, "process/scheduler/policy", DELETE, "/process/scheduler"),
    (FULL, "process/scheduler/flags/1", "SCHED_FLAG_FAST", "/process/scheduler/flags/1"),
    (FULL, "process/scheduler/nice", 2147483648, "/process/scheduler/nice"),
    (FULL, "process/execCPUAffinity/initial", 7, "/process/execCPUAffinity/initial"),
    (FULL, "process/noNewPrivileges", 1, "/process/noNewPrivileges"),
    (RUNC, "hostname", 5, "/hostname"),
    (FULL, "domainname", None, "/domainname"),
    (RUNC, "mounts", {}, "/mounts"),
    (RUNC, "mounts/1/destination", DELETE, "/mounts/1"),
    (RUNC, "mounts/1/options", "ro", "/mounts/1/options"),
    (RUNC, "mounts/1/options/3", False, "/mounts/1/options/3"),
    (PODMAN, "mounts/11/gidMappings", DELETE, "/mounts/11"),
    (PODMAN, "mounts/11/uidMappings/0/size", DELETE, "/mounts/11/uidMappings/0"),
    (FULL, "hooks", [], "/hooks"),
    (FULL, "hooks/prestart/0/path", DELETE, "/hooks/prestart/0"),
    (FULL, "hooks/poststart/0/timeout", 0, "/hooks/poststart/0/timeout"),
    (FULL, "hooks/createRuntime/0/timeout", 1.5, "/hooks/createRuntime/0/timeout"),
    (FULL, "hooks/createContainer", {"path": "/x"}, "/hooks/createContainer"),
    (FULL, "hooks/poststop/0/args", "cleanup", "/hooks/poststop/0/args"),
    (FULL, "annotations/com.example.key", 1, "/annotations/com.example.key"),
    (FULL, "annotations", ["a=b"], "/annotations"),
    (FULL, "annotations/", "empty keys are forbidden", "/annotations"),
    (RUNC, "linux", [], "/linux"),
    (RUNC, "linux/namespaces/2/type", "pidd", "/linux/namespaces/2/type"),
    (RUNC, "linux/namespaces/2/type", DELETE, "/linux/namespaces/2"),
    (RUNC, "linux/namespaces/2/path", 3, "/linux/namespaces/2/path"),
    (FULL, "linux/uidMappings/0/size", DELETE, "/linux/uidMappings/0"),
    (FULL, "linux/gidMappings/0/hostID", -1, "/linux/gidMappings/0/hostID"),
    (FULL, "linux/timeOffsets/monotonic/nanosecs", -1, "/linux/timeOffsets/monotonic/nanosecs"),
    (FULL, "linux/timeOffsets/boottime/secs", 9223372036854775808, "/linux/timeOffsets/boottime/secs"),
    (FULL, "linux/timeOffsets/realtime", 5, "/linux/timeOffsets/realtime"),
    (FULL, "linux/devices/0/type", "x", "/linux/devices/0/type"),
    (FULL, "linux/devices/0/major", DELETE, "/linux/devices/0"),
    (FULL, "linux/devices/1/path", DELETE, "/linux/devices/1"),
    (FULL, "linux/devices/0/fileMode", -438, "/linux/devices/0/fileMode"),
    (FULL, "linux/netDevices/eth1/name", 1, "/linux/netDevices/eth1/name"),
    (FULL, "linux/netDevices/eth1", "ctr0", "/linux/netDevices/eth1"),
    (FULL, "linux/cgroupsPath", ["a"], "/linux/cgroupsPath"),
    (FULL, "linux/resources/devices/0/allow", DELETE, "/linux/resources/devices/0"),
    (FULL, "linux/resources/devices/1/access", "rwx", "/linux/resources/devices/1/access"),
    (FULL, "linux/resources/devices/1/type", "d", "/linux/resources/devices/1/type"),
    (FULL, "linux/resources/memory/limit", "1G", "/linux/resources/memory/limit"),
    (FULL, "linux/resources/memory/limit", 9223372036854775808, "/linux/resources/memory/limit"),
    (FULL, "linux/resources/memory/swappiness", -1, "/linux/resources/memory/swappiness"),
    (FULL, "linux/resources/memory/disableOOMKiller", "false", "/linux/resources/memory/disableOOMKiller"),
    (FULL, "linux/resources/cpu/shares", -1, "/linux/resources/cpu/shares"),
    (FULL, "linux/resources/cpu/cpus", 3, "/linux/resources/cpu/cpus"),
    (FULL, "linux/resources/pids/limit", "max", "/linux/resources/pids/limit"),
    (FULL, "linux/resources/pids/limit", 1.5, "/linux/resources/pids/limit"),
    (FULL, "linux/resources/blockIO/weight", 5, "/linux/resources/blockIO/weight"),
    (FULL, "linux/resources/blockIO/weight", 1001, "/linux/resources/blockIO/weight"),
    (FULL, "linux/resources/blockIO/weightDevice/1/leafWeight", DELETE, "/linux/resources/blockIO/weightDevice/1"),
    (FULL, "linux/resources/blockIO/weightDevice/0/weight", 65536, "/linux/resources/blockIO/weightDevice/0/weight"),
    (FULL, "linux/resources/blockIO/throttleReadBpsDevice/0/rate", DELETE,
     "/linux/resources/blockIO/throttleReadBpsDevice/0"),
    (FULL, "linux/resources/blockIO/throttleWriteIOPSDevice/0/minor", "16",
     "/linux/resources/blockIO/throttleWriteIOPSDevice/0/minor"),
    (FULL, "linux/resources/hugepageLimits/0/pageSize", DELETE, "/linux/resources/hugepageLimits/0"),
    (FULL, "linux/resources/hugepageLimits/1/limit", -1, "/linux/resources/hugepageLimits/1/limit"),
    (FULL, "linux/resources/network/classID", -1, "/linux/resources/network/classID"),
    (FULL, "linux/resources/network/priorities/0/priority", DELETE, "/linux/resources/network/priorities/0"),
    (FULL, "linux/resources/rdma/mlx4_0", {}, "/linux/resources/rdma/mlx4_0"),
    (FULL, "linux/resources/rdma/mlx5_1/hcaHandles", 4294967296, "/linux/resources/rdma/mlx5_1/hcaHandles"),
    (FULL, "linux/resources/unified/io.max", 1048576, "/linux/resources/unified/io.max"),
    (FULL, "linux/intelRdt/enableMonitoring", "yes", "/linux/intelRdt/enableMonitoring"),
    (FULL, "linux/intelRdt/schemata", "L2:0=ff", "/linux/intelRdt/schemata"),
    (FULL, "linux/sysctl/net.ipv4.ip_forward", 1, "/linux/sysctl/net.ipv4.ip_forward"),
    (FULL, "linux/seccomp/defaultAction", DELETE, "/linux/seccomp"),
    (FULL, "linux/seccomp/defaultAction", "SCMP_ACT_FOO", "/linux/seccomp/defaultAction"),
    (FULL, "linux/seccomp/defaultErrnoRet", -1, "/linux/seccomp/defaultErrnoRet"),
    (FULL, "linux/seccomp/architectures/1", "SCMP_ARCH_Z80", "/linux/seccomp/architectures/1"),
    (FULL, "linux/seccomp/flags", "SECCOMP_FILTER_FLAG_LOG", "/linux/seccomp/flags"),
    (FULL, "linux/seccomp/listenerPath", DELETE, "/linux/seccomp"),
    (FULL, "linux/seccomp/syscalls/0/names", [], "/linux/seccomp/syscalls/0/names"),
    (FULL, "linux/seccomp/syscalls/0/names", DELETE, "/linux/seccomp/syscalls/0"),
    (FULL, "linux/seccomp/syscalls/1/action", "SCMP_ACT_MAYBE", "/linux/seccomp/syscalls/1/action"),
    (FULL, "linux/seccomp/syscalls/2/errnoRet", "EPERM", "/linux/seccomp/syscalls/2/errnoRet"),
    (FULL, "linux/seccomp/syscalls/2/args/0/op", "SCMP_CMP_FOO", "/linux/seccomp/syscalls/2/args/0/op"),
    (FULL, "linux/seccomp/syscalls/2/args/0/op", DELETE, "/linux/seccomp/syscalls/2/args/0"),
    (FULL, "linux/seccomp/syscalls/2/args/0/index", -1, "/linux/seccomp/syscalls/2/args/0/index"),
    (FULL, "linux/seccomp/syscalls/2/args/0/value", 18446744073709551616, "/linux/seccomp/syscalls/2/args/0/value"),
    (PODMAN, "linux/seccomp/syscalls/1/names/355", 355, "/linux/seccomp/syscalls/1/names/355"),
    (FULL, "linux/rootfsPropagation", "bogus", "/linux/rootfsPropagation"),
    (FULL, "linux/maskedPaths/0", 1, "/linux/maskedPaths/0"),
    (FULL, "linux/readonlyPaths", "/proc/sys", "/linux/readonlyPaths"),
    (FULL, "linux/mountLabel", False, "/linux/mountLabel"),
    (FULL, "linux/personality/domain", "LINUX64", "/linux/personality/domain"),
    (FULL, "linux/personality/domain", DELETE, "/linux/personality"),
    (FULL, "linux/memoryPolicy/mode", DELETE, "/linux/memoryPolicy"),
    (FULL, "linux/memoryPolicy/flags/0", "MPOL_F_FAST", "/linux/memoryPolicy/flags/0"),
    (FULL, "vm", [], "/vm"),
    (FULL, "solaris", "zone", "/solaris"),
]


@pytest.mark.parametrize("base, path, value, pointer", INVALID_CONFIGS,
                         ids=[f"{c[1]}={'DELETE' if c[2] is DELETE else c[2]!r}" for c in INVALID_CONFIGS])
def test_invalid_config(base: Any, path: str, value: Any, pointer: str) -> None:
    doc = changed(base, path, value)
    assert not oracle_valid(doc)
    message = schema.first_error(doc)
    assert message is not None
    assert our_pointer(message) == pointer, message
    with pytest.raises(schema.SchemaError) as caught:
        schema.validate(doc)
    assert str(caught.value) == f"config.json: {message}"


@pytest.mark.parametrize("doc, pointer", [
    ({"ociVersion": "1", "id": "x", "status": "bogus", "bundle": "/b"}, "/status"),
    ({"ociVersion": "1", "id": "x", "status": "running", "bundle": "/b"}, ""),
    ({"ociVersion": "1", "id": "x", "status": "created", "bundle": "/b", "pid": -1}, "/pid"),
    ({"ociVersion": "1", "id": "", "status": "stopped", "bundle": "/b"}, "/id"),
    ({"ociVersion": "1", "id": "x", "status": "stopped"}, ""),
    ({"ociVersion": "1", "id": "x", "status": "stopped", "bundle": "/b", "annotations": {"a": 1}}, "/annotations/a"),
    ({"ociVersion": 1.0, "id": "x", "status": "stopped", "bundle": "/b"}, "/ociVersion"),
    ([], ""),
])
def test_invalid_state(doc: Any, pointer: str) -> None:
    assert not oracle_valid(doc, "state")
    message = schema.first_error(doc, "state")
    assert message is not None and our_pointer(message) == pointer, message


# Messages: one short line that a user can act on.

@pytest.mark.parametrize("base, path, value, expected", [
    (RUNC, "process/args/0", 5, "config.json: /process/args/0: expected string, got integer"),
    (RUNC, "linux/namespaces/2/type", "pidd",
     'config.json: /linux/namespaces/2/type: "pidd" is not one of pid, network, mount, ipc, uts, user, cgroup, time'),
    (MINIMAL, "root/path", DELETE, 'config.json: /root: required property "path" is missing'),
    (MINIMAL, "ociVersion", DELETE, 'config.json: required property "ociVersion" is missing'),
    (RUNC, "process/user/uid", True, "config.json: /process/user/uid: expected integer, got boolean"),
    (RUNC, "process/user/uid", 2.0, "config.json: /process/user/uid: expected integer, got number"),
    (RUNC, "process/user/uid", -1, "config.json: /process/user/uid: -1 is less than the minimum 0"),
    (RUNC, "process/args", [], "config.json: /process/args: expected at least 1 item, got 0"),
    (FULL, "linux/seccomp/listenerPath", DELETE,
     'config.json: /linux/seccomp: property "listenerMetadata" needs "listenerPath", which is missing'),
    (FULL, "linux/resources/rdma/mlx4_0", {},
     ('config.json: /linux/resources/rdma/mlx4_0: required property "hcaHandles" is missing'
      ' or required property "hcaObjects" is missing')),
    (FULL, "annotations", {"a~b/c": 1}, "config.json: /annotations/a~0b~1c: expected string, got integer"),
])
def test_message(base: Any, path: str, value: Any, expected: str) -> None:
    doc = changed(base, path, value)
    with pytest.raises(schema.SchemaError) as caught:
        schema.validate(doc)
    assert str(caught.value) == expected


def test_messages_stay_one_short_line() -> None:
    huge = "x" * 10_000
    for doc in (changed(RUNC, "linux/namespaces/0/type", huge),
                changed(RUNC, "annotations", {huge + "\n\r\t": 1}),
                changed(RUNC, "process/args/0", {"nested": [huge] * 100}),
                changed(FULL, "linux/seccomp/architectures/0", huge)):
        message = schema.first_error(doc)
        assert message is not None
        assert "\n" not in message and "\r" not in message and len(message) < 300, message


def test_what_names_the_document_and_errors_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"^state\.json: /status: "):
        schema.validate({"ociVersion": "1", "id": "x", "status": "gone", "bundle": "/"}, "state", "state.json")
    assert issubclass(schema.SchemaError, ConfigError)


# Keywords: unknown ones are refused, and every one we implement agrees with jsonschema.

@pytest.mark.parametrize("bad", [
    {"type": "string", "format": "email"},
    {"properties": {"a": {"multipleOf": 2}}},
    {"$defs": {"unused": {"contains": {"type": "string"}}}},
    {"$ref": "other.json#/x"},
    {"items": [{"type": "string"}]},
])
def test_unimplemented_keywords_are_refused(bad: dict) -> None:
    with pytest.raises(NotImplementedError):
        schema.compile_schema(bad)


def test_unimplemented_keyword_is_refused_when_reached_without_compile() -> None:
    ev = schema._Evaluator({"properties": {"a": {"format": "date"}}}, "t")
    assert ev.check(ev.root, {"b": 1}) is None  # the node is never reached
    with pytest.raises(NotImplementedError):
        ev.check(ev.root, {"a": "2024-01-01"})


KEYWORD_SCHEMAS = [
    {"prefixItems": [{"type": "integer"}, {"type": "string"}], "items": {"type": "boolean"}, "minItems": 1,
     "maxItems": 3},
    {"prefixItems": [{"const": 1}]},
    {"type": "array", "uniqueItems": True},
    {"enum": [1, "a", None, True, [1], {"a": 1}]},
    {"const": {"a": [1, 2]}},
    {"oneOf": [{"type": "integer"}, {"minimum": 0}]},
    {"anyOf": [{"type": "string", "minLength": 2}, {"type": "array", "maxItems": 1}]},
    {"not": {"type": "null"}},
    {"type": "object", "properties": {"a": {"type": "integer"}},
     "patternProperties": {"^b": {"type": "string"}, "c$": {"maxLength": 1}}, "additionalProperties": False},
    {"additionalProperties": {"type": "number"}},
    {"patternProperties": {"^x": False}, "additionalProperties": {"type": "array"}},
    {"propertyNames": {"maxLength": 2, "pattern": "^[a-z]*$"}},
    {"dependentRequired": {"a": ["b", "c"]}, "required": ["a"]},
    {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 10},
    {"if": {"type": "string"}, "then": {"minLength": 3}, "else": {"type": "integer", "maximum": 3}},
    {"if": {"required": ["a"]}, "then": {"required": ["b"]}},
    {"allOf": [{"minimum": 2}, {"maximum": 5}, {"type": ["integer", "null"]}]},
    {"$defs": {"tree": {"type": "array", "items": {"$ref": "#/$defs/tree"}}}, "$ref": "#/$defs/tree"},
    {"type": "object", "properties": {"a": {"$ref": "#"}, "b": False}},
    {"items": False},
    {"type": ["string", "null", "boolean"]},
]
KEYS = st.sampled_from(["a", "b", "c", "bc", "x", "xy", "bb", "Ab", "", "\u00e9"])
SCALARS = (st.none() | st.booleans() | st.integers(-3, 12) | st.sampled_from([0.0, 1.0, 2.5, -1.0, 1e300])
           | st.sampled_from(["", "a", "ab", "abc", "b", "x"]))
JSON = st.recursive(SCALARS, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(KEYS, kids, max_size=4),
                    max_leaves=10)


@pytest.mark.parametrize("index", range(len(KEYWORD_SCHEMAS)))
@settings(max_examples=80, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(instance=JSON)
def test_keywords_agree_with_jsonschema(index: int, instance: Any) -> None:
    definition = KEYWORD_SCHEMAS[index]
    message = schema.compile_schema(definition)(instance)
    oracle = StrictIntegers(definition)
    assert (message is None) == oracle.is_valid(instance), message
    if message is not None:
        paths = {"".join(f"/{p}" for p in e.absolute_path) for e in _all_errors(oracle.iter_errors(instance))}
        pointer = our_pointer(message)
        if message.endswith("no value is allowed here"):  # jsonschema drops the last step for false schemas
            pointer = pointer.rsplit("/", 1)[0]
        assert pointer in paths, (message, paths)


def _all_errors(errors: Any) -> Iterator[Any]:
    for error in errors:
        yield error
        yield from _all_errors(error.context or ())


# (d) random mutations of valid configs: we and jsonschema must agree on every one

def _paths(node: Any, prefix: tuple = ()) -> Iterator[tuple]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, prefix + (i,))


def _get(doc: Any, path: tuple) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def _enum_strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "enum":
                yield from (v for v in value if isinstance(v, str))
            else:
                yield from _enum_strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _enum_strings(value)


NAMES = sorted({k for doc in CONFIGS.values() for path in _paths(doc) for k in path if isinstance(k, str)})
WORDS = sorted(set(_enum_strings(schema.load_schema("config"))) | {"", "rootfs", "/", "rwm", "rwx", "1.0.2"})
EDGE_INTS = [0, 1, -1, 7, 8, 9, 10, 1000, 1001, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1,
             2**63, -2**63, -2**63 - 1, 2**64 - 1, 2**64]
# A fixed alphabet: full Unicode text makes hypothesis build (and cache on disk) a charmap, which costs seconds.
TEXT = st.text(alphabet="aZ0 -_./~\n\x00\u00e9\U0001f600", max_size=6)
LEAVES = (st.none() | st.booleans() | st.sampled_from(EDGE_INTS) | st.integers()
          | st.sampled_from([1.0, 0.0, -1.0, 0.5, 1e20]) | st.sampled_from(WORDS) | TEXT)
VALUES = st.recursive(LEAVES, lambda kids: st.lists(kids, max_size=3)
                      | st.dictionaries(st.sampled_from(NAMES) | TEXT, kids, max_size=3), max_leaves=6)
DONORS = [node for doc in (MINIMAL, RUNC, FULL) for node in (_get(doc, p) for p in _paths(doc))]
BASE_PATHS = {name: list(_paths(doc)) for name, doc in CONFIGS.items()}


@st.composite
def mutated_configs(draw: Any) -> Any:
    name = draw(st.sampled_from(["minimal", "runc", "runc", "full", "full", "full", "podman"]))
    doc = copy.deepcopy(CONFIGS[name])
    for step in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(BASE_PATHS[name] if step == 0 else list(_paths(doc))))
        action = draw(st.sampled_from(["replace", "graft", "delete", "delete", "insert"]))
        if action == "insert":
            node = _get(doc, path)
            if isinstance(node, dict):
                node[draw(st.sampled_from(NAMES))] = draw(VALUES)
            elif isinstance(node, list):
                node.append(copy.deepcopy(draw(VALUES | st.sampled_from(DONORS))))
            continue
        if action == "delete":
            if path:
                del _get(doc, path[:-1])[path[-1]]
            continue
        value = copy.deepcopy(draw(st.sampled_from(DONORS))) if action == "graft" else draw(VALUES)
        if path:
            _get(doc, path[:-1])[path[-1]] = value
        else:
            doc = value
    return doc


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=mutated_configs())
def test_mutated_configs_agree_with_jsonschema(doc: Any) -> None:
    message = schema.first_error(doc)
    complaints = oracle_paths(doc)
    assert (message is None) == (not complaints), message
    if message is not None:
        assert our_pointer(message) in complaints, message


@settings(max_examples=150, deadline=None, database=None)
@given(base=st.sampled_from(list(STATES.values())), key=st.sampled_from(["ociVersion", "id", "status", "pid",
                                                                          "bundle", "annotations", "extra"]),
       value=VALUES, delete=st.booleans())
def test_mutated_states_agree_with_jsonschema(base: dict, key: str, value: Any, delete: bool) -> None:
    doc = copy.deepcopy(base)
    if delete:
        doc.pop(key, None)
    else:
        doc[key] = value
    message = schema.first_error(doc, "state")
    assert (message is None) == oracle_valid(doc, "state"), message


# The reason this module exists: validating must stay cheap for a fresh runtime process.

def _fresh_python(code: str) -> str:
    prelude = f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
    return subprocess.run([sys.executable, "-I", "-S", "-c", prelude + code], check=True, capture_output=True,
                          text=True).stdout


def test_imports_nothing_heavy() -> None:
    code = ("import json, re, os; before = set(sys.modules); import pyrunc.schema; "
            "print(' '.join(sorted(set(sys.modules) - before)))")
    new = set(_fresh_python(code).split())
    assert new <= {"pyrunc", "pyrunc.errors", "pyrunc.exceptions", "pyrunc.schema", "pyrunc.jsonlite", "_json",
                   "pyrunc.lightos", "__future__"}, new


@pytest.mark.parametrize("text", ["", "r", "rwm", "mwr", "x", "rw ", "RW", "r\n", "rrrrw"])
def test_character_class_fast_path_agrees_with_re(text: str) -> None:
    """`^[rwm]*$` is matched without the re module. JSON Schema patterns are ECMA-262, where `$`
    is the end of the text (Python's `$` also matches before a final newline), so the reference
    is a full match of the class."""
    import re
    ev = schema._Evaluator({}, "t")
    assert (ev.regex("^[rwm]*$").search(text) is None) == (re.fullmatch("[rwm]*", text) is None)
