//! Archive extraction, as restore runs it: any byte stream (a tar, or a gzip
//! of one when the input starts with the gzip magic) is extracted into a
//! staging directory or refused; nothing ever lands outside it, symlinks
//! extracted stay inside, and validation without writing (`verify`) accepts
//! exactly what extraction accepts.

#![no_main]

use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use flate2::read::MultiGzDecoder;
use libfuzzer_sys::fuzz_target;
use rehost_jobs::archive::{extract, CappedReader, ExtractOptions, Sink};

/// Decompressed bytes allowed, as a manifest's `tar_bytes` would cap them.
const CAP: u64 = 8 << 20;

fn reader(data: &[u8]) -> CappedReader<Box<dyn Read + '_>> {
    let inner: Box<dyn Read + '_> = if data.starts_with(&[0x1f, 0x8b]) {
        Box::new(MultiGzDecoder::new(data))
    } else {
        Box::new(data)
    };
    CappedReader::new(inner, CAP)
}

fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Every symlink under `root` must resolve, lexically from where it is, to a
/// path inside `root` (or inside `final_root` when absolute).
fn symlinks_stay_inside(root: &Path, final_root: &Path) {
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(m) = fs::symlink_metadata(&p) else {
                continue;
            };
            if m.is_dir() {
                stack.push(p);
            } else if m.file_type().is_symlink() {
                let target = fs::read_link(&p).unwrap_or_default();
                let rel = p.strip_prefix(root).unwrap_or(&p).to_path_buf();
                let resolved = if target.is_absolute() {
                    target
                        .strip_prefix(final_root)
                        .map(Path::to_path_buf)
                        .unwrap_or_else(|_| panic!("{} -> {} leaves", rel.display(), target.display()))
                } else {
                    rel.parent().unwrap_or(Path::new("")).join(&target)
                };
                let mut depth = 0i64;
                for c in resolved.components() {
                    match c {
                        Component::Normal(_) => depth += 1,
                        Component::ParentDir => depth -= 1,
                        Component::CurDir => {}
                        _ => panic!("{} -> {}: odd component", rel.display(), target.display()),
                    }
                    assert!(depth >= 0, "{} -> {} leaves the root", rel.display(), target.display());
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(tmp) = tempfile::tempdir() else { return };
    let staging = tmp.path().join("staging");
    let outside = tmp.path().join("outside");
    if fs::create_dir(&staging).is_err() || fs::create_dir(&outside).is_err() {
        return;
    }
    let final_root = PathBuf::from("/srv/target");
    let opts = ExtractOptions {
        preserve_owner: false,
        final_root: Some(final_root.clone()),
        progress: None,
    };
    let Ok(staging_dir) = rehost_jobs::safefs::Dir::open(&staging) else { return };
    let written = extract(reader(data), Sink::Dir(&staging_dir), &opts).map(|(stats, mut rest)| {
        let _ = io::copy(&mut rest, &mut io::sink());
        stats
    });
    let checked = extract(reader(data), Sink::Check, &opts).map(|(stats, _)| stats);
    // Nothing appeared beside the staging directory, nor in it via `..`.
    assert_eq!(names(tmp.path()), ["outside", "staging"]);
    assert!(names(&outside).is_empty(), "wrote outside: {:?}", names(&outside));
    symlinks_stay_inside(&staging, &final_root);
    // `verify` and `restore` agree on what is acceptable, except where only
    // writing can fail (a directory where a file goes, names the filesystem
    // refuses): a refusal by the checker must be a refusal when writing.
    if checked.is_err() {
        assert!(written.is_err(), "check refused what extraction accepted");
    }
    if let (Ok(w), Ok(c)) = (&written, &checked) {
        assert_eq!(w, c, "check and extraction count differently");
    }
});
