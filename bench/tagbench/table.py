"""Renders scenario results as aligned text (console) or Markdown tables."""
from .util import fmt


def cell(v):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10000 else str(v)
    if isinstance(v, float):
        return fmt(v, 2) if abs(v) < 10 else fmt(v)
    return str(v)


def text(res):
    out = [f"== {res['title']}",
           f"   origin: {res.get('origin', '-')}",
           f"   tagd:   {res.get('tagd', '-')}"]
    if res.get("wan"):
        out.append(f"   WAN:    {res['wan']}")
    if res.get("mode_text"):
        out.append(f"   mode:   {res['mode_text']}")
    if res.get("loadavg"):
        out.append(f"   load:   {' '.join(res['loadavg']['start'] or [])} at start, "
                   f"{' '.join(res['loadavg']['end'] or [])} at end (1/5/15 min)")
    cols = res["columns"]
    rows = [[cell(v) for v in r] for r in res["rows"]]
    if rows:
        w = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
        out.append("   " + "  ".join(c.rjust(w[i]) for i, c in enumerate(cols)))
        for r in rows:
            out.append("   " + "  ".join(v.rjust(w[i]) for i, v in enumerate(r)))
    else:
        out.append("   (no rows)")
    out.append(f"   => {res.get('headline', '')}")
    for n in res.get("notes", []):
        out.append(f"   note: {n}")
    return "\n".join(out)


def markdown(res):
    out = [f"### {res['title']}", "",
           f"- origin: {res.get('origin', '-')}",
           f"- tagd: {res.get('tagd', '-')}"]
    if res.get("wan"):
        out.append(f"- WAN: {res['wan']}")
    if res.get("mode_text"):
        out.append(f"- mode: {res['mode_text']}")
    if res.get("loadavg"):
        out.append(f"- load average: {' '.join(res['loadavg']['start'] or [])} at start, "
                   f"{' '.join(res['loadavg']['end'] or [])} at end")
    out.append(f"- **headline: {res.get('headline', '')}**")
    out.append("")
    cols = res["columns"]
    if res["rows"]:
        out.append("| " + " | ".join(cols) + " |")
        def numeric(i):
            vals = [r[i] for r in res["rows"] if r[i] is not None]
            return all(isinstance(v, (int, float)) or (isinstance(v, str) and v[:1].isdigit() and " x " not in v
                                                       and not v.endswith("B"))
                       for v in vals) and i > 0
        out.append("|" + "|".join("---:" if numeric(i) else "---" for i in range(len(cols))) + "|")
        for r in res["rows"]:
            out.append("| " + " | ".join(cell(v) for v in r) + " |")
        out.append("")
    for n in res.get("notes", []):
        out.append(f"- {n}")
    out.append("")
    return "\n".join(out)
