"""English and Simplified Chinese for everything a reader sees.

- The committed catalogue holds exactly the strings marked in the sources (a fresh
  ``makemessages`` run in a copy of the project finds no more and no fewer), every one
  translated, and the compiled ``.mo`` matches it.
- A study's title, description and consent text have a Chinese version that Chinese
  readers see (the English text when none was written).
- A walk through every reader page in Chinese finds no English UI text.
"""

from __future__ import annotations

import ast
import gettext
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import translation

from cases.models import Enrolment, Study
from cases.services import answer_submit, invitations_create, study_create
from tests.factories import CaseFactory

ROOT = Path(__file__).resolve().parents[1]
PO = ROOT / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"
MO = PO.with_suffix(".mo")
UPDATE = (
    "run `manage.py makemessages -l zh_Hans -i var`, translate, then "
    "`manage.py compilemessages -l zh_Hans -i .venv -i var`"
)
# What makemessages must not see in the copy: the virtualenv, data, the catalogue itself.
NOT_SOURCES = shutil.ignore_patterns(
    ".*", "var", "locale", "node_modules", "__pycache__", "*.egg-info", "*.pyc"
)


# --- the catalogue ----------------------------------------------------------------------


@dataclass
class Entry:
    msgstr: list[str]
    fuzzy: bool


def _po_entries(path: Path) -> dict[tuple[str, str, str], Entry]:
    """The entries of a .po file by (msgctxt, msgid, msgid_plural), header and obsolete
    (``#~``) entries left out; continued strings joined."""
    entries: dict[tuple[str, str, str], Entry] = {}
    current: dict = {}
    field = None

    def flush():
        if current.get("msgid"):
            key = (current.get("msgctxt", ""), current["msgid"], current.get("msgid_plural", ""))
            entries[key] = Entry(
                msgstr=[v for k, v in sorted(current.items()) if k.startswith("msgstr")],
                fuzzy=current.get("fuzzy", False),
            )
        current.clear()

    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith('"') and field:
            current[field] += ast.literal_eval(line)
            continue
        keyword, _, rest = line.partition(" ")
        starts_entry = line.startswith("#,") or keyword in ("msgctxt", "msgid")
        if starts_entry and any(k.startswith("msgstr") for k in current):
            flush()
        if line.startswith("#,"):
            current["fuzzy"] = "fuzzy" in line
            field = None
        elif keyword in ("msgctxt", "msgid", "msgid_plural") or keyword.startswith("msgstr"):
            field = keyword
            current[field] = ast.literal_eval(rest)
        else:  # comments, obsolete entries, blank lines
            field = None
    flush()
    return entries


def _gettext_tools() -> None:
    missing = [tool for tool in ("xgettext", "msgmerge", "msgfmt") if not shutil.which(tool)]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not found: install GNU gettext (apt-get install gettext)"
        )


def test_every_string_is_translated():
    entries = _po_entries(PO)
    assert len(entries) > 50
    untranslated = [key[1] for key, e in entries.items() if not all(s.strip() for s in e.msgstr)]
    fuzzy = [key[1] for key, e in entries.items() if e.fuzzy]
    assert not untranslated, f"untranslated: {untranslated}"
    assert not fuzzy, f"fuzzy (check the translation, then remove the flag): {fuzzy}"


def test_catalogue_holds_exactly_the_marked_strings(tmp_path, settings, monkeypatch):
    """A string marked for translation but never extracted would show in English to
    every Chinese reader; one extracted but no longer used is dead weight."""
    _gettext_tools()
    copy = tmp_path / "project"
    shutil.copytree(ROOT, copy, ignore=NOT_SOURCES)
    (copy / "locale").mkdir()
    settings.LOCALE_PATHS = [copy / "locale"]
    monkeypatch.chdir(copy)
    call_command("makemessages", locale=["zh_Hans"], verbosity=0)
    extracted = set(_po_entries(copy / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"))
    committed = set(_po_entries(PO))
    missing = sorted(key[1] for key in extracted - committed)
    unused = sorted(key[1] for key in committed - extracted)
    assert not missing, f"marked in the sources but not in {PO.name} ({UPDATE}): {missing}"
    assert not unused, f"in {PO.name} but no longer in the sources ({UPDATE}): {unused}"


def _catalogue(mo: Path) -> dict:
    with open(mo, "rb") as handle:
        return dict(gettext.GNUTranslations(handle)._catalog)


def test_compiled_catalogue_matches_the_source(tmp_path):
    _gettext_tools()
    fresh = tmp_path / "django.mo"
    checked = subprocess.run(
        ["msgfmt", "--check", "--statistics", "-o", str(fresh), str(PO)],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr
    assert "untranslated" not in checked.stderr and "fuzzy" not in checked.stderr, checked.stderr
    committed, expected = _catalogue(MO), _catalogue(fresh)
    stale = sorted(str(k) for k in expected.keys() ^ committed.keys())
    stale += sorted(
        str(k) for k in expected.keys() & committed.keys() if expected[k] != committed[k]
    )
    assert not stale, f"{MO.name} is out of date ({UPDATE}): {stale[:5]}"


def test_untranslated_po_entry_is_detected(tmp_path):
    """The parser the tests above rely on sees an empty or fuzzy translation."""
    po = tmp_path / "x.po"
    po.write_text(
        'msgid ""\nmsgstr ""\n"Language: zh_Hans\\n"\n\n'
        'msgid "Done"\nmsgstr ""\n\n'
        '#, fuzzy, python-format\nmsgid "%(n)s left"\nmsgstr "剩余 %(n)s"\n\n'
        'msgctxt "menu"\nmsgid "Open"\nmsgid_plural "Opens"\nmsgstr[0] "打开"\n\n'
        '#~ msgid "Old"\n#~ msgstr "旧"\n',
        encoding="utf-8",
    )
    assert _po_entries(po) == {
        ("", "Done", ""): Entry(msgstr=[""], fuzzy=False),
        ("", "%(n)s left", ""): Entry(msgstr=["剩余 %(n)s"], fuzzy=True),
        ("menu", "Open", "Opens"): Entry(msgstr=["打开"], fuzzy=False),
    }


# --- a study's own texts ----------------------------------------------------------------

EN = {
    "title": "Pigmented lesions study",
    "description": "Please read each case carefully.",
    "consent_text": "I agree to the terms of this study.",
}
ZH = {
    "title_zh": "色素性皮损读片研究",
    "description_zh": "请仔细阅读每个病例。",
    "consent_text_zh": "我同意本研究的条款。",
}


def test_study_text_for_picks_the_language_and_falls_back_to_english():
    study = Study(**EN, title_zh=ZH["title_zh"])
    assert study.text_for("title", "zh-hans") == ZH["title_zh"]
    assert study.text_for("title", "en") == EN["title"]
    assert study.text_for("title", None) == EN["title"]
    assert study.text_for("consent_text", "zh-hans") == EN["consent_text"]  # no Chinese one
    with translation.override("zh-hans"):
        assert study.localized_title == ZH["title_zh"]
        assert study.localized_description == EN["description"]
    with translation.override("en"):
        assert study.localized_title == EN["title"]
    with pytest.raises(ValueError, match="'slug' has no translation"):
        study.text_for("slug", "zh-hans")


@pytest.mark.django_db
def test_a_chinese_consent_text_needs_a_consent_version():
    with pytest.raises(IntegrityError, match="consent_text_has_version"), transaction.atomic():
        Study.objects.create(slug="s", title="S", consent_text_zh="我同意", consent_version="")


# --- the reader's pages in each language ------------------------------------------------


def _study(slug: str, **options) -> Study:
    options = {"title": slug, "status": Study.Status.OPEN, **options}
    return study_create(slug=slug, choices=["MN", "SK", "BCC"], **options)


# Words that may appear on a Chinese page: the language picker's own name for English,
# and the key caps shown in the keyboard hints.
ALLOWED_ENGLISH = {"English", "Enter", "Backspace", "Esc", "Tab"}  # key names
ZH_HEADERS = {"HTTP_ACCEPT_LANGUAGE": "zh-CN,zh;q=0.9"}
EN_HEADERS = {"HTTP_ACCEPT_LANGUAGE": "en"}
PASSWORD = "a-Long-pass-9x"


def _visible_words(html: str) -> set[str]:
    """Latin words of three letters or more in the page's text (not in tags, scripts
    or styles)."""
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    text = re.sub(r"<[^>]*>", " ", html)
    return set(re.findall(r"[A-Za-z][A-Za-z']{2,}", text))


def _walk(client, headers: dict) -> dict[str, str]:
    """Every page of a reader's way through a study (with bad input on each form), by
    name: the decoded body of each response."""
    study = _study(
        "i18n",
        consent_version="v1",
        ask_confidence=True,
        show_feedback=True,
        allow_answer_changes=True,
        **EN,
        **ZH,
    )
    for position in (1, 2):
        CaseFactory(study=study, position=position)
    token = invitations_create(study=study, count=1)[0].token
    pages = {}

    def visit(name, method, url, data=None, status=200):
        response = getattr(client, method)(url, data or {}, **headers)
        assert response.status_code == status, (name, response.status_code)
        if status != 302:
            pages[name] = response.content.decode()
        return response

    join = reverse("cases:join", args=[token])
    visit("login", "get", reverse("login"))
    visit("login (wrong password)", "post", reverse("login"), {"username": "x", "password": "y"})
    visit("join", "get", join)
    bad = {"username": "dr", "email": "not-an-address", "password1": "a", "password2": "b"}
    visit("join (bad input)", "post", join, bad, status=400)
    good = {"username": "dr", "email": "dr@example.org", "password1": PASSWORD}
    visit("join (register)", "post", join, {**good, "password2": PASSWORD}, status=302)
    slug = study.slug
    visit("consent", "get", reverse("cases:consent", args=[slug]))
    visit("consent (not ticked)", "post", reverse("cases:consent", args=[slug]))
    visit("consent (agree)", "post", reverse("cases:consent", args=[slug]), {"agree": "on"}, 302)
    visit("profile", "get", reverse("cases:profile", args=[slug]))
    profile = reverse("cases:profile", args=[slug])
    visit("profile (bad input)", "post", profile, {"years_in_dermatology": "-1"})
    visit("profile (save)", "post", profile, {"level": "chief", "years_in_dermatology": 3}, 302)
    case_url = reverse("cases:case", args=[slug])
    first = visit("case 1", "get", case_url).content.decode()
    case = re.search(r'name="case" value="([0-9a-f]+)"', first).group(1)
    visit(
        "case (bad choice)", "post", case_url, {"case": case, "answer": "Q1", "confidence": 3}, 400
    )
    visit("case (answer)", "post", case_url, {"case": case, "answer": "MN", "confidence": 3}, 302)
    visit("case 2", "get", case_url)
    visit("revise case 1", "get", reverse("cases:case_revise", args=[slug, 1]))
    visit("home (half-way)", "get", reverse("home"))
    enrolment = Enrolment.objects.get(reader__username="dr")
    second = enrolment.study.cases.get(pk=enrolment.case_order[1]).public_id
    answer_submit(enrolment=enrolment, case_public_id=second, diagnosis_code="SK", confidence=2)
    visit("done", "get", reverse("cases:done", args=[slug]))
    visit("home (finished)", "get", reverse("home"))
    visit("password change", "get", reverse("password_change"))
    change = {"old_password": "wrong", "new_password1": "a", "new_password2": "b"}
    visit("password change (bad input)", "post", reverse("password_change"), change)
    visit("not found", "get", "/no-such-page/", status=404)
    study.status = Study.Status.CLOSED
    study.save(update_fields=["status"])
    visit("done (closed)", "get", reverse("cases:done", args=[slug]))
    visit("log out", "post", reverse("logout"))
    return pages


@pytest.mark.django_db
def test_reader_pages_in_chinese_show_no_english(client):
    pages = _walk(client, ZH_HEADERS)
    english = {
        name: sorted(_visible_words(html) - ALLOWED_ENGLISH)
        for name, html in pages.items()
        if _visible_words(html) - ALLOWED_ENGLISH
    }
    assert not english, f"English words on Chinese pages: {english}"
    for name in ("join", "consent", "done", "home (finished)"):
        assert ZH["title_zh"] in pages[name], name
        assert EN["title"] not in pages[name], name
    assert ZH["description_zh"] in pages["join"]
    assert ZH["consent_text_zh"] in pages["consent"]
    assert EN["consent_text"] not in pages["consent"]
    # the closed study's page says so, in Chinese
    assert 'data-testid="closed"' in pages["done (closed)"]
    assert "本研究已结束。" in pages["done (closed)"]


@pytest.mark.django_db
def test_reader_pages_in_english_show_the_english_study_texts(client):
    pages = _walk(client, EN_HEADERS)
    assert EN["title"] in pages["consent"] and EN["consent_text"] in pages["consent"]
    assert EN["description"] in pages["join"]
    assert not any(text in html for html in pages.values() for text in ZH.values())
    assert "This study is closed." in pages["done (closed)"]


@pytest.mark.django_db
def test_chinese_reader_sees_the_english_consent_when_no_chinese_one_was_written(client, reader):
    study = _study("fallback", consent_version="v1", **EN)
    invitation = invitations_create(study=study, count=1)[0]
    client.force_login(reader)
    client.post(reverse("cases:join", args=[invitation.token]), **ZH_HEADERS)
    page = client.get(reverse("cases:consent", args=[study.slug]), **ZH_HEADERS)
    assert EN["consent_text"] in page.content.decode()
    assert EN["title"] in page.content.decode()


@pytest.mark.django_db
def test_reader_api_gives_the_chinese_title(client, reader):
    study = _study("api-zh", consent_version="v1", **EN, **ZH)
    invitation = invitations_create(study=study, count=1)[0]
    client.force_login(reader)
    client.post(reverse("cases:join", args=[invitation.token]))
    url = reverse("api-reader-studies")
    assert client.get(url, **ZH_HEADERS).json()[0]["title"] == ZH["title_zh"]
    assert client.get(url, **EN_HEADERS).json()[0]["title"] == EN["title"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "headers, detail",
    [
        (EN_HEADERS, "JSON parse error at line 1, column 2: Expecting property name"),
        (ZH_HEADERS, "JSON 解析错误（第 1 行，第 2 列）：Expecting property name"),  # noqa: RUF001
    ],
)
def test_malformed_json_is_reported_in_the_readers_language(client, reader, headers, detail):
    study = _study("json")
    invitation = invitations_create(study=study, count=1)[0]
    client.force_login(reader)
    client.post(reverse("cases:join", args=[invitation.token]))
    url = reverse("api-reader-answer", args=[study.slug])
    response = client.post(url, "{bad", content_type="application/json", **headers)
    assert response.status_code == 400
    assert response.json()["detail"].startswith(detail)


@pytest.mark.django_db
@pytest.mark.parametrize("headers, title", [(EN_HEADERS, "Bad request"), (ZH_HEADERS, "请求有误")])
def test_bad_request_page_is_translated(client, headers, title):
    # More form fields than DATA_UPLOAD_MAX_NUMBER_FIELDS: Django answers 400.
    fields = {f"f{i}": "x" for i in range(1001)}
    response = client.post(reverse("login"), fields, **headers)
    assert response.status_code == 400
    assert f"<h1>{title}</h1>" in response.content.decode()


@pytest.mark.django_db
def test_drf_own_messages_follow_the_readers_language(client):
    """LocaleMiddleware applies to the API too, and DRF ships its zh_Hans catalogue."""
    url = reverse("api-reader-studies")
    assert client.get(url, **EN_HEADERS).json()["detail"] == (
        "Authentication credentials were not provided."
    )
    assert client.get(url, **ZH_HEADERS).json()["detail"] == "身份认证信息未提供。"


@pytest.mark.django_db
def test_admin_edits_the_chinese_study_texts(admin_client):
    study = _study("admin-zh")
    page = admin_client.get(reverse("admin:cases_study_change", args=[study.pk])).content
    for field in ("title_zh", "description_zh", "consent_text_zh"):
        assert f'name="{field}"'.encode() in page, field
