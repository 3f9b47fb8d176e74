#!/usr/bin/env python3
"""Deterministically generate the benchmark data set.

Usage: bench/gen-data.py [--small] DIR

Default set (~1 GiB):
  * 20,000 small compressible text files (log- and source-like lines), 1-32 KiB
    each (~320 MiB in all), spread over a few hundred nested directories, a few
    of them with non-ASCII names;
  * 7 files of 100 MiB of incompressible pseudo-random bytes.
--small (or BENCH_SMALL=1): 1,000 text files + 2 random files of 2 MiB (~20 MiB),
for quick runs of the harness.

Everything comes from a seeded PRNG (same bytes, names and mtimes on every run).
Idempotent: DIR/.complete records the parameters; when it matches, nothing is
done. A directory holding anything else than a (partial) set of ours is refused.
"""

import json
import os
import random
import shutil
import sys
import time

MIB = 1 << 20
SEED = 20261123
MTIME = 1763900000  # fixed mtime for every file (2025-11-23), for reproducible trees

FULL = {"seed": SEED, "text_files": 20000, "text_min": 1024, "text_max": 32 * 1024,
        "dirs": 300, "random_files": 7, "random_size": 100 * MIB, "version": 1}
SMALL = {"seed": SEED, "text_files": 1000, "text_min": 1024, "text_max": 32 * 1024,
         "dirs": 30, "random_files": 2, "random_size": 2 * MIB, "version": 1}

UNICODE_NAMES = ["café-crème.txt", "日本語のログ.log", "résumé (copie).md",
                 "Ωmega-ñandú.conf", "emoji-🚀-launch.txt", "Ünïcödé dir"]

WORDS = ("the of and to in is for on with as by at from this that be are was "
         "request response server client backup restore state host upload "
         "download error warning info debug retry timeout bucket object key "
         "value config manifest archive block snapshot prometheus grafana "
         "traefik acme certificate renew token session user admin cache").split()
LEVELS = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"]
IDENTS = ["buf", "len", "offset", "state", "ctx", "req", "resp", "cfg", "path",
          "entry", "count", "total", "reader", "writer", "result", "err"]


def line_pool(rng, n):
    """A pool of realistic-looking text lines (logs, source code, config)."""
    pool = []
    for i in range(n):
        kind = rng.random()
        if kind < 0.5:
            ts = 1763000000 + rng.randrange(10_000_000)
            pool.append("%s.%03dZ %-5s [%s] %s %s id=%08x dur=%dms status=%d\n" % (
                time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)), rng.randrange(1000),
                rng.choice(LEVELS), rng.choice(IDENTS),
                " ".join(rng.choice(WORDS) for _ in range(rng.randrange(3, 12))),
                rng.choice(["/api/v1/query", "/metrics", "/healthz", "/index.html",
                            "/static/app.js", "/login"]),
                rng.getrandbits(32), rng.randrange(2000),
                rng.choice([200, 200, 200, 204, 301, 404, 500])))
        elif kind < 0.85:
            ind = "    " * rng.randrange(0, 4)
            a, b, c = rng.choice(IDENTS), rng.choice(IDENTS), rng.choice(IDENTS)
            pool.append(rng.choice([
                "%slet %s = %s.%s(%d)?;\n" % (ind, a, b, c, rng.randrange(100)),
                "%sif %s > %s { return Err(Error::%s); }\n" % (ind, a, b, c.capitalize()),
                "%s// %s\n" % (ind, " ".join(rng.choice(WORDS) for _ in range(rng.randrange(4, 14)))),
                "%sfn %s_%s(%s: &mut %s) -> Result<usize> {\n" % (ind, a, b, c, b.capitalize()),
                "%s}\n" % ind,
                "%sfor %s in %s.iter() { %s += %s.len(); }\n" % (ind, a, b, c, a),
            ]))
        else:
            pool.append("%s_%s = \"%s\"\n" % (rng.choice(IDENTS), rng.choice(IDENTS),
                                              "-".join(rng.choice(WORDS) for _ in range(3))))
    return pool


def make_dirs(rng, n):
    """n nested relative directory paths (depth 1-4) and a few unicode ones."""
    dirs = []
    for i in range(n):
        depth = rng.randrange(1, 5)
        parts = ["d%02d" % (i % 17)]
        for d in range(1, depth):
            parts.append("%s-%d" % (rng.choice(WORDS), rng.randrange(8)))
        parts[-1] += "-%03d" % i  # unique
        dirs.append(os.path.join(*parts))
    dirs[1] = os.path.join(dirs[1], UNICODE_NAMES[-1])
    return dirs


def write_file(path, data):
    with open(path, "wb") as f:
        f.write(data)
    os.utime(path, (MTIME, MTIME))


def generate(root, p):
    rng = random.Random(p["seed"])
    pool = line_pool(rng, 50_000)
    avg_line = sum(len(l) for l in pool) / len(pool)
    dirs = make_dirs(rng, p["dirs"])
    for d in dirs:
        os.makedirs(os.path.join(root, "text", d), exist_ok=True)
    text_bytes = 0
    files = 0
    for i in range(p["text_files"]):
        size = rng.randrange(p["text_min"], p["text_max"] + 1)
        nlines = max(1, int(size / avg_line))
        data = "".join(rng.choices(pool, k=nlines)).encode()[:size]
        if i < len(UNICODE_NAMES) - 1:
            name = UNICODE_NAMES[i]
        else:
            name = "%s-%05d.%s" % (rng.choice(IDENTS), i, rng.choice(["log", "rs", "txt", "conf", "md"]))
        write_file(os.path.join(root, "text", dirs[i % len(dirs)], name), data)
        text_bytes += len(data)
        files += 1
    os.makedirs(os.path.join(root, "blobs"), exist_ok=True)
    brng = random.Random(p["seed"] + 1)
    rand_bytes = 0
    for i in range(p["random_files"]):
        path = os.path.join(root, "blobs", "random-%02d.bin" % i)
        with open(path, "wb") as f:
            left = p["random_size"]
            while left:
                n = min(left, 4 * MIB)
                f.write(brng.randbytes(n))
                left -= n
        os.utime(path, (MTIME, MTIME))
        rand_bytes += p["random_size"]
        files += 1
    for d in sorted({os.path.join(root, "text", d) for d in dirs}, reverse=True):
        os.utime(d, (MTIME, MTIME))
    return {"files": files, "text_bytes": text_bytes, "random_bytes": rand_bytes,
            "bytes": text_bytes + rand_bytes, "dirs": len(dirs)}


def main():
    args = [a for a in sys.argv[1:] if a != "--small"]
    small = "--small" in sys.argv[1:] or os.environ.get("BENCH_SMALL", "") not in ("", "0")
    if len(args) != 1 or args[0].startswith("-"):
        sys.stderr.write("usage: %s [--small] DIR\n" % sys.argv[0])
        return 2
    root = os.path.abspath(args[0])
    p = SMALL if small else FULL
    marker = os.path.join(root, ".complete")
    partial = os.path.join(root, ".partial")
    if os.path.exists(marker):
        try:
            with open(marker) as f:
                done = json.load(f)
        except (OSError, ValueError):
            done = {}
        if done.get("params") == p:
            print("gen-data: %s already complete (%d files, %.1f MiB), skipping"
                  % (root, done["stats"]["files"], done["stats"]["bytes"] / MIB))
            return 0
    if os.path.isdir(root) and os.listdir(root):
        if not (os.path.exists(marker) or os.path.exists(partial)):
            sys.stderr.write("gen-data: %s is not empty and was not made by gen-data.py; refusing\n" % root)
            return 1
        print("gen-data: removing stale data set in %s" % root)
        shutil.rmtree(root)
    os.makedirs(root, exist_ok=True)
    with open(partial, "w") as f:
        f.write("generation in progress\n")
    t0 = time.time()
    stats = generate(root, p)
    with open(marker + ".tmp", "w") as f:
        json.dump({"params": p, "stats": stats}, f, sort_keys=True)
        f.write("\n")
    os.utime(marker + ".tmp", (MTIME, MTIME))
    os.replace(marker + ".tmp", marker)
    os.unlink(partial)
    print("gen-data: wrote %d files (%.1f MiB text, %.1f MiB random) in %s in %.1fs"
          % (stats["files"], stats["text_bytes"] / MIB, stats["random_bytes"] / MIB, root,
             time.time() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
