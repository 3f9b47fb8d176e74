//! `rehost-acme-<target>.prom`: what node_exporter exports about an acme.json
//! after each backup and restore of a `kind: acme` entry.
//!
//! When the file does not parse, only `rehost_acme_file_valid` changes (to
//! 0): the certificates' expiry series of the last good read are kept, so an
//! expiry alert does not resolve itself because the file broke.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use super::Summary;
use crate::metrics::escape;
use crate::safefs::Dir;

pub const FILE_VALID: &str = "rehost_acme_file_valid";
pub const CERTIFICATES: &str = "rehost_acme_certificates";
pub const NOT_AFTER: &str = "rehost_acme_certificate_not_after_timestamp_seconds";

/// `rehost-acme-<target>.prom`
pub fn file_name(target: &str) -> String {
    format!("rehost-acme-{target}.prom")
}

/// The exposition text: `summary` is `None` when the file did not parse,
/// and `previous` is the last file's text, whose certificate series are then
/// carried over.
pub fn render(target: &str, summary: Option<&Summary>, previous: Option<&str>) -> String {
    let t = escape(target);
    let (mut counts, mut expiries) = (String::new(), String::new());
    match summary {
        Some(s) => {
            for (resolver, certs) in &s.resolvers {
                let r = escape(resolver);
                let _ = writeln!(
                    counts,
                    "{CERTIFICATES}{{target=\"{t}\",resolver=\"{r}\"}} {}",
                    certs.len()
                );
                for c in certs {
                    let _ = writeln!(
                        expiries,
                        "{NOT_AFTER}{{target=\"{t}\",resolver=\"{r}\",domain=\"{}\"}} {}",
                        escape(&c.domain),
                        c.not_after
                    );
                }
            }
        }
        None => {
            for line in previous.unwrap_or_default().lines() {
                for (name, out) in [(CERTIFICATES, &mut counts), (NOT_AFTER, &mut expiries)] {
                    if line.strip_prefix(name).is_some_and(|l| l.starts_with('{')) {
                        out.push_str(line);
                        out.push('\n');
                    }
                }
            }
        }
    }
    // Each family's HELP and TYPE, then all of its series: the text format
    // wants a family in one piece.
    format!(
        "# HELP {FILE_VALID} 1 if acme.json was Traefik's JSON with every certificate and key readable when last read, 0 if not.\n\
         # TYPE {FILE_VALID} gauge\n\
         {FILE_VALID}{{target=\"{t}\"}} {}\n\
         # HELP {CERTIFICATES} Certificates in acme.json, per resolver.\n\
         # TYPE {CERTIFICATES} gauge\n\
         {counts}\
         # HELP {NOT_AFTER} Unix time the certificate expires (its notAfter).\n\
         # TYPE {NOT_AFTER} gauge\n\
         {expiries}",
        u8::from(summary.is_some())
    )
}

/// Writes the metrics of `target` into `dir` (atomically, 0644, relative to
/// the directory opened without following symlinks, as every metrics file).
pub fn record(dir: &Path, target: &str, summary: Option<&Summary>) -> io::Result<()> {
    let name = file_name(target);
    let dir = Dir::open_or_create(dir, 0o755)?;
    // Only a broken file carries the last good series over.
    let previous = match summary {
        Some(_) => None,
        None => crate::metrics::read_previous(&dir, &name)?,
    };
    let text = render(target, summary, previous.as_deref());
    dir.write_atomic(name.as_ref(), text.as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme::Certificate;

    fn summary() -> Summary {
        let mut s = Summary::default();
        s.resolvers.insert(
            "le".into(),
            vec![Certificate {
                domain: "example.com".into(),
                sans: vec!["www.example.com".into()],
                not_after: 1_800_000_000,
            }],
        );
        s.resolvers.insert("staging".into(), Vec::new());
        s
    }

    #[test]
    fn certificates_and_counts_are_exported() {
        let text = render("acme", Some(&summary()), None);
        assert!(text.contains("rehost_acme_file_valid{target=\"acme\"} 1\n"));
        assert!(text.contains("rehost_acme_certificates{target=\"acme\",resolver=\"le\"} 1\n"));
        assert!(text.contains("rehost_acme_certificates{target=\"acme\",resolver=\"staging\"} 0\n"));
        assert!(text.contains(
            "rehost_acme_certificate_not_after_timestamp_seconds{target=\"acme\",resolver=\"le\",domain=\"example.com\"} 1800000000\n"
        ));
        // Every family in one piece, after its TYPE line.
        let mut seen: Vec<&str> = Vec::new();
        for line in text.lines() {
            let family = match line.strip_prefix("# TYPE ") {
                Some(rest) => rest.split(' ').next().unwrap(),
                None if line.starts_with('#') => continue,
                None => line.split('{').next().unwrap(),
            };
            if seen.last() != Some(&family) {
                assert!(!seen.contains(&family), "{family} in two pieces:\n{text}");
                seen.push(family);
            }
        }
        assert_eq!(seen, [FILE_VALID, CERTIFICATES, NOT_AFTER]);
    }

    #[test]
    fn a_broken_file_keeps_the_last_expiry_series() {
        let dir = tempfile::tempdir().unwrap();
        record(dir.path(), "acme", Some(&summary())).unwrap();
        record(dir.path(), "acme", None).unwrap();
        let text = std::fs::read_to_string(dir.path().join("rehost-acme-acme.prom")).unwrap();
        assert!(text.contains("rehost_acme_file_valid{target=\"acme\"} 0\n"));
        assert!(text.contains("domain=\"example.com\"} 1800000000\n"));
        assert_eq!(text.matches("rehost_acme_file_valid{").count(), 1);
        // A good read afterwards replaces them.
        let mut s = summary();
        s.resolvers.remove("le");
        record(dir.path(), "acme", Some(&s)).unwrap();
        let text = std::fs::read_to_string(dir.path().join("rehost-acme-acme.prom")).unwrap();
        assert!(!text.contains("example.com"));
        // Job statuses never come out of it (`rehost status` reads the same directory).
        assert!(crate::metrics::parse(&text).is_empty());
    }
}
