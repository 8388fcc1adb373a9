"""The favicon, the home-screen icons and the web app manifest exist and are linked from every page."""

import json

from django.contrib.staticfiles import finders
from django.urls import reverse


def test_favicon_and_touch_icon_are_served_at_the_root(client, db):
    for path, kind in (("/favicon.ico", "image/"), ("/apple-touch-icon.png", "image/png")):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response["Content-Type"].startswith(kind)


def test_manifest_names_the_site_in_the_visitors_language_and_lists_existing_icons(client, db):
    response = client.get(reverse("accounts:web_manifest"), HTTP_ACCEPT_LANGUAGE="zh-Hans")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/manifest+json"
    manifest = json.loads(response.content)
    assert manifest["start_url"] == reverse("accounts:home")
    assert {icon["sizes"] for icon in manifest["icons"]} == {"192x192", "512x512"}
    assert any(icon.get("purpose") == "maskable" for icon in manifest["icons"])
    for icon in manifest["icons"]:
        assert finders.find(icon["src"].removeprefix("/static/")), icon["src"]


def test_every_page_links_the_icons_and_the_manifest(client, db):
    body = client.get(reverse("account_login")).content.decode()
    assert 'rel="icon" href="/favicon.ico"' in body
    assert 'rel="manifest" href="/manifest.webmanifest"' in body
    assert "icons/apple-touch-icon.png" in body
