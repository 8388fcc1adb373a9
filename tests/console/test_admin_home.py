"""The admin home puts what operators use every day first and the processor's mirror behind one
link (docs/console.md, "The admin home")."""

import re


def test_home_lists_daily_models_first_and_the_processor_mirror_as_one_row(superuser_client):
    client, _operator = superuser_client
    html = client.get("/admin/").content.decode()
    order = [
        "/admin/accounts/user/",
        "/admin/accounts/line/",
        "/admin/accounts/package/",
        "/admin/renewals/renewal/",
        "/admin/payments/charge/",
        "/admin/renewals/alert/",
        "/admin/accounts/changerecord/",
    ]
    positions = [html.index(f'href="{url}"') for url in order]
    assert positions == sorted(positions)
    assert not re.search(r'href="/admin/djstripe/\w+/"', html)  # no dj-stripe model listed one by one
    assert 'href="/admin/djstripe/"' in html
    assert len(re.findall(r">Charges<", html)) == 1
    mirror = client.get("/admin/djstripe/")
    assert mirror.status_code == 200 and 'href="/admin/djstripe/charge/"' in mirror.content.decode()


def test_support_staff_see_no_processor_mirror(support_client):
    client, _operator = support_client
    html = client.get("/admin/").content.decode()
    assert "/admin/djstripe/" not in html
    assert 'href="/admin/accounts/line/"' in html
