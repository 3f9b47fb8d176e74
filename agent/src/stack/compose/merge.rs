//! Compose's override rules: merging a later compose file (or a service
//! onto the one it `extends`) into an earlier one, on YAML trees that are
//! already interpolated.
//!
//! The rules (Compose's, per key of a service):
//! - scalars and `command`, `entrypoint`, `healthcheck.test`: the later
//!   value replaces the earlier;
//! - `environment`, `labels`, `sysctls`, `build.args`, `build.labels`,
//!   `extra_hosts` in map form, `depends_on`, `networks`: read as mappings
//!   (a list becomes a mapping) and merged key by key, later wins;
//! - `ports`, `expose`, `cap_add`, `cap_drop`, `dns`, `dns_search`,
//!   `security_opt`, `tmpfs`, `links`, `extra_hosts` (list form),
//!   `group_add`, `profiles`, `env_file`: concatenated, without repeating an
//!   entry;
//! - `volumes`, `devices`: merged by the path in the container (a later
//!   entry for the same path replaces the earlier one); `secrets`,
//!   `configs`: by `source`;
//! - any other mapping (`build`, `deploy`, `healthcheck`, `logging`,
//!   `ulimits`, …): merged key by key with these same rules.
//!
//! Invariant: merging never fails; what the result means is checked by the
//! loader's later stages, like a single file.

use serde_yaml::{Mapping, Value};

/// Merges the top level of a later file `over` into `base`.
pub(crate) fn merge_files(base: &mut Value, over: Value) {
    let (Value::Mapping(base), Value::Mapping(over)) = (base, over) else {
        return;
    };
    for (key, value) in over {
        let section = key.as_str().unwrap_or_default().to_string();
        match (base.get_mut(&key), value) {
            (Some(Value::Mapping(entries)), Value::Mapping(more))
                if matches!(
                    section.as_str(),
                    "services" | "networks" | "volumes" | "secrets" | "configs"
                ) =>
            {
                for (name, entry) in more {
                    match (entries.get_mut(&name), entry) {
                        (Some(Value::Mapping(old)), Value::Mapping(new))
                            if section == "services" =>
                        {
                            merge_service(old, new)
                        }
                        (Some(old @ Value::Mapping(_)), new @ Value::Mapping(_)) => {
                            merge_mapping(old, new)
                        }
                        (_, new) => {
                            entries.insert(name, new);
                        }
                    }
                }
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

const MAPPING_KEYS: &[&str] = &["environment", "labels", "sysctls", "depends_on", "networks"];
const UNIQUE_LIST_KEYS: &[&str] = &[
    "ports",
    "expose",
    "cap_add",
    "cap_drop",
    "dns",
    "dns_search",
    "security_opt",
    "tmpfs",
    "links",
    "group_add",
    "profiles",
    "env_file",
];

/// Merges service `over` onto service `base`.
pub(crate) fn merge_service(base: &mut Mapping, over: Mapping) {
    for (key, value) in over {
        let name = key.as_str().unwrap_or_default().to_string();
        let Some(old) = base.get_mut(&key) else {
            base.insert(key, value);
            continue;
        };
        match name.as_str() {
            "command" | "entrypoint" => *old = value,
            "build" => {
                let mut merged = build_mapping(std::mem::take(old));
                let Value::Mapping(b) = &mut merged else {
                    continue;
                };
                let Value::Mapping(new) = build_mapping(value) else {
                    continue;
                };
                for (k, v) in new {
                    match (k.as_str(), b.get_mut(&k)) {
                        (Some("args" | "labels"), Some(o)) => {
                            *o = Value::Mapping(merged_dicts(std::mem::take(o), v))
                        }
                        (Some("extra_hosts"), Some(o)) => *o = union(std::mem::take(o), v),
                        _ => {
                            b.insert(k, v);
                        }
                    }
                }
                *old = merged;
            }
            "extra_hosts" if old.is_mapping() || value.is_mapping() => {
                *old = Value::Mapping(merged_dicts(std::mem::take(old), value))
            }
            "extra_hosts" => *old = union(std::mem::take(old), value),
            k if MAPPING_KEYS.contains(&k) => {
                *old = Value::Mapping(merged_dicts(std::mem::take(old), value))
            }
            k if UNIQUE_LIST_KEYS.contains(&k) => *old = union(std::mem::take(old), value),
            "volumes" | "devices" => *old = by_key(std::mem::take(old), value, mount_target),
            "secrets" | "configs" => *old = by_key(std::mem::take(old), value, secret_source),
            "healthcheck" => {
                // `test` is a command: replaced, never merged item by item.
                if let (Value::Mapping(o), Value::Mapping(n)) = (&mut *old, value.clone()) {
                    for (k, v) in n {
                        o.insert(k, v);
                    }
                } else {
                    *old = value;
                }
            }
            _ => merge_mapping(old, value),
        }
    }
}

/// Mappings merged key by key (recursively); anything else replaced.
fn merge_mapping(old: &mut Value, new: Value) {
    match (old, new) {
        (Value::Mapping(o), Value::Mapping(n)) => {
            for (k, v) in n {
                match o.get_mut(&k) {
                    Some(existing) => merge_mapping(existing, v),
                    None => {
                        o.insert(k, v);
                    }
                }
            }
        }
        (old, new) => *old = new,
    }
}

/// `build: ./dir` as `{context: ./dir}`.
fn build_mapping(value: Value) -> Value {
    match value {
        Value::String(_) => {
            let mut m = Mapping::new();
            m.insert(Value::String("context".into()), value);
            Value::Mapping(m)
        }
        other => other,
    }
}

/// A list of `KEY=VALUE` / `KEY` / `HOST:IP` (or a mapping) as a mapping;
/// the later of two entries for a key wins.
fn as_dict(value: Value) -> Mapping {
    match value {
        Value::Mapping(m) => m,
        Value::Sequence(items) => {
            let mut m = Mapping::new();
            for item in items {
                match item {
                    Value::String(s) => {
                        let (k, v) = match s.split_once('=') {
                            Some((k, v)) => (k.to_string(), Value::String(v.to_string())),
                            None => (s.clone(), Value::Null),
                        };
                        m.insert(Value::String(k), v);
                    }
                    other => {
                        m.insert(other, Value::Null);
                    }
                }
            }
            m
        }
        _ => Mapping::new(),
    }
}

fn merged_dicts(old: Value, new: Value) -> Mapping {
    let mut m = as_dict(old);
    for (k, v) in as_dict(new) {
        m.insert(k, v);
    }
    m
}

fn as_list(value: Value) -> Vec<Value> {
    match value {
        Value::Sequence(items) => items,
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

fn union(old: Value, new: Value) -> Value {
    let mut out = as_list(old);
    for item in as_list(new) {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    Value::Sequence(out)
}

/// Lists whose entries are identified by `key`: a later entry replaces an
/// earlier one with the same identity, others are appended.
fn by_key(old: Value, new: Value, key: fn(&Value) -> Option<String>) -> Value {
    let mut out = as_list(old);
    for item in as_list(new) {
        let id = key(&item);
        match out.iter().position(|o| id.is_some() && key(o) == id) {
            Some(i) => out[i] = item,
            None => out.push(item),
        }
    }
    Value::Sequence(out)
}

/// The container path of a `volumes:`/`devices:` entry.
fn mount_target(item: &Value) -> Option<String> {
    match item {
        Value::String(s) => {
            let parts: Vec<&str> = s.split(':').collect();
            match parts.as_slice() {
                [target] => Some((*target).to_string()),
                [_, target] | [_, target, _] => Some((*target).to_string()),
                _ => None,
            }
        }
        Value::Mapping(m) => m.get("target").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

fn secret_source(item: &Value) -> Option<String> {
    match item {
        Value::String(s) => Some(s.clone()),
        Value::Mapping(m) => m.get("source").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn override_rules_per_key() {
        let mut base = yaml(
            "
services:
  web:
    image: a
    command: [x, y]
    environment: [A=1, B=2]
    labels: {l: '1'}
    ports: ['80:80']
    volumes: ['./a:/data', '/cache']
    secrets: [s1, {source: s2, target: t}]
    build: ./web
    depends_on: [db]
    healthcheck: {test: [CMD, a, b], interval: 5s}
    deploy: {resources: {limits: {memory: 1g}}}
  db:
    image: d
networks:
  n: {driver: bridge}
",
        );
        let over = yaml(
            "
services:
  web:
    image: b
    command: [z]
    environment: {B: '3', C: '4'}
    ports: ['80:80', '443:443']
    volumes: ['./b:/data']
    secrets: [{source: s2, target: u}]
    build: {args: {V: '1'}}
    depends_on: {cache: {condition: service_healthy}}
    healthcheck: {test: [CMD, c]}
    deploy: {resources: {limits: {cpus: '1'}}}
  cache:
    image: c
networks:
  n: {internal: true}
",
        );
        merge_files(&mut base, over);
        let want = yaml(
            "
services:
  web:
    image: b
    command: [z]
    environment: {A: '1', B: '3', C: '4'}
    labels: {l: '1'}
    ports: ['80:80', '443:443']
    volumes: ['./b:/data', '/cache']
    secrets: [s1, {source: s2, target: u}]
    build: {context: ./web, args: {V: '1'}}
    depends_on: {db: null, cache: {condition: service_healthy}}
    healthcheck: {test: [CMD, c], interval: 5s}
    deploy: {resources: {limits: {memory: 1g, cpus: '1'}}}
  db:
    image: d
  cache:
    image: c
networks:
  n: {driver: bridge, internal: true}
",
        );
        assert_eq!(base, want);
    }
}
