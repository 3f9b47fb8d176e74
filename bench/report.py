#!/usr/bin/env python3
"""Write the benchmark report (Markdown) from bench/run.sh's measurements.

bench/scale-report.py imports the tables and the method text from here."""

import argparse
import csv
import datetime
import json
import os
import platform
import statistics

MIB = 1 << 20

TOOL_NAMES = {
    "rehost": "rehost",
    "tar": "tar czf \\| aws s3 cp (gzip -6)",
    "restic": "restic",
}
TARGET_RSS_MIB = 64
DEFAULT_DATA_DESC = ("compressible log/source-like text files of 1-32 KiB in nested directories, "
                     "plus incompressible random files")


def machine():
    mem = "?"
    cpu = "?"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = "%.1f GiB" % (int(line.split()[1]) / (1 << 20))
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = " ".join("%.2f" % x for x in os.getloadavg())
    return "%d CPUs (%s), %s RAM, Linux %s; load average at the end: %s" % (
        os.cpu_count() or 0, cpu, mem, platform.release(), load)


def fnum(x, fmt="%.2f"):
    return fmt % x if x is not None else "-"


def mib(b):
    return b / MIB if b is not None else None


class Series:
    """The rounds of one (tool, operation)."""

    def __init__(self, rows):
        self.rows = sorted(rows, key=lambda r: int(r["round"]))
        self.ok = all(r["exit"] == "0" for r in self.rows)
        walls = [float(r["wall_s"]) for r in self.rows if r["exit"] == "0"]
        cpus = [float(r["cpu_s"]) for r in self.rows if r["exit"] == "0"]
        # timings only when every round succeeded: a failed round's time means nothing
        self.wall = statistics.median(walls) if self.ok and walls else None
        self.wall_min = min(walls) if self.ok and walls else None
        self.wall_max = max(walls) if self.ok and walls else None
        self.cpu = statistics.median(cpus) if self.ok and cpus else None
        # the worst round of all (a bound is the target)
        self.rss = max(int(r["maxrss_kib"]) for r in self.rows) / 1024.0
        stored = [int(r["stored_bytes"]) for r in self.rows
                  if r["exit"] == "0" and r["stored_bytes"].isdigit()]
        self.stored = statistics.median(stored) if stored else None
        self.stored_min = min(stored) if stored else None
        self.stored_max = max(stored) if stored else None
        self.verify = [r["verify"] for r in self.rows]

    def exits(self):
        if self.ok:
            return "0"
        return ", ".join("r%s: %s" % (r["round"], r["exit"]) for r in self.rows if r["exit"] != "0")

    def verified(self):
        """Every round's restored tree matched the source."""
        return bool(self.verify) and all(v.startswith("OK") for v in self.verify)

    def verify_text(self):
        if all(v == "-" for v in self.verify):
            return "-"
        distinct = sorted(set(self.verify), key=self.verify.index)
        if len(distinct) == 1:
            return "%s ×%d" % (distinct[0], len(self.verify)) if len(self.verify) > 1 else distinct[0]
        return "; ".join("r%s: %s" % (r["round"], r["verify"]) for r in self.rows)

    def stored_text(self):
        if self.stored is None:
            return "-"
        if mib(self.stored_max) - mib(self.stored_min) >= 0.05:
            return "%.1f (%.1f–%.1f)" % (mib(self.stored), mib(self.stored_min), mib(self.stored_max))
        return "%.1f" % mib(self.stored)


def load(tsv):
    """{(tool, op): Series} from run.sh's TSV."""
    with open(tsv) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    by = {}
    for r in rows:
        by.setdefault((r["tool"], r["op"]), []).append(r)
    return {k: Series(v) for k, v in by.items()}


def ratio(res, t1, t2, op):
    """Median wall time of t1 over t2's for op, or None."""
    x, y = res.get((t1, op)), res.get((t2, op))
    if not x or not y or x.wall is None or y.wall is None or y.wall == 0:
        return None
    return x.wall / y.wall


def summary_table(res):
    """The main table: medians, range, CPU, RSS, stored, exits, restored trees."""
    out = []
    w = out.append
    w("| tool | operation | median wall s | min–max wall s | median CPU s | max peak RSS MiB "
      "| stored MiB | exit | restored trees |")
    w("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for op in ("backup", "restore"):
        for tool in ("rehost", "tar", "restic"):
            r = res.get((tool, op))
            if not r:
                continue
            rng = ("%.2f–%.2f" % (r.wall_min, r.wall_max)) if r.wall is not None else "-"
            w("| %s | %s | %s | %s | %s | %.1f | %s | %s | %s |" % (
                TOOL_NAMES[tool], op, fnum(r.wall), rng, fnum(r.cpu), r.rss,
                r.stored_text(), r.exits(), r.verify_text()))
    return out


def rounds_table(res, rounds):
    """Wall seconds of every round, with the position within the round."""
    out = []
    w = out.append
    nr = max([len(s.rows) for s in res.values()] + [rounds])
    w("| tool | operation | %s |" % " | ".join("round %d" % (i + 1) for i in range(nr)))
    w("|---|---|%s" % ("---:|" * nr))
    for op in ("backup", "restore"):
        for tool in ("rehost", "tar", "restic"):
            r = res.get((tool, op))
            if not r:
                continue
            cells = {int(x["round"]): ("%s (%s)" % (x["wall_s"], x["pos"]) if x["exit"] == "0"
                                       else "exit %s (%s)" % (x["exit"], x["pos"])) for x in r.rows}
            w("| %s | %s | %s |" % (TOOL_NAMES[tool], op,
                                    " | ".join(cells.get(i + 1, "-") for i in range(nr))))
    return out


# run.sh's columns from bench/lib.sh's samples of the machine, with their headers
MACHINE_COLUMNS = [
    ("iowait_s", "iowait s"),
    ("steal_s", "steal s"),
    ("disk_write_mib", "disk written MiB"),
    ("disk_busy_s", "disk busy s"),
    ("discard_mib", "discarded MiB"),
    ("dirty_max_mib", "max dirty + writeback MiB"),
]


def machine_table(res):
    """What the machine did during every measurement (bench/lib.sh's samples of
    /proc/stat, /proc/diskstats and /proc/meminfo), or [] for a TSV without them."""
    rows = [x for s in res.values() for x in s.rows]
    if not rows or any(c not in rows[0] for c, _ in MACHINE_COLUMNS):
        return []
    out = []
    w = out.append
    w("| tool | operation | round (position) | wall s | %s |" % " | ".join(h for _, h in MACHINE_COLUMNS))
    w("|---|---|---|---:|%s" % ("---:|" * len(MACHINE_COLUMNS)))
    for op in ("backup", "restore"):
        for tool in ("rehost", "tar", "restic"):
            r = res.get((tool, op))
            if not r:
                continue
            for x in sorted(r.rows, key=lambda x: int(x["round"])):
                w("| %s | %s | %s (%s) | %s | %s |" % (
                    TOOL_NAMES[tool], op, x["round"], x["pos"], x["wall_s"],
                    " | ".join(x[c] or "-" for c, _ in MACHINE_COLUMNS)))
    return out


MACHINE_TEXT = (
    "What the machine did during every measurement, from samples bench/lib.sh takes every "
    "second (first and last sample: /proc/stat's iowait and steal ticks, /proc/diskstats of "
    "the disk under target/: sectors written, time busy, sectors discarded; the largest "
    "Dirty + Writeback of /proc/meminfo seen). iowait and steal are summed over all CPUs; "
    "steal is time the hypervisor gave the CPUs to others. The samples themselves are in "
    "the run's work directory (`samples-TOOL-OP-rROUND.txt`).")


def ratios_table(res):
    """Ratios of median wall time, rehost against the others."""
    return [
        "| | backup | restore |",
        "|---|---:|---:|",
        "| rehost / restic | %s | %s |" % (fnum(ratio(res, "rehost", "restic", "backup")),
                                          fnum(ratio(res, "rehost", "restic", "restore"))),
        "| rehost / tar pipeline | %s | %s |" % (fnum(ratio(res, "rehost", "tar", "backup")),
                                                fnum(ratio(res, "rehost", "tar", "restore"))),
    ]


def caches_line(caches):
    """The header line on the page cache, or None for run.sh's default (warm data)."""
    if caches == "warm":
        return None
    if caches == "dropped":
        return ("Page cache: dropped before every measurement (`sync; echo 3 > "
                "/proc/sys/vm/drop_caches`), backups and restores alike")
    return "Page cache: **%s** (the data was read before every backup instead)" % caches


def method_text(rounds, tools, settle, caches="warm", sync_peers=False, script="bench/run.sh"):
    """The method paragraph. caches: "warm" (run.sh's default), "dropped", or the
    reason why dropping was asked for and not possible."""
    tools = tools.split()
    if len(tools) > 1:
        orders = ["round %d: %s" % (i + 1, ", ".join(tools[i:] + tools[:i]))
                  for i in range(min(rounds, len(tools)))]
        interleave = (
            "The rounds are interleaved so that drift of the machine (noisy disk and CPU) hits "
            "every tool alike: all backup rounds first, then all restore rounds, and round *r* runs "
            "the tools in order rotated left by *r*−1 (%s%s), so that over every %d consecutive "
            "rounds each tool takes each position in a round once." % (
                "; ".join(orders), "; and so on" if rounds > len(tools) else "", len(tools)))
    else:
        interleave = "All backup rounds run first, then all restore rounds."
    if caches == "dropped":
        cache_text = ("the page cache is dropped before every measurement (below), so that every "
                      "backup reads the data from the disk and every restore starts with neither "
                      "Garage's data nor the tools' files in memory")
        settle_text = ("pending deletions run, then `sync`, then the page cache is dropped "
                       "(`echo 3 > /proc/sys/vm/drop_caches`), then `sleep %s`" % settle)
    else:
        cache_text = ("the data is read (`tar cf - DATA > /dev/null`) before every backup so "
                      "that every tool starts from the same warm page cache")
        if caches != "warm":
            cache_text += " (`BENCH_DROP_CACHES=1` was set, but %s)" % caches
        settle_text = "pending deletions run, then `sync`, then `sleep %s`" % settle
    if sync_peers:
        sync_text = (
            "rehost's restore ends with a `syncfs` of the target filesystem before its atomic "
            "switch, and the timed restic and tar restores end with a `sync` inside the measured "
            "command (`restic restore … && sync`, `aws s3 cp … - | tar xzf - … && sync`), so that "
            "every restore's wall time includes writing the tree to disk. ")
    else:
        sync_text = (
            "rehost's restore ends with a `syncfs` of the target filesystem before its atomic "
            "switch, so its wall time includes writing the tree to disk; tar and restic do not "
            "sync, and their writeback happens in the untimed `sync` before the next measurement. ")
    return (
        "Method: `%s`, %d round%s (`BENCH_ROUNDS`) of every operation of every tool, each "
        "under `/usr/bin/time -v`, against one Garage started fresh for the run. %s Every "
        "backup round starts from scratch: rehost writes to a fresh `storage.url` prefix (with the "
        "old one, an unchanged source correctly uploads nothing), restic to a fresh repository "
        "(`restic init`, repository v2, compression auto, not timed; empty cache), the tar pipeline "
        "to a fresh key; %s. Every restore round restores the "
        "backup made in round 1 into a fresh empty directory (restic with an empty cache, as on a "
        "fresh host); the tree is then compared with the source (not timed) and deleted before the "
        "next measurement. Before every measurement, %s, so that writeback and ext4 discards of "
        "earlier work land outside the measured "
        "run. The table gives the median wall and CPU seconds over the rounds (with an even number "
        "of rounds, the mean of the middle two), the range of wall seconds, and the highest peak RSS "
        "of any round; ratios and timing targets use the medians, the RSS target the worst round. "
        "%s"
        "For the shell pipelines the peak RSS is the largest single "
        "process of the pipeline (`time -v` reports the maximum over the processes, not their sum), "
        "and CPU seconds are the sum over all of them. The tree check compares type, mode, size and "
        "sha256 of every entry (`bench/tree-manifest.py compare`); mtimes are reported, not required. "
        "Garage runs on the same %d CPUs, so its CPU time is part of every wall time." % (
            script, rounds, "" if rounds == 1 else "s", interleave, cache_text, settle_text,
            sync_text, os.cpu_count() or 0))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tsv", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--files", type=int, required=True)
    ap.add_argument("--bytes", type=int, required=True)
    ap.add_argument("--small", default="")
    ap.add_argument("--promtool", default="-")
    ap.add_argument("--versions", default="")
    ap.add_argument("--runid", default="")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--settle", default="0")
    ap.add_argument("--tools", default="rehost tar restic", help="BENCH_TOOLS order (round 1)")
    ap.add_argument("--data-desc", default="", help="what the data set holds (default: the default set)")
    ap.add_argument("--profile", default="", help="gen-data.py profile of the data set, if any")
    ap.add_argument("--caches", default="warm",
                    help="warm (data read before every backup), dropped, or why they were not dropped")
    ap.add_argument("--sync-peers", default="", help="non-empty: restic and tar restores end with sync")
    ap.add_argument("--work", default="", help="run.sh's work directory (logs)")
    ap.add_argument("--meta", default="", help="also write the run's parameters to this JSON file")
    a = ap.parse_args()

    if a.meta:
        with open(a.meta + ".tmp", "w") as f:
            json.dump(dict(vars(a), machine=machine()), f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(a.meta + ".tmp", a.meta)
    res = load(a.tsv)

    def ratio_(t1, t2, op):
        return ratio(res, t1, t2, op)

    out = []
    w = out.append
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    w("# rehost backup/restore benchmark")
    w("")
    if a.small:
        w("**Small data set (BENCH_SMALL=1): a check of the harness, not a benchmark.**")
        w("")
    w("- Date: %s (run `%s`)" % (now, a.runid))
    w("- Machine: %s" % machine())
    w("- Store: single-node Garage on loopback (`scripts/garage.sh`, lmdb, no block compression), "
      "same host as the client")
    w("- Data: `%s`: %d files, %d bytes (%.1f MiB); generated by `bench/gen-data.py` "
      "(%s)" % (a.data, a.files, a.bytes, a.bytes / MIB, a.data_desc or DEFAULT_DATA_DESC))
    w("- Rounds: %d per tool and operation%s (see Method)" % (
        a.rounds, ", interleaved" if len(a.tools.split()) > 1 and a.rounds > 1 else ""))
    if caches_line(a.caches):
        w("- %s" % caches_line(a.caches))
    if a.sync_peers:
        w("- restic and tar restores: timed up to the end of a `sync` after them (rehost syncs itself)")
    for line in a.versions.splitlines():
        if line.strip():
            w("- %s" % line.strip())
    w("")
    out.extend(summary_table(res))
    w("")
    w("Wall seconds of every round (in parentheses: position within the round):")
    w("")
    out.extend(rounds_table(res, a.rounds))
    w("")
    w("Ratios of median wall time (lower is better for rehost):")
    w("")
    out.extend(ratios_table(res))
    w("")
    machine_rows = machine_table(res)
    if machine_rows:
        w(MACHINE_TEXT)
        w("")
        out.extend(machine_rows)
        w("")

    def verdict(cond):
        return "n/a" if cond is None else ("**PASS**" if cond else "**FAIL**")

    rb = ratio_("rehost", "restic", "backup")
    rt = ratio_("rehost", "tar", "backup")
    rr = ratio_("rehost", "restic", "restore")
    rss = [res[k].rss for k in (("rehost", "backup"), ("rehost", "restore")) if k in res]
    restores = [(t, res[(t, "restore")]) for t in ("rehost", "tar", "restic") if (t, "restore") in res]
    w("Targets (timings: medians over the rounds; RSS: the worst round):")
    w("")
    w("| target | measured | verdict |")
    w("|---|---|---|")
    w("| rehost backup ≤ restic backup | ratio %s | %s |" % (fnum(rb), verdict(None if rb is None else rb <= 1.0)))
    w("| rehost backup ≤ 0.3 × tar\\|gzip\\|aws | ratio %s | %s |" % (fnum(rt), verdict(None if rt is None else rt <= 0.3)))
    w("| rehost restore ≤ restic restore | ratio %s | %s |" % (fnum(rr), verdict(None if rr is None else rr <= 1.0)))
    w("| rehost peak RSS ≤ %d MiB | %s | %s |" % (
        TARGET_RSS_MIB, ("%.1f MiB" % max(rss)) if rss else "-",
        verdict(None if not rss else max(rss) <= TARGET_RSS_MIB)))
    w("| restored trees equal the source (every round) | %s | %s |" % (
        ", ".join("%s: %s" % (t, s.verify_text()) for t, s in restores) if restores else "-",
        verdict(None if not restores else all(s.verified() for _, s in restores))))
    w("| rehost metrics pass `promtool check metrics` | %s | %s |" % (
        a.promtool, verdict(None if a.promtool == "-" else a.promtool == "OK")))
    w("")
    w(method_text(a.rounds, a.tools, a.settle, a.caches, bool(a.sync_peers)))
    w("")
    with open(a.out + ".tmp", "w") as f:
        f.write("\n".join(out))
    os.replace(a.out + ".tmp", a.out)


if __name__ == "__main__":
    main()
