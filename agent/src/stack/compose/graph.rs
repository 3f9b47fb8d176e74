//! The services' start order constraints: `depends_on`, plus
//! `network_mode: service:X` (which needs X's container first). Finds a cycle
//! if there is one, so that the engine can rely on an order existing.

use indexmap::IndexMap;

use crate::stack::model::{NetworkMode, Service};

/// A cycle as the list of services along it, the first repeated at the end
/// (`["a", "b", "a"]`), or `None`. Deterministic: services are visited in
/// file order, their dependencies in the order written.
pub(crate) fn find_cycle(services: &IndexMap<String, Service>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut marks = vec![Mark::New; services.len()];
    for root in 0..services.len() {
        if marks[root] != Mark::New {
            continue;
        }
        // Iterative depth-first search: a path of (service, next edge index).
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        marks[root] = Mark::Active;
        while let Some(&mut (node, ref mut edge)) = stack.last_mut() {
            let next = services
                .get_index(node)
                .and_then(|(_, s)| edges(s).nth(*edge))
                .map(|name| services.get_index_of(name));
            *edge += 1;
            match next {
                None => {
                    marks[node] = Mark::Done;
                    stack.pop();
                }
                // A dependency outside the project (`required: false`).
                Some(None) => {}
                Some(Some(target)) => match marks[target] {
                    Mark::Done => {}
                    Mark::New => {
                        marks[target] = Mark::Active;
                        stack.push((target, 0));
                    }
                    Mark::Active => {
                        let from = stack.iter().position(|(n, _)| *n == target)?;
                        let mut cycle: Vec<String> = stack[from..]
                            .iter()
                            .filter_map(|(n, _)| services.get_index(*n).map(|(k, _)| k.clone()))
                            .collect();
                        cycle.push(services.get_index(target)?.0.clone());
                        return Some(cycle);
                    }
                },
            }
        }
    }
    None
}

fn edges(service: &Service) -> impl Iterator<Item = &String> {
    let shared = match &service.network_mode {
        Some(NetworkMode::Service(name)) => Some(name),
        _ => None,
    };
    service.depends_on.keys().chain(shared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::model::{Condition, Dependency, Restart};
    use std::collections::BTreeMap;

    fn service(name: &str, deps: &[&str], shares: Option<&str>) -> (String, Service) {
        let service = Service {
            name: name.to_string(),
            image: Some("x".to_string()),
            build: None,
            command: None,
            entrypoint: None,
            environment: BTreeMap::new(),
            labels: BTreeMap::new(),
            ports: vec![],
            volumes: vec![],
            networks: IndexMap::new(),
            network_mode: shares.map(|s| NetworkMode::Service(s.to_string())),
            restart: Restart::No,
            user: None,
            healthcheck: None,
            replicas: 1,
            depends_on: deps
                .iter()
                .map(|d| {
                    (
                        d.to_string(),
                        Dependency {
                            condition: Condition::Started,
                            restart: false,
                            required: true,
                        },
                    )
                })
                .collect(),
        };
        (name.to_string(), service)
    }

    #[test]
    fn finds_cycles_and_only_cycles() {
        let acyclic: IndexMap<_, _> = [
            service("proxy", &["web", "api"], None),
            service("web", &["db"], None),
            service("api", &["db", "elsewhere"], None),
            service("db", &[], None),
        ]
        .into_iter()
        .collect();
        assert_eq!(find_cycle(&acyclic), None);

        let cyclic: IndexMap<_, _> = [
            service("a", &["b"], None),
            service("b", &["c"], None),
            service("c", &["a"], None),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            find_cycle(&cyclic),
            Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
        );

        let self_loop: IndexMap<_, _> = [service("a", &[], None), service("b", &["b"], None)]
            .into_iter()
            .collect();
        assert_eq!(find_cycle(&self_loop), Some(vec!["b".into(), "b".into()]));

        let through_network: IndexMap<_, _> = [
            service("vpn", &["app"], None),
            service("app", &[], Some("vpn")),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            find_cycle(&through_network),
            Some(vec!["vpn".into(), "app".into(), "vpn".into()])
        );
    }
}
