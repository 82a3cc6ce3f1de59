"""The package layering a reader relies on: the model package never reaches into the data package."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_module_in_moe_imports_datamodules():
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in imported_modules(path) if m.split(".")[0] == "datamodules")
        for path in sorted((ROOT / "moe").rglob("*.py"))
    }
    assert {path: mods for path, mods in offenders.items() if mods} == {}


def test_the_batch_contract_is_defined_once():
    """IGNORE_INDEX and NO_DOMAIN have one definition (moe/batch.py); everyone else imports it."""
    definitions = []
    for folder in ("moe", "datamodules", "evals", "stages", "lightning_app", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Assign):
                    for target in node.targets:
                        if isinstance(target, ast.Name) and target.id in ("IGNORE_INDEX", "NO_DOMAIN"):
                            definitions.append(f"{path.relative_to(ROOT)}:{target.id}")
    assert definitions == ["moe/batch.py:IGNORE_INDEX", "moe/batch.py:NO_DOMAIN"]
