"""HTML views of the cases app. Thin: selectors decide who sees what."""

from __future__ import annotations

from django.http import FileResponse, Http404, HttpRequest
from django.views.decorators.http import require_GET

from cases.selectors import image_for_user, is_study_staff

_VARIANTS = {"web": "web", "thumb": "thumbnail", "original": "original"}


@require_GET
def case_image(request: HttpRequest, public_id: str, variant: str) -> FileResponse:
    """A case image through its opaque id, checked on every request.

    Readers of the image's study get the web-size and thumbnail JPEGs (no metadata);
    staff may also download the original. Anyone else gets a 404, so the response does
    not even confirm that the image exists.
    """
    field = _VARIANTS.get(variant)
    image = image_for_user(user=request.user, public_id=public_id)
    if image is None or field is None or (field == "original" and not is_study_staff(request.user)):
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
