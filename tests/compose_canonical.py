#!/usr/bin/python3
"""Reads `docker-compose config` output (Compose v1, YAML) on stdin and prints
what interpolation and normalisation decided, as canonical JSON, so that the
test `compose_vs_docker_compose` can compare it with rehost's model.

Compose's own parsers do the work where it has them (ServicePort.parse,
VolumeSpec.parse, parse_nanoseconds_int, shlex.split as docker-py does for
string commands), so this is an independent oracle, not a copy of rehost's
rules. Usage: compose_canonical.py PROJECT < config.yml
"""

import json
import shlex
import sys

import yaml
from compose.config.types import ServicePort, VolumeSpec
from compose.utils import parse_nanoseconds_int


def unescape(value):
    """`config` writes `$` as `$$` so that its output can be loaded again."""
    if isinstance(value, str):
        return value.replace("$$", "$")
    if isinstance(value, list):
        return [unescape(v) for v in value]
    if isinstance(value, dict):
        return {k: unescape(v) for k, v in value.items()}
    return value


def text(value):
    return value if isinstance(value, str) else str(value)


def words(value):
    if value is None:
        return None
    if isinstance(value, str):
        return shlex.split(value)
    return [text(v) for v in value]


def env_map(value, drop_none):
    out = {}
    for key, val in (value or {}).items():
        if val is None:
            if drop_none:
                continue
            val = ""
        out[key] = text(val)
    return out


def ports(entries):
    out = []
    for entry in entries or []:
        for port in ServicePort.parse(entry):
            published = port.published
            out.append({
                "ip": port.external_ip,
                "published": None if published in (None, "") else text(published),
                "target": int(port.target),
                "protocol": port.protocol or "tcp",
            })
    return out


def mounts(entries):
    out = []
    for entry in entries or []:
        if isinstance(entry, dict):
            source, target = entry.get("source"), entry["target"]
            read_only = bool(entry.get("read_only", False))
            kind = entry["type"]
        else:
            spec = VolumeSpec.parse(entry)
            source, target = spec.external, spec.internal
            read_only = spec.mode == "ro"
            kind = "volume" if not source or not source.startswith("/") else "bind"
        if not source:
            out.append({"anonymous": target})
        elif kind == "bind":
            out.append({"bind": source, "target": target, "ro": read_only})
        else:
            out.append({"volume": source, "target": target, "ro": read_only})
    return out


def seconds(value):
    return None if value is None else parse_nanoseconds_int(value)


def healthcheck(value):
    if value is None:
        return None
    if value.get("disable"):
        test = ["NONE"]
    else:
        test = value.get("test")
        if isinstance(test, str):
            test = ["CMD-SHELL", test]
        test = list(test or [])
    return {
        "test": test,
        "interval": seconds(value.get("interval")),
        "timeout": seconds(value.get("timeout")),
        "retries": value.get("retries"),
        "start_period": seconds(value.get("start_period")),
    }


def service_networks(service):
    if "network_mode" in service:
        return {}
    networks = service.get("networks") or {"default": None}
    if isinstance(networks, list):
        networks = {name: None for name in networks}
    out = {}
    for name, settings in networks.items():
        settings = settings or {}
        out[name] = {
            "ipv4": settings.get("ipv4_address"),
            "aliases": list(settings.get("aliases") or []),
        }
    return out


def service(service):
    build = service.get("build")
    if build is not None:
        build = {
            "context": build["context"],
            "dockerfile": build.get("dockerfile", "Dockerfile"),
            "args": env_map(build.get("args"), drop_none=True),
        }
    replicas = (service.get("deploy") or {}).get("replicas", service.get("scale", 1))
    return {
        "image": service.get("image"),
        "build": build,
        "command": words(service.get("command")),
        "entrypoint": words(service.get("entrypoint")),
        "environment": env_map(service.get("environment"), drop_none=True),
        "labels": env_map(service.get("labels"), drop_none=False),
        "ports": ports(service.get("ports")),
        "mounts": mounts(service.get("volumes")),
        "networks": service_networks(service),
        "network_mode": service.get("network_mode"),
        "restart": text(service.get("restart", "no")),
        "user": service.get("user"),
        "healthcheck": healthcheck(service.get("healthcheck")),
        "replicas": int(replicas),
        "depends_on": {
            name: dep["condition"] for name, dep in (service.get("depends_on") or {}).items()
        },
    }


def main():
    project = sys.argv[1]
    config = unescape(yaml.safe_load(sys.stdin))
    services = {name: service(s) for name, s in config["services"].items()}
    declared = config.get("networks") or {}
    networks = {}
    used = {n for s in services.values() for n in s["networks"]}
    for key in sorted(set(declared) | (used & {"default"})):
        net = declared.get(key) or {}
        external = bool(net.get("external", False))
        name = net.get("name") or (key if external else "%s_%s" % (project, key))
        networks[key] = {
            "name": name,
            "external": external,
            "driver": net.get("driver", "bridge"),
            "internal": bool(net.get("internal", False)),
            "subnets": [
                {"subnet": c["subnet"], "gateway": c.get("gateway")}
                for c in ((net.get("ipam") or {}).get("config") or [])
            ],
        }
    volumes = {}
    for key, vol in (config.get("volumes") or {}).items():
        vol = vol or {}
        external = bool(vol.get("external", False))
        volumes[key] = {
            "name": vol.get("name") or (key if external else "%s_%s" % (project, key)),
            "external": external,
        }
    json.dump({"services": services, "networks": networks, "volumes": volumes},
              sys.stdout, indent=1, sort_keys=True)


main()
