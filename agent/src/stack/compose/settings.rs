//! The container settings of a service beyond the common keys (`hostname`,
//! `cap_drop`, `ulimits`, `deploy.resources`, ...) → [`Settings`], each in
//! the forms Compose accepts.
//!
//! Invariants of the result:
//! - sizes are bytes (`512m` = 512 MiB: Compose's units are binary),
//!   CPUs are billionths (`cpus: 0.5` = 500,000,000), durations exact;
//! - a value given twice (`mem_limit` and `deploy.resources.limits.memory`)
//!   must agree, or the file is refused at the second one;
//! - keys accepted without effect (`platform`, CPU reservations) are
//!   returned as warnings, never silently dropped.

use std::collections::BTreeMap;

use serde_yaml::Value;

use super::error::{At, Fault};
use super::raw::{RawLogging, RawResourceSet, RawService};
use super::value::{self, from_value, opt};
use super::{duration, ports};
use crate::stack::model::{Device, Logging, Protocol, Settings, Ulimit};

/// Reads every settings key of `raw`; `warnings` receives the accepted keys
/// that do nothing on a single Engine.
pub(crate) fn read(
    raw: &RawService,
    at: &At,
    warnings: &mut Vec<Fault>,
) -> Result<Settings, Fault> {
    let string = |v: &Option<Value>, key: &str| opt(v, &at.key(key), value::string);
    let boolean = |v: &Option<Value>, key: &str| opt(v, &at.key(key), value::boolean);
    let strings = |v: &Option<Value>, key: &str| string_list(v, &at.key(key));

    let mut s = Settings {
        hostname: string(&raw.hostname, "hostname")?,
        domainname: string(&raw.domainname, "domainname")?,
        expose: expose(&raw.expose, &at.key("expose"))?,
        extra_hosts: extra_hosts(&raw.extra_hosts, &at.key("extra_hosts"))?,
        dns: one_or_many(&raw.dns, &at.key("dns"))?,
        dns_search: one_or_many(&raw.dns_search, &at.key("dns_search"))?,
        working_dir: string(&raw.working_dir, "working_dir")?,
        stdin_open: boolean(&raw.stdin_open, "stdin_open")?.unwrap_or(false),
        tty: boolean(&raw.tty, "tty")?.unwrap_or(false),
        init: boolean(&raw.init, "init")?,
        stop_signal: string(&raw.stop_signal, "stop_signal")?,
        stop_grace_period: opt(
            &raw.stop_grace_period,
            &at.key("stop_grace_period"),
            |v, at| duration::parse(&value::string(v, at)?).map_err(|e| at.fault(e)),
        )?,
        cap_add: strings(&raw.cap_add, "cap_add")?,
        cap_drop: strings(&raw.cap_drop, "cap_drop")?,
        privileged: boolean(&raw.privileged, "privileged")?.unwrap_or(false),
        read_only: boolean(&raw.read_only, "read_only")?.unwrap_or(false),
        security_opt: strings(&raw.security_opt, "security_opt")?,
        sysctls: sysctls(&raw.sysctls, &at.key("sysctls"))?,
        ulimits: ulimits(&raw.ulimits, &at.key("ulimits"))?,
        tmpfs: tmpfs(&raw.tmpfs, &at.key("tmpfs"))?,
        shm_size: opt(&raw.shm_size, &at.key("shm_size"), bytes)?,
        devices: devices(&raw.devices, &at.key("devices"))?,
        pid: opt(&raw.pid, &at.key("pid"), |v, at| {
            namespace(v, at, &["host"])
        })?,
        ipc: opt(&raw.ipc, &at.key("ipc"), |v, at| {
            namespace(v, at, &["host", "private", "shareable", "none"])
        })?,
        logging: match &raw.logging {
            None => None,
            Some(l) => Some(logging(l, &at.key("logging"))?),
        },
        memory: opt(&raw.mem_limit, &at.key("mem_limit"), bytes)?,
        memory_reservation: opt(&raw.mem_reservation, &at.key("mem_reservation"), bytes)?,
        nano_cpus: opt(&raw.cpus, &at.key("cpus"), cpus)?,
        pids_limit: opt(&raw.pids_limit, &at.key("pids_limit"), pids)?,
        runtime: string(&raw.runtime, "runtime")?,
        group_add: strings(&raw.group_add, "group_add")?,
    };
    if let Some(platform) = &raw.platform {
        let at = at.key("platform");
        let platform = value::string(platform, &at)?;
        warnings.push(at.fault(format!(
            "ignored: rehost runs images for this host's platform (`{platform}` is not passed to the Engine)"
        )));
    }
    if let Some(deploy) = &raw.deploy {
        if let Some(resources) = &deploy.resources {
            let at = at.key("deploy").key("resources");
            if let Some(limits) = &resources.limits {
                let at = at.key("limits");
                let set = resource_set(limits, &at)?;
                merge(&mut s.memory, set.memory, &at.key("memory"), "mem_limit")?;
                merge(&mut s.nano_cpus, set.cpus, &at.key("cpus"), "cpus")?;
                merge(&mut s.pids_limit, set.pids, &at.key("pids"), "pids_limit")?;
            }
            if let Some(reservations) = &resources.reservations {
                let at = at.key("reservations");
                let set = resource_set(reservations, &at)?;
                merge(
                    &mut s.memory_reservation,
                    set.memory,
                    &at.key("memory"),
                    "mem_reservation",
                )?;
                if set.cpus.is_some() {
                    warnings.push(at.key("cpus").fault(
                        "ignored: a single Engine reserves no CPU for a container (only Swarm does)",
                    ));
                }
                if set.pids.is_some() {
                    return Err(at
                        .key("pids")
                        .fault("a pids reservation does not exist; use `limits.pids`"));
                }
            }
        }
    }
    Ok(s)
}

struct ResourceSet {
    memory: Option<u64>,
    cpus: Option<u64>,
    pids: Option<i64>,
}

fn resource_set(raw: &RawResourceSet, at: &At) -> Result<ResourceSet, Fault> {
    Ok(ResourceSet {
        memory: opt(&raw.memory, &at.key("memory"), bytes)?,
        cpus: opt(&raw.cpus, &at.key("cpus"), cpus)?,
        pids: opt(&raw.pids, &at.key("pids"), pids)?,
    })
}

/// A `deploy.resources` value where a service-level key may have set it too.
fn merge<T: PartialEq + Copy + std::fmt::Debug>(
    have: &mut Option<T>,
    new: Option<T>,
    at: &At,
    other: &str,
) -> Result<(), Fault> {
    match (*have, new) {
        (Some(a), Some(b)) if a != b => Err(at.fault(format!(
            "disagrees with `{other}` of the same service; give one of them"
        ))),
        (_, Some(b)) => {
            *have = Some(b);
            Ok(())
        }
        (_, None) => Ok(()),
    }
}

fn string_list(value: &Option<Value>, at: &At) -> Result<Vec<String>, Fault> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Sequence(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| value::string(item, &at.index(i)))
            .collect(),
        Some(other) => Err(at.fault(format!(
            "expected a list of strings, got {}",
            value::kind_of(other)
        ))),
    }
}

/// `dns:`, `dns_search:`: one string or a list.
fn one_or_many(value: &Option<Value>, at: &At) -> Result<Vec<String>, Fault> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(v) => Ok(value::one_or_list(v, at)?
            .into_iter()
            .map(|(_, s)| s)
            .collect()),
    }
}

/// Compose's byte sizes: a whole number of bytes, or a number with a unit
/// `b`, `k`, `m`, `g`, `t` (optionally followed by `b`, any case), powers of
/// 1024 as Docker reads them.
pub(crate) fn bytes(value: &Value, at: &At) -> Result<u64, Fault> {
    let bad = |text: &str| {
        at.fault(format!(
            "expected a size like \"512m\", \"1g\" or a number of bytes, got {text:?}"
        ))
    };
    let text = value::string(value, at)?;
    let lower = text.trim().to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits_end);
    let unit = unit.trim();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b').filter(|u| !u.is_empty()))
        .unwrap_or(unit);
    let shift = match unit {
        "" | "b" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return Err(bad(&text)),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || fraction.contains('.') {
        return Err(bad(&text));
    }
    let whole: u128 = whole.parse().map_err(|_| bad(&text))?;
    let mut total = whole << shift;
    if !fraction.is_empty() {
        let digits: u128 = fraction.parse().map_err(|_| bad(&text))?;
        let scale = 10u128
            .checked_pow(u32::try_from(fraction.len()).map_err(|_| bad(&text))?)
            .ok_or_else(|| bad(&text))?;
        total += (digits << shift) / scale;
    }
    u64::try_from(total).map_err(|_| bad(&text))
}

/// `cpus: 0.5` → billionths of a CPU (the Engine's `NanoCpus`).
fn cpus(value: &Value, at: &At) -> Result<u64, Fault> {
    let text = value::string(value, at)?;
    let bad = || {
        at.fault(format!(
            "expected a number of CPUs like 0.5 or 2, got {text:?}"
        ))
    };
    let (whole, fraction) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
    if fraction.len() > 9 || (whole.is_empty() && fraction.is_empty()) {
        return Err(bad());
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let fraction: u64 = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<9}").parse().map_err(|_| bad())?
    };
    whole
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(fraction))
        .ok_or_else(bad)
}

/// `pids_limit`: a whole number, or -1 for no limit.
fn pids(value: &Value, at: &At) -> Result<i64, Fault> {
    let n = match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    match n {
        Some(n) if n >= -1 => Ok(n),
        _ => Err(at.fault(format!(
            "expected a number of processes (or -1 for no limit), got {}",
            value::describe(value)
        ))),
    }
}

/// `expose:` entries (`80`, `"8000-8010"`, `"53/udp"`) as `PORT/PROTO`.
fn expose(value: &Option<Value>, at: &At) -> Result<Vec<String>, Fault> {
    let mut out = Vec::new();
    for item in string_list_or_numbers(value, at)? {
        let (at, text) = item;
        let (range, proto) = match text.split_once('/') {
            Some((r, p)) => (r, ports::protocol(p).map_err(|e| at.fault(e))?),
            None => (text.as_str(), Protocol::Tcp),
        };
        let range = ports::range(range).map_err(|e| at.fault(e))?;
        let proto = match proto {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        for port in range.start..=range.end {
            let key = format!("{port}/{proto}");
            if !out.contains(&key) {
                out.push(key);
            }
        }
    }
    Ok(out)
}

fn string_list_or_numbers(value: &Option<Value>, at: &At) -> Result<Vec<(At, String)>, Fault> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Sequence(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let at = at.index(i);
                value::string(item, &at).map(|s| (at, s))
            })
            .collect(),
        Some(other) => Err(at.fault(format!(
            "expected a list of ports, got {}",
            value::kind_of(other)
        ))),
    }
}

/// `extra_hosts:` as a list of `host:ip` / `host=ip` or a mapping; the
/// result is `host:ip` as the Engine's `ExtraHosts` takes it.
pub(crate) fn extra_hosts(value: &Option<Value>, at: &At) -> Result<Vec<String>, Fault> {
    let check = |host: &str, ip: &str, at: &At| {
        if host.is_empty() || ip.is_empty() {
            return Err(at.fault(format!(
                "expected `HOST:IP` (or `HOST=IP`), got {:?}",
                format!("{host}:{ip}")
            )));
        }
        Ok(format!("{host}:{ip}"))
    };
    let mut out = Vec::new();
    match value {
        None | Some(Value::Null) => {}
        Some(Value::Sequence(items)) => {
            for (i, item) in items.iter().enumerate() {
                let at = at.index(i);
                let text = value::string(item, &at)?;
                // `=` first: an IPv6 address holds `:`.
                let (host, ip) = text
                    .split_once('=')
                    .or_else(|| text.split_once(':'))
                    .ok_or_else(|| at.fault(format!("expected `HOST:IP`, got {text:?}")))?;
                out.push(check(host, ip, &at)?);
            }
        }
        Some(v @ Value::Mapping(_)) => {
            for (host, ip) in value::mapping(v, at)? {
                let at = at.key(&host);
                let ip = value::string(ip, &at)?;
                out.push(check(&host, &ip, &at)?);
            }
        }
        Some(other) => {
            return Err(at.fault(format!(
                "expected a list of HOST:IP or a mapping, got {}",
                value::kind_of(other)
            )))
        }
    }
    Ok(out)
}

fn sysctls(value: &Option<Value>, at: &At) -> Result<BTreeMap<String, String>, Fault> {
    let Some(value) = value else {
        return Ok(BTreeMap::new());
    };
    value::dict_or_list(value, at)?
        .into_iter()
        .map(|(k, v)| match v {
            Some(v) => Ok((k, v)),
            None => Err(at
                .key(&k)
                .fault("expected a value for the kernel parameter")),
        })
        .collect()
}

/// `ulimits: {nofile: {soft: 1024, hard: 4096}, nproc: 512}`.
fn ulimits(value: &Option<Value>, at: &At) -> Result<BTreeMap<String, Ulimit>, Fault> {
    let mut out = BTreeMap::new();
    let Some(value) = value else {
        return Ok(out);
    };
    if value.is_null() {
        return Ok(out);
    }
    let number = |v: &Value, at: &At| -> Result<i64, Fault> {
        match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .ok_or_else(|| {
            at.fault(format!(
                "expected a whole number, got {}",
                value::describe(v)
            ))
        })
    };
    for (name, item) in value::mapping(value, at)? {
        let at = at.key(&name);
        let limit = match item {
            Value::Mapping(_) => {
                #[derive(serde::Deserialize)]
                #[serde(deny_unknown_fields)]
                struct SoftHard {
                    soft: Value,
                    hard: Value,
                }
                let sh: SoftHard = from_value(item, &at)?;
                let soft = number(&sh.soft, &at.key("soft"))?;
                let hard = number(&sh.hard, &at.key("hard"))?;
                if soft > hard {
                    return Err(at.key("soft").fault(format!(
                        "the soft limit {soft} is above the hard limit {hard}"
                    )));
                }
                Ulimit { soft, hard }
            }
            other => {
                let n = number(other, &at)?;
                Ulimit { soft: n, hard: n }
            }
        };
        out.insert(name, limit);
    }
    Ok(out)
}

/// The service key `tmpfs:`: a path or a list of paths, each optionally
/// followed by `:OPTIONS` (`/run:size=64m,mode=1777`).
fn tmpfs(value: &Option<Value>, at: &At) -> Result<BTreeMap<String, String>, Fault> {
    let mut out = BTreeMap::new();
    let Some(value) = value else {
        return Ok(out);
    };
    if value.is_null() {
        return Ok(out);
    }
    for (at, text) in value::one_or_list(value, at)? {
        let (path, options) = text.split_once(':').unwrap_or((text.as_str(), ""));
        if !path.starts_with('/') {
            return Err(at.fault(format!(
                "the container path {path:?} must be absolute (start with `/`)"
            )));
        }
        out.insert(path.to_string(), options.to_string());
    }
    Ok(out)
}

/// `devices:` as `HOST[:CONTAINER[:PERMISSIONS]]`.
fn devices(value: &Option<Value>, at: &At) -> Result<Vec<Device>, Fault> {
    let mut out = Vec::new();
    for (i, text) in string_list(value, at)?.into_iter().enumerate() {
        let at = at.index(i);
        let parts: Vec<&str> = text.split(':').collect();
        let (host, container, permissions) = match parts.as_slice() {
            [h] => (*h, *h, "rwm"),
            [h, c] if c.starts_with('/') => (*h, *c, "rwm"),
            [h, p] => (*h, *h, *p),
            [h, c, p] => (*h, *c, *p),
            _ => {
                return Err(at.fault(format!(
                    "expected a device like \"/dev/ttyUSB0:/dev/ttyUSB0:rwm\", got {text:?}"
                )))
            }
        };
        if !host.starts_with('/') || !container.starts_with('/') {
            return Err(at.fault(format!("device paths must be absolute, got {text:?}")));
        }
        if permissions.is_empty() || !permissions.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(at.fault(format!(
                "device permissions are letters of `rwm`, got {permissions:?}"
            )));
        }
        out.push(Device {
            host: host.to_string(),
            container: container.to_string(),
            permissions: permissions.to_string(),
        });
    }
    Ok(out)
}

/// `pid:`/`ipc:`: one of `allowed`; sharing another container's namespace is
/// refused because rehost does not order services by it.
fn namespace(value: &Value, at: &At, allowed: &[&str]) -> Result<String, Fault> {
    let text = value::string(value, at)?;
    if allowed.contains(&text.as_str()) {
        return Ok(text);
    }
    let why = if text.starts_with("service:") || text.starts_with("container:") {
        " (sharing another container's namespace is not supported by rehost)"
    } else {
        ""
    };
    Err(at.fault(format!(
        "expected {}, got {text:?}{why}",
        allowed
            .iter()
            .map(|a| format!("`{a}`"))
            .collect::<Vec<_>>()
            .join(" or ")
    )))
}

fn logging(raw: &RawLogging, at: &At) -> Result<Logging, Fault> {
    let driver = opt(&raw.driver, &at.key("driver"), value::string)?;
    let mut options = BTreeMap::new();
    if let Some(v) = &raw.options {
        for (k, v) in value::dict_or_list(v, &at.key("options"))? {
            options.insert(k, v.unwrap_or_default());
        }
    }
    Ok(Logging { driver, options })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn sizes_cpus_and_durations() {
        let at = At::root().key("x");
        for (text, want) in [
            ("512m", 512 << 20),
            ("1g", 1 << 30),
            ("1GB", 1 << 30),
            ("64MiB", 64 << 20),
            ("1024", 1024),
            ("100b", 100),
            ("1.5k", 1536),
            ("2 m", 2 << 20),
        ] {
            assert_eq!(bytes(&yaml(&format!("'{text}'")), &at), Ok(want), "{text}");
        }
        assert_eq!(bytes(&yaml("2048"), &at), Ok(2048));
        for bad in ["'x'", "'1q'", "'-1m'", "''", "'1.2.3m'"] {
            assert!(bytes(&yaml(bad), &at).is_err(), "{bad}");
        }
        assert_eq!(cpus(&yaml("0.5"), &at), Ok(500_000_000));
        assert_eq!(cpus(&yaml("'2'"), &at), Ok(2_000_000_000));
        assert_eq!(cpus(&yaml("'.25'"), &at), Ok(250_000_000));
        assert!(cpus(&yaml("'a'"), &at).is_err());
        assert!(cpus(&yaml("'-1'"), &at).is_err());
    }

    #[test]
    fn lists_maps_and_their_errors() {
        let at = At::root().key("s");
        assert_eq!(
            expose(&Some(yaml("[80, '53/udp', '8000-8001']")), &at).unwrap(),
            vec!["80/tcp", "53/udp", "8000/tcp", "8001/tcp"]
        );
        assert!(expose(&Some(yaml("['x']")), &at).is_err());
        assert_eq!(
            extra_hosts(&Some(yaml("['db:10.0.0.2', 'v6=::1']")), &at).unwrap(),
            vec!["db:10.0.0.2", "v6:::1"]
        );
        assert_eq!(
            extra_hosts(&Some(yaml("{db: 10.0.0.2}")), &at).unwrap(),
            vec!["db:10.0.0.2"]
        );
        assert!(extra_hosts(&Some(yaml("['nohost']")), &at).is_err());
        let u = ulimits(
            &Some(yaml("{nproc: 512, nofile: {soft: 1024, hard: 4096}}")),
            &at,
        )
        .unwrap();
        assert_eq!(
            u["nproc"],
            Ulimit {
                soft: 512,
                hard: 512
            }
        );
        assert_eq!(
            u["nofile"],
            Ulimit {
                soft: 1024,
                hard: 4096
            }
        );
        let err = ulimits(&Some(yaml("{nofile: {soft: 9, hard: 4}}")), &at).unwrap_err();
        assert_eq!(err.at.to_string(), "s.nofile.soft");
        let t = tmpfs(&Some(yaml("['/run', '/tmp:size=64m,mode=1777']")), &at).unwrap();
        assert_eq!(t["/run"], "");
        assert_eq!(t["/tmp"], "size=64m,mode=1777");
        assert!(tmpfs(&Some(yaml("'run'")), &at).is_err());
        let d = devices(
            &Some(yaml("['/dev/fuse', '/dev/a:/dev/b:r', '/dev/c:rw']")),
            &at,
        )
        .unwrap();
        assert_eq!(d[0].container, "/dev/fuse");
        assert_eq!(
            (d[1].container.as_str(), d[1].permissions.as_str()),
            ("/dev/b", "r")
        );
        assert_eq!(
            (d[2].container.as_str(), d[2].permissions.as_str()),
            ("/dev/c", "rw")
        );
        assert!(devices(&Some(yaml("['/dev/a:/dev/b:x']")), &at).is_err());
        let err = namespace(&yaml("'service:db'"), &at, &["host"]).unwrap_err();
        assert!(
            err.message.contains("not supported by rehost"),
            "{}",
            err.message
        );
    }
}
