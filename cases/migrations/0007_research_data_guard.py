"""On PostgreSQL, refuse in the database itself what would destroy research data, as
audit 0002 does for the audit trail, so that no client (not even a raw SQL session of the
application's user) can do it:

- answers: never deleted; the reader, case, time and seconds never change; the diagnosis,
  confidence and changed_at change only together with the history row that records that
  very change (the newest AnswerChange of the answer, which answer_submit writes first);
- the answers' history (cases_answerchange): never updated or deleted;
- consents (cases_enrolment): a consented enrolment is never deleted; its study, reader
  and reader code never change; a consent is never withdrawn or backdated, only replaced
  by a later one (consent_give, the audit trail keeping the earlier one);
- studies: is_synthetic never changes once the study has an enrolment (it decides what
  the demo's reset may erase).

The one exception: the rows of a synthetic study may be deleted inside
cases.models.synthetic_study_erasure (the demo's reset), which sets the
transaction-local setting readerstudy.erase_synthetic_study to that study's id.

SQLite (the embedded database) relies on the model and queryset guards: a trigger there
would also block Django's test-database flush, which deletes rows one table at a time
(PostgreSQL's flush is a TRUNCATE, which row triggers do not see).
"""

from django.db import migrations

CREATE = r"""
CREATE OR REPLACE FUNCTION research_data_erasing(study bigint) RETURNS boolean AS $$
    SELECT COALESCE(current_setting('readerstudy.erase_synthetic_study', true), '')
               = study::text
           AND EXISTS (SELECT 1 FROM cases_study s WHERE s.id = study AND s.is_synthetic);
$$ LANGUAGE sql STABLE;

CREATE OR REPLACE FUNCTION cases_answer_guard() RETURNS trigger AS $$
DECLARE
    last_change cases_answerchange%ROWTYPE;
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF research_data_erasing(
            (SELECT e.study_id FROM cases_enrolment e WHERE e.id = OLD.enrolment_id)
        ) THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'research data: answers are never deleted (answer %)', OLD.id;
    END IF;
    IF (NEW.id, NEW.enrolment_id, NEW.case_id, NEW.seconds, NEW.answered_at)
        IS DISTINCT FROM (OLD.id, OLD.enrolment_id, OLD.case_id, OLD.seconds, OLD.answered_at)
    THEN
        RAISE EXCEPTION 'research data: the reader, case, time and seconds of an answer never change (answer %)', OLD.id;
    END IF;
    IF (NEW.diagnosis_id, NEW.confidence, NEW.changed_at)
        IS DISTINCT FROM (OLD.diagnosis_id, OLD.confidence, OLD.changed_at)
    THEN
        SELECT * INTO last_change FROM cases_answerchange c
            WHERE c.answer_id = OLD.id ORDER BY c.id DESC LIMIT 1;
        IF NOT FOUND OR NEW.changed_at IS NULL
            OR (last_change.previous_diagnosis_id, last_change.previous_confidence,
                last_change.new_diagnosis_id, last_change.new_confidence)
               IS DISTINCT FROM (OLD.diagnosis_id, OLD.confidence,
                                 NEW.diagnosis_id, NEW.confidence)
        THEN
            RAISE EXCEPTION 'research data: an answer changes only with its history (answer %): answer_submit records the change in cases_answerchange first',
                OLD.id;
        END IF;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS cases_answer_guard ON cases_answer;
CREATE TRIGGER cases_answer_guard BEFORE UPDATE OR DELETE ON cases_answer
    FOR EACH ROW EXECUTE FUNCTION cases_answer_guard();

CREATE OR REPLACE FUNCTION cases_answerchange_guard() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' AND research_data_erasing(
        (SELECT e.study_id FROM cases_answer a JOIN cases_enrolment e ON e.id = a.enrolment_id
            WHERE a.id = OLD.answer_id)
    ) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'research data: the history of an answer is append-only (% refused)',
        TG_OP;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS cases_answerchange_guard ON cases_answerchange;
CREATE TRIGGER cases_answerchange_guard BEFORE UPDATE OR DELETE ON cases_answerchange
    FOR EACH ROW EXECUTE FUNCTION cases_answerchange_guard();

CREATE OR REPLACE FUNCTION cases_enrolment_guard() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.consented_at IS NULL OR research_data_erasing(OLD.study_id) THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'research data: an enrolment that has consented is never deleted (enrolment %)', OLD.id;
    END IF;
    IF (NEW.id, NEW.study_id, NEW.reader_id, NEW.reader_code)
        IS DISTINCT FROM (OLD.id, OLD.study_id, OLD.reader_id, OLD.reader_code)
    THEN
        RAISE EXCEPTION 'research data: the study, reader and reader code of an enrolment never change (enrolment %)', OLD.id;
    END IF;
    IF (NEW.consent_version, NEW.consented_at)
            IS DISTINCT FROM (OLD.consent_version, OLD.consented_at)
        AND (NEW.consented_at IS NULL OR NEW.consented_at <= OLD.consented_at)
    THEN
        RAISE EXCEPTION 'research data: a consent is never withdrawn or rewritten, only replaced by a later one (enrolment %)', OLD.id;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS cases_enrolment_guard ON cases_enrolment;
CREATE TRIGGER cases_enrolment_guard BEFORE UPDATE OR DELETE ON cases_enrolment
    FOR EACH ROW EXECUTE FUNCTION cases_enrolment_guard();

CREATE OR REPLACE FUNCTION cases_study_guard() RETURNS trigger AS $$
BEGIN
    IF NEW.is_synthetic IS DISTINCT FROM OLD.is_synthetic
        AND EXISTS (SELECT 1 FROM cases_enrolment e WHERE e.study_id = OLD.id)
    THEN
        RAISE EXCEPTION 'research data: a study with readers is never relabelled synthetic or real (study %)', OLD.slug;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS cases_study_guard ON cases_study;
CREATE TRIGGER cases_study_guard BEFORE UPDATE OF is_synthetic ON cases_study
    FOR EACH ROW EXECUTE FUNCTION cases_study_guard();
"""
DROP = """
DROP TRIGGER IF EXISTS cases_study_guard ON cases_study;
DROP FUNCTION IF EXISTS cases_study_guard();
DROP TRIGGER IF EXISTS cases_enrolment_guard ON cases_enrolment;
DROP FUNCTION IF EXISTS cases_enrolment_guard();
DROP TRIGGER IF EXISTS cases_answerchange_guard ON cases_answerchange;
DROP FUNCTION IF EXISTS cases_answerchange_guard();
DROP TRIGGER IF EXISTS cases_answer_guard ON cases_answer;
DROP FUNCTION IF EXISTS cases_answer_guard();
DROP FUNCTION IF EXISTS research_data_erasing(bigint);
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("cases", "0006_study_admin_notes")]
    operations = [migrations.RunPython(forwards, backwards)]
