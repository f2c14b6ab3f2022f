"""The dependency direction of STYLE.md's house rules, read from every module's imports (ast, nothing imported).

efficient_sam3 imports none of training / export / runtime / benchmarks; export imports neither runtime
nor training; runtime imports none of training / export / benchmarks; training imports no runtime
(shared facts live in ``efficient_sam3.contract``); nothing imports benchmarks. Besides training itself
and tests, only benchmarks import training: they time it (benchmarks/training_side.py).
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("efficient_sam3", "training", "export", "runtime", "benchmarks")
FORBIDDEN = {
    "efficient_sam3": {"training", "export", "runtime", "benchmarks"},
    "training": {"runtime", "export", "benchmarks"},
    "export": {"runtime", "training", "benchmarks"},
    "runtime": {"training", "export", "benchmarks"},
}


def _imported_packages(path: Path) -> set[str]:
    """Top-level first-party packages a module imports (absolute imports, at any depth of the file)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {name.split(".")[0] for name in names} & set(PACKAGES)
    return found


def _violations() -> set[tuple[str, str]]:
    bad = set()
    for package, forbidden in FORBIDDEN.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            bad |= {(rel, target) for target in _imported_packages(path) & forbidden}
    return bad


def test_packages_import_only_downwards():
    violations = _violations()
    new = sorted(violations)
    assert not new, f"sideways imports (move the shared fact to efficient_sam3.contract): {new}"


def test_the_checker_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import numpy\ndef f():\n    from runtime.state import push_memory\n"
                      "    import training.losses as losses\n")
    assert _imported_packages(module) == {"runtime", "training"}
