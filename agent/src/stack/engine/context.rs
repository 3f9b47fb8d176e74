//! A build context: the files of a `build:` directory that `.dockerignore`
//! lets through, a content hash of them (with the Dockerfile name and build
//! args) that names the built image, and a tar stream of them for the
//! Engine's build API.
//!
//! The hash covers names, types, permission bits, symlink targets and
//! contents, in sorted order, so it changes exactly when what the Engine would
//! receive changes (mtimes and owners are not part of it: the tar carries
//! uid/gid 0 as the Docker CLI sends). The Dockerfile and `.dockerignore` are
//! always sent, as the Docker CLI does, even when a pattern excludes them.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::dockerignore::Ignore;
use crate::stack::model::Build;

/// What goes into the build: the scanned context and its hash.
#[derive(Debug)]
pub(crate) struct Context {
    pub root: PathBuf,
    pub entries: Vec<Entry>,
    /// Lowercase hex sha256.
    pub hash: String,
    /// `dockerfile_inline:` as (name in the tar, text).
    pub inline: Option<(String, String)>,
}

#[derive(Debug)]
pub(crate) struct Entry {
    /// Relative, `/`-separated.
    pub rel: String,
    pub kind: Kind,
    pub mode: u32,
    pub mtime: u64,
}

#[derive(Debug)]
pub(crate) enum Kind {
    Dir,
    File { size: u64 },
    Symlink { target: PathBuf },
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ContextError {
    #[error("build context {0}: not a directory")]
    NotADirectory(PathBuf),
    #[error("build context {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {message}")]
    Ignore { path: PathBuf, message: String },
    #[error("build context {context}: the Dockerfile {dockerfile} is missing")]
    NoDockerfile {
        context: PathBuf,
        dockerfile: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ContextError + '_ {
    move |source| ContextError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Scans and hashes `build`'s context (blocking: call it off the runtime).
pub(crate) fn scan(build: &Build) -> Result<Context, ContextError> {
    let root = build.context.clone();
    if !root.is_dir() {
        return Err(ContextError::NotADirectory(root));
    }
    let ignore_path = root.join(".dockerignore");
    let ignore = match fs::read_to_string(&ignore_path) {
        Ok(text) => Ignore::parse(&text).map_err(|message| ContextError::Ignore {
            path: ignore_path.clone(),
            message,
        })?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ignore::default(),
        Err(e) => return Err(io_err(&ignore_path)(e)),
    };
    let dockerfile = build.dockerfile.trim_start_matches("./").to_string();
    if build.dockerfile_inline.is_none() && !root.join(&dockerfile).is_file() {
        return Err(ContextError::NoDockerfile {
            context: root,
            dockerfile,
        });
    }
    let always = [dockerfile.as_str(), ".dockerignore"];
    let mut entries = Vec::new();
    walk(&root, "", &ignore, &always, &mut entries)?;
    if build.dockerfile_inline.is_some() {
        // The inline text is sent under this name; a context file of the
        // same name would be a second entry.
        entries.retain(|e| e.rel != dockerfile);
    }

    let mut h = Sha256::new();
    h.update(b"rehost-build-context-v1\0");
    h.update(dockerfile.as_bytes());
    h.update(b"\0");
    for (k, v) in &build.args {
        h.update(format!("arg\0{k}\0{v}\0").as_bytes());
    }
    // Everything else the build request carries changes the image too.
    for (key, value) in [
        ("target", build.target.clone()),
        ("inline", build.dockerfile_inline.clone()),
        ("network", build.network.clone()),
        ("shm", build.shm_size.map(|n| n.to_string())),
    ] {
        if let Some(value) = value {
            h.update(format!("{key}\0{}\0{value}\0", value.len()).as_bytes());
        }
    }
    for (k, v) in &build.labels {
        h.update(format!("label\0{k}\0{v}\0").as_bytes());
    }
    for host in &build.extra_hosts {
        h.update(format!("host\0{host}\0").as_bytes());
    }
    let mut buf = vec![0u8; 64 * 1024];
    for e in &entries {
        match &e.kind {
            Kind::Dir => h.update(format!("d\0{}\0{:o}\0", e.rel, e.mode).as_bytes()),
            Kind::Symlink { target } => {
                h.update(format!("l\0{}\0{}\0", e.rel, target.to_string_lossy()).as_bytes())
            }
            Kind::File { size } => {
                h.update(format!("f\0{}\0{:o}\0{size}\0", e.rel, e.mode).as_bytes());
                let path = root.join(&e.rel);
                let mut f = fs::File::open(&path).map_err(io_err(&path))?;
                loop {
                    let n = f.read(&mut buf).map_err(io_err(&path))?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
            }
        }
    }
    Ok(Context {
        root,
        entries,
        hash: hex::encode(h.finalize()),
        inline: build
            .dockerfile_inline
            .as_ref()
            .map(|text| (dockerfile.clone(), text.clone())),
    })
}

fn walk(
    root: &Path,
    rel: &str,
    ignore: &Ignore,
    always: &[&str],
    out: &mut Vec<Entry>,
) -> Result<(), ContextError> {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let mut names: BTreeMap<String, fs::Metadata> = BTreeMap::new();
    for item in fs::read_dir(&dir).map_err(io_err(&dir))? {
        let item = item.map_err(io_err(&dir))?;
        let meta = item.metadata().map_err(io_err(&item.path()))?;
        names.insert(item.file_name().to_string_lossy().into_owned(), meta);
    }
    for (name, meta) in names {
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let excluded = ignore.excludes(&child) && !always.contains(&child.as_str());
        let mode = meta.permissions().mode() & 0o7777;
        let mtime = u64::try_from(meta.mtime()).unwrap_or(0);
        let ft = meta.file_type();
        if ft.is_dir() {
            // An excluded directory may still hold re-included (`!`) files;
            // without exceptions its subtree can be skipped whole.
            if excluded && !ignore.has_exceptions() {
                continue;
            }
            if !excluded {
                out.push(Entry {
                    rel: child.clone(),
                    kind: Kind::Dir,
                    mode,
                    mtime,
                });
            }
            walk(root, &child, ignore, always, out)?;
        } else if excluded {
            continue;
        } else if ft.is_symlink() {
            let path = root.join(&child);
            let target = fs::read_link(&path).map_err(io_err(&path))?;
            out.push(Entry {
                rel: child,
                kind: Kind::Symlink { target },
                mode,
                mtime,
            });
        } else if ft.is_file() {
            out.push(Entry {
                rel: child,
                kind: Kind::File { size: meta.len() },
                mode,
                mtime,
            });
        }
        // Sockets, FIFOs and devices are not sent, as the Docker CLI does not.
    }
    Ok(())
}

/// Chunks of the tar stream as the request body wants them.
pub(crate) type Chunk = Result<Bytes, io::Error>;

/// Writes the context as a tar into `tx` in 64 KiB chunks (blocking: run it
/// on a blocking thread while the request body reads the other end). A file
/// that changed size since the scan is an error, not a silently different
/// build.
pub(crate) fn write_tar(ctx: &Context, tx: mpsc::Sender<Chunk>) -> io::Result<()> {
    let sink = ChannelWriter {
        tx: tx.clone(),
        buf: Vec::with_capacity(CHUNK),
    };
    let result = (|| {
        let mut tar = tar::Builder::new(sink);
        for e in &ctx.entries {
            let mut header = tar::Header::new_gnu();
            header.set_mode(e.mode);
            header.set_mtime(e.mtime);
            header.set_uid(0);
            header.set_gid(0);
            match &e.kind {
                Kind::Dir => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    tar.append_data(&mut header, format!("{}/", e.rel), io::empty())?;
                }
                Kind::Symlink { target } => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_size(0);
                    tar.append_link(&mut header, &e.rel, target)?;
                }
                Kind::File { size } => {
                    let path = ctx.root.join(&e.rel);
                    let f = fs::File::open(&path)?;
                    let now = f.metadata()?.len();
                    if now != *size {
                        return Err(io::Error::other(format!(
                            "{} changed size while the build context was sent ({size} -> {now} bytes)",
                            path.display()
                        )));
                    }
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(*size);
                    tar.append_data(&mut header, &e.rel, f.take(*size))?;
                }
            }
        }
        if let Some((name, text)) = &ctx.inline {
            let mut header = tar::Header::new_gnu();
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(text.len() as u64);
            tar.append_data(&mut header, name, text.as_bytes())?;
        }
        let mut sink = tar.into_inner()?;
        sink.flush()
    })();
    if let Err(e) = &result {
        // The request body ends with this error, so the Engine sees a failed upload.
        let _ = tx.blocking_send(Err(io::Error::new(e.kind(), e.to_string())));
    }
    result
}

const CHUNK: usize = 64 * 1024;

struct ChannelWriter {
    tx: mpsc::Sender<Chunk>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the build request ended"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(dir: &Path) -> Build {
        Build::new(dir.to_path_buf())
    }

    /// The whole build-context stream `write_tar` sends for `ctx`.
    async fn tar_of(ctx: Context) -> Vec<u8> {
        let (tx, mut rx) = mpsc::channel(4);
        let writer = tokio::task::spawn_blocking(move || write_tar(&ctx, tx));
        let mut all = Vec::new();
        while let Some(chunk) = rx.recv().await {
            all.extend_from_slice(&chunk.unwrap());
        }
        writer.await.unwrap().unwrap();
        all
    }

    fn names(ctx: &Context) -> Vec<&str> {
        ctx.entries.iter().map(|e| e.rel.as_str()).collect()
    }

    #[test]
    fn ignore_rules_apply_and_the_dockerfile_is_always_sent() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        fs::write(p.join("Dockerfile"), "FROM scratch\n").unwrap();
        fs::write(
            p.join(".dockerignore"),
            "Dockerfile\n*.log\nsecret/\n!keep.log\n",
        )
        .unwrap();
        fs::write(p.join("a.log"), "x").unwrap();
        fs::write(p.join("keep.log"), "x").unwrap();
        fs::create_dir(p.join("secret")).unwrap();
        fs::write(p.join("secret/key"), "k").unwrap();
        fs::create_dir(p.join("www")).unwrap();
        fs::write(p.join("www/index.html"), "hi").unwrap();
        std::os::unix::fs::symlink("index.html", p.join("www/home.html")).unwrap();
        let ctx = scan(&build(p)).unwrap();
        assert_eq!(
            names(&ctx),
            vec![
                ".dockerignore",
                "Dockerfile",
                "keep.log",
                "www",
                "www/home.html",
                "www/index.html"
            ]
        );
    }

    #[test]
    fn hash_follows_content_mode_args_and_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        fs::write(p.join("Dockerfile"), "FROM scratch\n").unwrap();
        fs::write(p.join("f"), "one").unwrap();
        let h1 = scan(&build(p)).unwrap().hash;
        assert_eq!(h1, scan(&build(p)).unwrap().hash);
        // mtime alone does not change it
        filetime::set_file_mtime(p.join("f"), filetime::FileTime::from_unix_time(1, 0)).unwrap();
        assert_eq!(h1, scan(&build(p)).unwrap().hash);
        fs::write(p.join("f"), "two").unwrap();
        let h2 = scan(&build(p)).unwrap().hash;
        assert_ne!(h1, h2);
        fs::set_permissions(p.join("f"), fs::Permissions::from_mode(0o700)).unwrap();
        let h3 = scan(&build(p)).unwrap().hash;
        assert_ne!(h2, h3);
        let mut b = build(p);
        b.args.insert("V".into(), "1".into());
        assert_ne!(h3, scan(&b).unwrap().hash);
        let mut b = build(p);
        b.target = Some("prod".into());
        let with_target = scan(&b).unwrap().hash;
        assert_ne!(h3, with_target);
        b.target = Some("dev".into());
        assert_ne!(with_target, scan(&b).unwrap().hash);
        let mut b = build(p);
        b.labels.insert("org.example".into(), "1".into());
        assert_ne!(h3, scan(&b).unwrap().hash);
        // an ignored file does not count
        fs::write(p.join(".dockerignore"), "ignored\n").unwrap();
        let h4 = scan(&build(p)).unwrap().hash;
        fs::write(p.join("ignored"), "noise").unwrap();
        assert_eq!(h4, scan(&build(p)).unwrap().hash);
    }

    #[test]
    fn missing_dockerfile_and_bad_ignore_are_named() {
        let d = tempfile::tempdir().unwrap();
        let e = scan(&build(d.path())).unwrap_err().to_string();
        assert!(e.contains("Dockerfile is missing"), "{e}");
        fs::write(d.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        fs::write(d.path().join(".dockerignore"), "[oops\n").unwrap();
        let e = scan(&build(d.path())).unwrap_err().to_string();
        assert!(e.contains(".dockerignore") && e.contains("line 1"), "{e}");
    }

    #[tokio::test]
    async fn an_inline_dockerfile_is_sent_and_hashed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        fs::write(p.join("f"), "x").unwrap();
        let mut b = build(p);
        b.dockerfile = ".rehost-inline.Dockerfile".into();
        b.dockerfile_inline = Some("FROM scratch\nCOPY f /f\n".into());
        let ctx = scan(&b).unwrap();
        let h1 = ctx.hash.clone();
        b.dockerfile_inline = Some("FROM scratch\n".into());
        assert_ne!(h1, scan(&b).unwrap().hash);
        let all = tar_of(ctx).await;
        let mut archive = tar::Archive::new(&all[..]);
        let mut seen = Vec::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let mut text = String::new();
            e.read_to_string(&mut text).unwrap();
            seen.push((e.path().unwrap().display().to_string(), text));
        }
        assert_eq!(
            seen,
            vec![
                ("f".to_string(), "x".to_string()),
                (
                    ".rehost-inline.Dockerfile".to_string(),
                    "FROM scratch\nCOPY f /f\n".to_string()
                )
            ]
        );
    }

    #[tokio::test]
    async fn tar_stream_holds_every_entry() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        fs::write(p.join("Dockerfile"), "FROM scratch\n").unwrap();
        fs::create_dir(p.join("sub")).unwrap();
        fs::write(p.join("sub/big"), vec![7u8; 200_000]).unwrap();
        let ctx = scan(&build(p)).unwrap();
        let all = tar_of(ctx).await;
        let mut archive = tar::Archive::new(&all[..]);
        let mut seen = Vec::new();
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            seen.push((
                e.path().unwrap().display().to_string(),
                e.header().size().unwrap(),
            ));
        }
        assert_eq!(
            seen,
            vec![
                ("Dockerfile".to_string(), 13),
                ("sub/".to_string(), 0),
                ("sub/big".to_string(), 200_000)
            ]
        );
    }
}
