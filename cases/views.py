"""HTML views of the cases app. Thin: selectors decide who sees what."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import get_language, gettext_lazy
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from cases import selectors, services
from cases.forms import AnswerForm, ConsentForm, ProfileForm, RegistrationForm
from cases.models import Enrolment, ReaderProfile
from cases.selectors import Step, image_for_user

_VARIANTS = {"web": "web", "thumb": "thumbnail", "original": "original"}

# The same answer sent twice (a second tab, a second device, a double click): it is
# stored once; the reader is told why the case moved on without their new answer.
ANSWERED_ALREADY = gettext_lazy(
    "That case had already been answered with the same diagnosis (in another tab, on "
    "another device or by a second click); it is stored once. Here is your next case."
)


@require_GET
def case_image(request: HttpRequest, public_id: str, variant: str) -> FileResponse:
    """A case image through its opaque id, checked on every request.

    Readers of the image's study get the web-size and thumbnail JPEGs (no metadata);
    staff may also download the original. Anyone else gets a 404, so the response does
    not even confirm that the image exists.
    """
    field = _VARIANTS.get(variant)
    image = image_for_user(user=request.user, public_id=public_id)
    if (
        image is None
        or field is None
        or (
            field == "original"
            and not selectors.may_download_original(user=request.user, image=image)
        )
    ):
        raise Http404("No such image.")
    stored = getattr(image, field)
    content_type = (
        {"JPEG": "image/jpeg", "PNG": "image/png", "TIFF": "image/tiff"}[image.format]
        if field == "original"
        else "image/jpeg"
    )
    response = FileResponse(stored.open("rb"), content_type=content_type)
    # Never cached by shared caches; readers' browsers may keep it for the session.
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    # No file name: the stored name is random and the download name is the opaque id.
    response["Content-Disposition"] = f'inline; filename="{image.public_id}-{variant}"'
    return response


@require_GET
@login_required
def support_gradcam(
    request: HttpRequest, slug: str, case_public_id: str, condition_code: str
) -> FileResponse:
    """The Grad-CAM overlay of the CNN's support on the reader's current read, only
    while it is shown to them (``selectors.support_gradcam_for_reader``); a 404 for
    anyone else, at any other time."""
    stored = selectors.support_gradcam_for_reader(
        user=request.user, slug=slug, case_public_id=case_public_id, condition_code=condition_code
    )
    if stored is None:
        raise Http404("No such image.")
    response = FileResponse(stored.open("rb"), content_type="image/png")
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


# --- the reader's flow ------------------------------------------------------------------


def _enrolment_or_404(request: HttpRequest, slug: str):
    enrolment = selectors.enrolment_for_reader(user=request.user, slug=slug)
    if enrolment is None:
        raise Http404("No such study.")
    return enrolment


_STEP_URLS = {
    Step.CONSENT: "cases:consent",
    Step.PROFILE: "cases:profile",
    Step.CASE: "cases:case",
    Step.REVIEW: "cases:done",
    Step.WASHOUT: "cases:done",
    Step.DONE: "cases:done",
    Step.CLOSED: "cases:done",
}


def _redirect_to_step(enrolment, step: Step | None = None) -> HttpResponse:
    """To the page of the reader's ``step`` (computed here unless given)."""
    step = selectors.reader_step(enrolment=enrolment) if step is None else step
    return redirect(_STEP_URLS[step], slug=enrolment.study.slug)


@never_cache
def join(request: HttpRequest, token: str) -> HttpResponse:
    """An invitation link: register (or, when logged in, join) and go to the study."""
    own = selectors.enrolment_for_invitation(user=request.user, token=token)
    if own is not None:  # already in its study, perhaps through this very link
        return _redirect_to_step(own)
    try:
        invitation = services.invitation_check(token=token)
    except services.InvitationInvalid as error:
        return render(request, "cases/invitation_invalid.html", {"error": error}, status=410)
    study = invitation.study
    if request.user.is_authenticated:
        if request.method == "POST":
            try:
                enrolment = services.invitation_accept(token=token, user=request.user)
            except services.InvitationInvalid as error:
                return render(
                    request, "cases/invitation_invalid.html", {"error": error}, status=410
                )
            return _redirect_to_step(enrolment)
        return render(request, "cases/join.html", {"study": study, "form": None})
    form = RegistrationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user, enrolment = services.reader_register(
                token=token,
                username=form.cleaned_data["username"],
                email=form.cleaned_data["email"],
                password=form.cleaned_data["password1"],
            )
        except services.InvitationInvalid as error:
            return render(request, "cases/invitation_invalid.html", {"error": error}, status=410)
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return _redirect_to_step(enrolment)
    return render(
        request,
        "cases/join.html",
        {"study": study, "form": form},
        status=400 if request.method == "POST" else 200,
    )


@login_required
def study_home(request: HttpRequest, slug: str) -> HttpResponse:
    return _redirect_to_step(_enrolment_or_404(request, slug))


@login_required
@never_cache
def consent(request: HttpRequest, slug: str) -> HttpResponse:
    enrolment = _enrolment_or_404(request, slug)
    step = selectors.reader_step(enrolment=enrolment)
    if step != Step.CONSENT:
        return _redirect_to_step(enrolment, step)
    form = ConsentForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        enrolment = services.consent_give(enrolment=enrolment)
        return _redirect_to_step(enrolment)
    return render(
        request,
        "cases/consent.html",
        {"study": enrolment.study, "form": form, "renewal": enrolment.consented_at is not None},
    )


@login_required
@never_cache
def profile(request: HttpRequest, slug: str) -> HttpResponse:
    enrolment = _enrolment_or_404(request, slug)
    if selectors.needs_consent(enrolment=enrolment):
        return _redirect_to_step(enrolment)
    instance = ReaderProfile.objects.filter(user=request.user).first()
    form = ProfileForm(
        request.POST if request.method == "POST" else None,
        instance=instance,
        required=enrolment.study.required_profile_fields or [],
    )
    status = 200
    if request.method == "POST" and form.is_valid():
        services.profile_save(
            user=request.user, **{name: form.cleaned_data[name] for name in form.fields}
        )
        enrolment = _enrolment_or_404(request, slug)  # with the profile as saved
        unfillable = selectors.missing_profile_fields(enrolment=enrolment)
        if not unfillable:
            return _redirect_to_step(enrolment)
        # The study requires something this form cannot fill (a misconfigured study):
        # say so rather than send the reader back to this page forever.
        form.add_error(
            None,
            _(
                "This study requires profile information that cannot be entered here "
                "(%(fields)s). Please tell the study's administrator."
            )
            % {"fields": ", ".join(unfillable)},
        )
        status = 409
    return render(
        request, "cases/profile.html", {"study": enrolment.study, "form": form}, status=status
    )


@login_required
@never_cache
def case_page(request: HttpRequest, slug: str, number: int | None = None) -> HttpResponse:
    """One case: GET shows it (the next unanswered one), POST submits the answer."""
    error, status = None, 200
    revising = request.method == "POST" and number is not None
    if request.method == "POST" and number is None:
        submitted = _submit_next(request, slug)
        if isinstance(submitted, HttpResponse):
            return submitted
        error, status = submitted  # refused: the page again, with why
    enrolment = _enrolment_or_404(request, slug)
    # A page reads the answered cases once, for the step and the screen; a revision
    # reads them under its lock instead (and again only to show a refusal).
    answered = None if revising else selectors.answered_reads(enrolment=enrolment)
    step = selectors.reader_step(enrolment=enrolment, answered=answered)
    if not selectors.may_open_case(step=step, number=number):
        return _redirect_to_step(enrolment, step)
    if revising:
        form = AnswerForm(request.POST, study=enrolment.study)
        if not form.is_valid():
            error, status = form.first_error(), 400
        else:
            try:
                result = services.answer_submit(
                    enrolment=enrolment,
                    case_public_id=form.cleaned_data["case"],
                    diagnosis_code=form.cleaned_data["answer"],
                    confidence=form.cleaned_data["confidence"],
                    condition_code=form.cleaned_data["condition"],
                    revise=True,
                )
            except services.AnswerRejected as rejected:
                error, status = str(rejected), rejected.status
            else:
                return redirect("cases:done" if result.finished else "cases:case", slug=slug)
    # Nothing changed if the answer was refused: the step computed above still holds.
    screen = selectors.case_screen(
        enrolment=enrolment, number=number, language=get_language(), step=step, answered=answered
    )
    if screen.case is None:
        if number is not None:
            raise Http404("No such case.")
        return _redirect_to_step(enrolment)
    if number is None:
        services.case_serve(
            enrolment=enrolment, case=screen.case, condition_id=screen.read.condition.pk
        )
    progress = screen.progress
    language = get_language()
    read = screen.read
    plan = selectors.plan_data(
        enrolment=enrolment, reads_per_case=screen.conditions, language=language
    )
    context = {
        "study": enrolment.study,
        "case": screen.case,
        "images": screen.images,
        "show_clinical": screen.show_clinical_image,
        "condition": read.condition,
        "condition_label": read.condition.label_for(language),
        "session": read.session,
        "conditions": screen.conditions,
        "read_step": screen.position,
        "n_cases": screen.n_cases,
        "support": screen.support,
        "any_gradcam": any(c["shows_gradcam"] for c in plan["conditions"]),
        "metadata": screen.metadata,
        "earlier_answer": screen.earlier_answer,
        # The same read as the API gives it, for the script that shows the next ones.
        "read": selectors.read_data(screen, language=language),
        "plan": plan,
        "prefetch": screen.prefetch,
        "choices": screen.choices,
        "number": screen.number,
        "progress": progress,
        "percent": round(100 * progress["answered"] / max(progress["total"], 1)),
        "error": error,
        "revising": screen.revising,
        "previous_answer": screen.previous_answer,
        "can_revise": enrolment.study.allow_answer_changes and progress["answered"] > 0,
        "confidence_levels": [1, 2, 3, 4, 5],
        "last_letter": next((c.key for c in reversed(screen.choices) if c.key.isalpha()), None),
        "strings": _case_page_strings(),
    }
    return render(request, "cases/case.html", context, status=status)


# Refusals that mean the reader is at another step: its page says what to do.
_AT_ANOTHER_STEP = frozenset({"consent_required", "profile_required", "study_closed", "washout"})


def _submit_next(request: HttpRequest, slug: str) -> HttpResponse | tuple[str, int]:
    """The form's answer to the reader's next case: the redirect that follows it, or
    (refused) the message and status to show on the page again. ``answer_submit`` finds
    the enrolment as it locks it and checks the step and the values, so nothing is read
    before it (a refusal reads the page afterwards)."""
    form = AnswerForm(request.POST)
    if not form.is_valid():
        return form.first_error(), 400
    try:
        result = services.answer_submit(
            reader=request.user,
            study_slug=slug,
            case_public_id=form.cleaned_data["case"],
            diagnosis_code=form.cleaned_data["answer"],
            confidence=form.cleaned_data["confidence"],
            condition_code=form.cleaned_data["condition"],
            revise=False,
        )
    except Enrolment.DoesNotExist:
        raise Http404("No such study.") from None
    except services.AnswerRejected as rejected:
        if rejected.code == "answered_elsewhere":
            # a stale tab: say so above the next case, which a reload keeps
            messages.warning(request, str(rejected))
            return redirect("cases:case", slug=slug)
        if rejected.code in _AT_ANOTHER_STEP:
            return _redirect_to_step(_enrolment_or_404(request, slug))
        return str(rejected), rejected.status
    if not result.created:
        messages.info(request, ANSWERED_ALREADY)
    return redirect("cases:done" if result.finished else "cases:case", slug=slug)


def _case_page_strings() -> dict[str, str]:
    """What the case page's script says, in the reader's language."""
    return {
        "answered_already": str(ANSWERED_ALREADY),
        "network": _(
            "The server could not be reached, so your answer may not be stored. Your "
            "choice is kept: press Enter or Submit to try again (an answer is never "
            "stored twice)."
        ),
        "busy": _(
            "The server is busy (HTTP %(status)s), so your answer may not be stored. Your "
            "choice is kept: press Enter or Submit to try again in a moment (an answer is "
            "never stored twice)."
        ),
        "earlier_stands": _(
            "Your earlier answer to that case had reached the server, and it stands. Here "
            "is your next case."
        ),
        "session": _(
            "Your session has ended, so your answer is not stored. Please log in again; "
            "you will continue with this case."
        ),
        "log_in": _("Log in"),
        "closed": _("Go to your results"),
        "final": _("Answers are final: here is your next case."),
        "announce": _("Case %(n)s of %(total)s"),
        "answered": _("%(done)s answered"),
        # Where the read lies: a sequential study's step of the case, a crossover's session.
        "step": _("Step %(step)s of %(steps)s: %(label)s"),
        "session_of": _("Session %(session)s of %(sessions)s: %(label)s"),
        "first_heading": _("First answer, without the CNN"),
        "final_heading": _("Final answer for the same case, with the CNN's support"),
        "earlier": _("Your answer without the CNN: %(name)s"),
        # The case's metadata and the CNN's support (templates/cases/case.html has the same).
        "metadata": _("About the patient"),
        "age": _("Age"),
        "years": _("%(age)s years"),
        "sex": _("Sex"),
        "site": _("Site"),
        "not_recorded": _("not recorded"),
        "support_title": _("The CNN suggests: %(name)s"),
        "support_list": _("The CNN's probabilities, most probable first"),
        "support_note": _("A CNN's suggestion, not a diagnosis: the answer is yours."),
        "gradcam": _("Grad-CAM heat map"),
        "gradcam_hint": _("Show where the CNN looked, over the dermoscopic image"),
    }


@login_required
@never_cache
def done(request: HttpRequest, slug: str) -> HttpResponse:
    enrolment = _enrolment_or_404(request, slug)
    step = selectors.reader_step(enrolment=enrolment)
    if step not in (Step.DONE, Step.CLOSED, Step.REVIEW, Step.WASHOUT):
        return _redirect_to_step(enrolment, step)
    language = get_language()
    if step == Step.REVIEW:
        # Every case answered in a study that allows changes: the reader may revise any
        # answer until they confirm that they have finished.
        if request.method == "POST":
            try:
                services.enrolment_finish(enrolment=enrolment)
            except services.AnswerRejected:  # closed meanwhile: the next step says so
                return _redirect_to_step(enrolment)
            return redirect("cases:done", slug=slug)
        return render(
            request,
            "cases/review.html",
            {
                "study": enrolment.study,
                "answers": selectors.reader_answers(enrolment=enrolment, language=language),
            },
        )
    if step == Step.WASHOUT:
        # Between a crossover's sessions: when the next opens, and nothing of the results.
        screen = selectors.case_screen(enrolment=enrolment, language=language, step=step)
        progress = screen.progress
        return render(
            request,
            "cases/done.html",
            {
                "study": enrolment.study,
                "washout": True,
                "opens_at": screen.opens_at,
                "progress": progress,
                # reader_progress counts the session to come as the reader's own
                "finished_session": max(progress["session"] - 1, 1),
                "percent": round(100 * progress["answered"] / max(progress["total"], 1)),
            },
        )
    # A closed study says so on the page itself, with nothing to continue.
    return render(
        request,
        "cases/done.html",
        {
            "study": enrolment.study,
            "closed": step == Step.CLOSED,
            "feedback": selectors.reader_feedback(enrolment=enrolment, language=language),
            "progress": selectors.reader_progress(enrolment=enrolment),
            "cases": len(enrolment.case_order),
        },
    )
