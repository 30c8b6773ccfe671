#!/usr/bin/env python3
"""Checks tagd's module layering (the ctest `layering`).

Reads the module table (cmake/modules.txt, the same table CMakeLists.txt builds the
tagd_<module> libraries from), then scans every `#include "tagd/<module>/..."` in
src/<m>/ and include/tagd/<m>/ and reports each include of a module that <m> may not use.
It also checks the table's `asio` lines, the sources compiled once per socket reactor:
every source under src/ (but src/main.cpp) that reaches an Asio or Beast header, directly
or through tagd's own headers, must be listed, and no other.
Exit status 0 when the tree is clean, 1 on a violation, 2 on a broken table.

    python3 cmake/check_layering.py [SOURCE_DIR] [--table PATH]
"""
import argparse
import pathlib
import re
import sys

INCLUDE_RE = re.compile(r'^\s*#\s*include\s*[<"]tagd/([^/">]+)/([^">]+)[">]')
ANY_INCLUDE_RE = re.compile(r'^\s*#\s*include\s*([<"])([^">]+)[">]')
ASIO_RE = re.compile(r"^boost/(asio|beast)([/.]|$)")
SOURCE_SUFFIXES = {".cpp", ".cc", ".hpp", ".h", ".ipp", ".inl"}


def read_table(path):
    """Returns (modules in order, {module: set of modules it may use}, {path: module},
    [paths on asio lines], errors)."""
    order, uses, overrides, asio, errors = [], {}, {}, [], []
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        fields = raw.split("#", 1)[0].split()
        if not fields:
            continue
        where = f"{path}:{lineno}"
        if fields[0] == "module" and len(fields) >= 2:
            name, deps = fields[1], fields[2:]
            if name in uses:
                errors.append(f"{where}: module {name} listed twice")
            for dep in deps:
                if dep not in uses:  # only modules listed above (lower layers)
                    errors.append(f"{where}: {name} uses {dep}, which is not a module listed above it")
            order.append(name)
            uses[name] = set(deps)
        elif fields[0] == "file" and len(fields) == 3:
            overrides[fields[1]] = fields[2]
        elif fields[0] == "asio" and len(fields) >= 2:
            asio += fields[1:]
        else:
            errors.append(f"{where}: cannot parse: {raw.strip()}")
    for file, module in overrides.items():
        if module not in uses:
            errors.append(f"{path}: file {file} assigned to unknown module {module}")
    return order, uses, overrides, asio, errors


def reaches_asio(path, root, memo, stack=()):
    """The Asio or Beast header `path` includes, directly or through tagd's headers
    ("tagd/..." under include/, or a quoted name next to the file), or None."""
    if path in memo:
        return memo[path]
    memo[path] = None  # a cycle through include guards adds nothing
    found = None
    for line in path.read_text(errors="replace").splitlines():
        m = ANY_INCLUDE_RE.match(line)
        if not m:
            continue
        name = m.group(2)
        if ASIO_RE.match(name):
            found = name
            break
        for candidate in ((root / "include" / name) if name.startswith("tagd/") else None,
                          (path.parent / name) if m.group(1) == '"' else None):
            if candidate is not None and candidate.is_file():
                found = reaches_asio(candidate.resolve(), root, memo)
                if found:
                    found = f"{candidate.relative_to(root).as_posix()} -> {found}"
                break
        if found:
            break
    memo[path] = found
    return found


def check_asio_sources(root, listed, table):
    """Violations of the `asio` lines: listed sources that do not reach Asio (compiled
    twice for nothing) and unlisted ones that do (an ODR violation in tagd-uring)."""
    violations, memo = [], {}
    listed_set = set(listed)
    for rel in sorted(set(listed)):
        if listed.count(rel) > 1:
            violations.append(f"{table.name}: asio {rel} listed twice")
        if not (root / rel).is_file():
            violations.append(f"{table.name}: asio {rel} does not exist")
    for file in sorted((root / "src").rglob("*.cpp")):
        rel = file.relative_to(root).as_posix()
        if rel == "src/main.cpp":
            continue
        via = reaches_asio(file.resolve(), root, memo)
        if via and rel not in listed_set:
            violations.append(f"{rel}: includes Asio ({via}) but is not on an `asio` line of {table.name}: it "
                              f"would be compiled once and linked into both tagd and tagd-uring")
        elif not via and rel in listed_set and file.is_file():
            violations.append(f"{rel}: on an `asio` line of {table.name} but includes no Asio or Beast header "
                              f"(compiled twice for nothing): drop it from the line")
    return violations


def main():
    here = pathlib.Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source_dir", nargs="?", default=str(here.parent))
    parser.add_argument("--table", default=None, help="module table (default: <source_dir>/cmake/modules.txt)")
    args = parser.parse_args()
    root = pathlib.Path(args.source_dir).resolve()
    table = pathlib.Path(args.table) if args.table else root / "cmake" / "modules.txt"

    order, uses, overrides, asio, errors = read_table(table)
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return 2

    def module_of(rel_path, default):
        return overrides.get(rel_path, default)

    violations, scanned = [], 0
    for top in (root / "src", root / "include" / "tagd"):
        if not top.is_dir():
            continue
        for directory in sorted(p for p in top.iterdir() if p.is_dir()):
            for file in sorted(directory.rglob("*")):
                if file.suffix not in SOURCE_SUFFIXES or not file.is_file():
                    continue
                rel = file.relative_to(root).as_posix()
                module = module_of(rel, directory.name)
                if module not in uses:
                    violations.append(f"{rel}: directory {directory.name}/ is not a module in {table.name}")
                    continue
                scanned += 1
                for lineno, line in enumerate(file.read_text(errors="replace").splitlines(), 1):
                    m = INCLUDE_RE.match(line)
                    if not m:
                        continue
                    header = f"include/tagd/{m.group(1)}/{m.group(2)}"
                    target = module_of(header, m.group(1))
                    if target == module or target in uses[module]:
                        continue
                    if target not in uses:
                        why = f"tagd/{m.group(1)}/ is not a module"
                    else:
                        why = f"module {module} may use only: {' '.join(sorted(uses[module], key=order.index)) or '(none)'}"
                    violations.append(f"{rel}:{lineno}: {module} includes {module_of(header, m.group(1))} "
                                      f"(\"tagd/{m.group(1)}/{m.group(2)}\"); {why}")

    violations += check_asio_sources(root, asio, table)
    if violations:
        print(f"layering: {len(violations)} violation(s) (table: {table})", file=sys.stderr)
        print("\n".join(violations), file=sys.stderr)
        return 1
    print(f"layering: {scanned} files in {len(order)} modules checked against {table}: OK; "
          f"{len(set(asio))} sources compiled once per socket reactor")
    return 0


if __name__ == "__main__":
    sys.exit(main())
