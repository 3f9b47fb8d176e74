//! `ports:` entries, short (`"127.0.0.1:35000-35100:80/tcp"`) and long
//! (`{ target: 80, published: "8080", host_ip: 127.0.0.1, protocol: udp }`).
//!
//! Invariants of every [`Port`] returned: ports are 1..=65535, ranges are not
//! reversed, and when both sides are ranges of more than one port they have
//! the same length (mapped pairwise); a host range with a single container
//! port is allowed (each replica gets one free host port of it).

use std::net::IpAddr;

use serde::Deserialize;
use serde_yaml::Value;

use super::error::{At, Fault};
use super::value::{self, from_value};
use crate::stack::model::{Port, PortRange, Protocol};

/// One `ports:` item.
pub(crate) fn parse(value: &Value, at: &At) -> Result<Port, Fault> {
    match value {
        Value::Mapping(_) => long(value, at),
        Value::Number(_) | Value::String(_) => {
            let text = value::string(value, at)?;
            short(&text).map_err(|msg| at.fault(msg))
        }
        other => Err(at.fault(format!(
            "expected a port like \"8080:80\" or a mapping with `target:`, got {}",
            value::kind_of(other)
        ))),
    }
}

/// `[[HOST_IP:][HOST[-END]]:]CONTAINER[-END][/PROTOCOL]`; an IPv6 host IP is
/// written in brackets (`[::1]:80:80`) or bare (`::1:80:80`), as Compose
/// accepts both.
pub(crate) fn short(text: &str) -> Result<Port, String> {
    let expected = |why: &str| {
        format!("{why}: expected a port like \"80\", \"8080:80\", \"127.0.0.1:8080:80/udp\" or \"35000-35100:80\", got {text:?}")
    };
    let (spec, protocol) = match text.rsplit_once('/') {
        Some((spec, proto)) => (spec, protocol(proto).map_err(|e| expected(&e))?),
        None => (text, Protocol::Tcp),
    };
    let (ip, rest) = match spec.strip_prefix('[') {
        Some(bracketed) => {
            let (ip, rest) = bracketed
                .split_once(']')
                .ok_or_else(|| expected("unclosed `[`"))?;
            let rest = rest
                .strip_prefix(':')
                .ok_or_else(|| expected("expected `:` after the bracketed IP"))?;
            (Some(ip), rest)
        }
        None => (None, spec),
    };
    let mut parts: Vec<&str> = rest.rsplitn(3, ':').collect();
    parts.reverse();
    let (ip, host, container) = match (ip, parts.as_slice()) {
        (None, [container]) => (None, None, *container),
        (None, [host, container]) => (None, Some(*host), *container),
        (None, [ip, host, container]) => (Some(*ip), Some(*host), *container),
        (Some(ip), [host, container]) => (Some(ip), Some(*host), *container),
        _ => return Err(expected("too many `:`")),
    };
    let host_ip = match ip {
        None => None,
        Some(ip) => Some(
            ip.parse::<IpAddr>()
                .map_err(|_| expected(&format!("{ip:?} is not an IP address")))?,
        ),
    };
    let container = range(container).map_err(|e| expected(&e))?;
    // `127.0.0.1::80`: an IP but no host port, i.e. an ephemeral one.
    let host = match host {
        None | Some("") => None,
        Some(h) => Some(range(h).map_err(|e| expected(&e))?),
    };
    check_lengths(host, container).map_err(|e| expected(&e))?;
    Ok(Port {
        host_ip,
        host,
        container,
        protocol,
    })
}

pub(crate) fn protocol(text: &str) -> Result<Protocol, String> {
    match text {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        other => Err(format!("protocol {other:?} is not tcp or udp")),
    }
}

/// `80` or `8000-8010`.
pub(crate) fn range(text: &str) -> Result<PortRange, String> {
    let number = |s: &str| -> Result<u16, String> {
        match s.parse::<u16>() {
            Ok(0) | Err(_) => Err(format!("{s:?} is not a port number (1-65535)")),
            Ok(n) if s.starts_with('+') => Err(format!("{n:?} is written with a sign")),
            Ok(n) => Ok(n),
        }
    };
    let (start, end) = match text.split_once('-') {
        Some((a, b)) => (number(a)?, number(b)?),
        None => {
            let n = number(text)?;
            (n, n)
        }
    };
    if start > end {
        return Err(format!("the range {text:?} ends before it starts"));
    }
    Ok(PortRange { start, end })
}

fn len(r: PortRange) -> u32 {
    u32::from(r.end) - u32::from(r.start) + 1
}

fn check_lengths(host: Option<PortRange>, container: PortRange) -> Result<(), String> {
    match host {
        Some(h) if len(container) > 1 && len(h) != len(container) => Err(format!(
            "the host range has {} ports and the container range {}; they must be equal",
            len(h),
            len(container)
        )),
        _ => Ok(()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLong {
    target: Option<Value>,
    published: Option<Value>,
    host_ip: Option<Value>,
    protocol: Option<Value>,
    mode: Option<Value>,
}

fn long(value: &Value, at: &At) -> Result<Port, Fault> {
    let raw: RawLong = from_value(value, at)?;
    let target = raw
        .target
        .as_ref()
        .ok_or_else(|| at.fault("missing required key `target` (the container port)"))?;
    let at_target = at.key("target");
    let container = range(&value::string(target, &at_target)?).map_err(|e| at_target.fault(e))?;
    let host = match &raw.published {
        None | Some(Value::Null) => None,
        Some(p) => {
            let at = at.key("published");
            Some(range(&value::string(p, &at)?).map_err(|e| at.fault(e))?)
        }
    };
    let host_ip = match &raw.host_ip {
        None => None,
        Some(ip) => {
            let at = at.key("host_ip");
            let text = value::string(ip, &at)?;
            Some(
                text.parse::<IpAddr>()
                    .map_err(|_| at.fault(format!("expected an IP address, got {text:?}")))?,
            )
        }
    };
    let protocol = match &raw.protocol {
        None => Protocol::Tcp,
        Some(p) => {
            let at = at.key("protocol");
            protocol(&value::string(p, &at)?).map_err(|e| at.fault(e))?
        }
    };
    if let Some(mode) = &raw.mode {
        let at = at.key("mode");
        // `host` is what a single Engine does anyway; `ingress` needs Swarm.
        let mode = value::string(mode, &at)?;
        if mode != "host" {
            return Err(at.fault(format!(
                "only `mode: host` is supported by rehost (no Swarm routing mesh), got {mode:?}"
            )));
        }
    }
    check_lengths(host, container).map_err(|e| at.fault(e))?;
    Ok(Port {
        host_ip,
        host,
        container,
        protocol,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn r(start: u16, end: u16) -> PortRange {
        PortRange { start, end }
    }

    fn port(ip: Option<IpAddr>, host: Option<PortRange>, container: PortRange, udp: bool) -> Port {
        Port {
            host_ip: ip,
            host,
            container,
            protocol: if udp { Protocol::Udp } else { Protocol::Tcp },
        }
    }

    #[test]
    fn short_forms() {
        let lo = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let v6 = Some(IpAddr::V6(Ipv6Addr::LOCALHOST));
        let table: &[(&str, Port)] = &[
            ("80", port(None, None, r(80, 80), false)),
            ("8080:80", port(None, Some(r(8080, 8080)), r(80, 80), false)),
            ("53:53/udp", port(None, Some(r(53, 53)), r(53, 53), true)),
            (
                "127.0.0.1:8080:80",
                port(lo, Some(r(8080, 8080)), r(80, 80), false),
            ),
            ("127.0.0.1::80", port(lo, None, r(80, 80), false)),
            (
                "35000-35100:80",
                port(None, Some(r(35000, 35100)), r(80, 80), false),
            ),
            (
                "8000-8002:80-82/tcp",
                port(None, Some(r(8000, 8002)), r(80, 82), false),
            ),
            ("9000-9001", port(None, None, r(9000, 9001), false)),
            ("[::1]:80:80", port(v6, Some(r(80, 80)), r(80, 80), false)),
            ("::1:80:80/udp", port(v6, Some(r(80, 80)), r(80, 80), true)),
            ("65535:1", port(None, Some(r(65535, 65535)), r(1, 1), false)),
        ];
        for (text, want) in table {
            assert_eq!(short(text).as_ref(), Ok(want), "input {text:?}");
        }
    }

    #[test]
    fn bad_short_forms_say_why() {
        let table: &[(&str, &str)] = &[
            ("0", "not a port number"),
            ("65536:80", "not a port number"),
            ("http", "not a port number"),
            ("", "not a port number"),
            ("80/sctp", "not tcp or udp"),
            ("90-80:80", "ends before it starts"),
            ("8000-8001:80-82", "must be equal"),
            ("8000:80-81", "must be equal"),
            ("1.2.3:80:80", "not an IP address"),
            ("[::1:80:80", "unclosed `[`"),
            ("[::1]80:80", "expected `:`"),
            ("a:b:c:d", "not an IP address"),
            ("+80", "with a sign"),
        ];
        for (text, why) in table {
            let err = short(text).unwrap_err();
            assert!(err.contains(why), "input {text:?}: {err}");
            assert!(err.contains("35000-35100:80"), "input {text:?}: {err}");
        }
    }

    #[test]
    fn long_form() {
        let at = At::root().key("ports").index(0);
        let v: Value = serde_yaml::from_str(
            "{target: 80, published: '8000-8010', host_ip: 127.0.0.1, protocol: udp, mode: host}",
        )
        .unwrap();
        assert_eq!(
            parse(&v, &at),
            Ok(port(
                Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                Some(r(8000, 8010)),
                r(80, 80),
                true
            ))
        );
        let v: Value = serde_yaml::from_str("{target: '90'}").unwrap();
        assert_eq!(parse(&v, &at), Ok(port(None, None, r(90, 90), false)));
        let v: Value = serde_yaml::from_str("8080").unwrap();
        assert_eq!(parse(&v, &at), Ok(port(None, None, r(8080, 8080), false)));
    }

    #[test]
    fn bad_long_forms_name_the_key() {
        let at = At::root().key("ports").index(1);
        let err = |text: &str| parse(&serde_yaml::from_str(text).unwrap(), &at).unwrap_err();
        let e = err("{published: 80}");
        assert_eq!(e.at.to_string(), "ports[1]");
        assert!(e.message.contains("`target`"), "{}", e.message);
        let e = err("{target: 0}");
        assert_eq!(e.at.to_string(), "ports[1].target");
        let e = err("{target: 80, mode: ingress}");
        assert_eq!(e.at.to_string(), "ports[1].mode");
        let e = err("{target: 80, app_protocol: http}");
        assert_eq!(e.at.to_string(), "ports[1].app_protocol");
        assert!(
            e.message.contains("not supported by rehost"),
            "{}",
            e.message
        );
        let e = err("{target: 80, host_ip: localhost}");
        assert_eq!(e.at.to_string(), "ports[1].host_ip");
        let e = err("[80]");
        assert!(e.message.contains("got a list"), "{}", e.message);
    }
}
