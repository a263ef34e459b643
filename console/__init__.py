"""The staff console: the per-study pages a study's admins work in (overview, reader
progress, invitations, import, exports, the analysis report, reader passwords and
unlocking, inference runs).

Every per-study page opens its study through :func:`console.access.study_for_staff`;
the pages are mounted in the Django admin by the ModelAdmins of ``cases``, ``analysis``
and ``inference`` (see :mod:`console.urls`), so their URLs and names are the admin's.
"""
