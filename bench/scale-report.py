#!/usr/bin/env python3
"""Write bench/RESULTS-scale.md from the bench/run.sh runs made by bench/scale.sh.

  bench/scale-report.py --out FILE [--small] --set PROFILE:EXIT:WORKDIR ...

Every --set is one run.sh run: the gen-data.py profile of its data set, run.sh's
exit code, and its BENCH_WORK directory (results-*.json written by report.py
--meta, the TSV it names, and rehost-restore-r*.log). The restore logs are
searched for rehost's `restore timings:` line (`key=seconds` pairs) for the
"where the time goes" table.
"""

import argparse
import datetime
import glob
import json
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402  (bench/report.py: tables, method text)

MIB = 1 << 20
GIB = 1 << 30

# Targets by kind of set: (restore / restic, backup / restic, RSS MiB); None: reported only.
TARGETS = {
    "scale-4g": {"restore_ratio": 0.7, "backup_ratio": 0.5, "rss_mib": 64},
    "files-1m": {"restore_ratio": None, "backup_ratio": None, "rss_mib": 256},
}
TITLES = {
    "scale-4g": "4 GiB set (two 2 GiB incompressible files, 50,000 small text files)",
    "files-1m": "1,000,000-file set (small text files)",
}
SHORT = {"scale-4g": "4 GiB", "files-1m": "1M files"}

# The keys of rehost's `restore timings:` line, in this order, with what they measure.
PHASES = [
    ("fetch", "GET: the ranged GETs of the parts (seconds summed over the parts in flight)"),
    ("check", "hashing: the sha256 of every part (summed over the parts in flight)"),
    ("decrypt", "age decryption (summed over the parts in flight; 0 for a plain backup)"),
    ("inflate", "gzip inflate (summed over the parts in flight)"),
    ("extract", "writes: the extracting thread's time writing the files"),
    ("wait", "the extracting thread's time waiting for the next part"),
    ("sync", "the final `syncfs` of the target filesystem"),
    ("wall", "rehost's own wall clock for the restore"),
    ("parts", "parts fetched"),
    ("streams", ""),
]
COUNT_KEYS = {"parts", "streams"}  # every other key is seconds

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
PAIR = re.compile(r"([A-Za-z_][A-Za-z0-9_.-]*)=\"?([-+]?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)s?\"?(?=\s|$|,)")


def kind(profile):
    """scale-4g or files-1m (the small variants count as their big set)."""
    for k in TARGETS:
        if profile == k or profile.startswith(k + "-"):
            return k
    return profile


def parse_timings(path):
    """{key: float} from the last `restore timings:` line of a log, or None."""
    found = None
    try:
        with open(path, errors="replace") as f:
            for line in f:
                line = ANSI.sub("", line)
                i = line.find("restore timings:")
                if i >= 0:
                    found = {k: float(v) for k, v in PAIR.findall(line[i + len("restore timings:"):])}
    except OSError:
        return None
    return found


class SetRun:
    def __init__(self, spec):
        profile, rc, work = spec.split(":", 2)
        self.profile, self.rc, self.work = profile, int(rc), work
        self.kind = kind(profile)
        self.meta = None
        self.res = {}
        metas = sorted(glob.glob(os.path.join(work, "results-*.json")), key=os.path.getmtime)
        if metas:
            with open(metas[-1]) as f:
                self.meta = json.load(f)
            if os.path.exists(self.meta["tsv"]):
                self.res = report.load(self.meta["tsv"])
        # rehost's restore timings, round by round (only rounds whose restore succeeded)
        self.timings = []
        r = self.res.get(("rehost", "restore"))
        ok_rounds = {x["round"] for x in r.rows if x["exit"] == "0"} if r else set()
        for log in sorted(glob.glob(os.path.join(work, "rehost-restore-r*.log"))):
            m = re.search(r"-r([0-9]+)\.log$", log)
            if m and m.group(1) in ok_rounds:
                t = parse_timings(log)
                if t:
                    self.timings.append(t)

    @property
    def title(self):
        t = TITLES.get(self.kind, "profile `%s`" % self.profile)
        if self.profile != self.kind:
            t += ", scaled down (profile `%s`)" % self.profile
        return t

    @property
    def short(self):
        return SHORT.get(self.kind, self.profile) + (" (small)" if self.profile != self.kind else "")

    def ratio(self, op):
        return report.ratio(self.res, "rehost", "restic", op)

    def rehost_rss(self):
        rss = [self.res[k].rss for k in (("rehost", "backup"), ("rehost", "restore")) if k in self.res]
        return max(rss) if rss else None

    def median_timing(self, key):
        vals = [t[key] for t in self.timings if key in t]
        return statistics.median(vals) if vals else None

    def timing_keys(self):
        keys = []
        for t in self.timings:
            for k in t:
                if k not in keys:
                    keys.append(k)
        return keys


def verdict(cond):
    return "n/a" if cond is None else ("**PASS**" if cond else "**FAIL**")


def fnum(x, fmt="%.2f"):
    return fmt % x if x is not None else "-"


def fmt_value(key, v):
    if v is None:
        return "-"
    if key in COUNT_KEYS and float(v).is_integer():
        return "%d" % v
    return "%.2f" % v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--set", action="append", default=[], help="PROFILE:EXIT:WORKDIR")
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    sets = [SetRun(s) for s in a.set]
    metas = [s.meta for s in sets if s.meta]
    first = metas[0] if metas else {}

    out = []
    w = out.append
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    w("# rehost scale benchmark")
    w("")
    if a.small:
        w("**Small data sets (BENCH_SCALE_SMALL=1): a check of the harness, not a benchmark.**")
        w("")
    w("- Date: %s (runs %s)" % (now, ", ".join("`%s`" % m["runid"] for m in metas) or "-"))
    w("- Machine: %s" % report.machine())
    w("- Store: single-node Garage on loopback (`scripts/garage.sh`, lmdb, no block compression), "
      "same host as the client; restic's repository is an S3 repository on the same Garage")
    for s in sets:
        if s.meta:
            w("- %s: `%s`: %s files, %s bytes (%.2f GiB); `bench/gen-data.py` %s" % (
                s.title[0].upper() + s.title[1:], s.meta["data"], format(s.meta["files"], ","),
                format(s.meta["bytes"], ","), s.meta["bytes"] / GIB, s.meta["data_desc"] or s.profile))
        else:
            w("- %s: no results (`bench/run.sh` exited %d before writing them)" % (s.title, s.rc))
    w("- Rounds: %s per tool and operation, interleaved (see Method)" % (
        first.get("rounds", a.rounds)))
    caches = sorted({m["caches"] for m in metas})
    if caches == ["dropped"]:
        w("- Page cache: dropped before every measurement (`sync; echo 3 > "
          "/proc/sys/vm/drop_caches`), backups and restores alike")
    elif caches:
        w("- Page cache: **%s** (the data was read before every backup instead)"
          % "; ".join(c for c in caches if c != "dropped"))
    if metas and all(m["sync_peers"] for m in metas):
        w("- restic and tar restores: timed up to the end of a `sync` after them "
          "(`restic restore … && sync`); rehost's restore ends with a `syncfs` of its own")
    for line in first.get("versions", "").splitlines():
        if line.strip():
            w("- %s" % line.strip())
    w("")

    # --- targets
    w("## Targets")
    w("")
    w("Timings: medians over the rounds; RSS: the worst round of rehost's backups and restores.")
    w("")
    w("| set | target | measured | verdict |")
    w("|---|---|---|---|")
    for s in sets:
        t = TARGETS.get(s.kind, {})
        if not s.meta:
            w("| %s | every figure | no results (run.sh exit %d) | **FAIL** |" % (s.short, s.rc))
            continue
        rows = []
        if t.get("restore_ratio") is not None:
            r = s.ratio("restore")
            rows.append(("rehost restore ≤ %.1f × restic restore (`restic restore … && sync`)"
                         % t["restore_ratio"], "ratio %s" % fnum(r),
                         None if r is None else r <= t["restore_ratio"]))
        if t.get("backup_ratio") is not None:
            r = s.ratio("backup")
            rows.append(("rehost backup ≤ %.1f × restic backup" % t["backup_ratio"],
                         "ratio %s" % fnum(r), None if r is None else r <= t["backup_ratio"]))
        if t.get("rss_mib") is not None:
            rss = s.rehost_rss()
            rows.append(("rehost peak RSS ≤ %d MiB" % t["rss_mib"],
                         ("%.1f MiB" % rss) if rss is not None else "-",
                         None if rss is None else rss <= t["rss_mib"]))
        restores = [(tool, s.res[(tool, "restore")]) for tool in ("rehost", "tar", "restic")
                    if (tool, "restore") in s.res]
        rows.append(("restored trees equal the source (every round, every tool)",
                     ", ".join("%s: %s" % (tool, x.verify_text()) for tool, x in restores) or "-",
                     None if not restores else all(x.verified() for _, x in restores)))
        every_ok = all(x.ok for x in s.res.values()) and bool(s.res)
        rows.append(("every run exited 0", "yes" if every_ok else "no: " + "; ".join(
            "%s %s: %s" % (k[0], k[1], x.exits()) for k, x in sorted(s.res.items()) if not x.ok),
            every_ok))
        if s.meta.get("promtool", "-") != "-":
            rows.append(("rehost metrics pass `promtool check metrics`", s.meta["promtool"],
                         s.meta["promtool"] == "OK"))
        for name, measured, ok in rows:
            w("| %s | %s | %s | %s |" % (s.short, name, measured, verdict(ok)))
    w("")

    # --- one section per set
    for s in sets:
        w("## %s" % (s.title[0].upper() + s.title[1:]))
        w("")
        if not s.res:
            w("No results: `bench/run.sh` exited %d before measuring (logs in `%s`)." % (s.rc, s.work))
            w("")
            continue
        out.extend(report.summary_table(s.res))
        w("")
        w("Wall seconds of every round (in parentheses: position within the round):")
        w("")
        out.extend(report.rounds_table(s.res, s.meta["rounds"]))
        w("")
        w("Ratios of median wall time (lower is better for rehost):")
        w("")
        out.extend(report.ratios_table(s.res))
        w("")
        machine_rows = report.machine_table(s.res)
        if machine_rows:
            w(report.MACHINE_TEXT)
            w("")
            out.extend(machine_rows)
            w("")

    # --- where the time goes
    w("## Where the time goes: rehost's restore")
    w("")
    have = [s for s in sets if s.timings]
    if not have:
        w("Not reported by this rehost (no `restore timings:` line in its restore logs).")
        w("")
    else:
        w("Medians over the rounds of the `restore timings:` line rehost logs at the end of a "
          "restore; in parentheses, the share of rehost's own wall time (`wall`). Seconds "
          "summed over the parts in flight can exceed the wall time; the phases overlap (they "
          "run in a pipeline). Keys without a description are reported as rehost logs them. "
          "Measured wall: `/usr/bin/time -v`'s, median.")
        w("")
        w("| phase | what it measures | %s |" % " | ".join(s.short for s in sets))
        w("|---|---|%s" % ("---:|" * len(sets)))
        keys = [k for k, _ in PHASES]
        for s in have:
            keys += [k for k in s.timing_keys() if k not in keys]
        desc = dict(PHASES)
        for k in keys:
            if not any(k in t for s in have for t in s.timings):
                continue
            cells = []
            for s in sets:
                if not s.res:
                    cells.append("no results")
                    continue
                if not s.timings:
                    cells.append("not reported by this rehost")
                    continue
                v = s.median_timing(k)
                wall = s.median_timing("wall")
                cell = fmt_value(k, v)
                if v is not None and k not in COUNT_KEYS and k != "wall" and wall:
                    cell += " (%.0f %%)" % (100.0 * v / wall)
                cells.append(cell)
            w("| %s | %s | %s |" % (k, desc.get(k, ""), " | ".join(cells)))
        cells = []
        for s in sets:
            r = s.res.get(("rehost", "restore"))
            cells.append(fnum(r.wall) if r else "-")
        w("| measured wall | `/usr/bin/time -v`, median over the rounds | %s |" % " | ".join(cells))
        w("")

    # --- method
    w("## Method")
    w("")
    w("`bench/scale.sh` generates both data sets once (deterministic, cached outside the "
      "repository, `bench/gen-data.py --profile scale-4g` and `--profile files-1m`) and runs "
      "`bench/run.sh` on each with `BENCH_DROP_CACHES=1 BENCH_SYNC_PEERS=1`; this report is "
      "`bench/scale-report.py` over the two runs. rehost is compared with restic (S3 "
      "repository on the same Garage) and with `tar czf - | aws s3 cp - …` / "
      "`aws s3 cp … - | tar xzf -`. The targets apply to the 4 GiB set; on the 1,000,000-file "
      "set every figure is reported and only rehost's peak RSS has a bound.")
    w("")
    if metas:
        m = first
        text = report.method_text(m["rounds"], m["tools"], m["settle"],
                                  m["caches"] if len(caches) == 1 else "; ".join(caches),
                                  bool(m["sync_peers"]))
        w(re.sub(r"^Method: ", "Per set: ", text))
        w("")
    with open(a.out + ".tmp", "w") as f:
        f.write("\n".join(out))
    os.replace(a.out + ".tmp", a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
