//! The reconcile plan: a pure function of what the project wants (services,
//! replicas, config hashes, dependencies) and what the Engine has (the
//! project's containers and their labels) to the actions that make them
//! agree. No I/O here; `apply` carries the plan out.
//!
//! Rules:
//! - a replica without a container is created; one whose config hash differs
//!   (or is not known yet because its image is about to be built) is
//!   recreated; one that matches but is not running is started; one that
//!   matches and runs is kept;
//! - containers of services that are no longer in the project, replicas
//!   above the wanted count and duplicates of one replica are removed, first,
//!   so that their ports, addresses and names are free;
//! - services come in `depends_on` order (file order among equals);
//! - a kept service that depends on a recreated one is restarted (Compose
//!   leaves it talking to a container that no longer exists); one that shares
//!   a recreated service's network namespace is recreated.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

/// One service as `up` wants it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub service: String,
    pub replicas: u32,
    /// `None`: not known before its image is built (dry run); counts as changed.
    pub hash: Option<String>,
    /// Services this one depends on that are in the project.
    pub depends_on: Vec<String>,
    /// `network_mode: service:NAME`.
    pub network_of: Option<String>,
}

/// One of the project's containers as the Engine reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub id: String,
    pub name: String,
    pub service: String,
    /// `None` when the label is missing or not a number.
    pub number: Option<u32>,
    pub hash: String,
    pub running: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Create {
        service: String,
        number: u32,
    },
    Recreate {
        service: String,
        number: u32,
        old: Observed,
        reason: String,
    },
    Start {
        service: String,
        number: u32,
        id: String,
    },
    Restart {
        service: String,
        number: u32,
        id: String,
        reason: String,
    },
    Keep {
        service: String,
        number: u32,
        id: String,
    },
    Remove {
        old: Observed,
        reason: String,
    },
}

impl Action {
    pub fn service(&self) -> &str {
        match self {
            Action::Create { service, .. }
            | Action::Recreate { service, .. }
            | Action::Start { service, .. }
            | Action::Restart { service, .. }
            | Action::Keep { service, .. } => service,
            Action::Remove { old, .. } => &old.service,
        }
    }

    /// Whether it changes anything.
    pub fn is_change(&self) -> bool {
        !matches!(self, Action::Keep { .. })
    }
}

/// What `up` does, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Services in start order.
    pub order: Vec<String>,
}

impl Plan {
    pub fn changes(&self) -> usize {
        self.actions.iter().filter(|a| a.is_change()).count()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("depends_on has a cycle through: {}", .0.join(", "))]
pub struct Cycle(pub Vec<String>);

/// Computes the plan (see the module header). `project` names the containers
/// in messages (`<project>-<service>-<n>`).
pub fn plan(project: &str, desired: &[Desired], observed: &[Observed]) -> Result<Plan, Cycle> {
    let order = start_order(desired)?;
    let by_name: HashMap<&str, &Desired> =
        desired.iter().map(|d| (d.service.as_str(), d)).collect();

    // Pick, per (service, number), the container to reconcile; the rest go.
    let mut removals = Vec::new();
    let mut slots: BTreeMap<(String, u32), Observed> = BTreeMap::new();
    let mut sorted: Vec<&Observed> = observed.iter().collect();
    // Running ones first, so a duplicate that is stopped is the one removed.
    sorted.sort_by_key(|o| (!o.running, o.name.clone()));
    for o in sorted {
        let Some(d) = by_name.get(o.service.as_str()) else {
            removals.push(Action::Remove {
                old: o.clone(),
                reason: format!("orphan: service `{}` is not in the project", o.service),
            });
            continue;
        };
        match o.number {
            Some(n) if n >= 1 && n <= d.replicas => {
                let key = (o.service.clone(), n);
                match slots.entry(key) {
                    std::collections::btree_map::Entry::Occupied(_) => {
                        removals.push(Action::Remove {
                            old: o.clone(),
                            reason: format!("duplicate of {}-{}-{n}", project, o.service),
                        })
                    }
                    std::collections::btree_map::Entry::Vacant(v) => {
                        v.insert(o.clone());
                    }
                }
            }
            Some(n) => removals.push(Action::Remove {
                old: o.clone(),
                reason: format!("scaled down: replica {n} of {}", d.replicas),
            }),
            None => removals.push(Action::Remove {
                old: o.clone(),
                reason: "no container number label".to_string(),
            }),
        }
    }
    removals.sort_by(|a, b| match (a, b) {
        (Action::Remove { old: x, .. }, Action::Remove { old: y, .. }) => x.name.cmp(&y.name),
        _ => std::cmp::Ordering::Equal,
    });

    let mut actions = removals;
    let mut recreated: HashSet<String> = HashSet::new();
    for name in &order {
        let Some(d) = by_name.get(name.as_str()) else {
            continue;
        };
        let mut deps_recreated: Vec<&str> = d
            .depends_on
            .iter()
            .filter(|dep| recreated.contains(dep.as_str()))
            .map(String::as_str)
            .collect();
        deps_recreated.dedup();
        let netns_recreated = d
            .network_of
            .as_ref()
            .filter(|n| recreated.contains(n.as_str()));
        for number in 1..=d.replicas {
            let service = d.service.clone();
            let action = match slots.remove(&(d.service.clone(), number)) {
                None => Action::Create { service, number },
                Some(old) if d.hash.as_deref() != Some(old.hash.as_str()) => {
                    let reason = if d.hash.is_none() {
                        "image to be built".to_string()
                    } else {
                        "config or image changed".to_string()
                    };
                    Action::Recreate {
                        service,
                        number,
                        old,
                        reason,
                    }
                }
                Some(old) if netns_recreated.is_some() => Action::Recreate {
                    service,
                    number,
                    reason: format!(
                        "shares the network of `{}`, which is recreated",
                        netns_recreated.map(String::as_str).unwrap_or_default()
                    ),
                    old,
                },
                Some(old) if !old.running => Action::Start {
                    service,
                    number,
                    id: old.id,
                },
                Some(old) if !deps_recreated.is_empty() => Action::Restart {
                    service,
                    number,
                    id: old.id,
                    reason: format!("depends on recreated {}", deps_recreated.join(", ")),
                },
                Some(old) => Action::Keep {
                    service,
                    number,
                    id: old.id,
                },
            };
            if matches!(action, Action::Recreate { .. }) {
                recreated.insert(d.service.clone());
            }
            actions.push(action);
        }
    }
    Ok(Plan { actions, order })
}

/// Topological order of the services by `depends_on` and `network_mode:
/// service:`, file order among services that are ready at the same time.
fn start_order(desired: &[Desired]) -> Result<Vec<String>, Cycle> {
    let known: HashSet<&str> = desired.iter().map(|d| d.service.as_str()).collect();
    let deps = |d: &Desired| -> Vec<String> {
        d.depends_on
            .iter()
            .chain(d.network_of.iter())
            .filter(|n| known.contains(n.as_str()) && **n != d.service)
            .cloned()
            .collect()
    };
    let mut done: HashSet<String> = HashSet::new();
    let mut order = Vec::new();
    while order.len() < desired.len() {
        let next = desired
            .iter()
            .find(|d| !done.contains(&d.service) && deps(d).iter().all(|x| done.contains(x)));
        match next {
            Some(d) => {
                done.insert(d.service.clone());
                order.push(d.service.clone());
            }
            None => {
                return Err(Cycle(
                    desired
                        .iter()
                        .filter(|d| !done.contains(&d.service))
                        .map(|d| d.service.clone())
                        .collect(),
                ))
            }
        }
    }
    Ok(order)
}

impl fmt::Display for Action {
    /// One line of `up --dry-run` and of `up`'s report.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Create { service, number } => write!(f, "create  {service} #{number}"),
            Action::Recreate {
                service,
                number,
                old,
                reason,
            } => write!(
                f,
                "recreate {service} #{number} ({reason}; replaces {})",
                old.name
            ),
            Action::Start {
                service, number, ..
            } => write!(f, "start   {service} #{number} (stopped)"),
            Action::Restart {
                service,
                number,
                reason,
                ..
            } => write!(f, "restart {service} #{number} ({reason})"),
            Action::Keep {
                service, number, ..
            } => write!(f, "keep    {service} #{number}"),
            Action::Remove { old, reason } => write!(f, "remove  {} ({reason})", old.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(service: &str, replicas: u32, hash: &str, deps: &[&str]) -> Desired {
        Desired {
            service: service.into(),
            replicas,
            hash: Some(hash.into()),
            depends_on: deps.iter().map(|s| s.to_string()).collect(),
            network_of: None,
        }
    }

    fn have(service: &str, number: u32, hash: &str, running: bool) -> Observed {
        Observed {
            id: format!("id-{service}-{number}"),
            name: format!("p-{service}-{number}"),
            service: service.into(),
            number: Some(number),
            hash: hash.into(),
            running,
        }
    }

    fn kinds(p: &Plan) -> Vec<String> {
        p.actions
            .iter()
            .map(|a| {
                let k = match a {
                    Action::Create { .. } => "create",
                    Action::Recreate { .. } => "recreate",
                    Action::Start { .. } => "start",
                    Action::Restart { .. } => "restart",
                    Action::Keep { .. } => "keep",
                    Action::Remove { .. } => "remove",
                };
                match a {
                    Action::Create { number, .. }
                    | Action::Recreate { number, .. }
                    | Action::Start { number, .. }
                    | Action::Restart { number, .. }
                    | Action::Keep { number, .. } => format!("{k} {}#{number}", a.service()),
                    Action::Remove { old, .. } => format!("{k} {}", old.name),
                }
            })
            .collect()
    }

    #[test]
    fn empty_engine_creates_everything_in_dependency_order() {
        let d = vec![
            want("app", 1, "a", &["db", "cache"]),
            want("db", 1, "d", &[]),
            want("cache", 2, "c", &[]),
        ];
        let p = plan("p", &d, &[]).unwrap();
        assert_eq!(p.order, vec!["db", "cache", "app"]);
        assert_eq!(
            kinds(&p),
            vec![
                "create db#1",
                "create cache#1",
                "create cache#2",
                "create app#1"
            ]
        );
        assert_eq!(p.changes(), 4);
    }

    #[test]
    fn unchanged_stack_changes_nothing() {
        let d = vec![want("web", 2, "w", &[]), want("prom", 1, "p", &["web"])];
        let o = vec![
            have("web", 1, "w", true),
            have("web", 2, "w", true),
            have("prom", 1, "p", true),
        ];
        let p = plan("p", &d, &o).unwrap();
        assert_eq!(p.changes(), 0);
        assert_eq!(kinds(&p), vec!["keep web#1", "keep web#2", "keep prom#1"]);
    }

    #[test]
    fn changed_service_is_recreated_and_its_dependents_restarted() {
        let d = vec![
            want("web", 1, "w2", &[]),
            want("prom", 1, "p", &["web"]),
            want("other", 1, "o", &[]),
        ];
        let o = vec![
            have("web", 1, "w1", true),
            have("prom", 1, "p", true),
            have("other", 1, "o", true),
        ];
        let p = plan("p", &d, &o).unwrap();
        assert_eq!(
            kinds(&p),
            vec!["recreate web#1", "restart prom#1", "keep other#1"]
        );
        match &p.actions[1] {
            Action::Restart { reason, .. } => assert!(reason.contains("web"), "{reason}"),
            a => panic!("{a:?}"),
        }
    }

    #[test]
    fn dependent_that_changed_itself_is_recreated_not_restarted() {
        let d = vec![want("web", 1, "w2", &[]), want("prom", 1, "p2", &["web"])];
        let o = vec![have("web", 1, "w1", true), have("prom", 1, "p1", true)];
        assert_eq!(
            kinds(&plan("p", &d, &o).unwrap()),
            vec!["recreate web#1", "recreate prom#1"]
        );
    }

    #[test]
    fn orphans_extra_replicas_and_duplicates_are_removed_first() {
        let d = vec![want("web", 1, "w", &[])];
        let mut dup = have("web", 1, "w", false);
        dup.id = "dup".into();
        dup.name = "p-web-1-old".into();
        let mut unnumbered = have("web", 1, "w", true);
        unnumbered.number = None;
        unnumbered.name = "p-web-x".into();
        let o = vec![
            have("web", 1, "w", true),
            have("web", 2, "w", true),
            have("gone", 1, "g", true),
            dup,
            unnumbered,
        ];
        let p = plan("p", &d, &o).unwrap();
        assert_eq!(
            kinds(&p),
            vec![
                "remove p-gone-1",
                "remove p-web-1-old",
                "remove p-web-2",
                "remove p-web-x",
                "keep web#1"
            ]
        );
        let reasons: Vec<String> = p.actions.iter().map(|a| a.to_string()).collect();
        assert!(reasons[0].contains("orphan"), "{reasons:?}");
        assert!(reasons[1].contains("duplicate"), "{reasons:?}");
        assert!(reasons[2].contains("scaled down"), "{reasons:?}");
    }

    #[test]
    fn scale_up_creates_only_the_new_replicas() {
        let d = vec![want("web", 3, "w", &[]), want("lb", 1, "l", &["web"])];
        let o = vec![have("web", 1, "w", true), have("lb", 1, "l", true)];
        assert_eq!(
            kinds(&plan("p", &d, &o).unwrap()),
            vec!["keep web#1", "create web#2", "create web#3", "keep lb#1"]
        );
    }

    #[test]
    fn stopped_containers_are_started_and_unknown_hash_recreates() {
        let mut d = vec![want("web", 1, "w", &[]), want("job", 1, "j", &[])];
        d[1].hash = None;
        let o = vec![have("web", 1, "w", false), have("job", 1, "j", true)];
        let p = plan("p", &d, &o).unwrap();
        assert_eq!(kinds(&p), vec!["start web#1", "recreate job#1"]);
        assert!(p.actions[1].to_string().contains("image to be built"));
    }

    #[test]
    fn network_namespace_sharers_follow_a_recreate() {
        let mut app = want("app", 1, "a", &[]);
        app.network_of = Some("vpn".into());
        let d = vec![app, want("vpn", 1, "v2", &[])];
        let o = vec![have("app", 1, "a", true), have("vpn", 1, "v1", true)];
        let p = plan("p", &d, &o).unwrap();
        assert_eq!(p.order, vec!["vpn", "app"]);
        assert_eq!(kinds(&p), vec!["recreate vpn#1", "recreate app#1"]);
    }

    #[test]
    fn cycles_and_unknown_dependencies() {
        let d = vec![want("a", 1, "a", &["b"]), want("b", 1, "b", &["a"])];
        assert_eq!(
            plan("p", &d, &[]).unwrap_err(),
            Cycle(vec!["a".into(), "b".into()])
        );
        // A dependency that is not in the project (required: false) is ignored.
        let d = vec![want("a", 1, "a", &["missing"])];
        assert_eq!(plan("p", &d, &[]).unwrap().order, vec!["a"]);
    }

    #[test]
    fn zero_replicas_removes_all() {
        let d = vec![want("web", 0, "w", &[])];
        let o = vec![have("web", 1, "w", true)];
        assert_eq!(kinds(&plan("p", &d, &o).unwrap()), vec!["remove p-web-1"]);
    }
}
