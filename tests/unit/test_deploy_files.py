"""Static checks of docker-compose.yml and deploy/Dockerfile (no Docker engine runs on these machines)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from services.aggregator.settings import AggregatorSettings
from services.feedback.settings import FeedbackSettings
from services.ingest.settings import IngestSettings
from shared.settings import PipelineSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (ROOT / "deploy" / "Dockerfile").read_text()
SETTINGS = {"ingest": IngestSettings, "feedback": FeedbackSettings, "aggregator": AggregatorSettings}


def test_compose_runs_every_service_from_one_image_after_init() -> None:
    services = COMPOSE["services"]
    assert {"kafka", "postgres", "init", "ingest", "feedback", "aggregator"} <= set(services)
    images = {services[name]["image"] for name in ("init", *SETTINGS)}
    assert len(images) == 1
    for name in SETTINGS:
        assert services[name]["command"] == ["python", "-m", f"services.{name}"]
        assert (ROOT / "services" / name / "__main__.py").exists()
        assert services[name]["depends_on"]["init"]["condition"] == "service_completed_successfully"
    assert services["init"]["command"] == ["python", "-m", "deploy.init"]
    assert (ROOT / "deploy" / "init.py").exists()


def test_compose_ports_match_the_services_default_ports() -> None:
    for name, settings_class in SETTINGS.items():
        port = settings_class.model_fields["http_port"].default
        service = COMPOSE["services"][name]
        assert service["ports"] == [f"{port}:{port}"]
        assert f"127.0.0.1:{port}/readyz" in " ".join(service["healthcheck"]["test"])


def test_compose_environment_names_real_settings() -> None:
    env = COMPOSE["services"]["ingest"]["environment"]
    known = {name.upper() for name in PipelineSettings.model_fields}
    assert set(env) <= known, set(env) - known
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    kafka_env = COMPOSE["services"]["kafka"]["environment"]
    assert kafka_env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false", "the project creates its own topics"
    assert "PLAINTEXT://kafka:9092" in kafka_env["KAFKA_ADVERTISED_LISTENERS"]


def test_dockerfile_copies_what_exists_and_binds_every_interface() -> None:
    for source in re.findall(r"^COPY (\S+(?: \S+)*) \S+$", DOCKERFILE, flags=re.M):
        for path in source.split():
            assert (ROOT / path).exists(), f"COPY source {path} missing"
    for name in SETTINGS:
        assert f"{name.upper()}_HTTP_HOST=0.0.0.0" in DOCKERFILE
    production = re.search(r"grep -v -E '\^\((.+?)\)==", DOCKERFILE).group(1).split("|")
    locked = {line.split("==")[0] for line in (ROOT / "requirements.lock").read_text().splitlines() if "==" in line}
    assert set(production) <= locked, "every excluded package is in the lock file"
    for needed in ("faststream", "aiokafka", "asyncpg", "pydantic", "structlog", "fastapi", "uvicorn"):
        assert needed not in production
