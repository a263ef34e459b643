"""The 14 diagnoses of the reference study (Zhu et al., Front. Med. 2021)."""

from django.db import migrations

DIAGNOSES = [
    ("LP", "Lichen planus", "扁平苔藓"),
    ("Rosa", "Rosacea", "玫瑰痤疮"),
    ("VW", "Viral warts", "病毒疣"),
    ("AV", "Acne vulgaris", "寻常痤疮"),
    ("KAHS", "Keloid and hypertrophic scar", "瘢痕疙瘩和增生性瘢痕"),
    ("EAD", "Eczema and dermatitis", "湿疹皮炎"),
    ("DF", "Dermatofibroma", "皮肤纤维瘤"),
    ("SD", "Seborrheic dermatitis", "脂溢性皮炎"),
    ("SK", "Seborrheic keratosis", "脂溢性角化病"),
    ("MN", "Melanocytic nevus", "色素痣"),
    ("Hem", "Hemangioma", "血管瘤"),
    ("Pso", "Psoriasis", "银屑病"),
    ("PWS", "Port wine stain", "鲜红斑痣"),
    ("BCC", "Basal cell carcinoma", "基底细胞癌"),
]


def create(apps, schema_editor):
    Diagnosis = apps.get_model("cases", "Diagnosis")
    for code, name_en, name_zh in DIAGNOSES:
        Diagnosis.objects.update_or_create(
            code=code, defaults={"name_en": name_en, "name_zh": name_zh}
        )


def remove(apps, schema_editor):
    Diagnosis = apps.get_model("cases", "Diagnosis")
    Diagnosis.objects.filter(code__in=[code for code, _, _ in DIAGNOSES]).delete()


class Migration(migrations.Migration):
    dependencies = [("cases", "0001_initial")]
    operations = [migrations.RunPython(create, remove)]
