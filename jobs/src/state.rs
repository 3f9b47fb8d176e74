//! A state entry as the jobs see it: what to back up and how to restore it.

use std::path::PathBuf;
use std::sync::Arc;

use crate::encryption::Encryption;
use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateSpec {
    pub name: String,
    /// The file or directory backed up and restored.
    pub path: PathBuf,
    /// Mode enforced on the restored file (or the root directory).
    pub mode: Option<u32>,
    /// Owner enforced on everything restored.
    pub owner: Option<Owner>,
    pub kind: StateKind,
    /// `storage.encryption`: backups are encrypted to its recipients, and
    /// restore decrypts with its identity file.
    pub encryption: Option<Arc<Encryption>>,
    /// The generation this machine writes as ([`crate::generation`]): its
    /// backups' ids and manifests carry it. `None` on a host without
    /// generations. The caller checks that it is the newest before writing.
    pub generation: Option<String>,
}

/// How a state entry is read consistently while its application runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum StateKind {
    /// Files archived as they are.
    #[default]
    Files,
    /// A Prometheus TSDB: a snapshot through the admin API at `api`
    /// (`http://host:port[/route-prefix]`), stored block by block.
    Prometheus { api: String },
    /// A directory (or one file) holding SQLite databases: files whose path
    /// matches one of `databases` are copied with SQLite's online backup API.
    Sqlite { databases: Vec<String> },
    /// Traefik's acme.json: checked before it is uploaded
    /// ([`crate::acme`]), restored with mode 0600.
    Acme,
}

impl StateSpec {
    /// The mode a restore enforces: 0600 for `kind: acme` whatever the
    /// configuration says (Traefik refuses an acme.json others can read, and
    /// it holds the private keys), otherwise the configured one.
    pub fn restore_mode(&self) -> Option<u32> {
        match self.kind {
            StateKind::Acme => Some(0o600),
            _ => self.mode,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// Resolves `uid`, `uid:gid`, `user` or `user:group` against this host's user
/// database. A user without a group gets the user's primary group.
pub fn resolve_owner(spec: &str) -> Result<Owner> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let unknown = |what: &str| Error::Refused(format!("owner `{spec}`: unknown {what}"));
    let (uid, primary_gid) = match user.parse::<u32>() {
        Ok(uid) => {
            let gid = nix::unistd::User::from_uid(uid.into())
                .ok()
                .flatten()
                .map(|u| u.gid.as_raw());
            (uid, gid)
        }
        Err(_) => {
            let u = nix::unistd::User::from_name(user)
                .ok()
                .flatten()
                .ok_or_else(|| unknown("user"))?;
            (u.uid.as_raw(), Some(u.gid.as_raw()))
        }
    };
    let gid = match group {
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => nix::unistd::Group::from_name(g)
                .ok()
                .flatten()
                .ok_or_else(|| unknown("group"))?
                .gid
                .as_raw(),
        },
        None => primary_gid.unwrap_or(uid),
    };
    Ok(Owner { uid, gid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_resolve() {
        assert_eq!(resolve_owner("0").unwrap(), Owner { uid: 0, gid: 0 });
        assert_eq!(resolve_owner("root").unwrap(), Owner { uid: 0, gid: 0 });
        assert_eq!(
            resolve_owner("65534:65534").unwrap(),
            Owner {
                uid: 65534,
                gid: 65534
            }
        );
        assert!(resolve_owner("no-such-user-here").is_err());
        assert!(resolve_owner("root:no-such-group-here").is_err());
    }
}
