"""The production process model as files: Procfile.production, the environment template
deploy/env.example, gunicorn.conf.py, Dockerfile and compose.yaml agree with each other and with
the settings. Reads files only (tests/test_prod_smoke.py runs them)."""

import ast
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from django.conf import settings

pytestmark = pytest.mark.pure

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = [ROOT / "esimsite/settings/base.py", ROOT / "esimsite/settings/production.py"]
PROCESSES = ("release", "web", "worker", "beat")
PRODUCTION = "DJANGO_SETTINGS_MODULE=esimsite.settings.production"


def settings_variables() -> dict[str, bool]:
    """{NAME: required} for every env("NAME"...)/env.<cast>("NAME"...) call in the settings that
    production loads; required when some call has no default."""
    found: dict[str, bool] = {}
    for path in SETTINGS:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            is_env = (isinstance(func, ast.Name) and func.id == "env") or (
                isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "env"
            )
            if not is_env or not node.args or not isinstance(node.args[0], ast.Constant):
                continue
            name = node.args[0].value
            required = not any(k.arg == "default" for k in node.keywords)
            found[name] = found.get(name, False) or required
    return found


def gunicorn_variables() -> set[str]:
    return set(re.findall(r"os\.environ\.get\(\s*[\"']([A-Z0-9_]+)[\"']", (ROOT / "gunicorn.conf.py").read_text()))


def template() -> dict[str, bool]:
    """{NAME: marked required} from deploy/env.example."""
    names: dict[str, bool] = {}
    previous = ""
    for line in (ROOT / "deploy/env.example").read_text().splitlines():
        match = re.match(r"^#?([A-Z][A-Z0-9_]*)=", line)
        if match:
            assert match[1] not in names, f"{match[1]} listed twice"
            names[match[1]] = previous.startswith("# REQUIRED")
            if names[match[1]]:
                assert not line.startswith("#"), f"{match[1]} is required but commented out"
        previous = line
    return names


def procfile() -> dict[str, str]:
    entries = {}
    for line in (ROOT / "Procfile.production").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, command = line.partition(":")
            entries[name.strip()] = command.strip()
    return entries


def test_the_template_lists_exactly_the_variables_the_production_processes_read():
    read = settings_variables()
    assert {"SECRET_KEY", "DATABASE_URL", "STRIPE_SECRET_KEY", "ALLOWED_HOSTS"} <= set(read)  # the parser sees them
    listed = template()
    assert set(listed) == set(read) | gunicorn_variables()


def test_the_template_marks_exactly_the_required_variables():
    read = settings_variables()
    listed = template()
    assert {name for name, required in listed.items() if required} == {
        name for name, required in read.items() if required
    }


def test_the_production_procfile_runs_each_process_on_the_production_settings():
    entries = procfile()
    assert tuple(entries) == PROCESSES
    for name, command in entries.items():
        argv = shlex.split(command)
        assert argv[:2] == ["env", PRODUCTION], name
        assert "runserver" not in command and "DJANGO_DEBUG" not in command
    release = shlex.split(entries["release"])[-1]
    assert [step.strip() for step in release.split("&&")] == [
        "python manage.py migrate --noinput",
        "python manage.py compilemessages --ignore=.venv -v 0",
        "python manage.py collectstatic --noinput -v 0",
    ]
    assert shlex.split(entries["web"])[2:] == ["gunicorn", "--config", "gunicorn.conf.py", "esimsite.wsgi:application"]
    worker = shlex.split(entries["worker"])
    assert worker[2:6] == ["celery", "-A", "esimsite", "worker"]
    queues = worker[worker.index("-Q") + 1].split(",")
    assert queues == [queue.name for queue in settings.CELERY_TASK_QUEUES]  # the sweeps' queue first, as today
    assert set(settings.CELERY_TASK_ROUTES[t]["queue"] for t in settings.CELERY_TASK_ROUTES) <= set(queues)
    assert shlex.split(entries["beat"])[2:5] == ["celery", "-A", "esimsite"] and "beat" in entries["beat"]


def test_the_compose_services_run_the_procfile_commands_with_known_variables():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    entries = procfile()
    for name in PROCESSES:
        assert shlex.split(services[name]["command"]) == shlex.split(entries[name]), name
        assert services[name]["env_file"] == ".env.production"
        assert set(services[name].get("environment", {})) <= set(template()), name
    assert {"postgres", "redis"} <= set(services)
    assert services["release"]["restart"] == "no"
    for name in ("web", "worker", "beat"):
        assert services[name]["depends_on"]["release"]["condition"] == "service_completed_successfully"


def test_the_dockerfile_runs_the_web_command_as_a_non_root_user():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim-bookworm\b", dockerfile, re.M)
    assert re.search(r"^RUN pip install -r requirements\.txt$", dockerfile, re.M)
    users = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert users and users[-1] not in {"root", "0"}
    cmd = json.loads(re.findall(r"^CMD (\[.*\])$", dockerfile, re.M)[-1])
    assert cmd == shlex.split(procfile()["web"])
    env_names = set(re.findall(r"^ENV (\w+)=", dockerfile, re.M)) | set(
        re.findall(r"^\s+(\w+)=\S+ \\$", dockerfile, re.M)
    )
    env_names |= set(re.findall(r"\b([A-Z][A-Z0-9_]+)=\S", dockerfile))
    python_ones = {n for n in env_names if n.startswith(("PYTHON", "PIP_"))}
    assert env_names - python_ones - {"DJANGO_SETTINGS_MODULE"} <= set(template())
