"""Every reader-facing string has a Simplified Chinese translation, and the compiled
catalogue matches its source."""

from __future__ import annotations

import ast
import gettext
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PO = ROOT / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"
MO = PO.with_suffix(".mo")


def _entries() -> list[tuple[str, str]]:
    """(msgid, msgstr) pairs of the .po file (multi-line strings joined)."""
    entries, key, parts, current = [], None, {"msgid": [], "msgstr": []}, None
    for line in [*PO.read_text(encoding="utf-8").splitlines(), ""]:
        if line.startswith(("msgid ", "msgstr ")):
            key, _, rest = line.partition(" ")
            if key == "msgid" and current == "msgstr":
                entries.append(("".join(parts["msgid"]), "".join(parts["msgstr"])))
                parts = {"msgid": [], "msgstr": []}
            parts[key].append(ast.literal_eval(rest))
            current = key
        elif line.startswith('"') and current:
            parts[current].append(ast.literal_eval(line))
    if current == "msgstr":
        entries.append(("".join(parts["msgid"]), "".join(parts["msgstr"])))
    return [(i, s) for i, s in entries if i]


def test_every_string_is_translated():
    entries = _entries()
    assert len(entries) > 50
    untranslated = [msgid for msgid, msgstr in entries if not msgstr.strip()]
    assert not untranslated, f"untranslated: {untranslated}"


def test_compiled_catalogue_matches_the_source():
    with open(MO, "rb") as handle:
        catalogue = gettext.GNUTranslations(handle)
    stale = [msgid for msgid, msgstr in _entries() if catalogue.gettext(msgid) != msgstr]
    assert not stale, f"run `manage.py compilemessages`: {stale[:5]}"
