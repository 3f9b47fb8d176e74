#!/usr/bin/env python3
"""Manifest of a directory tree, and comparison of two trees.

  bench/tree-manifest.py manifest DIR > FILE     one JSON line per entry, sorted
  bench/tree-manifest.py compare SRC DST         exit 0 when the trees hold the same
                                                 entries (type, mode, size, sha256,
                                                 link target); prints the differences
                                                 and whether file mtimes were kept

The root directory itself is not compared (its name, mode and mtime belong to
whoever created it).
"""

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


def compare(src, dst):
    a, b = manifest(src), manifest(dst)
    problems = []
    for rel in sorted(set(a) | set(b)):
        if rel not in b:
            problems.append("missing in %s: %s" % (dst, rel))
        elif rel not in a:
            problems.append("extra in %s: %s" % (dst, rel))
        else:
            ea = {k: v for k, v in a[rel].items() if k != "mtime"}
            eb = {k: v for k, v in b[rel].items() if k != "mtime"}
            if ea != eb:
                problems.append("differs: %s: %s != %s" % (rel, json.dumps(ea), json.dumps(eb)))
    mtime_diff = sum(1 for rel in a if rel in b and a[rel].get("mtime") != b[rel].get("mtime"))
    files = sum(1 for e in a.values() if e["type"] == "file")
    nbytes = sum(e.get("size", 0) for e in a.values())
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
