//! Top-level `networks:` and `volumes:` → [`Network`] and [`Volume`].
//!
//! Invariants of the result:
//! - Engine names are `<project>_<key>` unless `name:` is given; an external
//!   network or volume is named `name:` or its key, never prefixed, and
//!   carries no settings of its own (it is made by someone else);
//! - every subnet is a valid CIDR, every gateway lies inside its subnet.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use serde_yaml::Value;

use super::error::{At, Fault};
use super::raw::{RawNetwork, RawVolume};
use super::value;
use crate::stack::model::{Network, Subnet, Volume};

pub(crate) fn network(
    project: &str,
    key: &str,
    raw: Option<RawNetwork>,
    at: &At,
) -> Result<Network, Fault> {
    let raw = raw.unwrap_or_default();
    let external = external(&raw.external, &at.key("external"))?;
    let given = optional_string(&raw.name, &at.key("name"))?;
    if external {
        let settings = [
            ("driver", raw.driver.is_some()),
            ("internal", raw.internal.is_some()),
            ("ipam", raw.ipam.is_some()),
            ("labels", raw.labels.is_some()),
        ];
        if let Some((key, _)) = settings.iter().find(|(_, set)| *set) {
            return Err(at.key(key).fault(format!(
                "an external network is made elsewhere: `{key}` cannot be set with `external: true`"
            )));
        }
    }
    let name = match (given, external) {
        (Some(name), _) => name,
        (None, true) => key.to_string(),
        (None, false) => format!("{project}_{key}"),
    };
    let driver =
        optional_string(&raw.driver, &at.key("driver"))?.unwrap_or_else(|| "bridge".to_string());
    let internal = match &raw.internal {
        None | Some(Value::Null) => false,
        Some(v) => value::boolean(v, &at.key("internal"))?,
    };
    let mut subnets = Vec::new();
    if let Some(ipam) = raw.ipam {
        let at = at.key("ipam");
        if let Some(driver) = optional_string(&ipam.driver, &at.key("driver"))? {
            if driver != "default" {
                return Err(at.key("driver").fault(format!(
                    "only the `default` IPAM driver is supported by rehost, got {driver:?}"
                )));
            }
        }
        for (i, config) in ipam.config.unwrap_or_default().into_iter().enumerate() {
            let at = at.key("config").index(i);
            let subnet_at = at.key("subnet");
            let text = optional_string(&config.subnet, &subnet_at)?
                .ok_or_else(|| at.fault("missing required key `subnet`"))?;
            let (net, prefix) = cidr(&text).map_err(|e| subnet_at.fault(e))?;
            let gateway_at = at.key("gateway");
            let gateway = match optional_string(&config.gateway, &gateway_at)? {
                None => None,
                Some(g) => {
                    let ip = g.parse::<IpAddr>().map_err(|_| {
                        gateway_at.fault(format!("expected an IP address, got {g:?}"))
                    })?;
                    if !contains(net, prefix, ip) {
                        return Err(
                            gateway_at.fault(format!("{ip} is not inside the subnet {text}"))
                        );
                    }
                    Some(ip)
                }
            };
            subnets.push(Subnet {
                subnet: text,
                gateway,
            });
        }
    }
    let labels = value::labels(&raw.labels, &at.key("labels"))?;
    Ok(Network {
        name,
        external,
        driver,
        internal,
        subnets,
        labels,
    })
}

pub(crate) fn volume(
    project: &str,
    key: &str,
    raw: Option<RawVolume>,
    at: &At,
) -> Result<Volume, Fault> {
    let raw = raw.unwrap_or_default();
    let external = external(&raw.external, &at.key("external"))?;
    if external {
        let settings = [
            ("driver", raw.driver.is_some()),
            ("driver_opts", raw.driver_opts.is_some()),
            ("labels", raw.labels.is_some()),
        ];
        if let Some((key, _)) = settings.iter().find(|(_, set)| *set) {
            return Err(at.key(key).fault(format!(
                "an external volume is made elsewhere: `{key}` cannot be set with `external: true`"
            )));
        }
    }
    let name = match (optional_string(&raw.name, &at.key("name"))?, external) {
        (Some(name), _) => name,
        (None, true) => key.to_string(),
        (None, false) => format!("{project}_{key}"),
    };
    let driver =
        optional_string(&raw.driver, &at.key("driver"))?.unwrap_or_else(|| "local".to_string());
    let driver_opts = match &raw.driver_opts {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(v) => {
            let at = at.key("driver_opts");
            value::mapping(v, &at)?
                .into_iter()
                .map(|(k, v)| {
                    let s = value::string(v, &at.key(&k))?;
                    Ok((k, s))
                })
                .collect::<Result<_, Fault>>()?
        }
    };
    let labels = value::labels(&raw.labels, &at.key("labels"))?;
    Ok(Volume {
        name,
        external,
        driver,
        driver_opts,
        labels,
    })
}

fn external(value: &Option<Value>, at: &At) -> Result<bool, Fault> {
    match value {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Mapping(_)) => Err(at.fault(
            "the `external: { name: ... }` form is obsolete; write `external: true` and `name: ...`",
        )),
        Some(v) => value::boolean(v, at),
    }
}

fn optional_string(value: &Option<Value>, at: &At) -> Result<Option<String>, Fault> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => value::string(v, at).map(Some),
    }
}

/// `172.28.0.0/16` or `fd00::/64`.
pub(crate) fn cidr(text: &str) -> Result<(IpAddr, u8), String> {
    let bad = || format!("expected a subnet in CIDR notation like 172.28.0.0/16, got {text:?}");
    let (ip, prefix) = text.split_once('/').ok_or_else(bad)?;
    let ip: IpAddr = ip.parse().map_err(|_| bad())?;
    // Plain decimal only: `/08` or `/+8` are typos, not prefixes.
    if prefix.is_empty()
        || !prefix.bytes().all(|b| b.is_ascii_digit())
        || (prefix.len() > 1 && prefix.starts_with('0'))
    {
        return Err(bad());
    }
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(bad());
    }
    Ok((ip, prefix))
}

/// Whether `ip` lies inside `net/prefix` (of the same family).
pub(crate) fn contains(net: IpAddr, prefix: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(net), IpAddr::V4(ip)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(net) & mask == u32::from(ip) & mask
        }
        (IpAddr::V6(net), IpAddr::V6(ip)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(net) & mask == u128::from(ip) & mask
        }
        _ => false,
    }
}

/// Whether `ip` lies in one of a network's IPv4 subnets.
pub(crate) fn in_subnets(network: &Network, ip: Ipv4Addr) -> bool {
    network
        .subnets
        .iter()
        .any(|s| cidr(&s.subnet).is_ok_and(|(net, prefix)| contains(net, prefix, IpAddr::V4(ip))))
}

#[cfg(test)]
mod tests {
    use super::super::value::from_value;
    use super::*;

    fn net(text: &str) -> Result<Network, Fault> {
        let at = At::root().key("networks").key("front");
        let value: Value = serde_yaml::from_str(text).unwrap();
        let raw: Option<RawNetwork> = if value.is_null() {
            None
        } else {
            Some(from_value(&value, &at)?)
        };
        network("site", "front", raw, &at)
    }

    #[test]
    fn network_forms() {
        let n = net("~").unwrap();
        assert_eq!(
            n,
            Network {
                name: "site_front".to_string(),
                external: false,
                driver: "bridge".to_string(),
                internal: false,
                subnets: vec![],
                labels: BTreeMap::new(),
            }
        );
        let n = net("{external: true, name: traefik}").unwrap();
        assert_eq!((n.name.as_str(), n.external), ("traefik", true));
        let n = net("{external: true}").unwrap();
        assert_eq!(n.name, "front");
        let n = net("{name: shared, internal: true, driver: bridge, labels: [a=b], ipam: {config: [{subnet: 172.28.0.0/16, gateway: 172.28.0.1}, {subnet: 'fd00::/64'}]}}").unwrap();
        assert_eq!(n.name, "shared");
        assert!(n.internal);
        assert_eq!(n.labels.get("a").map(String::as_str), Some("b"));
        assert_eq!(
            n.subnets,
            vec![
                Subnet {
                    subnet: "172.28.0.0/16".to_string(),
                    gateway: Some("172.28.0.1".parse().unwrap())
                },
                Subnet {
                    subnet: "fd00::/64".to_string(),
                    gateway: None
                }
            ]
        );
        assert!(in_subnets(&n, "172.28.3.4".parse().unwrap()));
        assert!(!in_subnets(&n, "172.29.0.1".parse().unwrap()));
    }

    #[test]
    fn bad_networks_name_the_key() {
        let table: &[(&str, &str, &str)] = &[
            (
                "{external: true, driver: overlay}",
                "networks.front.driver",
                "external",
            ),
            (
                "{external: {name: x}}",
                "networks.front.external",
                "obsolete",
            ),
            (
                "{ipam: {config: [{subnet: 172.28.0.0}]}}",
                "networks.front.ipam.config[0].subnet",
                "CIDR",
            ),
            (
                "{ipam: {config: [{subnet: 172.28.0.0/33}]}}",
                "networks.front.ipam.config[0].subnet",
                "CIDR",
            ),
            (
                "{ipam: {config: [{subnet: 10.0.0.0/8, gateway: 11.0.0.1}]}}",
                "networks.front.ipam.config[0].gateway",
                "not inside",
            ),
            (
                "{ipam: {config: [{gateway: 10.0.0.1}]}}",
                "networks.front.ipam.config[0]",
                "`subnet`",
            ),
            (
                "{ipam: {driver: dhcp}}",
                "networks.front.ipam.driver",
                "`default`",
            ),
            (
                "{attachable: true}",
                "networks.front.attachable",
                "not supported by rehost",
            ),
            (
                "{internal: maybe}",
                "networks.front.internal",
                "true or false",
            ),
        ];
        for (text, key, why) in table {
            let err = net(text).unwrap_err();
            assert_eq!(err.at.to_string(), *key, "input {text}");
            assert!(err.message.contains(why), "input {text}: {}", err.message);
        }
    }

    #[test]
    fn volumes() {
        let at = At::root().key("volumes").key("db");
        let v = volume("site", "db", None, &at).unwrap();
        assert_eq!(
            (v.name.as_str(), v.driver.as_str(), v.external),
            ("site_db", "local", false)
        );
        let raw: RawVolume =
            from_value(&serde_yaml::from_str("{external: true}").unwrap(), &at).unwrap();
        let v = volume("site", "db", Some(raw), &at).unwrap();
        assert_eq!((v.name.as_str(), v.external), ("db", true));
        let raw: RawVolume = from_value(
            &serde_yaml::from_str("{driver_opts: {type: none, o: bind}}").unwrap(),
            &at,
        )
        .unwrap();
        let v = volume("site", "db", Some(raw), &at).unwrap();
        assert_eq!(v.driver_opts.get("o").map(String::as_str), Some("bind"));
        let raw: RawVolume = from_value(
            &serde_yaml::from_str("{external: true, driver: x}").unwrap(),
            &at,
        )
        .unwrap();
        assert_eq!(
            volume("site", "db", Some(raw), &at)
                .unwrap_err()
                .at
                .to_string(),
            "volumes.db.driver"
        );
    }

    #[test]
    fn cidr_and_contains() {
        assert!(cidr("10.0.0.0/8").is_ok());
        assert!(cidr("10.0.0.0/08").is_err());
        assert!(cidr("10.0.0.0/").is_err());
        assert!(cidr("/8").is_err());
        let (net, p) = cidr("0.0.0.0/0").unwrap();
        assert!(contains(net, p, "1.2.3.4".parse().unwrap()));
        let (net, p) = cidr("10.1.2.3/32").unwrap();
        assert!(contains(net, p, "10.1.2.3".parse().unwrap()));
        assert!(!contains(net, p, "10.1.2.4".parse().unwrap()));
        assert!(!contains(net, p, "::1".parse().unwrap()));
    }
}
