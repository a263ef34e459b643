"""axe-core in a Playwright page: the serious and critical violations, readably.

axe-core is the npm package pinned in package.json; `make test` installs it into
node_modules/ and nothing is downloaded while the tests run."""

from __future__ import annotations

from pathlib import Path

import pytest

AXE_JS = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")


def blocking_violations(page) -> list[dict]:
    """axe's violations of impact serious or critical on ``page`` as it is now, each a
    dict of axe's result format (``id``, ``impact``, ``help``, ``nodes``...)."""
    if not AXE_JS.exists():
        pytest.fail(
            f"{AXE_JS} is missing: run `make test` or `make node_modules/axe-core/axe.min.js`,"
            " which install axe-core with npm"
        )
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(path=AXE_JS)
    results = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [v for v in results["violations"] if v["impact"] in BLOCKING]


def describe(violations: list[dict]) -> str:
    """One line per violation (rule, impact, help), then each failing node's selector
    and axe's summary of what to fix."""
    lines = []
    for violation in violations:
        lines.append(f"{violation['id']} ({violation['impact']}): {violation['help']}")
        for node in violation["nodes"]:
            selector = " >> ".join(
                " ".join(part) if isinstance(part, list) else part for part in node["target"]
            )
            summary = " ".join((node.get("failureSummary") or "").split())
            lines.append(f"    {selector}: {summary}")
    return "\n".join(lines)
