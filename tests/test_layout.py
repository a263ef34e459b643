"""The layout the README describes, checked on the source: which package may import
which, and where torch may be imported at module level.

Data flows one way (../shared/design.md): ``cases`` owns what readers see and answer,
``inference`` reads cases and writes predictions, ``analysis`` reads both; the staff
console, the demo and the backups sit on top. The statistics core imports no Django.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("readerstudy", "audit", "cases", "inference", "analysis", "console", "demo", "backups")
HEAVY = ("torch", "torchvision", "timm", "pytorch_grad_cam")

# package -> the project packages its modules may import (besides itself). readerstudy
# is the project's wiring (settings, URLconf, the Celery app) and is left out. An app's
# admin module is wiring too: it may scope its rows by study (cases) and mount the
# staff console's pages (console); so may inference.views for the predictions export.
# The statistics core (analysis.stats) is a library: it imports no project package,
# and any package may import it, for the column names of the tidy tables it owns.
MAY_IMPORT = {
    "audit": {"readerstudy"},
    "cases": {"readerstudy", "audit"},
    "inference": {"readerstudy", "audit", "cases"},
    "analysis": {"readerstudy", "audit", "cases", "inference"},
    "console": {"readerstudy", "audit", "cases", "inference", "analysis"},
    "demo": {"readerstudy", "audit", "cases", "inference", "analysis"},
    "backups": {"readerstudy", "audit", "cases", "inference", "analysis"},
}

ADMIN_WIRING = {"cases", "console"}

# The only modules that may import torch & co. at module level: those that build,
# run or train a model. Everything else imports them inside the function that needs
# them, in the process that runs a model.
TORCH_MODULES = {
    "inference.nets",
    "inference.checkpoints",
    "inference.predict",
    "inference.gradcam",
    "inference.training",
    "inference.services.execution",
    "inference.management.commands.train_model",
}


def modules():
    for package in PROJECT:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            yield name, ast.parse(path.read_text(), str(path))


def imported(tree: ast.AST, *, top_level_only: bool) -> set[str]:
    """Module names imported by ``tree``: everywhere, or only at module level
    (including under ``if``/``try`` there, excluding ``if TYPE_CHECKING:``)."""
    found: set[str] = set()
    nodes = ast.walk(tree) if not top_level_only else _top_level(tree.body)
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # ``from inference.services import execution`` imports a module too
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _top_level(body):
    for node in body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        yield node
        if isinstance(node, ast.If | ast.Try):
            for block in (node.body, getattr(node, "orelse", []), getattr(node, "finalbody", [])):
                yield from _top_level(block)
            for handler in getattr(node, "handlers", []):
                yield from _top_level(handler.body)


ALL = list(modules())


@pytest.mark.parametrize(("name", "tree"), ALL, ids=[name for name, _ in ALL])
def test_imports_follow_the_one_way_flow(name, tree):
    package = name.split(".")[0]
    if package == "readerstudy":
        return
    allowed = MAY_IMPORT[package] | {package}
    if name.endswith(".admin") or name == "inference.views":
        allowed |= ADMIN_WIRING
    wrong = sorted(
        module
        for module in imported(tree, top_level_only=False)
        if module.split(".")[0] in PROJECT
        and module.split(".")[0] not in allowed
        and not module.startswith("analysis.stats")
    )
    assert wrong == [], f"{name} may import only {sorted(allowed)}"


@pytest.mark.parametrize(("name", "tree"), ALL, ids=[name for name, _ in ALL])
def test_only_model_modules_import_torch_at_module_level(name, tree):
    if name in TORCH_MODULES:
        return
    heavy = sorted(
        m
        for m in imported(tree, top_level_only=True)
        if m.split(".")[0] in HEAVY or m in TORCH_MODULES
    )
    assert heavy == [], f"{name} imports {heavy} at module level"


def test_the_statistics_core_imports_no_django_and_no_project_app():
    for name, tree in ALL:
        if not name.startswith("analysis.stats"):
            continue
        bad = sorted(
            m
            for m in imported(tree, top_level_only=False)
            if m.split(".")[0] in {"django", "rest_framework", *PROJECT} - {"analysis"}
            or (m.startswith("analysis.") and not m.startswith("analysis.stats"))
        )
        assert bad == [], f"{name} imports {bad}"


def test_no_service_imports_a_tasks_module():
    """Tasks import services, one way; a service sends a task by its name
    (readerstudy.tasks.task_named), so there is no circle, not even inside a function."""
    for name, tree in ALL:
        if ".services" not in name and not name.endswith("services"):
            continue
        tasks = sorted(
            m
            for m in imported(tree, top_level_only=False)
            if m.split(".")[0] in PROJECT
            and ".tasks" in m
            and not m.startswith("readerstudy.tasks")
        )
        assert tasks == [], f"{name} imports {tasks}"
