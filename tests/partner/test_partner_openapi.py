"""The OpenAPI description is checked in, served, and says what the API really answers."""

import yaml

from partner.api import MAX_RECORDS, OPENAPI_PATH


def test_description_is_served_as_checked_in(client):
    response = client.get("/api/partner/openapi.yaml")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/yaml")
    assert response.content == OPENAPI_PATH.read_bytes()


def test_description_is_openapi_3_and_documents_every_answer(client):
    spec = yaml.safe_load(client.get("/api/partner/openapi.yaml").content)
    assert spec["openapi"].startswith("3.")
    usage = spec["paths"]["/api/partner/usage"]["post"]
    assert set(usage["responses"]) == {"200", "207", "400", "401", "405", "413"}
    assert spec["components"]["schemas"]["UsageBatch"]["properties"]["records"]["maxItems"] == MAX_RECORDS
    record = spec["components"]["schemas"]["UsageRecord"]
    assert set(record["required"]) == {"id", "iccid", "bytes", "start", "end"}
    assert spec["components"]["schemas"]["NetworkCommand"]["properties"]["command"]["enum"] == [
        "block_data",
        "unblock_data",
        "suspend",
        "resume",
    ]
    assert "networkCommand" in spec["webhooks"]


def test_every_reference_resolves(client):
    spec = yaml.safe_load(client.get("/api/partner/openapi.yaml").content)

    def refs(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    yield value
                else:
                    yield from refs(value)
        elif isinstance(node, list):
            for item in node:
                yield from refs(item)

    for ref in refs(spec):
        target = spec
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]


def test_the_curl_example_signs_like_the_server_checks(line, client, settings, tmp_path):
    """Run the documented shell example (printf | openssl) and post what it produced."""
    import re
    import subprocess
    import time

    spec = yaml.safe_load(OPENAPI_PATH.read_text())
    lines = spec["info"]["description"].splitlines()
    start = next(i for i, text in enumerate(lines) if text.strip().startswith("body='"))
    script = "\n".join(text.strip() for text in lines[start : start + 3])  # body=..., t=..., sig=...
    script = script.replace("89860000000000000001", line.iccid) + '\necho "$t"; echo "$sig"; printf %s "$body"'
    out = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "PARTNER_USAGE_SECRET": settings.PARTNER_USAGE_SECRET},
    ).stdout
    t, sig, body = out.split("\n", 2)
    assert re.fullmatch(r"[0-9a-f]{64}", sig) and abs(int(t) - time.time()) < 60
    response = client.post(
        "/api/partner/usage",
        data=body.encode(),
        content_type="application/json",
        headers={"X-Signature": f"t={t},v1={sig}"},
    )
    assert response.json() == {"accepted": 1, "duplicates": 0}
