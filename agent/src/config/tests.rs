//! End-to-end tests of the pipeline: text in, `Config` or a located error out.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rehost_jobs::retention::KeepPolicy;
use rehost_jobs::store::{CredentialSource, S3Settings, StoreLocation};

use super::*;
use crate::notify::NotifyUrl;

const FILE: &str = "/etc/rehost/rehost.yaml";

fn env(name: &str) -> Option<String> {
    match name {
        "BUCKET" => Some("infra-state".to_string()),
        "CONCURRENCY" => Some("32".to_string()),
        "DELETE" => Some("true".to_string()),
        "EMPTY" => Some(String::new()),
        "HC_UUID" => Some("0b6a-secret-uuid".to_string()),
        _ => None,
    }
}

fn ok(text: &str) -> Config {
    match parse(Path::new(FILE), text, &env) {
        Ok(config) => config,
        Err(err) => panic!("expected the config to parse, got: {err}"),
    }
}

fn err(text: &str) -> ConfigError {
    match parse(Path::new(FILE), text, &env) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(err) => err,
    }
}

/// The minimal valid config; tests append to it.
const BASE: &str = "host: web-1\nstorage:\n  url: file:///var/lib/rehost/store\n";

/// SPEC.md's example.
const SPEC_EXAMPLE: &str = r#"
host: web-1                      # this host's prefix in the bucket
run_as: rehost                   # the unprivileged user that `boot` hands the daemon to
storage:
  url: s3://infra-state/hosts    # s3://bucket/prefix, or file:///path (local default for trying it out)
  endpoint: https://s3.example.com   # any S3-compatible service; omit for AWS
  region: garage
  path_style: true
  # credentials: AWS_* environment or credentials_file; never logged
stack:
  compose: /opt/stack/docker-compose.yml
  project: site
  env_file: /etc/rehost/stack.env     # values for ${VAR} in the compose file
  profiles: [debug]                   # services with `profiles:` that run
state:
  acme:
    path: /srv/acme/acme.json
    mode: "0600"                 # enforced after restore
    restore: if-missing          # if-missing | always | never
    required: true               # boot fails when storage is unreachable
    backup: "* * * * *"          # cron, 5 or 6 fields
    keep: { last: 10, daily: 14 }
    verify: "15 4 * * *"         # scheduled verify of the newest backup
  prometheus:
    path: /srv/prometheus
    kind: prometheus             # consistent snapshot via the admin API
    api: http://127.0.0.1:9090
    backup: "0 */6 * * *"
  grafana:
    path: /srv/grafana
    kind: sqlite                 # online backup of *.db files
    backup: "30 3 * * *"
pull:
  site:
    source: s3://content/site/
    dest: /srv/www
    schedule: "*/5 * * * *"
    delete_removed: true
    allow_empty: false           # an empty source never wipes dest unless this is true
    concurrency: 16
metrics:
  textfile_dir: /srv/monitoring  # node_exporter --collector.textfile.directory
notify:                          # webhooks and healthchecks-style pings
  - url: https://hc-ping.example.com/UUID
    on: [failure, success]
jobs:
  timeout: 30m
  jitter: 30s
  retries: 3
"#;

#[test]
fn spec_example_parses_with_every_value() {
    let config = ok(SPEC_EXAMPLE);
    assert_eq!(config.path, PathBuf::from(FILE));
    assert_eq!(config.host, "web-1");
    assert_eq!(config.run_as.as_deref(), Some("rehost"));
    assert_eq!(
        config.storage,
        StoreLocation::S3(S3Settings {
            bucket: "infra-state".to_string(),
            prefix: "hosts".to_string(),
            endpoint: Some("https://s3.example.com".to_string()),
            region: "garage".to_string(),
            path_style: true,
            credentials: CredentialSource::Environment,
        })
    );
    assert_eq!(
        config.stack,
        Some(StackConfig {
            compose: PathBuf::from("/opt/stack/docker-compose.yml"),
            overrides: Vec::new(),
            project: "site".to_string(),
            env_file: Some(PathBuf::from("/etc/rehost/stack.env")),
            profiles: vec!["debug".to_string()],
        })
    );

    let names: Vec<&str> = config.state.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["acme", "prometheus", "grafana"],
        "file order is kept"
    );
    assert_eq!(
        config.state["acme"],
        StateEntry {
            name: "acme".to_string(),
            path: PathBuf::from("/srv/acme/acme.json"),
            kind: StateKind::Files,
            mode: Some(0o600),
            owner: None,
            restore: RestorePolicy::IfMissing,
            required: true,
            backup: Some("* * * * *".to_string()),
            keep: Some(KeepPolicy {
                last: 10,
                daily: 14,
                ..KeepPolicy::default()
            }),
            verify: Some("15 4 * * *".to_string()),
            api: None,
            databases: vec![],
            stop: vec![],
            volume: None,
            job: JobOverrides::default(),
        }
    );
    let prometheus = &config.state["prometheus"];
    assert_eq!(prometheus.kind, StateKind::Prometheus);
    assert_eq!(prometheus.api.as_deref(), Some("http://127.0.0.1:9090"));
    assert_eq!(config.state["grafana"].kind, StateKind::Sqlite);
    assert!(config.state["grafana"].databases.is_empty());
    assert_eq!(prometheus.backup.as_deref(), Some("0 */6 * * *"));
    assert_eq!(prometheus.restore, RestorePolicy::IfMissing);
    assert!(!prometheus.required);
    assert_eq!(prometheus.mode, None);
    assert_eq!(prometheus.keep, None);
    assert_eq!(prometheus.verify, None);
    assert_eq!(config.state["grafana"].path, PathBuf::from("/srv/grafana"));

    assert_eq!(
        config.pull["site"],
        PullEntry {
            name: "site".to_string(),
            source: PullSource::S3(S3Source {
                bucket: "content".to_string(),
                prefix: "site".to_string(),
            }),
            dest: PathBuf::from("/srv/www"),
            schedule: Some("*/5 * * * *".to_string()),
            delete_removed: true,
            allow_empty: false,
            concurrency: 16,
            job: JobOverrides::default(),
        }
    );
    assert_eq!(
        config.metrics,
        Some(MetricsConfig {
            textfile_dir: PathBuf::from("/srv/monitoring")
        })
    );
    assert_eq!(
        config.jobs,
        JobDefaults {
            timeout: Duration::from_secs(30 * 60),
            jitter: Duration::from_secs(30),
            retries: 3,
        }
    );
    assert_eq!(
        config.notify,
        [NotifyTarget {
            name: "0".to_string(),
            url: NotifyUrl::parse("https://hc-ping.example.com/UUID").unwrap(),
            kind: NotifyKind::Webhook,
            on: vec![NotifyEvent::Failure, NotifyEvent::Success],
            jobs: vec![],
            timeout: Duration::from_secs(10),
            retries: 2,
        }]
    );
}

#[test]
fn shipped_example_parses() {
    let text = include_str!("../../../examples/rehost.yaml");
    // The example encrypts every backup, and says what to set when the key
    // is missing.
    let err = parse(Path::new(FILE), text, &|_| None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("REHOST_AGE_RECIPIENT") && err.contains("age-keygen -y"),
        "{err}"
    );
    let recipient =
        |name: &str| (name == "REHOST_AGE_RECIPIENT").then(|| AGE_RECIPIENT.to_string());
    let config = match parse(Path::new(FILE), text, &recipient) {
        Ok(config) => config,
        Err(err) => panic!("examples/rehost.yaml: {err}"),
    };
    let encryption = config.encryption.as_ref().expect("the example encrypts");
    assert_eq!(encryption.recipients, [AGE_RECIPIENT]);
    assert_eq!(
        encryption.identity_file.as_deref(),
        Some(Path::new("/etc/rehost/age.key"))
    );
    assert_eq!(config.host, "web-1");
    let StoreLocation::S3(s3) = &config.storage else {
        panic!("expected S3 storage, got {:?}", config.storage);
    };
    assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
    assert_eq!(config.state["acme"].kind, StateKind::Acme);
    assert_eq!(config.state["acme"].mode, Some(0o600));
    assert_eq!(config.state["acme"].owner.as_deref(), Some("0:0"));
    assert!(config.state["acme"].required);
    assert_eq!(config.state["prometheus"].kind, StateKind::Prometheus);
    assert_eq!(config.state["grafana"].kind, StateKind::Sqlite);
    assert_eq!(config.state["grafana"].databases, ["*.db"]);
    // Every entry is verified daily, and every entry with backups prunes them.
    for entry in config.state.values() {
        let verify = entry.verify.as_deref().unwrap_or_default();
        assert!(
            verify.ends_with(" * * *"),
            "{}: verify {verify:?}",
            entry.name
        );
        assert!(
            entry.backup.is_none() || entry.keep.is_some(),
            "{}",
            entry.name
        );
    }
    assert_eq!(
        config.state["grafana"].keep,
        Some(KeepPolicy {
            last: 3,
            daily: 7,
            weekly: 4,
            monthly: 6,
            ..KeepPolicy::default()
        })
    );
    assert!(config.metrics.is_some());
    assert_eq!(config.jobs.retries, 3);
    // With the variables set, they win over the defaults.
    let env = |name: &str| match name {
        "REHOST_HOST" => Some("db-7".to_string()),
        "S3_ENDPOINT" => Some("https://s3.example.com".to_string()),
        other => recipient(other),
    };
    let config = parse(Path::new(FILE), text, &env).unwrap();
    assert_eq!(config.host, "db-7");
    let StoreLocation::S3(s3) = &config.storage else {
        panic!("expected S3 storage");
    };
    assert_eq!(s3.endpoint.as_deref(), Some("https://s3.example.com"));
}

#[test]
fn defaults_of_a_minimal_config() {
    let config = ok(BASE);
    assert_eq!(
        config.storage,
        StoreLocation::File(PathBuf::from("/var/lib/rehost/store"))
    );
    assert_eq!(config.run_as, None);
    assert_eq!(config.state_dir, PathBuf::from("/var/lib/rehost"));
    assert_eq!(config.stack, None);
    assert!(config.state.is_empty());
    assert!(config.pull.is_empty());
    assert_eq!(config.metrics, None);
    assert_eq!(config.jobs, JobDefaults::default());
    assert_eq!(config.jobs.timeout, Duration::from_secs(1800));
    assert_eq!(config.jobs.jitter, Duration::ZERO);

    let config = ok(&format!(
        "{BASE}state:\n  a:\n    path: /srv/a\npull:\n  p:\n    source: s3://content\n    dest: /srv/p\n"
    ));
    let a = &config.state["a"];
    assert_eq!(a.kind, StateKind::Files);
    assert_eq!(a.restore, RestorePolicy::IfMissing);
    assert!(!a.required);
    assert_eq!(
        (a.mode, &a.owner, &a.backup, a.keep),
        (None, &None, &None, None)
    );
    let p = &config.pull["p"];
    assert_eq!(
        p.source,
        PullSource::S3(S3Source {
            bucket: "content".into(),
            prefix: String::new()
        })
    );
    assert_eq!(
        (p.delete_removed, p.allow_empty, p.concurrency),
        (false, false, 16)
    );
    // Empty sections are the same as absent ones.
    let config = ok(&format!("{BASE}state:\npull:\n"));
    assert!(config.state.is_empty() && config.pull.is_empty());
}

/// A valid age public key (from `age-keygen`).
const AGE_RECIPIENT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

#[test]
fn storage_encryption_takes_recipients_and_an_identity_file() {
    let config = ok(&format!(
        "host: h\nstorage:\n  url: file:///srv/store\n  encryption:\n    recipients: [\" {AGE_RECIPIENT}\"]\n    identity_file: age.key\n"
    ));
    let enc = config.encryption.expect("encryption");
    assert_eq!(enc.recipients, vec![AGE_RECIPIENT.to_string()]);
    assert_eq!(
        enc.identity_file,
        Some(PathBuf::from("/etc/rehost/age.key"))
    );
    assert!(enc.build().is_ok());
    assert_eq!(ok(BASE).encryption, None);

    for (text, key, message) in [
        (
            "  encryption: {}\n".to_string(),
            "storage.encryption.recipients",
            "expected at least one age public key",
        ),
        (
            format!("  encryption:\n    recipients: [{AGE_RECIPIENT}, age1bogus]\n"),
            "storage.encryption.recipients",
            "recipient 2 is not an age X25519 public key",
        ),
        (
            format!("  encryption:\n    recipients: [{AGE_RECIPIENT}]\n    identity_file: \"\"\n"),
            "storage.encryption.identity_file",
            "expected a path",
        ),
        (
            format!("  encryption:\n    recipients: [{AGE_RECIPIENT}]\n    passphrase: x\n"),
            "storage.encryption.passphrase",
            "unknown key `passphrase`",
        ),
    ] {
        let e = err(&format!("{BASE}{text}"));
        let shown = e.to_string();
        assert!(shown.contains(key) && shown.contains(message), "{shown}");
    }
}

#[test]
fn s3_storage_defaults_and_credentials_file() {
    let config = ok("host: h\nstorage:\n  url: s3://${BUCKET}/a/b/\n");
    assert_eq!(
        config.storage,
        StoreLocation::S3(S3Settings {
            bucket: "infra-state".to_string(),
            prefix: "a/b".to_string(),
            endpoint: None,
            region: "us-east-1".to_string(),
            path_style: false,
            credentials: CredentialSource::Environment,
        })
    );
    let config = ok("host: h\nstorage:\n  url: s3://bucket\n  credentials_file: creds\n");
    let StoreLocation::S3(s3) = config.storage else {
        panic!("expected S3");
    };
    assert_eq!(
        s3.credentials,
        CredentialSource::File {
            path: PathBuf::from("/etc/rehost/creds"),
            profile: "default".to_string(),
        }
    );
    let config = ok(
        "host: h\nstorage:\n  url: s3://bucket\n  credentials_file: /root/.aws/credentials\n  profile: backup\n",
    );
    let StoreLocation::S3(s3) = config.storage else {
        panic!("expected S3");
    };
    assert_eq!(
        s3.credentials,
        CredentialSource::File {
            path: PathBuf::from("/root/.aws/credentials"),
            profile: "backup".to_string(),
        }
    );
}

#[test]
fn stack_project_defaults_to_the_compose_folder() {
    let config = ok(&format!(
        "{BASE}stack:\n  compose: /opt/My_Site/docker-compose.yml\n"
    ));
    let stack = config.stack.unwrap();
    assert_eq!(stack.project, "my_site");
    assert_eq!(stack.env_file, None);
    // Relative to the config file's folder.
    let config = ok(&format!("{BASE}stack:\n  compose: stack/compose.yml\n"));
    let stack = config.stack.unwrap();
    assert_eq!(
        stack.compose,
        PathBuf::from("/etc/rehost/stack/compose.yml")
    );
    assert_eq!(stack.project, "stack");
}

#[test]
fn stack_compose_may_list_files_and_profiles_are_checked() {
    let config = ok(&format!(
        "{BASE}stack:\n  compose: [stack/compose.yml, /opt/prod.yml]\n  profiles: [debug, tools]\n"
    ));
    let stack = config.stack.unwrap();
    assert_eq!(
        stack.compose,
        PathBuf::from("/etc/rehost/stack/compose.yml")
    );
    assert_eq!(stack.overrides, vec![PathBuf::from("/opt/prod.yml")]);
    assert_eq!(
        stack.profiles,
        vec!["debug".to_string(), "tools".to_string()]
    );
    let e = err(&format!("{BASE}stack:\n  compose: []\n"));
    assert_eq!(e.key.as_deref(), Some("stack.compose"));
    let e = err(&format!(
        "{BASE}stack:\n  compose: a.yml\n  profiles: ['no space']\n"
    ));
    assert_eq!(e.key.as_deref(), Some("stack.profiles"));
    assert!(e.message.contains("not a profile name"), "{}", e.message);
}

#[test]
fn interpolated_strings_fill_numeric_and_boolean_fields() {
    let config = ok(&format!(
        "{BASE}pull:\n  p:\n    source: s3://content/x\n    dest: /srv/p\n    concurrency: ${{CONCURRENCY}}\n    delete_removed: ${{DELETE}}\n    allow_empty: \"false\"\njobs:\n  retries: \"2\"\n"
    ));
    assert_eq!(config.pull["p"].concurrency, 32);
    assert!(config.pull["p"].delete_removed);
    assert_eq!(config.jobs.retries, 2);
    // `$$` is a literal dollar, and keys are never interpolated.
    let config = ok(&format!("{BASE}state:\n  a:\n    path: /srv/$$x\n"));
    assert_eq!(config.state["a"].path, PathBuf::from("/srv/$x"));
    let e = err(&format!("{BASE}state:\n  $A:\n    path: /srv/x\n"));
    assert_eq!(e.key.as_deref(), Some("state.\"$A\""));
}

#[test]
fn mode_forms() {
    let mode = |m: &str| {
        ok(&format!(
            "{BASE}state:\n  a:\n    path: /srv/a\n    mode: {m}\n"
        ))
        .state["a"]
            .mode
    };
    assert_eq!(mode("\"0600\""), Some(0o600));
    assert_eq!(mode("'640'"), Some(0o640));
    // Unquoted with a leading zero, YAML 1.2 makes it a string: still octal.
    assert_eq!(mode("0600"), Some(0o600));
    // Unquoted without one, it is an integer whose digits are octal digits.
    assert_eq!(mode("600"), Some(0o600));
    assert_eq!(mode("2775"), Some(0o2775));
}

/// One error case: the text after BASE, and what the error must say.
struct Case {
    text: &'static str,
    line: Option<usize>,
    column: Option<usize>,
    key: Option<&'static str>,
    message: &'static str,
}

fn check(case: &Case, full_text: &str) {
    let e = err(full_text);
    let shown = e.to_string();
    assert_eq!(e.file, PathBuf::from(FILE), "{shown}");
    assert_eq!(
        (e.line, e.column, e.key.as_deref()),
        (case.line, case.column, case.key),
        "case {:?}: {shown}",
        case.text
    );
    assert!(
        e.message.contains(case.message),
        "case {:?}: message {:?} should contain {:?}",
        case.text,
        e.message,
        case.message
    );
}

#[test]
fn errors_name_line_column_and_key() {
    // Line numbers count BASE's 3 lines.
    let cases = [
        Case {
            text: "hots: x\n",
            line: Some(4),
            column: Some(1),
            key: Some("hots"),
            message: "unknown key `hots`, expected one of `host`, `run_as`, `state_dir`, `storage`",
        },
        Case {
            text: "state:\n  acme:\n    path: /srv/acme\n    moed: \"0600\"\n",
            line: Some(7),
            column: Some(5),
            key: Some("state.acme.moed"),
            message: "unknown key `moed`, expected one of `path`, `kind`, `mode`",
        },
        Case {
            text: "jobs:\n  timeout: 1m\n  retires: 3\n",
            line: Some(6),
            column: Some(3),
            key: Some("jobs.retires"),
            message: "unknown key `retires`, expected one of `timeout`, `jitter`, `retries`",
        },
        Case {
            text: "state:\n  acme:\n    path: /srv/acme\n    keep: { last: 2, dayly: 7 }\n",
            line: Some(7),
            column: Some(22),
            key: Some("state.acme.keep.dayly"),
            message: "unknown key `dayly`",
        },
        Case {
            text: "jobs:\n  retries: many\n",
            line: Some(5),
            column: Some(3),
            key: Some("jobs.retries"),
            message: "expected a whole number, got string \"many\"",
        },
        Case {
            text: "state:\n  acme:\n    path: /srv/acme\n    required: yes\n",
            line: Some(7),
            column: Some(5),
            key: Some("state.acme.required"),
            message: "expected `true` or `false`, got string \"yes\"",
        },
        Case {
            text: "state:\n  acme: /srv/acme\n",
            line: Some(5),
            column: Some(3),
            key: Some("state.acme"),
            message: "expected a mapping, got string \"/srv/acme\"",
        },
        Case {
            text: "state:\n  - acme\n",
            line: Some(4),
            column: Some(1),
            key: Some("state"),
            message: "expected a map, got a list",
        },
        Case {
            text: "jobs:\n  retries: -1\n",
            line: Some(5),
            column: Some(3),
            key: Some("jobs.retries"),
            message: "expected a whole number of 0 or more, got -1",
        },
        Case {
            text: "state:\n  acme:\n    path: /srv/acme\n    mode: rw\n",
            line: Some(7),
            column: Some(5),
            key: Some("state.acme.mode"),
            message: "expected an octal file mode like \"0600\", got \"rw\"",
        },
        Case {
            text: "state:\n  acme:\n    path: /srv/acme\n    mode: 0o600\n",
            line: Some(7),
            column: Some(5),
            key: Some("state.acme.mode"),
            message: "got the number 384 (write the mode in quotes",
        },
        Case {
            text: "state:\n  acme:\n    path: /srv/acme\n    backup: every minute\n",
            line: Some(7),
            column: Some(5),
            key: Some("state.acme.backup"),
            message: "expected a cron schedule with 5 or 6 fields like \"*/5 * * * *\", got \"every minute\"",
        },
        Case {
            text: "state:\n  acme:\n    path: /srv/acme\n    verify: daily\n",
            line: Some(7),
            column: Some(5),
            key: Some("state.acme.verify"),
            message: "expected a cron schedule with 5 or 6 fields like \"*/5 * * * *\", got \"daily\"",
        },
        Case {
            text: "pull:\n  site:\n    source: s3://content\n    dest: /srv/www\n    schedule: \"* * * *\"\n",
            line: Some(8),
            column: Some(5),
            key: Some("pull.site.schedule"),
            message: "expected a cron schedule with 5 or 6 fields",
        },
        Case {
            text: "state:\n  acme:\n    path: srv/acme\n",
            line: Some(6),
            column: Some(5),
            key: Some("state.acme.path"),
            message: "expected an absolute path (starting with `/`), got \"srv/acme\"",
        },
        Case {
            text: "state:\n  acme:\n    path: /srv/../etc\n",
            line: Some(6),
            column: Some(5),
            key: Some("state.acme.path"),
            message: "`..` is not allowed",
        },
        Case {
            text: "state:\n  prom:\n    path: /srv/prom\n    kind: prometheus\n    api: https://127.0.0.1:9090\n",
            line: Some(8),
            column: Some(5),
            key: Some("state.prom.api"),
            message: "expected an http:// URL: rehost reaches the admin API without TLS, normally on loopback",
        },
        Case {
            text: "state:\n  db:\n    path: /srv/db\n    stop: [grafana]\n",
            line: Some(7),
            column: Some(5),
            key: Some("state.db.stop"),
            message: "`stop` needs a `stack:` section: the services are those of its compose project",
        },
        Case {
            text: "stack:\n  compose: /opt/s/compose.yml\nstate:\n  db:\n    path: /srv/db\n    stop: [grafana, grafana]\n",
            line: Some(9),
            column: Some(5),
            key: Some("state.db.stop"),
            message: "service `grafana` is listed twice",
        },
        Case {
            text: "state:\n  db:\n    path: /srv/db\n    databases: [\"*.db\"]\n",
            line: Some(7),
            column: Some(5),
            key: Some("state.db.databases"),
            message: "`databases` only applies to `kind: sqlite`",
        },
        Case {
            text: "state:\n  acme:\n    kind: acme\n    path: /srv/acme/acme.json\n    mode: \"0644\"\n",
            line: Some(8),
            column: Some(5),
            key: Some("state.acme.mode"),
            message: "`kind: acme` is always restored 0600",
        },
        Case {
            text: "stack:\n  compose: /opt/s/compose.yml\nstate:\n  acme:\n    kind: acme\n    volume: letsencrypt\n",
            line: Some(9),
            column: Some(5),
            key: Some("state.acme.volume"),
            message: "`kind: acme` needs `path:` to Traefik's acme.json file",
        },
        Case {
            text: "state:\n  db:\n    kind: sqlite\n    path: /srv/db\n    databases: [\"../x.db\"]\n",
            line: Some(8),
            column: Some(5),
            key: Some("state.db.databases"),
            message: "expected a glob relative to `path` without `..` or empty segments, such as \"*.db\", got \"../x.db\"",
        },
        Case {
            text: "state:\n  db:\n    kind: sqlite\n    path: /srv/db\n    databases: []\n",
            line: Some(8),
            column: Some(5),
            key: Some("state.db.databases"),
            message: "expected at least one glob, such as \"*.db\"",
        },
        Case {
            text: "state:\n  acme:\n    path: /srv/acme\n    kind: tarball\n",
            line: Some(7),
            column: Some(5),
            key: Some("state.acme.kind"),
            message: "expected one of `files`, `prometheus`, `sqlite`, `acme`, got \"tarball\"",
        },
        Case {
            text: "state:\n  acme:\n    path: /srv/acme\n    api: http://x\n",
            line: Some(7),
            column: Some(5),
            key: Some("state.acme.api"),
            message: "`api` only applies to `kind: prometheus`",
        },
        Case {
            text: "state:\n  acme:\n    path: /srv/acme\n    restore: sometimes\n",
            line: Some(7),
            column: Some(5),
            key: Some("state.acme.restore"),
            message: "expected one of `if-missing`, `always`, `never`, got \"sometimes\"",
        },
        Case {
            text: "state:\n  acme:\n    path: /srv/acme\n    keep:\n      last: 0\n",
            line: Some(7),
            column: Some(5),
            key: Some("state.acme.keep"),
            message: "keep would delete every backup; set at least `last: 1`",
        },
        Case {
            text: "state:\n  acme:\n    mode: \"0600\"\n",
            line: Some(5),
            column: Some(3),
            key: Some("state.acme.path"),
            message: "missing required key `path`",
        },
        Case {
            text: "state:\n  .hidden:\n    path: /srv/x\n",
            line: Some(5),
            column: Some(3),
            key: Some("state.\".hidden\""),
            message: "not starting with `.`",
        },
        Case {
            text: "state:\n  a:\n    path: /srv\n  b:\n    path: /srv/b\n",
            line: Some(8),
            column: Some(5),
            key: Some("state.b.path"),
            message: "/srv/b overlaps state.a.path (/srv)",
        },
        Case {
            text: "state:\n  a:\n    path: /srv/www\npull:\n  site:\n    source: s3://content\n    dest: /srv/www/\n",
            line: Some(10),
            column: Some(5),
            key: Some("pull.site.dest"),
            message: "overlaps state.a.path",
        },
        Case {
            text: "state_dir: var/lib/rehost\n",
            line: Some(4),
            column: Some(1),
            key: Some("state_dir"),
            message: "expected an absolute path",
        },
        Case {
            text: "state_dir: /srv/acme/machine\nstate:\n  acme:\n    path: /srv/acme\n",
            line: Some(7),
            column: Some(5),
            key: Some("state.acme.path"),
            message: "/srv/acme overlaps state_dir (/srv/acme/machine)",
        },
        Case {
            text: "state:\n  a:\n    path: /\n",
            line: Some(6),
            column: Some(5),
            key: Some("state.a.path"),
            message: "expected a path below `/`",
        },
        Case {
            text: "pull:\n  site:\n    source: s3://content\n    dest: /srv/www\n    concurrency: 0\n",
            line: Some(8),
            column: Some(5),
            key: Some("pull.site.concurrency"),
            message: "expected a number from 1 to 256, got 0",
        },
        Case {
            text: "pull:\n  site:\n    source: /srv/content\n    dest: /srv/www\n",
            line: Some(6),
            column: Some(5),
            key: Some("pull.site.source"),
            message: "expected `s3://bucket/prefix/`",
        },
        Case {
            text: "metrics:\n  textfile_dir: metrics\n",
            line: Some(5),
            column: Some(3),
            key: Some("metrics.textfile_dir"),
            message: "expected an absolute path",
        },
        Case {
            text: "metrics: {}\n",
            line: Some(4),
            column: Some(1),
            key: Some("metrics.textfile_dir"),
            message: "missing required key `textfile_dir`",
        },
        Case {
            text: "jobs:\n  timeout: 30\n",
            line: Some(5),
            column: Some(3),
            key: Some("jobs.timeout"),
            message: "expected a duration like \"30s\", \"30m\" or \"1h 30m\", got \"30\"",
        },
        Case {
            text: "jobs:\n  timeout: 0s\n",
            line: Some(5),
            column: Some(3),
            key: Some("jobs.timeout"),
            message: "expected a duration longer than 0s",
        },
        Case {
            text: "state:\n  acme:\n    path: ${ACME_PATH}\n",
            line: Some(6),
            column: Some(5),
            key: Some("state.acme.path"),
            message: "environment variable ACME_PATH is not set",
        },
        Case {
            text: "state:\n  acme:\n    path: /srv/${EMPTY:?must be set}\n",
            line: Some(6),
            column: Some(5),
            key: Some("state.acme.path"),
            message: "required variable EMPTY is missing a value: must be set",
        },
        Case {
            text: "run_as: \"cost 5$\"\n",
            line: Some(4),
            column: Some(1),
            key: Some("run_as"),
            message: "invalid interpolation format at byte 6",
        },
        Case {
            text: "stack:\n  compose: /opt/stack/compose.yml\n  project: My Site\n",
            line: Some(6),
            column: Some(3),
            key: Some("stack.project"),
            message: "expected a Compose project name",
        },
        Case {
            text: "stack:\n  project: site\n",
            line: Some(4),
            column: Some(1),
            key: Some("stack.compose"),
            message: "missing required key `compose`",
        },
        Case {
            text: "run_as:\n",
            line: Some(4),
            column: Some(1),
            key: Some("run_as"),
            message: "expected a string, got an empty value",
        },
    ];
    for case in &cases {
        check(case, &format!("{BASE}{}", case.text));
    }
}

#[test]
fn storage_errors() {
    let cases = [
        Case {
            text: "host: h\nstorage:\n  url: ftp://bucket\n",
            line: Some(3),
            column: Some(3),
            key: Some("storage.url"),
            message: "expected `s3://bucket/prefix` or `file:///absolute/path`, got \"ftp://bucket\"",
        },
        Case {
            text: "host: h\nstorage:\n  url: s3://Bad_Bucket/x\n",
            line: Some(3),
            column: Some(3),
            key: Some("storage.url"),
            message: "invalid bucket name \"Bad_Bucket\"",
        },
        Case {
            text: "host: h\nstorage:\n  url: file://relative/dir\n",
            line: Some(3),
            column: Some(3),
            key: Some("storage.url"),
            message: "expected `file:///absolute/path`",
        },
        Case {
            text: "host: h\nstorage:\n  url: file:///srv/store\n  endpoint: http://127.0.0.1:3900\n",
            line: Some(4),
            column: Some(3),
            key: Some("storage.endpoint"),
            message: "`endpoint` only applies to s3:// storage, not file://",
        },
        Case {
            text: "host: h\nstorage:\n  url: file:///srv/store\n  credentials_file: /etc/creds\n",
            line: Some(4),
            column: Some(3),
            key: Some("storage.credentials_file"),
            message: "`credentials_file` only applies to s3:// storage",
        },
        Case {
            text: "host: h\nstorage:\n  url: s3://bucket\n  endpoint: s3.example.com\n",
            line: Some(4),
            column: Some(3),
            key: Some("storage.endpoint"),
            message: "expected an http:// or https:// URL, got \"s3.example.com\"",
        },
        Case {
            text: "host: h\nstorage:\n  url: s3://bucket\n  profile: backup\n",
            line: Some(4),
            column: Some(3),
            key: Some("storage.profile"),
            message: "`profile` needs `credentials_file`",
        },
        Case {
            text: "host: h\nstorage:\n  url: s3://bucket\n  path_style: 1\n",
            line: Some(4),
            column: Some(3),
            key: Some("storage.path_style"),
            message: "expected `true` or `false`, got integer `1`",
        },
        Case {
            text: "host: h\nstorage:\n  region: x\n",
            line: Some(2),
            column: Some(1),
            key: Some("storage.url"),
            message: "missing required key `url`",
        },
        Case {
            text: "host: h\n",
            line: None,
            column: None,
            key: Some("storage"),
            message: "missing required key `storage`",
        },
        Case {
            text: "storage:\n  url: file:///x\n",
            line: None,
            column: None,
            key: Some("host"),
            message: "missing required key `host`",
        },
        Case {
            text: "",
            line: None,
            column: None,
            key: Some("host"),
            message: "missing required key `host`",
        },
        Case {
            text: "# only a comment\n",
            line: None,
            column: None,
            key: Some("host"),
            message: "missing required key `host`",
        },
        Case {
            text: "host: web/1\nstorage:\n  url: file:///x\n",
            line: Some(1),
            column: Some(1),
            key: Some("host"),
            message: "invalid name \"web/1\"",
        },
        Case {
            text: "- host: h\n",
            line: None,
            column: None,
            key: None,
            message: "expected a mapping of keys such as `host:` and `storage:` at the top level, got a list",
        },
    ];
    for case in &cases {
        check(case, case.text);
    }
}

#[test]
fn endpoint_credentials_are_never_echoed() {
    let e = err(
        "host: h\nstorage:\n  url: s3://bucket\n  endpoint: https://AKIA:hunter2@s3.example.com\n",
    );
    assert_eq!(e.key.as_deref(), Some("storage.endpoint"));
    assert!(!e.to_string().contains("hunter2"), "{e}");
}

#[test]
fn yaml_syntax_errors_keep_their_position() {
    let e = err("host: web-1\nstorage:\n  url: file:///x\n  region: [unclosed\n");
    assert_eq!(e.kind, ConfigErrorKind::Syntax);
    assert_eq!(e.key, None);
    assert_eq!(e.line, Some(5), "{e}");
    assert!(e.message.starts_with("invalid YAML: "), "{e}");
    assert!(
        !e.message.contains("at line 5"),
        "position printed twice: {e}"
    );

    let e = err("host: web-1\n  bad: indentation\n");
    assert_eq!(e.kind, ConfigErrorKind::Syntax);
    assert_eq!((e.line, e.column), (Some(2), Some(6)), "{e}");
    assert_eq!(
        e.to_string(),
        format!("{FILE}:2:6: {}", e.message),
        "display puts the position in front"
    );

    let e = err("host: a\nhost: b\nstorage:\n  url: file:///x\n");
    assert!(e.message.contains("duplicate"), "{e}");
    assert!(e.line.is_some(), "{e}");
}

#[test]
fn display_of_a_located_error() {
    let e = err(&format!(
        "{BASE}state:\n  acme:\n    path: /srv/acme\n    mode: rw\n"
    ));
    assert_eq!(
        e.to_string(),
        "/etc/rehost/rehost.yaml:7:5: state.acme.mode: expected an octal file mode like \"0600\", got \"rw\""
    );
    assert_eq!(e.kind, ConfigErrorKind::Invalid);
}

#[test]
fn load_reads_the_file_and_reports_read_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rehost.yaml");
    std::fs::write(
        &path,
        format!("{BASE}stack:\n  compose: stack/compose.yml\n"),
    )
    .unwrap();
    let config = load(&path).unwrap();
    assert_eq!(config.path, path);
    assert_eq!(
        config.stack.unwrap().compose,
        dir.path().join("stack/compose.yml")
    );

    let missing = dir.path().join("missing.yaml");
    let e = load(&missing).unwrap_err();
    assert_eq!(e.kind, ConfigErrorKind::Read);
    assert_eq!(
        e.to_string(),
        format!(
            "cannot read {}: No such file or directory",
            missing.display()
        )
    );
}

#[test]
fn per_job_settings_override_the_jobs_defaults() {
    let config = ok(&format!(
        "{BASE}state:\n  acme:\n    path: /srv/acme\n    backup: \"*/2 * * * * *\"\n    timeout: 10s\n    retries: 5\n    run_at_start: true\n  site:\n    path: /srv/site\npull:\n  www:\n    source: s3://content/www/\n    dest: /srv/www\n    jitter: 3s\n    run_at_start: \"false\"\njobs:\n  timeout: 1m\n  jitter: 20s\n  retries: 1\n"
    ));
    let acme = &config.state["acme"];
    assert_eq!(
        acme.job,
        JobOverrides {
            timeout: Some(Duration::from_secs(10)),
            jitter: None,
            retries: Some(5),
            run_at_start: true,
        }
    );
    assert_eq!(
        config.jobs.resolve(&acme.job),
        JobDefaults {
            timeout: Duration::from_secs(10),
            jitter: Duration::from_secs(20),
            retries: 5,
        }
    );
    assert_eq!(config.state["site"].job, JobOverrides::default());
    assert_eq!(config.jobs.resolve(&config.state["site"].job), config.jobs);
    let www = &config.pull["www"];
    assert_eq!(www.job.jitter, Some(Duration::from_secs(3)));
    assert!(!www.job.run_at_start);
    assert_eq!(
        config.jobs.resolve(&www.job),
        JobDefaults {
            timeout: Duration::from_secs(60),
            jitter: Duration::from_secs(3),
            retries: 1,
        }
    );
}

#[test]
fn per_job_setting_errors_name_line_column_and_key() {
    let cases = [
        Case {
            text: "state:\n  acme:\n    path: /srv/acme\n    timeout: 0s\n",
            line: Some(7),
            column: Some(5),
            key: Some("state.acme.timeout"),
            message: "expected a duration longer than 0s",
        },
        Case {
            text: "state:\n  acme:\n    path: /srv/acme\n    jitter: soon\n",
            line: Some(7),
            column: Some(5),
            key: Some("state.acme.jitter"),
            message: "expected a duration like \"30s\"",
        },
        Case {
            text: "state:\n  acme:\n    path: /srv/acme\n    run_at_start: yes\n",
            line: Some(7),
            column: Some(5),
            key: Some("state.acme.run_at_start"),
            message: "expected `true` or `false`, got string \"yes\"",
        },
        Case {
            text: "state:\n  acme:\n    path: /srv/acme\n    run_at_boot: true\n",
            line: Some(7),
            column: Some(5),
            key: Some("state.acme.run_at_boot"),
            message: "unknown key `run_at_boot`",
        },
        Case {
            text: "pull:\n  www:\n    source: s3://c/www/\n    dest: /srv/www\n    retries: -1\n",
            line: Some(8),
            column: Some(5),
            key: Some("pull.www.retries"),
            message: "expected a whole number of 0 or more, got -1",
        },
        Case {
            text: "pull:\n  www:\n    source: s3://content/www/\n    dest: /srv/www\n    timeout: 0s\n",
            line: Some(8),
            column: Some(5),
            key: Some("pull.www.timeout"),
            message: "expected a duration longer than 0s",
        },
    ];
    for case in &cases {
        check(case, &format!("{BASE}{}", case.text));
    }
}

#[test]
fn pull_source_may_be_a_local_directory() {
    let config = ok(&format!(
        "{BASE}pull:\n  p:\n    source: file:///srv/content/site/\n    dest: /srv/www\n"
    ));
    assert_eq!(
        config.pull["p"].source,
        PullSource::File(PathBuf::from("/srv/content/site"))
    );
    let e = err(&format!(
        "{BASE}pull:\n  p:\n    source: file://relative\n    dest: /srv/www\n"
    ));
    assert!(e.to_string().contains("pull.p.source"), "{e}");
}

#[test]
fn a_verify_schedule_is_a_job_that_never_runs_at_start() {
    let config = ok(&format!(
        "{BASE}state:\n  acme:\n    path: /srv/acme\n    backup: \"0 * * * *\"\n    verify: \"15 4 * * *\"\n    run_at_start: true\n  site:\n    path: /srv/site\n"
    ));
    let jobs: Vec<(&str, &str, Option<&str>, bool)> = config
        .jobs()
        .map(|j| (j.kind.as_str(), j.target, j.schedule, j.run_at_start))
        .collect();
    assert_eq!(
        jobs,
        [
            ("backup", "acme", Some("0 * * * *"), true),
            ("backup", "site", None, false),
            ("verify", "acme", Some("15 4 * * *"), false),
        ]
    );
}

/// State `acme` and pull `site`, for `notify.N.jobs`: 10 lines.
const NOTIFY_BASE: &str = "host: web-1\nstorage:\n  url: file:///var/lib/rehost/store\nstate:\n  acme:\n    path: /srv/acme\npull:\n  site:\n    source: s3://content/site/\n    dest: /srv/www\n";

#[test]
fn notify_targets_take_their_defaults_and_interpolated_urls() {
    let config = ok(&format!(
        "{NOTIFY_BASE}notify:\n  - url: http://127.0.0.1:8080/hook\n  - url: https://hc-ping.com/${{HC_UUID}}?create=1\n    name: hc-backup\n    type: healthchecks\n    on: [start, success, failure, success]\n    jobs: [backup, \"pull:site\", \"verify:acme\", boot]\n    timeout: 3s\n    retries: 0\n"
    ));
    let [hook, hc] = &config.notify[..] else {
        panic!("two targets expected: {:?}", config.notify);
    };
    assert_eq!(hook.name, "0");
    assert_eq!(hook.url.redacted(), "http://127.0.0.1:8080");
    assert_eq!(hook.kind, NotifyKind::Webhook);
    assert_eq!(hook.on, [NotifyEvent::Success, NotifyEvent::Failure]);
    assert!(hook.jobs.is_empty());
    assert_eq!((hook.timeout, hook.retries), (Duration::from_secs(10), 2));

    assert_eq!(hc.name, "hc-backup");
    assert_eq!(hc.kind, NotifyKind::Healthchecks);
    // `${HC_UUID}` came from the environment, like any other value.
    assert_eq!(
        hc.url,
        NotifyUrl::parse("https://hc-ping.com/0b6a-secret-uuid?create=1").unwrap()
    );
    assert_eq!(
        hc.on,
        [
            NotifyEvent::Start,
            NotifyEvent::Success,
            NotifyEvent::Failure
        ],
        "in order, without the repeat"
    );
    let filter = |job: &str, target: Option<&str>| JobFilter {
        job: job.to_string(),
        target: target.map(str::to_string),
    };
    assert_eq!(
        hc.jobs,
        [
            filter("backup", None),
            filter("pull", Some("site")),
            filter("verify", Some("acme")),
            filter("boot", None),
        ]
    );
    assert_eq!((hc.timeout, hc.retries), (Duration::from_secs(3), 0));
    // Which runs each one is told about.
    assert!(hc.wants(NotifyEvent::Start, "backup", "acme"));
    assert!(hc.wants(NotifyEvent::Failure, "pull", "site"));
    assert!(hc.wants(NotifyEvent::Success, "boot", ""));
    assert!(!hc.wants(NotifyEvent::Success, "pull", "other"));
    assert!(!hc.wants(NotifyEvent::Success, "prune", "acme"));
    assert!(!hook.wants(NotifyEvent::Start, "backup", "acme"));
    assert!(hook.wants(NotifyEvent::Failure, "restore", "acme"));
    // The configuration's Debug output (which may be logged) hides the token.
    let debug = format!("{config:?}");
    assert!(!debug.contains("secret-uuid"), "{debug}");
    assert!(!debug.contains("/hook"), "{debug}");
    // No `notify:`, or an empty one: nothing to tell.
    assert!(ok(BASE).notify.is_empty());
    assert!(ok(&format!("{BASE}notify:\n")).notify.is_empty());
}

#[test]
fn notify_errors_name_line_column_and_key() {
    // Line numbers count NOTIFY_BASE's 10 lines.
    let cases = [
        Case {
            text: "notify:\n  - url: ftp://example.com/x\n",
            line: Some(12),
            column: Some(5),
            key: Some("notify.0.url"),
            message: "expected an http:// or https:// URL, got a ftp:// one",
        },
        Case {
            text: "notify:\n  - on: [failure]\n",
            line: Some(12),
            column: Some(5),
            key: Some("notify.0.url"),
            message: "missing required key `url`",
        },
        Case {
            text: "notify:\n  - url: http://h/x\n  - url: http://h/y\n    on: [start, finish]\n",
            line: Some(14),
            column: Some(17),
            key: Some("notify.1.on.1"),
            message: "expected one of `start`, `success`, `failure`, got \"finish\"",
        },
        Case {
            text: "notify:\n  - url: http://h/x\n    on: []\n",
            line: Some(13),
            column: Some(5),
            key: Some("notify.0.on"),
            message: "expected at least one of `start`, `success`, `failure`",
        },
        Case {
            text: "notify:\n  - url: http://h/x\n    on: failure\n",
            line: Some(13),
            column: Some(5),
            key: Some("notify.0.on"),
            message: "expected a sequence, got string \"failure\"",
        },
        Case {
            text: "notify:\n  - url: http://h/x\n    jobs:\n      - backup\n      - backups\n",
            line: Some(15),
            column: Some(9),
            key: Some("notify.0.jobs.1"),
            message: "expected a job (`backup`, `restore`, `verify`, `prune`, `pull`, `boot`), optionally with `:NAME` of an entry (`backup:acme`), got \"backups\"",
        },
        Case {
            text: "notify:\n  - url: http://h/x\n    jobs: [\"backup:nope\"]\n",
            line: Some(13),
            column: Some(12),
            key: Some("notify.0.jobs.0"),
            message: "no state entry \"nope\" for \"backup:nope\" (known: acme)",
        },
        Case {
            text: "notify:\n  - url: http://h/x\n    jobs: [\"pull:acme\"]\n",
            line: Some(13),
            column: Some(12),
            key: Some("notify.0.jobs.0"),
            message: "no pull entry \"acme\" for \"pull:acme\" (known: site)",
        },
        Case {
            text: "notify:\n  - url: http://h/x\n    jobs: [\"boot:acme\"]\n",
            line: Some(13),
            column: Some(12),
            key: Some("notify.0.jobs.0"),
            message: "`boot` runs on no entry",
        },
        Case {
            text: "notify:\n  - url: http://h/x\n    jobs: []\n",
            line: Some(13),
            column: Some(5),
            key: Some("notify.0.jobs"),
            message: "expected at least one job",
        },
        Case {
            text: "notify:\n  - url: http://h/x\n    type: slack\n",
            line: Some(13),
            column: Some(5),
            key: Some("notify.0.type"),
            message: "expected `webhook` or `healthchecks`, got \"slack\"",
        },
        Case {
            text: "notify:\n  - url: http://h/x\n    timeout: 0s\n",
            line: Some(13),
            column: Some(5),
            key: Some("notify.0.timeout"),
            message: "expected a duration longer than 0s and at most 5m",
        },
        Case {
            text: "notify:\n  - url: http://h/x\n    timeout: 1h\n",
            line: Some(13),
            column: Some(5),
            key: Some("notify.0.timeout"),
            message: "a notification must not hold the jobs up",
        },
        Case {
            text: "notify:\n  - url: http://h/x\n    retries: 11\n",
            line: Some(13),
            column: Some(5),
            key: Some("notify.0.retries"),
            message: "expected a number from 0 to 10, got 11",
        },
        Case {
            text: "notify:\n  - url: http://h/x\n    name: hook\n  - url: http://h/y\n    name: hook\n",
            line: Some(15),
            column: Some(5),
            key: Some("notify.1.name"),
            message: "the name \"hook\" is already that of notify.0",
        },
        Case {
            text: "notify:\n  - url: http://h/x\n    name: ../x\n",
            line: Some(13),
            column: Some(5),
            key: Some("notify.0.name"),
            message: "invalid name \"../x\"",
        },
        Case {
            text: "notify:\n  - url: http://h/x\n    urls: http://h/y\n",
            line: Some(13),
            column: Some(5),
            key: Some("notify.0.urls"),
            message: "unknown key `urls`, expected one of `name`, `url`, `type`, `on`, `jobs`, `timeout`, `retries`",
        },
        Case {
            text: "notify:\n  url: http://h/x\n",
            line: Some(11),
            column: Some(1),
            key: Some("notify"),
            message: "expected a sequence, got a mapping",
        },
        Case {
            text: "notify:\n  - url: https://hc-ping.com/${UNSET_TOKEN}\n",
            line: Some(12),
            column: Some(5),
            key: Some("notify.0.url"),
            message: "environment variable UNSET_TOKEN is not set",
        },
    ];
    for case in &cases {
        check(case, &format!("{NOTIFY_BASE}{}", case.text));
    }
}

#[test]
fn notify_url_errors_never_echo_the_url() {
    for url in [
        "hc-ping.com/SECRET",
        "https://user:SECRET@hc-ping.com/x",
        "https://hc-ping.com/SECRET#x",
        "https://hc-ping.com/SE CRET",
        "https://hc-ping.com:99999/SECRET",
        "https:///SECRET",
    ] {
        let e = err(&format!("{BASE}notify:\n  - url: \"{url}\"\n"));
        assert_eq!(e.key.as_deref(), Some("notify.0.url"), "{url}: {e}");
        assert_eq!((e.line, e.column), (Some(5), Some(5)), "{url}: {e}");
        assert!(!e.to_string().contains("SECRET"), "{url}: {e}");
        assert!(!e.to_string().contains("CRET"), "{url}: {e}");
    }
}
