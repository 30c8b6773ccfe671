#!/usr/bin/env python3
"""Turns a result file of bench/run.sh into Markdown tables and gnuplot charts.

  report.py RESULT.json [--docs docs/benchmarks.md] [--img docs/img] [--print]

--docs replaces the part of the file between the lines
'<!-- bench:results:begin -->' and '<!-- bench:results:end -->'.
--img draws hit-throughput.png, epochs.png and memory.png there (gnuplot,
pngcairo)."""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from tagbench import table  # noqa: E402

BEGIN = "<!-- bench:results:begin -->"
END = "<!-- bench:results:end -->"


ORDER = ["ceiling", "hit", "peer", "epoch", "herd", "large", "memory", "miss", "warm1g", "warmepoch", "sockets"]


def ordered(res):
    sc = res.get("scenarios", {})
    return [sc[k] for k in ORDER if k in sc] + [v for k, v in sc.items() if k not in ORDER]


NUMBER = {"ceiling": "0", "hit": "1", "peer": "2", "epoch": "3", "herd": "4", "large": "5", "memory": "6",
          "miss": "7", "warm1g": "8", "warmepoch": "9", "sockets": "10"}


def col(sc, row, *names):
    """row's value in the first of names that is a column of sc (result files
    of different suite versions name their columns differently)."""
    for n in names:
        if n in sc["columns"]:
            return row[sc["columns"].index(n)]
    return None


def goals_md(res):
    """issue 9's goals: one line per measured ratio, from every scenario's 'goals'."""
    lines = []
    for sc in ordered(res):
        for key, g in (sc.get("goals") or {}).items():
            r = g.get("ratio")
            lines.append(f"| {sc['title'].split('.')[0]} | {key} | {g['metric']} | "
                         f"{'-' if r is None else f'{r:.2f}'} | {g['goal']} | {g['met']} |")
    if not lines:
        return ""
    return "\n".join(["Issue 9's goals (tagd / baseline, same run):", "",
                      "| # | cell | measure | ratio | goal | met |", "|---|---|---|---:|---|---|"] + lines + [""])


def _tidy(res):
    """Older result files: number every title, shorten version strings."""
    for k, sc in res.get("scenarios", {}).items():
        if k in NUMBER and not sc["title"][:1].isdigit():
            sc["title"] = f"{NUMBER[k]}. {sc['title']}"
    v = res.get("versions", {})
    if "nginx/" in (v.get("nginx") or ""):
        v["nginx"] = v["nginx"].split("nginx/")[-1]
    if (v.get("wrk") or "").startswith("wrk "):
        v["wrk"] = v["wrk"].split()[1]
    return res


def summary_md(res, img_rel):
    m = res.get("machine", {})
    t = res.get("tagd", {})
    lines = [
        f"Run of {res.get('started', '?')[:19].replace('T', ' ')} UTC, profile `{res.get('profile')}`, "
        f"{res.get('seconds', '?')} s in all. Command: `{res.get('command')}`.",
        "",
        f"- machine: {m.get('cpus')} vCPU ({m.get('cpu', '?')}), {m.get('mem_gib')} GiB, kernel {m.get('kernel')}; "
        f"load average at start {' '.join(m.get('loadavg_start', []))}, at end {' '.join(m.get('loadavg_end', []))} "
        "(the cores are shared with other engineers' compiles)",
        f"- tagd: {res.get('tagd_mode')}; binary {t.get('binary', '-')} built {t.get('mtime', '-')[:19]}"
        f"{' (sha256 ' + t['sha256'] + ')' if t.get('sha256') else ''}, "
        f"source tree at {t.get('git', '-')}{' (uncommitted changes)' if t.get('dirty') else ''} when the run began, "
        f"build type {t.get('build_type', '?')}",
        f"- versions: " + ", ".join(f"{k} {v}" for k, v in res.get("versions", {}).items()),
        "",
        "| scenario | headline |",
        "|---|---|",
    ]
    for sc in ordered(res):
        lines.append(f"| {sc['title']} | {sc['headline']} |")
    for name, err in res.get("errors", {}).items():
        lines.append(f"| {name} | FAILED: {err.strip().splitlines()[-1] if err.strip() else ''} |")
    lines.append("")
    g = goals_md(res)
    if g:
        lines.append(g)
    if img_rel:
        lines += [f"![hit-path throughput per object size]({img_rel}/hit-throughput.png)", "",
                  f"![epoch time per configuration]({img_rel}/epochs.png)", "",
                  f"![peak RSS under 1,000 connections]({img_rel}/memory.png)", ""]
    return "\n".join(lines)


def full_md(res, img_rel):
    parts = [summary_md(res, img_rel)]
    for sc in ordered(res):
        parts.append(table.markdown(sc))
    return "\n".join(parts)


# ---------------------------------------------------------------- charts

def _gnuplot(script, datafiles, tmp):
    for name, content in datafiles.items():
        with open(os.path.join(tmp, name), "w") as f:
            f.write(content)
    r = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True, cwd=tmp)
    if r.returncode != 0:
        print(f"gnuplot: {r.stderr.strip()}", file=sys.stderr)
        return False
    return True


HEAD = """set terminal pngcairo noenhanced size 960,540 font "DejaVu Sans,11"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key top left
"""


def chart_hit(res, out, tmp):
    hit = res["scenarios"].get("hit") or res["scenarios"].get("peer")
    if not hit:
        return False
    peer = res["scenarios"].get("peer")
    conns = max(int(r[1]) for r in hit["rows"])
    rows = [r for r in hit["rows"] if int(r[1]) == conns]
    prow = {r[0]: r for r in (peer["rows"] if peer else []) if int(r[1]) == conns}
    lines = ["# size nginx tagd peer"]
    for r in rows:
        if hit["id"] == "hit":
            ng, td = col(hit, r, "nginx MiB/s"), col(hit, r, "tagd MiB/s")
        else:
            ng, td = None, col(hit, r, "tagd MiB/s")
        pe = col(peer, prow[r[0]], "peer MiB/s") if peer and r[0] in prow else None
        lines.append(f"{r[0]} {ng or '-'} {td or '-'} {pe or '-'}")
    mode = "pass-through, no cache yet" if "pass-through" in (res.get("tagd_mode") or "") else "cache hits"
    script = HEAD + f"""set output "{out}"
set title "GET throughput by object size, {conns} connections (tagd: {mode})"
set ylabel "MiB/s (log scale)"
set logscale y
set datafile missing "-"
set yrange [1:*]
set key below horizontal
plot "hit.dat" using 2:xtic(1) title "nginx static (limit)" lc rgb "#4477aa", \\
     "" using 3 title "tagd" lc rgb "#ee6677", \\
     "" using 4 title "nginx proxy_cache+slice (peer)" lc rgb "#228833"
"""
    return _gnuplot(script, {"hit.dat": "\n".join(lines) + "\n"}, tmp)


def chart_epochs(res, out, tmp):
    ep = res["scenarios"].get("epoch")
    if not ep:
        return False
    configs = ["direct to upstream over the WAN", "tagd epoch 1 (cold)", "tagd epoch 2 (warm)",
               "nginx static, local disk (the limit)"]
    sets = []
    for r in ep["rows"]:
        if r[0] not in sets:
            sets.append(r[0])
    val = {(r[0], r[1]): r[2] for r in ep["rows"]}
    lines = ["# dataset direct cold warm nginx"]
    for s in sets:
        lines.append('"' + s + '" ' + " ".join(str(val.get((s, c)) or "-") for c in configs))
    script = HEAD + f"""set output "{out}"
set title "Epoch time, 8 workers, 25 ms each way (lower is better)"
set ylabel "seconds (log scale)"
set logscale y
set datafile missing "-"
set key below horizontal
plot "ep.dat" using 2:xtic(1) title "direct over the WAN" lc rgb "#4477aa", \\
     "" using 3 title "tagd epoch 1 (cold)" lc rgb "#ee6677", \\
     "" using 4 title "tagd epoch 2 (warm)" lc rgb "#aa3377", \\
     "" using 5 title "nginx, local disk" lc rgb "#228833"
"""
    return _gnuplot(script, {"ep.dat": "\n".join(lines) + "\n"}, tmp)


def chart_memory(res, out, tmp):
    mem = res["scenarios"].get("memory")
    if not mem or not mem["rows"]:
        return False
    lines = ["# object idle peak"]
    for r in mem["rows"]:
        lines.append(f'"{r[0]} objects" {col(mem, r, "idle RSS MiB")} {col(mem, r, "peak RSS MiB (VmHWM)")}')
    script = HEAD + f"""set output "{out}"
set title "tagd RSS with 1,000 connections streaming (900 fast, 100 slow)"
set ylabel "MiB"
set yrange [0:*]
set key below horizontal
plot "mem.dat" using 2:xtic(1) title "idle RSS" lc rgb "#bbbbbb", \\
     "" using 3 title "peak RSS (VmHWM)" lc rgb "#ee6677"
"""
    return _gnuplot(script, {"mem.dat": "\n".join(lines) + "\n"}, tmp)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("result")
    ap.add_argument("--docs")
    ap.add_argument("--img")
    ap.add_argument("--print", action="store_true")
    a = ap.parse_args()
    with open(a.result) as f:
        res = _tidy(json.load(f))
    img_rel = None
    if a.img:
        os.makedirs(a.img, exist_ok=True)
        if shutil.which("gnuplot") is None:
            print("gnuplot not installed: no charts", file=sys.stderr)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                chart_hit(res, os.path.abspath(os.path.join(a.img, "hit-throughput.png")), tmp)
                chart_epochs(res, os.path.abspath(os.path.join(a.img, "epochs.png")), tmp)
                chart_memory(res, os.path.abspath(os.path.join(a.img, "memory.png")), tmp)
        if a.docs:
            img_rel = os.path.relpath(a.img, os.path.dirname(os.path.abspath(a.docs)))
    md = full_md(res, img_rel)
    if a.docs:
        with open(a.docs) as f:
            doc = f.read()
        if BEGIN not in doc or END not in doc:
            print(f"{a.docs} lacks the markers {BEGIN} / {END}", file=sys.stderr)
            return 1
        head, rest = doc.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        with open(a.docs, "w") as f:
            f.write(head + BEGIN + "\n" + md + "\n" + END + tail)
        print(f"updated {a.docs}", file=sys.stderr)
    if a.print or not a.docs:
        print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
