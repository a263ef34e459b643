"""The case importer: good bundles, each kind of bad bundle, and the export round trip.
(More bad input, the unreadable and the new-study kinds, in test_importing_bad_input.py.)"""

from __future__ import annotations

import hashlib
import zipfile

import pytest
from django.core.management import CommandError, call_command
from django.db import models
from django.forms.models import model_to_dict

from cases.importing import cases_export, cases_import
from cases.models import CaseImage, Study
from cases.services import study_create
from tests.factories import (
    assert_rejected,
    good_rows,
    image_bytes,
    make_study,
    png_bomb,
    snapshot,
    write_bundle,
    zip_folder,
)

pytestmark = pytest.mark.django_db


# --- good input -------------------------------------------------------------------------


def test_import_folder_creates_cases_images_and_derivatives(tmp_path, media_root):
    study = make_study()
    write_bundle(tmp_path / "bundle", good_rows(4))

    result = cases_import(slug="study", source=tmp_path / "bundle")

    assert result.cases_created == 4 and not result.study_created
    cases = list(study.cases.order_by("position"))
    assert [c.source_id for c in cases] == ["c000", "c001", "c002", "c003"]
    assert [c.diagnosis.code for c in cases] == ["MN", "SK", "BCC", "MN"]
    assert cases[1].age == 31 and cases[1].sex == "F" and cases[1].histopathology is True
    assert cases[0].histopathology is None
    image = cases[0].images.get(kind="dermoscopic")
    original = (tmp_path / "bundle" / "img/c000_derm.png").read_bytes()
    assert image.format == "PNG" and image.width == 64 and image.height == 48
    assert image.sha256 == hashlib.sha256(original).hexdigest()
    assert image.original.read() == original
    assert image.web.name.endswith(".jpg") and image.thumbnail.name.endswith(".jpg")


def test_stored_file_names_and_public_ids_do_not_hint_at_the_diagnosis(tmp_path):
    make_study()
    rows = good_rows(3)
    for row in rows:
        row["clinical_image"] = f"{row['diagnosis']}_melanocytic_{row['case_id']}.jpg"
    write_bundle(tmp_path / "b", rows)
    cases_import(slug="study", source=tmp_path / "b")
    for image in CaseImage.objects.all():
        for name in (image.original.name, image.web.name, image.thumbnail.name):
            assert image.case.diagnosis.code not in name and "melanocytic" not in name
        assert image.case.source_id not in image.case.public_id


def test_import_zip_with_a_top_folder(tmp_path):
    make_study()
    write_bundle(tmp_path / "src" / "mystudy", good_rows(3))
    with zipfile.ZipFile(tmp_path / "b.zip", "w") as archive:
        for path in (tmp_path / "src").rglob("*"):
            if path.is_file():
                archive.write(path, path.relative_to(tmp_path / "src").as_posix())
    result = cases_import(slug="study", source=tmp_path / "b.zip")
    assert result.cases_created == 3


def test_command_creates_a_draft_study_with_title_and_choices(tmp_path, capsys):
    write_bundle(tmp_path / "b", good_rows(3, codes=("Pso", "EAD")))
    call_command(
        "import_cases",
        "new-study",
        str(tmp_path / "b"),
        "--title",
        "New study",
        "--choices",
        "Pso,EAD,SD",
    )
    study = Study.objects.get(slug="new-study")
    assert study.title == "New study" and study.status == Study.Status.DRAFT
    assert study.choice_codes() == ["Pso", "EAD", "SD"]
    assert study.cases.count() == 3
    assert "Created study 'new-study': 3 case(s) imported" in capsys.readouterr().out


# What a copy does not share with its original: its identity, its status and closing
# date (a copy starts as a draft, open until closed), its admins (people of this
# installation), its crossover arm seed (a copy's readers are randomised afresh) and its
# time stamps.
STUDY_NOT_COPIED = {
    "id", "slug", "status", "closes_at", "admins", "choices", "arm_seed", "created_at",
    "updated_at",
}  # fmt: skip


def non_default_study_values() -> dict:
    """A value other than the default for every Study field a bundle carries, so that the
    round trip notices a field it drops, a field added to Study later included."""
    values = {}
    for field in Study._meta.concrete_fields:
        if field.name in STUDY_NOT_COPIED:
            continue
        if field.name == "required_profile_fields":
            values[field.name] = ["region", "level"]
        elif field.choices:
            values[field.name] = next(v for v, _ in field.choices if v != field.default)
        elif isinstance(field, models.PositiveSmallIntegerField):
            values[field.name] = 7
        elif isinstance(field, models.BooleanField):
            values[field.name] = not field.default
        elif isinstance(field, models.CharField | models.TextField):
            values[field.name] = f"{field.name} 中文 ✓"[: field.max_length]
        else:
            raise AssertionError(f"give Study.{field.name} a non-default value here")
    return values


def study_content(study: Study) -> dict:
    """Everything of ``study`` a bundle carries. Public ids are left out by design: they
    are unique across the installation, so a copy in the same database gets new ones."""
    return {
        "study": model_to_dict(study, exclude=STUDY_NOT_COPIED),
        "choices": study.choice_codes(),
        "conditions": [
            model_to_dict(condition, exclude=["id", "study"])
            for condition in study.conditions.order_by("position")
        ],
        "cases": [
            {
                **model_to_dict(case, exclude=["id", "study", "public_id"]),
                "diagnosis": case.diagnosis.code,
                "images": [
                    {
                        **model_to_dict(
                            image,
                            exclude=["id", "case", "public_id", "original", "web", "thumbnail"],
                        ),
                        "original_sha256": hashlib.sha256(image.original.read()).hexdigest(),
                    }
                    for image in case.images.order_by("kind")
                ],
            }
            for case in study.cases.order_by("position")
        ],
    }


def test_export_then_import_gives_an_identical_study(tmp_path):
    values = non_default_study_values()
    conditions = [
        {"code": "unaided", "position": 1, "label": "Alone", "shows_clinical": False},
        {"code": "aided", "position": 2, "label_zh": "辅助", "shows_cnn": True,
         "shows_gradcam": True, "shows_metadata": True},
    ]  # fmt: skip
    study = study_create(slug="orig", choices=["BCC", "MN", "SK"], conditions=conditions, **values)
    rows = good_rows(5)
    rows[2]["clinical_image"] = "img/c002_clin.tif"  # a TIFF makes the trip as well
    rows[3]["dermoscopic_image"] = "img/c003_derm.tiff"
    rows[4].update(age="", sex="", site="", histopathology="no")
    write_bundle(tmp_path / "b", rows)
    cases_import(slug="orig", source=tmp_path / "b")
    original = study_content(study)
    assert original["study"] == {**original["study"], **values}  # the values did stick
    assert {i["format"] for c in original["cases"] for i in c["images"]} == {"JPEG", "PNG", "TIFF"}
    public_ids = set(study.cases.values_list("public_id", flat=True))

    for target in ("out", "out.zip"):
        call_command("export_cases", "orig", str(tmp_path / target))
        copy_slug = f"copy-{target.replace('.', '-')}"
        call_command("import_cases", copy_slug, str(tmp_path / target))
        copy = Study.objects.get(slug=copy_slug)

        assert study_content(copy) == original
        assert copy.status == Study.Status.DRAFT
        assert public_ids.isdisjoint(copy.cases.values_list("public_id", flat=True))


def test_export_refuses_to_overwrite(tmp_path):
    study = make_study()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        cases_export(study=study, destination=tmp_path / "out")


# --- bad input: each is reported, and nothing is written -------------------------------


def test_unknown_diagnosis_code(tmp_path, media_root):
    make_study()
    rows = good_rows(3)
    rows[1]["diagnosis"] = "XYZ"
    write_bundle(tmp_path / "b", rows)
    assert_rejected(
        media_root,
        source=tmp_path / "b",
        expect=["row 3, case 'c001': unknown diagnosis code 'XYZ'"],
    )


def test_diagnosis_outside_the_study_choices(tmp_path, media_root):
    make_study(choices=("MN", "SK"))
    rows = good_rows(3)  # row 4 is BCC
    write_bundle(tmp_path / "b", rows)
    assert_rejected(
        media_root,
        source=tmp_path / "b",
        expect=["row 4, case 'c002': diagnosis BCC is not one of the study's choices (MN, SK)"],
    )


def test_missing_image_file(tmp_path, media_root):
    make_study()
    write_bundle(tmp_path / "b", good_rows(3))
    (tmp_path / "b" / "img/c002_clin.jpg").unlink()
    assert_rejected(
        media_root,
        source=tmp_path / "b",
        expect=["row 4, case 'c002': clinical_image 'img/c002_clin.jpg' is missing"],
    )


def test_damaged_image_file(tmp_path, media_root):
    make_study()
    write_bundle(tmp_path / "b", good_rows(3))
    path = tmp_path / "b" / "img/c001_derm.png"
    path.write_bytes(path.read_bytes()[:80])  # truncated
    assert_rejected(
        media_root,
        source=tmp_path / "b",
        expect=[
            "row 3, case 'c001': dermoscopic_image 'img/c001_derm.png': the image data is damaged"
        ],
    )


def test_non_image_file(tmp_path, media_root):
    make_study()
    write_bundle(tmp_path / "b", good_rows(2))
    (tmp_path / "b" / "img/c000_clin.jpg").write_text("<html>not an image</html>")
    assert_rejected(
        media_root,
        source=tmp_path / "b",
        expect=["clinical_image 'img/c000_clin.jpg': not a readable image"],
    )


def test_gif_is_not_an_accepted_format(tmp_path, media_root):
    make_study()
    rows = good_rows(1)
    images = {
        rows[0]["clinical_image"]: image_bytes(seed=1, fmt="GIF"),
        rows[0]["dermoscopic_image"]: image_bytes(seed=2, fmt="PNG"),
    }
    write_bundle(tmp_path / "b", rows, images=images)
    assert_rejected(
        media_root,
        source=tmp_path / "b",
        expect=["format GIF is not accepted; use JPEG, PNG or TIFF"],
    )


def test_duplicate_case_id(tmp_path, media_root):
    make_study()
    rows = good_rows(3)
    rows[2]["case_id"] = "c000"
    write_bundle(tmp_path / "b", rows)
    assert_rejected(
        media_root,
        source=tmp_path / "b",
        expect=["row 4, case 'c000': duplicate case_id (also on row 2)"],
    )


def test_image_over_the_byte_limit(tmp_path, media_root, settings):
    settings.READERSTUDY_MAX_IMAGE_BYTES = 2000
    make_study()
    rows = good_rows(2)
    images = {
        rows[0]["clinical_image"]: image_bytes(seed=1, size=(8, 8)),
        rows[0]["dermoscopic_image"]: image_bytes(seed=2, size=(8, 8), fmt="PNG"),
        rows[1]["clinical_image"]: image_bytes(seed=3, size=(8, 8)),
        rows[1]["dermoscopic_image"]: image_bytes(seed=4, size=(64, 48), fmt="PNG"),
    }
    write_bundle(tmp_path / "b", rows, images=images)
    size = len(images[rows[1]["dermoscopic_image"]])
    error = assert_rejected(
        media_root,
        source=tmp_path / "b",
        expect=[
            f"row 3, case 'c001': dermoscopic_image 'img/c001_derm.png': the file has "
            f"{size:,} bytes; the limit is 2,000"
        ],
    )
    assert len(error.problems) == 1


def test_decompression_bomb(tmp_path, media_root):
    make_study()
    rows = good_rows(2)
    images = {
        rows[0]["clinical_image"]: image_bytes(seed=1),
        rows[0]["dermoscopic_image"]: png_bomb(),
        rows[1]["clinical_image"]: image_bytes(seed=2),
        rows[1]["dermoscopic_image"]: png_bomb(9000, 9000),
    }
    write_bundle(tmp_path / "b", rows, images=images)
    error = assert_rejected(
        media_root,
        source=tmp_path / "b",
        expect=[
            "row 2, case 'c000': dermoscopic_image",
            "decompression bomb",
            "9000 x 9000 = 81,000,000 pixels exceeds the limit",
        ],
    )
    assert len(error.problems) == 2


@pytest.mark.parametrize(
    "member, reason",
    [
        ("/etc/evil.jpg", "is an absolute path"),
        ("C:\\evil.jpg", "is an absolute path"),
        ("\\server\\evil.jpg", "is an absolute path"),
        ("../evil.jpg", "contains '..'"),
        ("img/../../evil.jpg", "contains '..'"),
        ("..\\evil.jpg", "contains '..'"),
    ],
)
def test_zip_member_with_an_absolute_or_parent_path(tmp_path, media_root, member, reason):
    make_study()
    write_bundle(tmp_path / "b", good_rows(2))
    archive = zip_folder(tmp_path / "b", tmp_path / "b.zip", extra={member: b"x"})
    with zipfile.ZipFile(archive) as check:  # the name is stored as written
        assert member in check.namelist()
    assert_rejected(media_root, source=archive, expect=[f"zip member {member!r} {reason}"])


def test_csv_naming_a_parent_path(tmp_path, media_root):
    make_study()
    rows = good_rows(1)
    rows[0]["clinical_image"] = "../outside.jpg"
    write_bundle(tmp_path / "b", rows, images={"img/c000_derm.png": image_bytes(seed=3)})
    assert_rejected(
        media_root, source=tmp_path / "b", expect=["clinical_image: '../outside.jpg' contains '..'"]
    )


def test_every_bad_row_is_listed_in_one_report(tmp_path, media_root):
    make_study()
    rows = good_rows(6)
    rows[0]["diagnosis"] = "NOPE"
    rows[2]["case_id"] = "c001"
    rows[4]["age"] = "old"
    write_bundle(tmp_path / "b", rows)
    (tmp_path / "b" / "img/c005_derm.png").unlink()
    error = assert_rejected(
        media_root,
        source=tmp_path / "b",
        expect=[
            "row 2",
            "unknown diagnosis code 'NOPE'",
            "row 4",
            "duplicate case_id",
            "row 6",
            "age 'old'",
            "row 7",
            "is missing from the bundle",
        ],
    )
    assert len(error.problems) == 4


def test_failure_while_writing_leaves_no_rows_and_no_files(tmp_path, media_root, monkeypatch):
    make_study()
    write_bundle(tmp_path / "b", good_rows(4))
    import cases.importing.storing as storing

    calls = {"n": 0}
    real = storing.derivative_jpeg

    def failing(data, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError("disk full")
        return real(data, **kwargs)

    monkeypatch.setattr(storing, "derivative_jpeg", failing)
    before = snapshot(media_root)
    with pytest.raises(OSError, match="disk full"):
        cases_import(slug="study", source=tmp_path / "b")
    assert snapshot(media_root) == before


def test_missing_columns_and_unknown_columns(tmp_path, media_root):
    make_study()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "cases.csv").write_text("case_id,diagnosys,clinical_image\nx,MN,a.jpg\n")
    assert_rejected(
        media_root,
        source=tmp_path / "b",
        expect=[
            "lacks the column(s): diagnosis, dermoscopic_image",
            "unknown column(s): diagnosys",
        ],
    )


def test_new_study_without_title_or_with_unknown_choices(tmp_path, media_root):
    write_bundle(tmp_path / "b", good_rows(1))
    assert_rejected(
        media_root, slug="fresh", source=tmp_path / "b", expect=["give --title and --choices"]
    )
    assert_rejected(
        media_root,
        slug="fresh",
        source=tmp_path / "b",
        title="T",
        choices=["MN", "ZZ"],
        expect=["unknown diagnosis code(s) in the choices: ZZ"],
    )


def test_open_study_refuses_new_cases(tmp_path, media_root):
    make_study(status=Study.Status.OPEN)
    write_bundle(tmp_path / "b", good_rows(1))
    assert_rejected(
        media_root,
        source=tmp_path / "b",
        expect=["study 'study' is open; cases can be added only to a draft study"],
    )


def test_reimporting_the_same_case_ids_is_refused(tmp_path, media_root):
    make_study()
    write_bundle(tmp_path / "b", good_rows(2))
    cases_import(slug="study", source=tmp_path / "b")
    assert_rejected(
        media_root, source=tmp_path / "b", expect=["case_id already exists in this study"]
    )


def test_command_reports_problems_and_exits_non_zero(tmp_path, media_root):
    make_study()
    rows = good_rows(2)
    rows[0]["diagnosis"] = "XYZ"
    write_bundle(tmp_path / "b", rows)
    before = snapshot(media_root)
    with pytest.raises(CommandError, match="unknown diagnosis code 'XYZ'"):
        call_command("import_cases", "study", str(tmp_path / "b"))
    assert snapshot(media_root) == before


def test_not_a_zip_and_not_a_folder(tmp_path, media_root):
    make_study()
    (tmp_path / "x.zip").write_text("hello")
    assert_rejected(
        media_root, source=tmp_path / "x.zip", expect=["is neither a folder nor a .zip archive"]
    )


def test_content_must_match_the_declared_type(tmp_path, media_root):
    make_study()
    rows = good_rows(1)
    images = {
        rows[0]["clinical_image"]: image_bytes(seed=1, fmt="PNG"),  # a PNG named .jpg
        rows[0]["dermoscopic_image"]: image_bytes(seed=2, fmt="PNG"),
    }
    write_bundle(tmp_path / "b", rows, images=images)
    assert_rejected(
        media_root,
        source=tmp_path / "b",
        expect=["clinical_image 'img/c000_clin.jpg': the content is PNG, which does not match"],
    )
