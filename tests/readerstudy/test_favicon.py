"""The site's icon: an SVG in static/, linked from every page, and /favicon.ico (which
browsers ask for on their own) redirects to it instead of a 404."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.templatetags.static import static

pytestmark = pytest.mark.django_db


def test_the_icon_is_a_small_svg_in_static():
    path = finders.find("favicon.svg")
    assert path is not None
    data = Path(path).read_bytes()
    assert len(data) < 2048
    assert ET.fromstring(data).tag == "{http://www.w3.org/2000/svg}svg"


@pytest.mark.parametrize("persona", ["anonymous", "reader"])
def test_favicon_ico_redirects_to_the_svg(client, request, persona):
    if persona != "anonymous":
        client.force_login(request.getfixturevalue(persona))
    response = client.get("/favicon.ico")
    assert response.status_code == 302
    assert response["Location"] == static("favicon.svg")
    assert "max-age=86400" in response["Cache-Control"]


def test_favicon_ico_accepts_only_reads(client):
    assert client.head("/favicon.ico").status_code == 302
    assert client.post("/favicon.ico").status_code == 405


@pytest.mark.parametrize("url", ["/", "/accounts/login/", "/no-such-page/"])
def test_every_page_links_to_the_icon(client, url):
    page = client.get(url).content.decode()
    link = re.search(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">', page)
    assert link is not None and link[1] == static("favicon.svg")
