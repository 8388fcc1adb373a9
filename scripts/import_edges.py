#!/usr/bin/env python3
"""Print the import edges between the project's packages, as a matrix.

Each cell counts the import statements in the row's package that name the column's package;
`n+m` means n at module level and m inside a function or class body (imports deferred to dodge
a cycle). Tests, migrations and the project package's settings are left out: docs/architecture.md.

    python scripts/import_edges.py [ROOT]
"""

import ast
import sys
from collections import Counter
from pathlib import Path

PACKAGES = ["accounts", "payments", "renewals", "partner", "console", "esimsite"]


def edges(root: Path):
    top, nested = Counter(), Counter()
    present = [p for p in PACKAGES if (root / p).is_dir()]
    for package in present:
        for path in (root / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            tree = ast.parse(path.read_text(), str(path))
            module_level = {id(node) for node in tree.body}
            # Imports under `if TYPE_CHECKING:` at module level are for annotations only: they run
            # nowhere, so they count as module-level (they are never a way round a cycle).
            for node in tree.body:
                if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                    module_level |= {id(child) for child in node.body}
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                else:
                    continue
                for name in names:
                    target = name.split(".")[0]
                    if target in present and target != package:
                        (top if id(node) in module_level else nested)[package, target] += 1
    return present, top, nested


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    present, top, nested = edges(root)
    width = max(map(len, present)) + 2
    print("importer \\ imported".ljust(width + 10) + "".join(p.rjust(width) for p in present))
    for row in present:
        cells = []
        for col in present:
            t, n = top[row, col], nested[row, col]
            cells.append(("." if row == col or not (t or n) else f"{t}+{n}" if n else str(t)).rjust(width))
        print(row.ljust(width + 10) + "".join(cells))
    pairs = {pair for pair in list(top) + list(nested)}
    print(
        f"edges: {len(pairs)} package pairs, {sum(top.values())} module-level + "
        f"{sum(nested.values())} function-level import statements"
    )


if __name__ == "__main__":
    main()
