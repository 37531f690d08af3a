"""docs/asyncapi.yaml and its page docs/topics.md: generated from topics.toml, schemas/ and
access.toml, never stale, and valid for the AsyncAPI project's own CLI (`asyncapi validate`,
@asyncapi/cli from npm)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import yaml

from services.cli import main
from services.common import asyncapi, jsonevents
from services.common.topics import default_config_path, load_topic_specs


def test_committed_document_is_the_generated_one():
    """Fails when a topic, schema, key, header rule or ACL changed without `lfr asyncapi`."""
    committed = asyncapi.DOCUMENT.read_text(encoding="utf-8")
    assert committed == asyncapi.render(asyncapi.build()), "docs/asyncapi.yaml is stale: run `lfr asyncapi`"
    assert main(["asyncapi", "--check"]) == 0


def test_a_changed_topic_makes_the_document_stale(tmp_path):
    changed = tmp_path / "topics.toml"
    changed.write_text(default_config_path().read_text().replace('"retention.ms" = "2678400000"', '"retention.ms" = "86400000"'))
    assert asyncapi.render(asyncapi.build(changed)) != asyncapi.DOCUMENT.read_text(encoding="utf-8")
    stale = tmp_path / "asyncapi.yaml"
    stale.write_text("asyncapi: 3.0.0\n")
    assert main(["asyncapi", "--check", "--out", str(stale)]) == 1


def test_the_page_is_rendered_from_the_same_document_and_checked(tmp_path):
    page = asyncapi.DOCUMENT.parent / asyncapi.PAGE_NAME
    document = asyncapi.build()
    assert page.read_text(encoding="utf-8") == asyncapi.render_markdown(document), "docs/topics.md is stale: run `lfr asyncapi`"
    # Both files are written by one run; a stale page alone fails --check.
    out = tmp_path / "asyncapi.yaml"
    assert main(["asyncapi", "--out", str(out)]) == 0 and main(["asyncapi", "--check", "--out", str(out)]) == 0
    (tmp_path / asyncapi.PAGE_NAME).write_text(page.read_text(encoding="utf-8").replace("31d", "30d"))
    assert main(["asyncapi", "--check", "--out", str(out)]) == 1
    # What the page says comes from the document: change the document, the page follows.
    document["channels"]["lfr.alerts.v3"]["x-topic-config"]["retention.ms"] = "86400000"
    assert "| `application/json` | 1d |" in asyncapi.render_markdown(document)


def test_the_page_has_each_channel_with_key_types_principals_and_fields():
    text = (asyncapi.DOCUMENT.parent / asyncapi.PAGE_NAME).read_text(encoding="utf-8")
    for spec in load_topic_specs():
        assert f"\n## {spec.name}\n" in text
    alerts = text.split("\n## lfr.alerts.v3\n")[1].split("\n## ")[0]
    assert "- key: subject id" in alerts and "- content type: `application/json`" in alerts
    assert "retention: 31d" in alerts
    assert "`org.openlfr.alert.raised`, `org.openlfr.alert.updated`" in alerts
    assert "- sent by: `dispatch`, `intake`, `link`" in alerts and "- received by: `downstream`, `link`, `review`" in alerts
    assert "| `priority` | one of `red`, `amber`, `green` | yes |" in alerts
    assert "| `track_score` | number | no | Best score over the shots of the evidence's track (rule track-best) |" in alerts
    faces = text.split("\n## lfr.faces.v1\n")[1].split("\n## ")[0]
    assert "`application/vnd.openlfr.envelope.v1`" in faces and "ce_type" not in faces


def test_every_topic_is_a_channel_with_its_key_retention_headers_and_principals():
    document = yaml.safe_load(asyncapi.DOCUMENT.read_text(encoding="utf-8"))
    specs = {spec.name: spec for spec in load_topic_specs()}
    assert document["asyncapi"] == "3.0.0" and set(document["channels"]) == set(specs)
    alerts = document["channels"]["lfr.alerts.v3"]
    assert alerts["bindings"]["kafka"]["topicConfiguration"]["retention.ms"] == 2678400000
    assert alerts["bindings"]["kafka"]["partitions"] == specs["lfr.alerts.v3"].partitions
    message = document["components"]["messages"]["lfr.alerts.v3"]
    assert message["contentType"] == "application/json"
    assert message["bindings"]["kafka"]["key"]["description"] == "subject id"
    assert message["headers"]["properties"]["ce_type"]["enum"] == ["org.openlfr.alert.raised", "org.openlfr.alert.updated"]
    assert message["headers"]["properties"]["ce_dataschema"]["const"] == jsonevents.dataschema_for("lfr.alerts.v3")
    assert document["operations"]["receive.lfr.alerts.v3"]["x-principals"] == ["downstream", "link", "review"]
    assert document["operations"]["send.lfr.deployment_events.v1"]["x-principals"] == ["deployment-events"]
    assert document["operations"]["send.lfr.alerts.v3"]["x-principals"] == ["dispatch", "intake", "link"]
    for schema in jsonevents.KINDS:  # every plain JSON topic documents its CloudEvents headers
        assert document["components"]["messages"][schema]["headers"]["required"][-1] == "content-type"
    faces = document["components"]["messages"]["lfr.faces.v1"]
    assert faces["contentType"] == "application/vnd.openlfr.envelope.v1" and "headers" not in faces
    # Payload schemas are the ones in schemas/, refs pointing inside the document.
    payload = document["components"]["schemas"]["lfr.alerts.v3"]
    assert payload["properties"]["subject_id"] == {"$ref": "#/components/schemas/lfr.common.v1.id"}
    assert "lfr.common.v1.id" in document["components"]["schemas"]
    assert "$ref" not in json.dumps(document).replace('"$ref": "#/', "")  # no reference leaves the document


def _cli() -> str | None:
    found = shutil.which("asyncapi")
    if found is None and os.environ.get("CI") == "true":
        pytest.fail("CI=true but the AsyncAPI CLI (`asyncapi`, npm @asyncapi/cli) is not installed: .ci/run installs it")
    return found


def test_the_asyncapi_cli_validates_the_document(tmp_path):
    cli = _cli()
    if cli is None:
        pytest.skip("the AsyncAPI CLI (npm @asyncapi/cli, installed by .ci/run) is not on PATH")
    # No telemetry: the CLI reads its analytics switch from this file.
    config = tmp_path / "analytics.json"
    config.write_text(json.dumps({"analyticsEnabled": "false", "infoMessageShown": "true", "userID": "openlfr-tests"}))
    env = {**os.environ, "ASYNCAPI_METRICS_CONFIG_PATH": str(config)}

    def validate(path) -> subprocess.CompletedProcess:
        return subprocess.run([cli, "validate", str(path), "--fail-severity", "error"], capture_output=True, text=True,
                              env=env, timeout=180)

    result = validate(asyncapi.DOCUMENT)
    assert result.returncode == 0 and "is valid" in result.stdout, result.stdout + result.stderr
    # The CLI does check: a reference to a schema that is not there is an error.
    broken = tmp_path / "broken.yaml"
    broken.write_text(asyncapi.DOCUMENT.read_text().replace("'#/components/schemas/lfr.alerts.v3'", "'#/components/schemas/nope'"))
    assert validate(broken).returncode != 0


@pytest.mark.parametrize("schema", sorted(jsonevents.KINDS))
def test_what_the_services_write_satisfies_the_document(schema):
    """The headers and payload a producer writes validate against the document's own schemas."""
    import jsonschema

    from services.pipeline.dispatch.policy import decide
    from tests.dispatch.helpers import NOW, match
    from tests.test_jsonevents import ADJUDICATION, COUNT

    document = yaml.safe_load(asyncapi.DOCUMENT.read_text(encoding="utf-8"))
    message = document["components"]["messages"][schema]
    from services.governance.audit.chain import seal
    from services.common.signing import Signer

    audit = seal({"action": "watchlist.add", "at_ms": NOW, "service": "watchlist", "subject_id": "s1", "details": {"n": 1}},
                 Signer.generate("Sgt 1 Tester"), 0, "0" * 64)
    from services.governance.deployments.public import public_event
    from tests.deployments.test_deployment_events import lifecycle_revisions

    data = {"lfr.alerts.v3": decide(None, match(), 60_000, NOW + 200)[1].data, "lfr.adjudications.v3": ADJUDICATION,
            "lfr.counts.v2": COUNT, "lfr.audit.v2": audit, "lfr.deployment_events.v1": public_event(lifecycle_revisions()[3])}[schema]
    value, headers = jsonevents.encode(schema, data)
    jsonschema.Draft202012Validator(message["headers"]).validate({name: raw.decode() for name, raw in headers})
    root = {"components": document["components"], "$ref": message["payload"]["$ref"]}
    jsonschema.Draft202012Validator(root).validate(json.loads(value))
    with pytest.raises(jsonschema.ValidationError):  # and the document does constrain them
        jsonschema.Draft202012Validator(root).validate({**json.loads(value), "unexpected": 1})
