"""REST API (DRF): the reader's flow, and the study admin's read and export endpoints.

Separate serializers per role: the reader's shapes have no field for the reference
diagnosis at all, and carry a case's metadata and the CNN's output only on a read whose
reading condition shows them.
"""

from __future__ import annotations

from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import get_language
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.permissions import IsAdminUser, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.services import audited_csv_download
from cases import selectors, services
from cases.models import Answer, Case, Enrolment, Invitation, Study

# --- reader shapes ----------------------------------------------------------------------


class ChoiceOut(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    key = serializers.CharField(
        help_text="Keyboard key that picks it in the web page: 1 to 9, then A, B, C..."
    )


class ConditionOut(serializers.Serializer):
    code = serializers.CharField(help_text="Send it back with the answer (condition).")
    label = serializers.CharField(help_text="In the reader's language.")
    session = serializers.IntegerField(help_text="1-based; a crossover has two sessions.")
    shows_cnn = serializers.BooleanField()


class SupportClassOut(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    probability = serializers.FloatField(help_text="Over the study's choices, 0 to 1.")


class SupportOut(serializers.Serializer):
    predicted = SupportClassOut(help_text="The CNN's predicted class.")
    top = SupportClassOut(many=True, help_text="Its top-k classes, most probable first.")
    gradcam = serializers.CharField(
        allow_null=True, help_text="URL of its Grad-CAM overlay, where the condition shows it."
    )


class MetadataOut(serializers.Serializer):
    age = serializers.IntegerField(allow_null=True)
    sex = serializers.CharField()
    site = serializers.CharField()


class ReaderCaseOut(serializers.Serializer):
    id = serializers.CharField(help_text="The case's opaque public id.")
    number = serializers.IntegerField(
        help_text="1-based position in this reader's order (of the session's, in a crossover)."
    )
    images = serializers.DictField(
        child=serializers.CharField(), help_text="Image URLs by kind (clinical, dermoscopic)."
    )
    condition = ConditionOut(help_text="The reading condition this read is in.")
    support = SupportOut(
        allow_null=True,
        help_text="The CNN's support, only where the condition shows it (in a sequential "
        "study: the case's second read, after its unaided answer).",
    )
    metadata = MetadataOut(allow_null=True, help_text="Only where the condition shows it.")
    earlier_answer = ChoiceOut(
        allow_null=True,
        help_text="Sequential, second read: the reader's own answer of the first read.",
    )


class ProgressOut(serializers.Serializer):
    answered = serializers.IntegerField(help_text="Answers given (a case once per condition).")
    total = serializers.IntegerField(help_text="Answers owed in all.")
    finished = serializers.BooleanField()
    session = serializers.IntegerField()
    sessions = serializers.IntegerField()


class ReaderStudyOut(serializers.Serializer):
    slug = serializers.SlugField(source="study.slug")
    title = serializers.CharField(
        source="study.localized_title", help_text="In the reader's language when available."
    )
    synthetic = serializers.BooleanField(source="study.is_synthetic")
    step = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()

    def get_step(self, enrolment) -> str:
        return selectors.reader_step(enrolment=enrolment)

    def get_progress(self, enrolment) -> dict:
        return selectors.reader_progress(enrolment=enrolment)


class NextOut(serializers.Serializer):
    step = serializers.ChoiceField(
        choices=[step.value for step in selectors.Step],
        help_text="review: every case answered in a study that allows changes; revise "
        "answers, then POST finish/. washout: a crossover between its sessions (see "
        "opens_at).",
    )
    opens_at = serializers.DateTimeField(
        allow_null=True, help_text="At step washout: when the next session opens."
    )
    case = ReaderCaseOut(allow_null=True)
    choices = ChoiceOut(many=True)
    ask_confidence = serializers.BooleanField()
    show_clinical_image = serializers.BooleanField()
    progress = ProgressOut()
    prefetch = serializers.DictField(
        child=serializers.CharField(),
        help_text="Image URLs by kind of the case after this one, to load ahead (empty "
        "unless asked for with ?prefetch=1, and in an answer's next).",
    )


class AnswerIn(serializers.Serializer):
    case = serializers.CharField(max_length=32)
    answer = serializers.CharField(max_length=16, help_text="A diagnosis code of the study.")
    confidence = serializers.IntegerField(required=False, allow_null=True)
    condition = serializers.CharField(
        max_length=50,
        required=False,
        help_text="The case's condition.code: required where the study has several "
        "reading conditions.",
    )
    revise = serializers.BooleanField(
        default=True,
        help_text="false: answer the next case only; an answered case is never changed, "
        "and a different answer to it is refused with code answered_elsewhere (409).",
    )
    next = serializers.BooleanField(
        default=False,
        help_text="true: the response carries the next screen (as GET next/ with "
        "prefetch), already served, saving a request.",
    )


class AnswerOut(serializers.Serializer):
    case = serializers.CharField(source="answer.case.public_id")
    answer = serializers.CharField(source="answer.diagnosis.code")
    confidence = serializers.IntegerField(source="answer.confidence", allow_null=True)
    created = serializers.BooleanField()
    changed = serializers.BooleanField()
    finished = serializers.BooleanField()


class AnswerNextOut(AnswerOut):
    next = NextOut(required=False, help_text="Only when asked for with next=true.")


class ErrorOut(serializers.Serializer):
    """Every 4xx under /api/, as ``readerstudy.api.exception_handler`` answers it: a
    service's refusal, invalid input, malformed JSON, not logged in, not allowed, not
    found, method not allowed, unsupported media type, throttled."""

    detail = serializers.CharField(
        help_text="One readable message, in the request's language; for invalid input, "
        'prefixed with the field: "confidence: A valid integer is required."'
    )
    code = serializers.CharField(
        help_text="A stable reason: a service's (invalid_choice, not_next_case, "
        "consent_required...) or DRF's (required, invalid, max_length, max_value, "
        "parse_error, not_authenticated, permission_denied, not_found, "
        "method_not_allowed, unsupported_media_type, throttled...)."
    )
    field = serializers.CharField(
        allow_null=True,
        help_text="The input at fault (the first one; nested as items.0.name), null "
        "where the request as a whole is refused.",
    )
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Invalid input only: every message, by field.",
    )


def _enrolment(request, slug: str) -> Enrolment:
    enrolment = selectors.enrolment_for_reader(user=request.user, slug=slug)
    if enrolment is None:
        raise Http404
    return enrolment


class ReaderStudies(generics.ListAPIView):
    """The studies the current reader is enrolled in, with their progress."""

    permission_classes = [IsAuthenticated]
    serializer_class = ReaderStudyOut
    pagination_class = None

    def get_queryset(self):
        return selectors.enrolments_for_reader(user=self.request.user)


def _next_screen(
    request,
    enrolment: Enrolment,
    *,
    prefetch: bool,
    answered: frozenset[tuple[int, int]] | None = None,
) -> dict:
    """The reader's next screen as ``NextOut`` data; serves its case (starts its clock).
    ``answered``: the reader's answered cases, where the caller has them."""
    screen = selectors.case_screen(
        enrolment=enrolment, language=get_language(), with_prefetch=prefetch, answered=answered
    )
    case_out = None
    if screen.case is not None:
        services.case_serve(
            enrolment=enrolment, case=screen.case, condition_id=screen.read.condition.pk
        )
        case_out = {
            "id": screen.case.public_id,
            "number": screen.number,
            "images": {
                kind: request.build_absolute_uri(url) for kind, url in screen.images.items()
            },
            **selectors.read_data(
                screen, language=get_language(), absolute=request.build_absolute_uri
            ),
        }
    return NextOut(
        {
            "step": screen.step,
            "opens_at": screen.opens_at,
            "case": case_out,
            "choices": screen.choices,
            "ask_confidence": screen.ask_confidence,
            "show_clinical_image": screen.show_clinical_image,
            "progress": screen.progress,
            "prefetch": {
                kind: request.build_absolute_uri(url) for kind, url in screen.prefetch.items()
            },
        }
    ).data


class ReaderNext(APIView):
    """The reader's next case (and marks it served, which starts its clock).
    ``?prefetch=1`` adds the image URLs of the case after it."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: NextOut})
    def get(self, request, slug: str):
        enrolment = _enrolment(request, slug)
        prefetch = request.query_params.get("prefetch") in ("1", "true")
        return Response(_next_screen(request, enrolment, prefetch=prefetch))


class ReaderProgress(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: ProgressOut})
    def get(self, request, slug: str):
        enrolment = _enrolment(request, slug)
        return Response(ProgressOut(selectors.reader_progress(enrolment=enrolment)).data)


class ConsentOut(serializers.Serializer):
    consent_version = serializers.CharField()


class ReaderConsent(APIView):
    """Consent to the study's current consent text."""

    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={200: ConsentOut})
    def post(self, request, slug: str):
        enrolment = _enrolment(request, slug)
        if selectors.reader_step(enrolment=enrolment) == selectors.Step.CONSENT:
            services.consent_give(enrolment=enrolment)
        return Response({"consent_version": enrolment.study.consent_version})


class ReaderAnswer(APIView):
    """Submit the answer for the next case. Re-sending the same answer returns 200 with
    the stored answer; anything else that cannot be accepted is a 4xx with a code."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=AnswerIn,
        responses={
            201: AnswerNextOut,
            200: AnswerNextOut,
            400: ErrorOut,
            404: ErrorOut,
            409: ErrorOut,
        },
    )
    def post(self, request, slug: str):
        data = AnswerIn(data=request.data)
        data.is_valid(raise_exception=True)
        services.answer_fields_check(sent=request.data, allowed=AnswerIn().fields)
        answer = data.validated_data
        try:
            # The service finds the reader's enrolment as it locks it: one statement.
            result = services.answer_submit(
                reader=request.user,
                study_slug=slug,
                case_public_id=answer["case"],
                diagnosis_code=answer["answer"],
                confidence=answer.get("confidence"),
                condition_code=answer.get("condition"),
                revise=answer["revise"],
                serve_next=answer["next"],
            )
        except Enrolment.DoesNotExist:  # not this reader's study: as any unknown address
            raise Http404 from None
        body = AnswerOut(result).data
        if answer["next"]:
            # The enrolment as the answer left it (the next case served already).
            body["next"] = _next_screen(
                request, result.enrolment, prefetch=True, answered=result.answered
            )
        return Response(
            body, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        )


class ReaderFinish(APIView):
    """Confirm finishing, in a study that allows changes, once every case is answered
    (step ``review``); answers are final afterwards. Elsewhere the last answer finishes."""

    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={200: ProgressOut, 409: ErrorOut})
    def post(self, request, slug: str):
        enrolment = services.enrolment_finish(enrolment=_enrolment(request, slug))
        return Response(ProgressOut(selectors.reader_progress(enrolment=enrolment)).data)


# --- admin shapes -----------------------------------------------------------------------


class StudyOut(serializers.ModelSerializer):
    choices = serializers.SerializerMethodField()
    cases = serializers.IntegerField(source="cases.count", read_only=True)

    class Meta:
        model = Study
        fields = [
            "slug",
            "title",
            "title_zh",
            "description",
            "description_zh",
            "admin_notes",
            "status",
            "choices",
            "cases",
            "shuffle_cases",
            "show_clinical_image",
            "allow_answer_changes",
            "show_feedback",
            "show_model_feedback",
            "ask_confidence",
            "consent_text",
            "consent_text_zh",
            "consent_version",
            "required_profile_fields",
            "is_synthetic",
            "created_at",
        ]

    def get_choices(self, study) -> list[str]:
        return study.choice_codes()


class CaseOut(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id")
    diagnosis = serializers.CharField(source="diagnosis.code")
    images = serializers.SerializerMethodField()

    class Meta:
        model = Case
        fields = [
            "id",
            "source_id",
            "position",
            "diagnosis",
            "age",
            "sex",
            "site",
            "histopathology",
            "images",
        ]

    def get_images(self, case) -> dict[str, dict]:
        return {
            i.kind: {
                "id": i.public_id,
                "sha256": i.sha256,
                "width": i.width,
                "height": i.height,
                "format": i.format,
            }
            for i in case.images.all()
        }


class EnrolmentProgressOut(serializers.Serializer):
    reader_code = serializers.CharField()
    username = serializers.CharField()
    simulated = serializers.BooleanField()
    level = serializers.CharField()
    answered = serializers.IntegerField()
    total = serializers.IntegerField()
    consented_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    median_seconds = serializers.FloatField(allow_null=True)
    last_activity = serializers.DateTimeField(allow_null=True)


class AdminAnswerOut(serializers.ModelSerializer):
    reader = serializers.CharField(source="enrolment.reader_code")
    case = serializers.CharField(source="case.public_id")
    truth = serializers.CharField(source="case.diagnosis.code")
    answer = serializers.CharField(source="diagnosis.code")

    class Meta:
        model = Answer
        fields = [
            "reader",
            "case",
            "truth",
            "answer",
            "confidence",
            "seconds",
            "answered_at",
            "changed_at",
        ]


class InvitationIn(serializers.Serializer):
    count = serializers.IntegerField(min_value=1, max_value=5000)
    # A link for a whole department, yet within any database's integer column (a larger
    # number was a 500).
    max_uses = serializers.IntegerField(
        min_value=1, max_value=services.INVITATION_MAX_USES, default=1
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    label = serializers.CharField(max_length=200, required=False, allow_blank=True)

    def validate_expires_at(self, value):
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("must be in the future")
        return value


class InvitationOut(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()

    class Meta:
        model = Invitation
        fields = [
            "token",
            "url",
            "label",
            "max_uses",
            "uses",
            "expires_at",
            "revoked",
            "created_at",
        ]

    def get_url(self, invitation) -> str:
        return self.context["request"].build_absolute_uri(
            reverse("cases:join", args=[invitation.token])
        )


def _study(request, slug: str) -> Study:
    """A study the requesting admin administers; any other is a 404."""
    return get_object_or_404(selectors.administered_studies(user=request.user), slug=slug)


class AdminStudies(generics.ListAPIView):
    permission_classes = [IsAdminUser]
    serializer_class = StudyOut

    def get_queryset(self):
        return selectors.administered_studies(user=self.request.user)


class AdminStudy(generics.RetrieveAPIView):
    permission_classes = [IsAdminUser]
    serializer_class = StudyOut
    lookup_field = "slug"

    def get_queryset(self):
        return selectors.administered_studies(user=self.request.user)


class AdminCases(generics.ListAPIView):
    permission_classes = [IsAdminUser]
    serializer_class = CaseOut

    def get_queryset(self):
        return (
            _study(self.request, self.kwargs["slug"])
            .cases.select_related("diagnosis")
            .prefetch_related("images")
            .order_by("position")
        )


class AdminEnrolments(APIView):
    """Each reader's progress, median seconds per case and last activity."""

    permission_classes = [IsAdminUser]

    @extend_schema(responses={200: EnrolmentProgressOut(many=True)})
    def get(self, request, slug: str):
        rows = selectors.reader_progress_table(study=_study(request, slug))
        return Response(EnrolmentProgressOut(rows, many=True).data)


class AdminAnswers(generics.ListAPIView):
    permission_classes = [IsAdminUser]
    serializer_class = AdminAnswerOut

    def get_queryset(self):
        return (
            Answer.objects.filter(enrolment__study=_study(self.request, self.kwargs["slug"]))
            .select_related("enrolment", "case__diagnosis", "diagnosis")
            .order_by("enrolment__reader_code", "case__position")
        )


def answers_csv_response(study: Study, *, language: str, request) -> HttpResponse:
    """The answers of ``study`` as CSV, one row per reader x case (see answers_frame).
    The download is recorded in the audit trail."""
    frame = selectors.answers_frame(study=study, language=language)
    return audited_csv_download(
        request=request, study=study, frame=frame, export="answers.csv", bom=True
    )


class AdminAnswersCsv(APIView):
    """Download the answers as CSV: ``reader, case, truth, answer``, the diagnoses'
    names, the reader's profile fields, ``finished``, ``confidence, seconds, answered_at``."""

    permission_classes = [IsAdminUser]

    @extend_schema(responses={(200, "text/csv"): OpenApiResponse(description="CSV file")})
    def get(self, request, slug: str):
        return answers_csv_response(
            _study(request, slug),
            language=request.query_params.get("language", get_language()),
            request=request,
        )


class AdminInvitations(APIView):
    """List a study's invitations, or create several at once."""

    permission_classes = [IsAdminUser]

    @extend_schema(responses={200: InvitationOut(many=True)})
    def get(self, request, slug: str):
        invitations = _study(request, slug).invitations.all()
        return Response(InvitationOut(invitations, many=True, context={"request": request}).data)

    @extend_schema(request=InvitationIn, responses={201: InvitationOut(many=True)})
    def post(self, request, slug: str):
        data = InvitationIn(data=request.data)
        data.is_valid(raise_exception=True)
        created = services.invitations_create(
            study=_study(request, slug), created_by=request.user, **data.validated_data
        )
        return Response(
            InvitationOut(created, many=True, context={"request": request}).data,
            status=status.HTTP_201_CREATED,
        )
