#!/usr/bin/env python3
"""Manifest of a directory tree, and comparison of two trees.

  bench/tree-manifest.py manifest DIR > FILE     one JSON line per entry, sorted
  bench/tree-manifest.py compare SRC DST         exit 0 when the trees hold the same
                                                 entries (type, mode, size, sha256,
                                                 link target); prints the differences
                                                 and whether file mtimes were kept

The root directory itself is not compared (its name, mode and mtime belong to
whoever created it).

compare first walks both trees (lstat only, the two at once) and compares the
entries' names, types, modes, sizes and link targets; then it hashes the
content of every pair of regular files (sha256 of both sides) on
TREE_COMPARE_JOBS processes (default: the CPUs, at most 4), each announcing a
batch of 64 small files to the kernel (POSIX_FADV_WILLNEED) before reading
them, so that reads from a cold page cache overlap. 1,000,000 small files
take about a minute or two rather than ten.
"""

import concurrent.futures
import hashlib
import json
import os
import stat
import sys


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def manifest(root):
    out = {}
    root = os.path.abspath(root)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            e = {"mode": "%04o" % stat.S_IMODE(st.st_mode)}
            if stat.S_ISLNK(st.st_mode):
                e["type"] = "symlink"
                e["target"] = os.readlink(path)
                e.pop("mode")
            elif stat.S_ISDIR(st.st_mode):
                e["type"] = "dir"
            elif stat.S_ISREG(st.st_mode):
                e["type"] = "file"
                e["size"] = st.st_size
                e["sha256"] = sha256_file(path)
                e["mtime"] = int(st.st_mtime)
            else:
                e["type"] = "other"
            out[rel] = e
    return out


def scan(root):
    """{relative path: (type, mode, size, link target, mtime)} of every entry
    under root (not root itself), from lstat only; None where not applicable.
    type: "file", "dir", "symlink" or "other"; mode: the permission bits (int)."""
    out = {}
    stack = [""]
    S_ISLNK, S_ISDIR, S_ISREG, S_IMODE = stat.S_ISLNK, stat.S_ISDIR, stat.S_ISREG, stat.S_IMODE
    while stack:
        reldir = stack.pop()
        prefix = reldir + "/" if reldir else ""
        with os.scandir(os.path.join(root, reldir) if reldir else root) as it:
            for de in it:
                rel = prefix + de.name
                st = de.stat(follow_symlinks=False)
                m = st.st_mode
                if S_ISREG(m):
                    out[rel] = ("file", S_IMODE(m), st.st_size, None, int(st.st_mtime))
                elif S_ISDIR(m):
                    out[rel] = ("dir", S_IMODE(m), None, None, None)
                    stack.append(rel)
                elif S_ISLNK(m):
                    out[rel] = ("symlink", None, None, os.readlink(de.path), None)
                else:
                    out[rel] = ("other", S_IMODE(m), None, None, None)
    return out


def entry_json(e):
    """The manifest's view of a scanned entry, without the mtime."""
    d = {"type": e[0]}
    if e[1] is not None:
        d["mode"] = "%04o" % e[1]
    if e[2] is not None:
        d["size"] = e[2]
    if e[3] is not None:
        d["target"] = e[3]
    return d


def _sha256_fd(fd, size):
    """sha256 (hex) of what fd holds; size: its expected size (small files: one read)."""
    h = hashlib.sha256()
    if size < (1 << 20):
        b = os.read(fd, size + 1)
        h.update(b)
        if len(b) == size:  # one byte more was asked for, and a regular file had none: its end
            return h.hexdigest()
    while True:
        b = os.read(fd, 1 << 20)
        if not b:
            return h.hexdigest()
        h.update(b)


WILLNEED_MAX = 1 << 20
BATCH_FILES = 64         # files per task (2 open descriptors each while it runs)
BATCH_BYTES = 8 << 20


def _same_content(pairs):
    """(rel, why) for the pairs (rel, src path, dst path, size) whose sha256 differ.

    Every file of the batch is opened and announced to the kernel
    (POSIX_FADV_WILLNEED) before the first is read, so that a cold page cache
    reads them all at once rather than one after the other."""
    bad = []
    fds = []
    flags = os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    try:
        for rel, pa, pb, size in pairs:
            pair = []
            for p in (pa, pb):
                try:
                    fd = os.open(p, flags)
                except OSError as e:
                    pair.append(e)
                    continue
                pair.append(fd)
                if size <= WILLNEED_MAX:  # big files: the kernel's sequential readahead does it
                    try:
                        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
                    except (OSError, AttributeError):
                        pass
            fds.append((rel, size, pair))
        for rel, size, (fa, fb) in fds:
            if isinstance(fa, OSError) or isinstance(fb, OSError):
                bad.append((rel, "unreadable (%s)" % (fa if isinstance(fa, OSError) else fb)))
                continue
            try:
                ha, hb = _sha256_fd(fa, size), _sha256_fd(fb, size)
            except OSError as e:
                bad.append((rel, "unreadable (%s)" % e))
                continue
            if ha != hb:
                bad.append((rel, "sha256 %s != %s" % (ha, hb)))
    finally:
        for _, _, pair in fds:
            for fd in pair:
                if isinstance(fd, int):
                    os.close(fd)
    return bad


def _pool(n):
    """A pool of n worker processes (forked: they share the parent's memory as
    it was), or of threads where fork is not available."""
    try:
        import multiprocessing
        ctx = multiprocessing.get_context("fork")
        return concurrent.futures.ProcessPoolExecutor(max_workers=n, mp_context=ctx)
    except (ImportError, ValueError, OSError):
        return concurrent.futures.ThreadPoolExecutor(max_workers=n)


def compare(src_arg, dst_arg):
    src, dst = os.path.abspath(src_arg), os.path.abspath(dst_arg)
    jobs = max(1, int(os.environ.get("TREE_COMPARE_JOBS", "0")) or min(4, os.cpu_count() or 1))
    # the two walks, at once
    with _pool(2) as ex:
        fa, fb = ex.submit(scan, src), ex.submit(scan, dst)
        a, b = fa.result(), fb.result()
    problems = []
    same_files = []  # files whose metadata agree: their content is compared next
    for rel, ea in a.items():
        eb = b.get(rel)
        if eb is None:
            problems.append((rel, "missing in %s: %s" % (dst_arg, rel)))
        elif ea[:4] != eb[:4]:
            problems.append((rel, "differs: %s: %s != %s" % (
                rel, json.dumps(entry_json(ea)), json.dumps(entry_json(eb)))))
        elif ea[0] == "file":
            same_files.append(rel)
    for rel in b:
        if rel not in a:
            problems.append((rel, "extra in %s: %s" % (dst_arg, rel)))
    # Content: batches of files (fewer, larger tasks), big files alone, on
    # `jobs` processes.
    same_files.sort()
    batches, cur, cur_bytes = [], [], 0
    for rel in same_files:
        size = a[rel][2]
        cur.append((rel, os.path.join(src, rel), os.path.join(dst, rel), size))
        cur_bytes += size
        if len(cur) >= BATCH_FILES or cur_bytes >= BATCH_BYTES:
            batches.append(cur)
            cur, cur_bytes = [], 0
    if cur:
        batches.append(cur)
    with _pool(jobs) as ex:
        for bad in ex.map(_same_content, batches, chunksize=8):
            for rel, why in bad:
                problems.append((rel, "differs: %s: content: %s" % (rel, why)))
    problems = [p for _, p in sorted(problems)]
    mtime_diff = sum(1 for rel, e in a.items() if e[4] != b.get(rel, e)[4])
    files = sum(1 for e in a.values() if e[0] == "file")
    nbytes = sum(e[2] or 0 for e in a.values())
    for p in problems[:20]:
        print(p)
    if len(problems) > 20:
        print("... and %d more differences" % (len(problems) - 20))
    print("compared %d entries (%d files, %d bytes): %s; file mtimes %s"
          % (len(a), files, nbytes, "OK" if not problems else "FAIL (%d differences)" % len(problems),
             "kept" if mtime_diff == 0 else "differ on %d files" % mtime_diff))
    return 0 if not problems else 1


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "manifest":
        for rel, e in sorted(manifest(sys.argv[2]).items()):
            print(json.dumps(dict(path=rel, **e), sort_keys=True, ensure_ascii=False))
        return 0
    if len(sys.argv) == 4 and sys.argv[1] == "compare":
        return compare(sys.argv[2], sys.argv[3])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
