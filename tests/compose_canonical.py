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
from compose.utils import parse_bytes, parse_nanoseconds_int


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
        if kind == "tmpfs":
            size = (entry.get("tmpfs") or {}).get("size")
            out.append({"tmpfs": target, "size": None if size is None else parse_bytes(size)})
        elif not source:
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


def size(value):
    return None if value is None else parse_bytes(value)


def expose(entries):
    out = []
    for entry in entries or []:
        port, _, proto = text(entry).partition("/")
        start, _, end = port.partition("-")
        for number in range(int(start), int(end or start) + 1):
            key = "%d/%s" % (number, proto or "tcp")
            if key not in out:
                out.append(key)
    return out


def extra_hosts(entries):
    if isinstance(entries, dict):
        return ["%s:%s" % (k, v) for k, v in entries.items()]
    out = []
    for entry in entries or []:
        host, sep, ip = entry.partition("=")
        if not sep:
            host, _, ip = entry.partition(":")
        out.append("%s:%s" % (host, ip))
    return out


def one_or_list(value):
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def secret_uses(entries, section, default_dir):
    out = []
    for entry in entries or []:
        if isinstance(entry, str):
            entry = {"source": entry}
        target = entry.get("target") or entry["source"]
        if not target.startswith("/"):
            target = default_dir + target
        out.append({
            "source": "%s.%s" % (section, entry["source"]),
            "target": target,
            "uid": None if entry.get("uid") is None else int(entry["uid"]),
            "gid": None if entry.get("gid") is None else int(entry["gid"]),
            "mode": int(entry.get("mode", 0o444)),
        })
    return out


def settings(service):
    limits = ((service.get("deploy") or {}).get("resources") or {}).get("limits") or {}
    reservations = ((service.get("deploy") or {}).get("resources") or {}).get("reservations") or {}
    cpus = service.get("cpus", limits.get("cpus"))
    ulimits = {}
    for name, value in (service.get("ulimits") or {}).items():
        if isinstance(value, dict):
            ulimits[name] = [int(value["soft"]), int(value["hard"])]
        else:
            ulimits[name] = [int(value), int(value)]
    tmpfs = {}
    for entry in one_or_list(service.get("tmpfs")):
        path, _, options = entry.partition(":")
        tmpfs[path] = options
    logging = service.get("logging")
    if logging is not None:
        logging = {
            "driver": logging.get("driver"),
            "options": {k: text(v) for k, v in (logging.get("options") or {}).items()},
        }
    return {
        "container_name": service.get("container_name"),
        "hostname": service.get("hostname"),
        "domainname": service.get("domainname"),
        "expose": expose(service.get("expose")),
        "links": [list(l.split(":", 1)) if ":" in l else [l, l] for l in service.get("links") or []],
        "extra_hosts": extra_hosts(service.get("extra_hosts")),
        "dns": one_or_list(service.get("dns")),
        "dns_search": one_or_list(service.get("dns_search")),
        "working_dir": service.get("working_dir"),
        "stdin_open": bool(service.get("stdin_open", False)),
        "tty": bool(service.get("tty", False)),
        "init": service.get("init"),
        "stop_signal": service.get("stop_signal"),
        "stop_grace_period": seconds(service.get("stop_grace_period")),
        "cap_add": list(service.get("cap_add") or []),
        "cap_drop": list(service.get("cap_drop") or []),
        "privileged": bool(service.get("privileged", False)),
        "read_only": bool(service.get("read_only", False)),
        "security_opt": list(service.get("security_opt") or []),
        "sysctls": {k: text(v) for k, v in (service.get("sysctls") or {}).items()},
        "ulimits": ulimits,
        "tmpfs": tmpfs,
        "shm_size": size(service.get("shm_size")),
        "devices": list(service.get("devices") or []),
        "pid": service.get("pid"),
        "ipc": service.get("ipc"),
        "logging": logging,
        "memory": size(service.get("mem_limit", limits.get("memory"))),
        "memory_reservation": size(service.get("mem_reservation", reservations.get("memory"))),
        "nano_cpus": None if cpus is None else int(round(float(cpus) * 1e9)),
        "pids_limit": service.get("pids_limit"),
        "runtime": service.get("runtime"),
        "group_add": [text(g) for g in service.get("group_add") or []],
        "profiles": list(service.get("profiles") or []),
        "pull_policy": service.get("pull_policy", "missing"),
        "secrets": secret_uses(service.get("secrets"), "secrets", "/run/secrets/")
        + secret_uses(service.get("configs"), "configs", "/"),
    }


def service(service):
    build = service.get("build")
    if build is not None:
        build = {
            "context": build["context"],
            "dockerfile": build.get("dockerfile", "Dockerfile"),
            "args": env_map(build.get("args"), drop_none=True),
            "target": build.get("target"),
            "labels": env_map(build.get("labels"), drop_none=False),
            "network": build.get("network"),
            "extra_hosts": extra_hosts(build.get("extra_hosts")),
            "shm_size": size(build.get("shm_size")),
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
        "settings": settings(service),
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
    secrets = {}
    for section in ("secrets", "configs"):
        for key, entry in (config.get(section) or {}).items():
            secrets["%s.%s" % (section, key)] = {"file": entry.get("file")}
    used = {m["source"] for s in services.values() for m in s["settings"]["secrets"]}
    secrets = {k: v for k, v in secrets.items() if k in used}
    json.dump({"services": services, "networks": networks, "volumes": volumes,
               "secrets": secrets},
              sys.stdout, indent=1, sort_keys=True)


main()
