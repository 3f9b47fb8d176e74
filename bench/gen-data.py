#!/usr/bin/env python3
"""Deterministically generate the benchmark data sets.

Usage: bench/gen-data.py [--small] DIR
       bench/gen-data.py --profile NAME [DIR]
       bench/gen-data.py --profile NAME --describe     one line describing the set

Default set (~1 GiB):
  * 20,000 small compressible text files (log- and source-like lines), 1-32 KiB
    each (~320 MiB in all), spread over a few hundred nested directories, a few
    of them with non-ASCII names;
  * 7 files of 100 MiB of incompressible pseudo-random bytes.
--small (or BENCH_SMALL=1): 1,000 text files + 2 random files of 2 MiB (~20 MiB),
for quick runs of the harness.

Named profiles (--profile NAME, for bench/scale.sh and bench/cluster.sh; BENCH_SMALL does not apply):
  scale-4g        50,000 text files of 1-32 KiB (~800 MiB) in 750 nested
                  directories + 2 incompressible files of 2 GiB (~4.8 GiB)
  files-1m        1,000,000 text files of 200 B-2 KiB (~1 GiB; ~3.9 GiB on disk)
                  in 2,000 nested directories, nothing else
  scale-4g-small  1,000 text files + 2 incompressible files of 16 MiB (~48 MiB)
  files-1m-small  20,000 text files of 200 B-2 KiB in 40 directories (~20 MiB)
  mixed-512m      10,000 text files of 1-32 KiB (~160 MiB) in 150 nested directories
                  + 3 incompressible files of 116 MiB (~510 MiB; bench/cluster.sh)
  mixed-64m       1,000 text files + 2 incompressible files of 24 MiB (~64 MiB)
Without DIR a profile goes to $BENCH_SCALE_CACHE/NAME, by default
${REHOST_CACHE:-~/.cache/rehost}/bench-scale/NAME (outside the repository).
The random files of the profiles are a SHAKE-256 stream (seeded, 4 MiB a piece),
faster than random.randbytes; the default and --small sets are unchanged.

Everything comes from a seeded PRNG (same bytes, names and mtimes on every run).
Idempotent: DIR/.complete records the parameters; when it matches, nothing is
done. A directory holding anything else than a (partial) set of ours is refused.
"""

import hashlib
import json
import os
import random
import shutil
import sys
import time

MIB = 1 << 20
GIB = 1 << 30
SEED = 20261123
MTIME = 1763900000  # fixed mtime for every file (2025-11-23), for reproducible trees

FULL = {"seed": SEED, "text_files": 20000, "text_min": 1024, "text_max": 32 * 1024,
        "dirs": 300, "random_files": 7, "random_size": 100 * MIB, "version": 1}
SMALL = {"seed": SEED, "text_files": 1000, "text_min": 1024, "text_max": 32 * 1024,
         "dirs": 30, "random_files": 2, "random_size": 2 * MIB, "version": 1}


def _profile(name, **kw):
    p = {"profile": name, "seed": SEED, "text_min": 1024, "text_max": 32 * 1024,
         "random_files": 0, "random_size": 0, "random": "shake256", "version": 1}
    p.update(kw)
    return p


# Named profiles (bench/scale.sh). FULL and SMALL stay as they are: their
# .complete markers, and so the cached sets, must keep matching.
PROFILES = {
    "scale-4g": _profile("scale-4g", text_files=50000, dirs=750,
                         random_files=2, random_size=2 * GIB),
    "files-1m": _profile("files-1m", text_files=1000000, text_min=200, text_max=2048,
                         dirs=2000),
    "scale-4g-small": _profile("scale-4g-small", text_files=1000, dirs=30,
                               random_files=2, random_size=16 * MIB),
    "files-1m-small": _profile("files-1m-small", text_files=20000, text_min=200, text_max=2048,
                               dirs=40),
    # bench/cluster.sh: ~160 MiB of text in 10,000 files + 3 x 116 MiB random.
    "mixed-512m": _profile("mixed-512m", text_files=10000, dirs=150,
                           random_files=3, random_size=116 * MIB),
    "mixed-64m": _profile("mixed-64m", text_files=1000, dirs=30,
                          random_files=2, random_size=24 * MIB),
}

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
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.utime(fd, (MTIME, MTIME))
    finally:
        os.close(fd)


def fmt_size(n):
    for unit, div in (("GiB", GIB), ("MiB", MIB), ("KiB", 1024)):
        if n >= div and n % div == 0:
            return "%d %s" % (n // div, unit)
    return "%d B" % n


def describe(p):
    """One line describing the set made from parameters p (for the reports)."""
    if "profile" not in p:
        return ("compressible log/source-like text files of 1-32 KiB in nested directories, "
                "plus incompressible random files")
    d = "profile `%s`: %s compressible log/source-like text files of %s–%s in %s nested directories" % (
        p["profile"], format(p["text_files"], ","), fmt_size(p["text_min"]),
        fmt_size(p["text_max"]), format(p["dirs"], ","))
    if p["random_files"]:
        d += ", plus %d incompressible random files of %s" % (p["random_files"], fmt_size(p["random_size"]))
    return d


def random_chunks(p, brng, index):
    """The bytes of random file number index, in pieces of at most 4 MiB."""
    left = p["random_size"]
    piece = 0
    while left:
        n = min(left, 4 * MIB)
        if p.get("random") == "shake256":
            yield hashlib.shake_256(b"rehost-bench %d %d %d" % (p["seed"], index, piece)).digest(n)
        else:
            yield brng.randbytes(n)
        left -= n
        piece += 1


def generate(root, p):
    rng = random.Random(p["seed"])
    pool = line_pool(rng, 50_000)
    avg_line = sum(len(l) for l in pool) / len(pool)
    bpool = [l.encode() for l in pool]  # ASCII: joining the encoded lines = encoding the joined text
    dirs = make_dirs(rng, p["dirs"])
    dirpaths = [os.path.join(root, "text", d) for d in dirs]
    for d in dirpaths:
        os.makedirs(d, exist_ok=True)
    text_bytes = 0
    files = 0
    exts = ["log", "rs", "txt", "conf", "md"]
    progress = 100000 if p["text_files"] >= 200000 else 0
    t0 = time.time()
    for i in range(p["text_files"]):
        size = rng.randrange(p["text_min"], p["text_max"] + 1)
        nlines = max(1, int(size / avg_line))
        data = b"".join(rng.choices(bpool, k=nlines))[:size]
        if i < len(UNICODE_NAMES) - 1:
            name = UNICODE_NAMES[i]
        else:
            name = "%s-%05d.%s" % (rng.choice(IDENTS), i, rng.choice(exts))
        write_file(os.path.join(dirpaths[i % len(dirs)], name), data)
        text_bytes += len(data)
        files += 1
        if progress and (i + 1) % progress == 0:
            print("gen-data: %d/%d text files (%.0fs)" % (i + 1, p["text_files"], time.time() - t0),
                  flush=True)
    if p["random_files"]:
        os.makedirs(os.path.join(root, "blobs"), exist_ok=True)
    brng = random.Random(p["seed"] + 1)
    rand_bytes = 0
    for i in range(p["random_files"]):
        path = os.path.join(root, "blobs", "random-%02d.bin" % i)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        try:
            for chunk in random_chunks(p, brng, i):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
            os.utime(fd, (MTIME, MTIME))
        finally:
            os.close(fd)
        rand_bytes += p["random_size"]
        files += 1
    for d in sorted({os.path.join(root, "text", d) for d in dirs}, reverse=True):
        os.utime(d, (MTIME, MTIME))
    return {"files": files, "text_bytes": text_bytes, "random_bytes": rand_bytes,
            "bytes": text_bytes + rand_bytes, "dirs": len(dirs)}


def default_cache(profile):
    base = os.environ.get("BENCH_SCALE_CACHE") or os.path.join(
        os.environ.get("REHOST_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "rehost"),
        "bench-scale")
    return os.path.join(base, profile)


def usage():
    sys.stderr.write("usage: %s [--small] DIR\n"
                     "       %s --profile NAME [--describe] [DIR]   (NAME: %s)\n"
                     % (sys.argv[0], sys.argv[0], ", ".join(PROFILES)))
    return 2


def main():
    argv = sys.argv[1:]
    profile = None
    describe_only = False
    args = []
    small_flag = False
    while argv:
        a = argv.pop(0)
        if a == "--small":
            small_flag = True
        elif a == "--describe":
            describe_only = True
        elif a == "--profile" and argv:
            profile = argv.pop(0)
        elif a.startswith("--profile="):
            profile = a.split("=", 1)[1]
        else:
            args.append(a)
    if any(a.startswith("-") for a in args) or len(args) > 1 or (profile and small_flag):
        return usage()
    if profile is not None:
        if profile not in PROFILES:
            sys.stderr.write("gen-data: unknown profile %r (%s)\n" % (profile, ", ".join(PROFILES)))
            return 2
        p = PROFILES[profile]
    else:
        small = small_flag or os.environ.get("BENCH_SMALL", "") not in ("", "0")
        p = SMALL if small else FULL
    if describe_only:
        print(describe(p))
        return 0
    if args:
        root = os.path.abspath(args[0])
    elif profile is not None:
        root = default_cache(profile)
    else:
        return usage()
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
