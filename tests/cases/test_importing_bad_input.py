"""The importer on input that used to escape its report: files that cannot be read (a
damaged or encrypted zip member, a file without read permission), a new study that would
only fail when written, oversized manifests, the archive and pixel limits, a symlink out
of the bundle, and an import racing another one. Each gives one ``ImportRejected`` report
(a non-zero exit from the command, a page from the admin upload) and writes nothing."""

from __future__ import annotations

import io
import json
import re
import struct
import zipfile
from pathlib import Path

import pytest
from django.core.management import execute_from_command_line
from django.db import connections
from django.urls import reverse
from PIL import Image

import cases.importing.manifest as manifest
import cases.importing.storing as storing
from cases.importing import ImportRejected, cases_import
from cases.models import Case, CaseImage, Study
from tests.factories import (
    CaseFactory,
    assert_rejected,
    good_rows,
    image_bytes,
    make_study,
    snapshot,
    write_bundle,
)

pytestmark = pytest.mark.django_db


def member_data_offset(raw: bytes | bytearray, name: str) -> tuple[zipfile.ZipInfo, int]:
    """The member's entry and where its stored (compressed) bytes start in ``raw``."""
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as archive:
        info = archive.getinfo(name)
    start = info.header_offset
    name_length, extra_length = struct.unpack("<HH", raw[start + 26 : start + 30])
    return info, start + 30 + name_length + extra_length


def damage_member(archive: Path, name: str, *, how: str) -> Path:
    """Corrupt member ``name`` in place: ``crc`` flips stored bytes (the CRC no longer
    matches), ``deflate`` makes the compressed stream invalid, ``encrypt`` sets the
    "encrypted" flag in the local header and the central directory."""
    raw = bytearray(archive.read_bytes())
    info, data = member_data_offset(raw, name)
    if how == "crc":
        middle = data + info.compress_size // 2
        for offset in range(16):
            raw[middle + offset] ^= 0xFF
    elif how == "deflate":
        assert info.compress_type == zipfile.ZIP_DEFLATED
        raw[data : data + 4] = b"\xff\xff\xff\xff"  # block type 3 does not exist
    elif how == "encrypt":
        raw[info.header_offset + 6] |= 0x1
        position = 0
        while (position := raw.find(b"PK\x01\x02", position)) >= 0:
            (length,) = struct.unpack("<H", raw[position + 28 : position + 30])
            if raw[position + 46 : position + 46 + length] == name.encode():
                raw[position + 8] |= 0x1
            position += 4
    archive.write_bytes(bytes(raw))
    return archive


def zip_bundle(tmp_path: Path, rows: list[dict], *, deflate: bool = False, **kwargs) -> Path:
    folder = write_bundle(tmp_path / "src", rows, **kwargs)
    target = tmp_path / "b.zip"
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(
                    path,
                    path.relative_to(folder).as_posix(),
                    compress_type=zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED,
                )
    return target


def run_command(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """``manage.py ARGS`` in this process (and this test's database): exit status, stderr."""
    # The command closes every connection when it ends, which would end the test's
    # transaction; here the test owns the connection.
    monkeypatch.setattr(connections, "close_all", lambda: None)
    with pytest.raises(SystemExit) as info:
        execute_from_command_line(["manage.py", *args])
    return info.value.code, capsys.readouterr().err


# --- files that cannot be read -----------------------------------------------------------


@pytest.mark.parametrize(
    "how, deflate, reason",
    [
        ("crc", False, "the zip member is damaged (Bad CRC-32 for file 'img/c001_derm.png')"),
        (
            "deflate",
            True,
            "the zip member is damaged (Error -3 while decompressing data: invalid block type)",
        ),
        ("encrypt", False, "the zip member is encrypted; pack the bundle without a password"),
    ],
)
def test_unreadable_zip_member_is_reported_for_its_row(tmp_path, media_root, how, deflate, reason):
    make_study()
    archive = zip_bundle(tmp_path, good_rows(3), deflate=deflate)
    damage_member(archive, "img/c001_derm.png", how=how)
    error = assert_rejected(
        media_root,
        source=archive,
        expect=[f"row 3, case 'c001': dermoscopic_image 'img/c001_derm.png': {reason}"],
    )
    assert len(error.problems) == 1


@pytest.mark.parametrize(
    "how, reason",
    [
        ("crc", "the zip member is damaged (Bad CRC-32 for file 'cases.csv')"),
        ("encrypt", "the zip member is encrypted; pack the bundle without a password"),
    ],
)
def test_unreadable_manifest_in_a_zip(tmp_path, media_root, how, reason):
    make_study()
    archive = zip_bundle(tmp_path, good_rows(2))
    damage_member(archive, "cases.csv", how=how)
    error = assert_rejected(media_root, source=archive, expect=[f"cases.csv: {reason}"])
    assert len(error.problems) == 1


def test_file_without_read_permission(tmp_path, media_root, monkeypatch):
    make_study()
    write_bundle(tmp_path / "b", good_rows(2))
    blocked = (tmp_path / "b" / "img/c000_clin.jpg").resolve()
    real_read_bytes = Path.read_bytes

    # chmod 000 does not stop root (these tests may run as root), so the refusal that
    # the operating system would give is simulated.
    def read_bytes(path: Path) -> bytes:
        if path == blocked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    assert_rejected(
        media_root,
        source=tmp_path / "b",
        expect=[
            "row 2, case 'c000': clinical_image 'img/c000_clin.jpg': the file cannot be read "
            "(Permission denied)"
        ],
    )


def test_admin_upload_shows_the_report_for_a_damaged_member(admin_client, tmp_path, media_root):
    study = make_study()
    archive = zip_bundle(tmp_path, good_rows(3), deflate=True)
    damage_member(archive, "img/c002_clin.jpg", how="deflate")
    damage_member(archive, "img/c000_derm.png", how="encrypt")
    before = snapshot(media_root)
    with open(archive, "rb") as upload:
        response = admin_client.post(
            reverse("admin:cases_study_import", args=[study.pk]), {"bundle": upload}
        )
    body = response.content.decode()
    assert response.status_code == 200
    assert "Import refused, nothing was written (2 problems)" in body
    assert "clinical_image &#x27;img/c002_clin.jpg&#x27;: the zip member is damaged" in body
    assert "dermoscopic_image &#x27;img/c000_derm.png&#x27;: the zip member is encrypted" in body
    assert snapshot(media_root) == before


def test_command_exits_non_zero_for_a_damaged_member(tmp_path, media_root, monkeypatch, capsys):
    make_study()
    archive = zip_bundle(tmp_path, good_rows(2))
    damage_member(archive, "img/c001_clin.jpg", how="crc")
    before = snapshot(media_root)
    status, err = run_command(monkeypatch, capsys, "import_cases", "study", str(archive))
    assert status == 1
    assert (
        "row 3, case 'c001': clinical_image 'img/c001_clin.jpg': the zip member is damaged" in err
    )
    assert snapshot(media_root) == before


# --- bad rows inside a zip, and the archive's own limits ---------------------------------


def test_every_bad_row_of_a_zip_is_listed(tmp_path, media_root):
    make_study()
    rows = good_rows(5)
    rows[0]["diagnosis"] = "XYZ"
    rows[1]["case_id"] = "c000"
    rows[3]["clinical_image"] = "img/nowhere.jpg"
    images = {
        name: image_bytes(seed=seed, fmt="PNG" if name.endswith(".png") else "JPEG")
        for seed, name in enumerate(
            row[column]
            for row in rows
            for column in ("clinical_image", "dermoscopic_image")
            if row[column] != "img/nowhere.jpg"
        )
    }
    images["img/c002_derm.png"] = images["img/c002_derm.png"][:100]
    archive = zip_bundle(tmp_path, rows, images=images)
    error = assert_rejected(
        media_root,
        source=archive,
        expect=[
            "row 2, case 'c000': unknown diagnosis code 'XYZ'",
            "row 3, case 'c000': duplicate case_id (also on row 2)",
            "row 4, case 'c002': dermoscopic_image 'img/c002_derm.png': the image data is damaged",
            "row 5, case 'c003': clinical_image 'img/nowhere.jpg' is missing from the bundle",
        ],
    )
    assert len(error.problems) == 4


def test_archive_that_expands_past_the_limit(tmp_path, media_root, settings):
    settings.READERSTUDY_MAX_ARCHIVE_BYTES = 100_000
    make_study()
    write_bundle(tmp_path / "b", good_rows(1))
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as out:
        for path in sorted((tmp_path / "b").rglob("*")):
            if path.is_file():
                out.write(path, path.relative_to(tmp_path / "b").as_posix())
        out.writestr("padding.bin", b"\0" * 1_000_000)  # about 1 kB compressed
    with zipfile.ZipFile(archive) as check:
        total = sum(info.file_size for info in check.infolist())
    assert archive.stat().st_size < 100_000 < total
    assert_rejected(
        media_root,
        source=archive,
        expect=[f"the archive expands to {total:,} bytes; the limit is 100,000"],
    )


def test_folder_symlink_leading_out_of_the_bundle(tmp_path, media_root):
    make_study()
    write_bundle(tmp_path / "b", good_rows(2))
    (tmp_path / "secret.jpg").write_bytes(image_bytes(seed=99))
    link = tmp_path / "b" / "img/c000_clin.jpg"
    link.unlink()
    link.symlink_to(tmp_path / "secret.jpg")
    error = assert_rejected(
        media_root,
        source=tmp_path / "b",
        expect=[
            "row 2, case 'c000': clinical_image: 'img/c000_clin.jpg' leads outside the bundle "
            "folder"
        ],
    )
    assert len(error.problems) == 1


def test_folder_symlink_loop(tmp_path, media_root):
    make_study()
    write_bundle(tmp_path / "b", good_rows(2))
    link = tmp_path / "b" / "img/c001_clin.jpg"
    link.unlink()
    link.symlink_to(link)
    assert_rejected(
        media_root,
        source=tmp_path / "b",
        expect=[
            # The reason in brackets is Python's, and differs between versions.
            "row 3, case 'c001': clinical_image 'img/c001_clin.jpg': the path cannot be resolved ("
        ],
    )


def test_manifest_over_its_size_limit(tmp_path, media_root, monkeypatch):
    make_study()
    write_bundle(tmp_path / "b", good_rows(2))
    size = (tmp_path / "b" / "cases.csv").stat().st_size
    monkeypatch.setattr(manifest, "MAX_MANIFEST_BYTES", 100)
    assert_rejected(
        media_root,
        source=tmp_path / "b",
        expect=[f"cases.csv has {size:,} bytes; the limit is 100"],
    )


def test_study_file_over_its_size_limit(tmp_path, media_root, monkeypatch):
    write_bundle(tmp_path / "b", good_rows(2))
    (tmp_path / "b" / "study.json").write_text(json.dumps({"description": "x" * 500}))
    monkeypatch.setattr(manifest, "MAX_MANIFEST_BYTES", 400)
    assert_rejected(
        media_root,
        slug="fresh",
        source=tmp_path / "b",
        expect=["study.json has 519 bytes; the limit is 400"],
    )


def test_manifest_with_a_nul_byte(tmp_path, media_root):
    make_study()
    write_bundle(tmp_path / "b", good_rows(2))
    manifest = tmp_path / "b" / "cases.csv"
    manifest.write_text(manifest.read_text().replace("c001,SK", "c001,S\0K"))
    assert_rejected(
        media_root, source=tmp_path / "b", expect=["cases.csv line 3 contains a NUL character"]
    )


def test_manifest_field_over_the_csv_limit(tmp_path, media_root):
    make_study()
    rows = good_rows(2)
    rows[1]["site"] = "x" * 200_000
    write_bundle(tmp_path / "b", rows)
    assert_rejected(
        media_root,
        source=tmp_path / "b",
        expect=["cases.csv line 3: field larger than field limit (131072)"],
    )


# --- the pixel limit is the configured one ------------------------------------------------


def test_pixel_limit_is_the_configured_one_not_pillows(tmp_path, media_root, settings, monkeypatch):
    # Pillow's own limit stands in far below the configured one (instead of images of
    # hundreds of megapixels): 64 x 48 = 3,072 pixels is over twice Pillow's 1,000, where
    # Pillow itself refuses, and within the configured 10,000.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)
    settings.READERSTUDY_MAX_IMAGE_PIXELS = 10_000
    make_study()
    write_bundle(tmp_path / "ok", good_rows(2))
    assert cases_import(slug="study", source=tmp_path / "ok").cases_created == 2
    assert CaseImage.objects.count() == 4  # the derivatives were made, too
    assert Image.MAX_IMAGE_PIXELS == 1_000  # Pillow's setting is given back

    rows = good_rows(4)[2:]
    images = {
        rows[0]["clinical_image"]: image_bytes(seed=1, size=(120, 100)),  # 12,000 pixels
        rows[0]["dermoscopic_image"]: image_bytes(seed=2, fmt="PNG"),
        rows[1]["clinical_image"]: image_bytes(seed=3),
        rows[1]["dermoscopic_image"]: image_bytes(seed=4, size=(200, 150), fmt="PNG"),
    }
    write_bundle(tmp_path / "big", rows, images=images)
    error = assert_rejected(
        media_root,
        source=tmp_path / "big",
        expect=[
            "row 2, case 'c002': clinical_image 'img/c002_clin.jpg': 120 x 100 = 12,000 pixels "
            "exceeds the limit of 10,000",
            # Over twice the limit Pillow refuses to open it; the number is still ours.
            "row 3, case 'c003': dermoscopic_image 'img/c003_derm.png': the image declares "
            "more pixels than the limit of 10,000",
        ],
    )
    assert len(error.problems) == 2
    assert Image.MAX_IMAGE_PIXELS == 1_000


# --- a new study that would only fail when written ---------------------------------------


@pytest.mark.parametrize(
    "kwargs, study_json, message",
    [
        (
            {"title": "T", "choices": ["MN"]},
            None,
            "a study needs at least two choices, not only MN",
        ),
        (
            {"title": "T" * 201, "choices": ["MN", "SK"]},
            None,
            "study title: Ensure this value has at most 200 characters (it has 201).",
        ),
        (
            {"slug": "s" * 65, "title": "T", "choices": ["MN", "SK"]},
            None,
            "study slug: Ensure this value has at most 64 characters (it has 65).",
        ),
        (
            {"slug": "Not A Slug", "title": "T", "choices": ["MN", "SK"]},
            None,
            "'Not A Slug' is not a valid study slug (use a-z, 0-9, -)",
        ),
        (
            {},
            {"title": "T", "choices": ["MN", "SK"], "shuffle_cases": "maybe"},
            "study.json: shuffle_cases must be true or false, not 'maybe'",
        ),
        (
            {},
            {"title": "T", "choices": ["MN", "SK"], "consent_version": 3},
            "study.json: consent_version must be a string (without NUL characters), not 3",
        ),
        (
            {},
            {"title": ["T"], "choices": ["MN", "SK"]},
            "study.json: title must be a string (without NUL characters), not ['T']",
        ),
        (
            {},
            {"title": "T", "choices": ["MN", "SK"], "consent_text": "I agree."},
            "a consent text needs a consent_version (the version that readers agree to)",
        ),
        (
            {},
            {
                "title": "T",
                "choices": ["MN", "SK"],
                "consent_text": "x",
                "consent_version": "v" * 33,
            },
            "study consent_version: Ensure this value has at most 32 characters (it has 33).",
        ),
        (
            {},
            {"title": "T", "choices": "MN,SK"},
            'study.json: choices must be a list of codes such as ["MN", "SK"], not \'MN,SK\'',
        ),
        (
            {},
            {"title": "T", "choices": 5},
            'study.json: choices must be a list of codes such as ["MN", "SK"], not 5',
        ),
        (
            {},
            {"title": "T\0", "choices": ["MN", "SK"]},
            "study.json: title must be a string (without NUL characters), not 'T\\x00'",
        ),
        (
            {},
            {"title": "T", "choices": ["MN", "SK"], "required_profile_fields": "level"},
            "study required_profile_fields: must be a list of profile field names",
        ),
        (
            {},
            {"title": "T", "choices": ["MN", "SK"], "required_profile_fields": ["level", "shoe"]},
            "study required_profile_fields: unknown profile field(s): shoe",
        ),
        (
            {},
            {"title": "T", "choices": ["MN", "SK"], "shuffle": False},
            "study.json has unknown key(s): shuffle (allowed: title, description, choices, ",
        ),
        (
            {},
            {"title": "T", "choices": ["MN", "SK"], "design": "parallel"},
            "study design: Value 'parallel' is not a valid choice.",
        ),
        (
            {},
            {"title": "T", "choices": ["MN", "SK"], "washout_days": "14"},
            "study.json: washout_days must be a whole number or null, not '14'",
        ),
        (
            {},
            {"title": "T", "choices": ["MN", "SK"], "conditions": []},
            "study.json: conditions must be a non-empty list of objects",
        ),
        (
            {},
            {"title": "T", "choices": ["MN", "SK"], "conditions": [{"code": "a", "x": 1}]},
            "study.json: condition 1 has unknown key(s): x (allowed: code, position, ",
        ),
        (
            {},
            {
                "title": "T",
                "choices": ["MN", "SK"],
                "conditions": [{"code": "a", "position": 1, "shows_cnn": "yes"}],
            },
            "study.json: condition 1: shows_cnn must be true or false",
        ),
        (
            {},
            {
                "title": "T",
                "choices": ["MN", "SK"],
                "conditions": [{"code": "a", "position": 1, "shows_gradcam": True}],
            },
            "study.json: condition 1: The Grad-CAM is shown only with the CNN's support.",
        ),
        (
            {},
            {
                "title": "T",
                "choices": ["MN", "SK"],
                "conditions": [{"code": "a", "position": 1}, {"code": "a", "position": 2}],
            },
            "study.json: two conditions have the same code",
        ),
    ],
)
def test_new_study_checked_before_anything_is_written(
    tmp_path, media_root, kwargs, study_json, message
):
    write_bundle(tmp_path / "b", good_rows(2, codes=("MN", "SK")))
    if study_json is not None:
        (tmp_path / "b" / "study.json").write_text(json.dumps(study_json))
    kwargs = {"slug": "fresh", **kwargs}
    error = assert_rejected(media_root, source=tmp_path / "b", expect=[message], **kwargs)
    assert len(error.problems) == 1, error.report()


def test_every_problem_of_a_new_study_in_one_report(tmp_path, media_root):
    write_bundle(tmp_path / "b", good_rows(2, codes=("MN", "SK")))
    (tmp_path / "b" / "study.json").write_text(
        json.dumps(
            {
                "title": "T" * 300,
                "choices": ["MN"],
                "ask_confidence": 1,
                "consent_text": "I agree.",
            }
        )
    )
    error = assert_rejected(
        media_root,
        slug="fresh",
        source=tmp_path / "b",
        expect=[
            "a study needs at least two choices, not only MN",
            "study.json: ask_confidence must be true or false, not 1",
            "study title: Ensure this value has at most 200 characters (it has 300).",
            "a consent text needs a consent_version",
        ],
    )
    assert len(error.problems) == 4


def test_command_exits_non_zero_for_a_new_study_with_one_choice(
    tmp_path, media_root, monkeypatch, capsys
):
    write_bundle(tmp_path / "b", good_rows(2, codes=("MN",)))
    before = snapshot(media_root)
    status, err = run_command(
        monkeypatch,
        capsys,
        "import_cases",
        "fresh",
        str(tmp_path / "b"),
        "--title",
        "Fresh",
        "--choices",
        "MN",
    )
    assert status == 1
    assert "a study needs at least two choices, not only MN" in err
    assert snapshot(media_root) == before


def test_study_file_options_reach_the_new_study(tmp_path):
    write_bundle(tmp_path / "b", good_rows(2, codes=("MN", "SK")))
    (tmp_path / "b" / "study.json").write_text(
        json.dumps(
            {
                "title": "From the file",
                "choices": ["SK", "MN"],
                "required_profile_fields": ["region"],
                "shuffle_cases": False,
            }
        )
    )
    study = cases_import(slug="fresh", source=tmp_path / "b").study
    assert (study.title, study.choice_codes()) == ("From the file", ["SK", "MN"])
    assert study.required_profile_fields == ["region"] and study.shuffle_cases is False


# --- an import racing another import (or an admin) ----------------------------------------


@pytest.mark.parametrize("race", ["same case id", "study opened", "choices changed"])
def test_changes_made_while_an_import_validates_are_caught(tmp_path, media_root, monkeypatch, race):
    study = make_study()
    write_bundle(tmp_path / "b", good_rows(3))
    real_validate = storing.validate_rows

    def validate_then_race(*args, **kwargs):
        parsed = real_validate(*args, **kwargs)
        if race == "same case id":  # another import committed this case meanwhile
            CaseFactory(study=study, source_id="c001", position=7, with_images=False)
        elif race == "study opened":
            Study.objects.filter(pk=study.pk).update(status=Study.Status.OPEN)
        else:
            study.study_choices.filter(position=3).delete()
        return parsed

    monkeypatch.setattr(storing, "validate_rows", validate_then_race)
    expected = {
        "same case id": "row 3, case 'c001': case_id already exists in this study (added "
        "while this import ran)",
        "study opened": "study 'study' is open; cases can be added only to a draft study",
        "choices changed": "the choices of study 'study' changed during the import",
    }[race]
    with pytest.raises(ImportRejected, match=re.escape(expected)):
        cases_import(slug="study", source=tmp_path / "b")
    assert Case.objects.exclude(source_id="c001").count() == 0
    assert CaseImage.objects.count() == 0
    assert not media_root.exists() or not any(p.is_file() for p in media_root.rglob("*"))
