"""The Helm chart: renders (Helm's Go engine via helm-python-sdk), validates against the Kubernetes
schemas, maps values one-to-one onto the settings classes, refuses bad values, runs hardened."""

from __future__ import annotations

import json

import pytest
import yaml

from services.common import settings as lfr_settings
from services.common.settings import load_settings
from services.pipeline.ingest.cameras import load_cameras
from services.governance.watchlist.thresholds import Thresholds
from tests.deploy.helpers import (
    CHART,
    CONSUMERS,
    KUBE_VERSION,
    NAMESPACE,
    ROOT,
    SERVICES,
    all_features,
    by_kind,
    example,
    helm,
    load_script,
    name,
    pod_specs,
    render,
    render_raw,
    strip,
)

generate = load_script(ROOT / "helm" / "generate.py", "openlfr_helm_generate")

SETTINGS_CLASSES = {**generate.SERVICES, **generate.JOBS}
CRD_KINDS = {"ServiceMonitor", "PrometheusRule", "ScaledObject", "KafkaUser"}


# -- generated files -------------------------------------------------------------------------


def test_schema_and_settings_table_are_generated_from_the_settings_classes():
    assert generate.main(["--check"]) == 0, "run: .venv/bin/python helm/generate.py"


def test_every_settings_field_is_a_value_a_secret_reference_or_chart_managed():
    for section, cls in SETTINGS_CLASSES.items():
        keys = set(generate.settings_schema(cls, section)["properties"])
        for field, info in cls.model_fields.items():
            if generate.is_secret(info):
                assert field in generate.SECRETS, f"{cls.__name__}.{field}: secret without a Secret reference"
                assert generate.camel(field) not in keys
            elif field in generate.MANAGED or field in generate.UNUSED.get(section, {}):
                assert generate.camel(field) not in keys
            else:
                assert generate.camel(field) in keys, f"{section}.settings lacks {generate.camel(field)}"


# -- rendering ---------------------------------------------------------------------------------


def test_renders_with_default_values():
    docs = render()
    kinds = sorted({d["kind"] for d in docs})
    assert kinds == ["ConfigMap", "CronJob", "Deployment", "PersistentVolumeClaim", "Pod", "Service", "ServiceAccount"]
    assert set(by_kind(docs, "Deployment")) == {name(s) for s in SERVICES}
    assert set(by_kind(docs, "Service")) == {name(s) for s in SERVICES}
    assert set(by_kind(docs, "Pod")) == {name("test-kafka"), name("test-metrics")}
    for deployment in by_kind(docs, "Deployment").values():
        assert deployment["spec"]["replicas"] == 1
    assert by_kind(docs, "Deployment")[name("ingest")]["spec"]["strategy"] == {"type": "Recreate"}
    notes = render_raw()["openlfr/templates/NOTES.txt"]
    assert "helm test lfr" in notes and "no cameras are configured" in notes


@pytest.mark.parametrize("autoscaler", ["keda", "hpa"])
def test_renders_with_every_feature_on(autoscaler):
    docs = render(all_features(autoscaler))
    kinds = {d["kind"] for d in docs}
    expected = {"ConfigMap", "CronJob", "Deployment", "Pod", "Service", "ServiceAccount", "ServiceMonitor",
                "PrometheusRule", "PodDisruptionBudget", "NetworkPolicy", "Job"}
    assert expected <= kinds
    scaler = "ScaledObject" if autoscaler == "keda" else "HorizontalPodAutoscaler"
    other = "HorizontalPodAutoscaler" if autoscaler == "keda" else "ScaledObject"
    assert set(by_kind(docs, scaler)) == {name(s) for s in CONSUMERS}
    assert other not in kinds
    deployments = by_kind(docs, "Deployment")
    for service in CONSUMERS:  # the autoscaler owns the replica count
        assert "replicas" not in deployments[name(service)]["spec"]
    assert deployments[name("ingest")]["spec"]["replicas"] == 1
    dashboards = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert len(dashboards) == 1
    assert by_kind(docs, "PodDisruptionBudget")[name("detect")]["spec"]["maxUnavailable"] == 1


def test_keda_scales_each_consumer_on_its_group_lag():
    values = all_features("keda")
    values["embed"]["settings"] = {"groupId": "lfr-embed-blue", "inputTopic": "lfr.faces.v1"}
    scaled = by_kind(render(values), "ScaledObject")
    expected = {"detect": ("lfr-detect", "lfr.frames.v1", 8), "embed": ("lfr-embed-blue", "lfr.faces.v1", 8),
                "matcher": ("lfr-matcher", "lfr.embeddings.v1", 8), "dispatch": ("lfr-dispatch", "lfr.matches.v1", 4)}
    for service, (group, topic, max_replicas) in expected.items():
        spec = scaled[name(service)]["spec"]
        assert spec["scaleTargetRef"] == {"name": name(service)}
        assert spec["maxReplicaCount"] == max_replicas
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "kafka" and trigger["authenticationRef"] == {"name": "openlfr-kafka"}
        assert trigger["metadata"]["consumerGroup"] == group and trigger["metadata"]["topic"] == topic
        assert trigger["metadata"]["bootstrapServers"] == "openlfr-kafka-bootstrap:9093"


def test_helm_lint_finds_no_problem():
    report = helm().lint(str(CHART), strict=True)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems and not report["errors"], report


# -- Kubernetes schemas ----------------------------------------------------------------------


@pytest.mark.parametrize("case", ["defaults", "keda", "hpa", "dev-example"])
def test_manifests_validate_against_the_kubernetes_schemas(case):
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")
    values = {"defaults": None, "keda": all_features("keda"), "hpa": all_features("hpa"),
              "dev-example": example("values-dev.yaml")}[case]
    checked = 0
    for doc in render(values):
        resource = strip(doc)
        if resource["kind"] in CRD_KINDS:  # no schema shipped: check the basics
            assert resource["apiVersion"] in ("monitoring.coreos.com/v1", "keda.sh/v1alpha1", "kafka.strimzi.io/v1beta2")
            assert resource["metadata"]["name"] and resource["spec"]
            continue
        try:
            kubernetes_validate.validate(resource, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{doc['__template']}: {resource['kind']}/{resource['metadata']['name']}: {path}: {exc.message}")
        checked += 1
    assert checked >= 14


# -- hardening -------------------------------------------------------------------------------


def test_every_pod_is_hardened():
    docs = render(all_features("keda"))
    specs = pod_specs(docs)
    assert len(specs) == len(SERVICES) + 2 + 1 + 2  # services, purge and sweep CronJobs, topics Job, test Pods
    for where, spec in specs.items():
        assert spec["automountServiceAccountToken"] is False, where
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] > 0, where
        assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "emptyDir" in volumes["tmp"], where
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert sc["runAsNonRoot"] is True and sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"], where
    service_accounts = by_kind(docs, "ServiceAccount")
    assert all(sa["automountServiceAccountToken"] is False for sa in service_accounts.values())


def test_probes_are_configurable_globally_and_per_service():
    values = {"probes": {"liveness": {"periodSeconds": 7}}, "matcher": {"probes": {"startup": {"failureThreshold": 240}}}}
    deployments = by_kind(render(values), "Deployment")
    matcher = deployments[name("matcher")]["spec"]["template"]["spec"]["containers"][0]
    detect = deployments[name("detect")]["spec"]["template"]["spec"]["containers"][0]
    assert matcher["startupProbe"]["failureThreshold"] == 240 and detect["startupProbe"]["failureThreshold"] == 60
    assert matcher["livenessProbe"]["periodSeconds"] == 7 and detect["livenessProbe"]["periodSeconds"] == 7
    assert detect["readinessProbe"] == {"httpGet": {"path": "/readyz", "port": "metrics"}, "periodSeconds": 10,
                                        "timeoutSeconds": 5, "failureThreshold": 3}


def test_services_expose_a_named_metrics_port_with_probes_on_it():
    values = {"settings": {"metricsPort": 9200}, "dispatch": {"settings": {"metricsPort": 9300}}}
    docs = render(values)
    deployments, services = by_kind(docs, "Deployment"), by_kind(docs, "Service")
    for service in SERVICES:
        port = 9300 if service == "dispatch" else 9200
        (container,) = deployments[name(service)]["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["lfr", "run", service]
        http = [{"name": "http", "containerPort": 8080, "protocol": "TCP"}] if service == "review" else []
        assert container["ports"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}, *http]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["LFR_METRICS_PORT"] == str(port)
        for probe, path in (("startupProbe", "/livez"), ("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
            assert container[probe]["httpGet"] == {"path": path, "port": "metrics"}
        http = [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}] if service == "review" else []
        assert services[name(service)]["spec"]["ports"] == [
            {"name": "metrics", "port": port, "targetPort": "metrics", "protocol": "TCP"}, *http]
        assert services[name(service)]["metadata"]["labels"]["openlfr.io/job"] == f"openlfr-{service}"
    urls = by_kind(docs, "Pod")[name("test-metrics")]["spec"]["containers"][0]["args"][1:]
    assert urls == [f"http://{name(s)}.{NAMESPACE}.svc:{9300 if s == 'dispatch' else 9200}/metrics" for s in SERVICES]


# -- values -> settings, one to one ----------------------------------------------------------

#: sample values for string settings (the rest are derived from the schema's bounds)
STRINGS = {
    "kafkaBootstrapServers": "kafka-0.kafka:9093,kafka-1.kafka:9093",
    "kafkaClientId": "lfr-test-client",
    "force": "gmp",
    "kafkaSaslUsername": "svc-openlfr",
    "groupId": "lfr-custom-group",
    "detectGroupId": "lfr-custom-detect",
    "qdrantUrl": "http://qdrant.vectors:6333",
    "qdrantPath": "/tmp/qdrant-local",
    "webhookUrl": "https://hooks.example.org/openlfr",
    "ceSourcePrefix": "/openlfr/test",
    "publicUrl": "https://review.example.org",
    "trustedProxies": "10.0.0.0/8",
    "oidcIssuer": "https://id.example.org/realms/police",
    "oidcClientId": "openlfr-review",
    "oidcRolesClaim": "roles",
    "oidcDeploymentsClaim": "deployments",
    "oidcForceClaim": "force",
    "transitKeyValidityS": 45.0,  # with the grace: at most 300 s together
    "transitKeyGraceS": 90.0,
    "deploymentMinRank": "chief_superintendent",
    "deploymentThresholdFloorOverrideReason": "recorded override",
    "tileCameras": "mast-1,mast-2",
    "detectRegions": '{"mast-1": [0.0, 0.3, 1.0, 1.0]}',
}


def sample(key: str, schema: dict):
    """A valid, non-default value for one settings key."""
    if key == "matchThresholds":
        return {"missing_person_at_risk": 0.45, "witness_or_victim": 0.625}
    if key.endswith("Topic"):
        return f"lfr.custom-{key.lower()}.v2"
    if key in STRINGS:
        return STRINGS[key]
    if "enum" in schema:
        options = [v for v in schema["enum"] if v is not None and v != schema.get("default")]
        return options[-1]
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    if "boolean" in kinds:
        return not schema.get("default")
    low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
    high = schema.get("maximum", low + 1000)
    if "integer" in kinds:
        return int(low + (high - low) // 3)
    return round(low + (high - low) / 3, 3)


def full_values() -> dict:
    """Every settings key of every section set, plus every secret reference."""
    schema = generate.build_schema()["properties"]
    values: dict = {
        "settings": {k: sample(k, s) for k, s in schema["settings"]["properties"].items()},
        "kafka": {"sasl": {"existingSecret": "kafka-user", "passwordKey": "password"},
                  "tls": {"ca": {"existingSecret": "kafka-ca", "key": "ca.crt"},
                          "client": {"existingSecret": "kafka-client", "certificateKey": "tls.crt", "keyKey": "tls.key",
                                     "keyPasswordKey": "key.password"}}},
        "matcher": {"qdrant": {"existingSecret": "qdrant", "apiKeyKey": "key"}},
        "dispatch": {"webhook": {"existingSecret": "webhook", "tokenKey": "token", "signingSecretKey": "signing-secret"}},
        "signing": {"existingSecret": "signing"},
        "review": {"oidc": {"existingSecret": "oidc", "clientSecretKey": "secret", "caExistingSecret": "oidc-ca"}},
    }
    values["settings"]["kafkaSecurityProtocol"] = "SASL_SSL"
    common = set(schema["settings"]["properties"])
    for section in [*SERVICES, *generate.JOBS]:
        props = schema[section]["properties"]["settings"]["properties"]
        values.setdefault(section, {})["settings"] = {k: sample(k, s) for k, s in props.items() if k not in common}
    return values


def container_env(container: dict, configmaps: dict[str, dict]) -> dict[str, str]:
    env = {}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "secretKeyRef" in item["valueFrom"]:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = f"secret:{ref['name']}/{ref['key']}"
        else:
            ref = item["valueFrom"]["configMapKeyRef"]
            env[item["name"]] = configmaps[ref["name"]]["data"][ref["key"]]
    return env


def load_from_env(monkeypatch, cls, env: dict[str, str]):
    """The settings class as the service loads it, from exactly this environment."""
    import os

    for key in list(os.environ):
        if key.startswith("LFR_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return load_settings(cls)


def test_values_map_one_to_one_onto_the_settings_classes(monkeypatch):
    values = full_values()
    docs = render(values)
    configmaps = by_kind(docs, "ConfigMap")
    workloads = {service: by_kind(docs, "Deployment")[name(service)]["spec"]["template"]["spec"] for service in SERVICES}
    workloads["watchlistPurge"] = by_kind(docs, "CronJob")[name("watchlist-purge")]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    workloads["deploymentSweep"] = by_kind(docs, "CronJob")[name("deployment-sweep")]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    secret_env = {"LFR_KAFKA_SASL_PASSWORD": "secret:kafka-user/password",
                  "LFR_KAFKA_SSL_KEY_PASSWORD": "secret:kafka-client/key.password"}
    tls_env = {"LFR_KAFKA_SSL_CA_LOCATION": "/etc/openlfr/kafka-tls/ca.crt",
               "LFR_KAFKA_SSL_CERTIFICATE_LOCATION": "/etc/openlfr/kafka-tls/client.crt",
               "LFR_KAFKA_SSL_KEY_LOCATION": "/etc/openlfr/kafka-tls/client.key"}
    for section, spec in workloads.items():
        cls = SETTINGS_CLASSES[section]
        (container,) = spec["containers"]
        env = container_env(container, configmaps)
        merged = {**values["settings"], **values[section]["settings"]}
        expected = {f"LFR_{generate.camel_to_field(k).upper()}" for k in merged} | set(secret_env) | set(tls_env)
        signing = {"LFR_KEYRING_FILE", "LFR_SIGNING_KEY_FILE", "LFR_SIGNING_KEY_PASSPHRASE"}
        keyring = {"LFR_KEYRING_FILE"}  # services that only verify get the keyring, not a key
        extra = {"ingest": {"LFR_CAMERAS_FILE", *keyring}, "detect": keyring, "embed": keyring, "deployment-events": keyring,
                 "matcher": {"LFR_QDRANT_API_KEY", *signing}, "watchlistPurge": signing, "deploymentSweep": signing,
                 "dispatch": {"LFR_WEBHOOK_TOKEN", "LFR_WEBHOOK_SIGNING_SECRET", *keyring},
                 "review": {"LFR_HTTP_HOST", "LFR_HTTP_PORT", "LFR_STATE_DIR", "LFR_USERS_FILE", "LFR_OIDC_CLIENT_SECRET", "LFR_OIDC_CA_FILE", *signing}}
        assert set(env) == expected | extra.get(section, set()), section
        for key, value in {**secret_env, **tls_env}.items():
            assert env[key] == value, (section, key)
        if "LFR_WEBHOOK_SIGNING_SECRET" in env:  # a secretKeyRef here; the service gets the Secret's whsec_ value
            env = {**env, "LFR_WEBHOOK_SIGNING_SECRET": "whsec_" + "A" * 44}
        loaded = load_from_env(monkeypatch, cls, env)
        for key, value in merged.items():
            field = generate.camel_to_field(key)
            got = getattr(loaded, field)
            if key == "matchThresholds":
                assert json.loads(got) == value
                Thresholds.parse(0.5, got)
            else:
                assert got == value, (section, key, got, value)
        assert loaded.kafka_sasl_password.get_secret_value() == "secret:kafka-user/password"
    review = workloads["review"]
    assert container_env(review["containers"][0], configmaps)["LFR_OIDC_CA_FILE"] == "/etc/openlfr/oidc-ca/ca.crt"
    assert {"name": "oidc-ca", "mountPath": "/etc/openlfr/oidc-ca", "readOnly": True} in review["containers"][0]["volumeMounts"]
    assert {"name": "oidc-ca", "secret": {"secretName": "oidc-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}} in review["volumes"]
    mounts = {m["name"]: m for m in workloads["detect"]["containers"][0]["volumeMounts"]}
    assert mounts["kafka-tls"] == {"name": "kafka-tls", "mountPath": "/etc/openlfr/kafka-tls", "readOnly": True}
    (projected,) = [v for v in workloads["detect"]["volumes"] if v["name"] == "kafka-tls"]
    items = [(s["secret"]["name"], i["key"], i["path"]) for s in projected["projected"]["sources"] for i in s["secret"]["items"]]
    assert items == [("kafka-ca", "ca.crt", "ca.crt"), ("kafka-client", "tls.crt", "client.crt"), ("kafka-client", "tls.key", "client.key")]


def test_test_pods_and_topics_job_read_the_shared_kafka_settings(monkeypatch):
    values = full_values()
    values["topicsJob"] = {"enabled": True, "replicationFactor": 3}
    docs = render(values)
    configmaps = by_kind(docs, "ConfigMap")
    job = by_kind(docs, "Job")[name("topics")]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["lfr", "topics", "apply", "--replication-factor", "3", "--force", STRINGS["force"]]
    for spec in (job["spec"]["template"]["spec"], by_kind(docs, "Pod")[name("test-kafka")]["spec"]):
        loaded = load_from_env(monkeypatch, lfr_settings.KafkaSettings, container_env(spec["containers"][0], configmaps))
        assert loaded.kafka_bootstrap_servers == STRINGS["kafkaBootstrapServers"]
        assert loaded.kafka_security_protocol == "SASL_SSL" and loaded.kafka_sasl_username == "svc-openlfr"


def test_large_numbers_render_as_integers_not_exponents(monkeypatch):
    docs = render({"detect": {"settings": {"maxFramePixels": 33554432, "maxAbsYaw": 0.3}}})
    (container,) = by_kind(docs, "Deployment")[name("detect")]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["LFR_MAX_FRAME_PIXELS"] == "33554432" and env["LFR_MAX_ABS_YAW"] == "0.3"


def test_cameras_file_and_thresholds_come_from_the_configmap(tmp_path):
    cameras = [{"id": "north-1", "deployment_id": "van-1", "source": "rtsp://10.1.2.3:554/s1", "fps": 12.5},
               {"id": "south-2", "deployment_id": "van-1", "source": "folder:/data/frames", "jpeg_quality": 90}]
    values = {"ingest": {"cameras": cameras}, "matcher": {"settings": {"matchThresholds": {"suspect": 0.55}}}}
    docs = render(values)
    config = by_kind(docs, "ConfigMap")[name("config")]["data"]
    (tmp_path / "cameras.json").write_text(config["cameras.json"])
    loaded = load_cameras(tmp_path / "cameras.json")
    assert list(loaded) == ["north-1", "south-2"] and loaded["north-1"].fps == 12.5
    assert Thresholds.parse(0.5, config["match-thresholds.json"]).for_category("suspect") == 0.55
    ingest = by_kind(docs, "Deployment")[name("ingest")]["spec"]["template"]["spec"]
    (mount,) = [m for m in ingest["containers"][0]["volumeMounts"] if m["name"] == "cameras"]
    assert mount == {"name": "cameras", "mountPath": "/etc/openlfr/cameras", "readOnly": True}  # no subPath: live updates
    (volume,) = [v for v in ingest["volumes"] if v["name"] == "cameras"]
    assert volume["configMap"]["name"] == name("config")
    env = {e["name"]: e.get("value") for e in ingest["containers"][0]["env"]}
    assert env["LFR_CAMERAS_FILE"] == "/etc/openlfr/cameras/cameras.json"
    # A new threshold rolls the matcher (env var); the cameras file is applied live.
    before = by_kind(docs, "Deployment")[name("matcher")]["spec"]["template"]["metadata"]["annotations"]
    after = by_kind(render({"matcher": {"settings": {"matchThresholds": {"suspect": 0.6}}}}), "Deployment")[name("matcher")]
    assert after["spec"]["template"]["metadata"]["annotations"]["checksum/thresholds"] != before["checksum/thresholds"]
    # Stream credentials: the cameras file from a Secret instead.
    docs = render({"ingest": {"camerasExistingSecret": "cameras-with-credentials"}})
    ingest = by_kind(docs, "Deployment")[name("ingest")]["spec"]["template"]["spec"]
    (volume,) = [v for v in ingest["volumes"] if v["name"] == "cameras"]
    assert volume["secret"]["secretName"] == "cameras-with-credentials"


def test_secrets_are_only_ever_references():
    docs = render(all_features("keda"))
    assert "Secret" not in {d["kind"] for d in docs}
    secret_vars = {"LFR_KAFKA_SASL_PASSWORD", "LFR_KAFKA_SSL_KEY_PASSWORD", "LFR_QDRANT_API_KEY", "LFR_WEBHOOK_TOKEN",
                   "LFR_WEBHOOK_SIGNING_SECRET", "LFR_SIGNING_KEY_PASSPHRASE",
                   "LFR_KAFKA_SASL_USERNAME"}
    seen = set()
    for spec in pod_specs(docs).values():
        for container in spec["containers"]:
            for item in container.get("env", []):
                if item["name"] in secret_vars:
                    assert set(item) == {"name", "valueFrom"} and "secretKeyRef" in item["valueFrom"], item
                    seen.add(item["name"])
    assert seen == secret_vars


# -- refusals -------------------------------------------------------------------------------

BAD_VALUES = {
    "negative replicas": {"detect": {"replicas": -1}},
    "two ingest replicas": {"ingest": {"replicas": 2}},
    "unknown log level": {"settings": {"logLevel": "TRACE"}},
    "unknown security protocol": {"settings": {"kafkaSecurityProtocol": "TLS"}},
    "KEDA and HPA together": {"autoscaling": {"keda": {"enabled": True}, "hpa": {"enabled": True}}},
    "privileged metrics port": {"settings": {"metricsPort": 80}},
    "metrics port off": {"settings": {"metricsPort": 0}},
    "metrics port out of range": {"detect": {"settings": {"metricsPort": 70000}}},
    "metrics port as a string": {"settings": {"metricsPort": "9100"}},
    "batch above the detect bound": {"detect": {"settings": {"batchMaxMessages": 257}}},
    "threshold above 1": {"matcher": {"settings": {"matchThresholdDefault": 1.5}}},
    "unknown threshold category": {"matcher": {"settings": {"matchThresholds": {"shoplifter": 0.4}}}},
    "a typo in a settings key": {"embed": {"settings": {"batchMaxMesages": 8}}},
    "a typo at the top": {"detcet": {"replicas": 2}},
    "an inline Kafka password": {"settings": {"kafkaSaslPassword": "hunter2"}},
    "an inline Qdrant API key": {"matcher": {"settings": {"qdrantApiKey": "hunter2"}}},
    "an inline webhook token": {"dispatch": {"settings": {"webhookToken": "hunter2"}}},
    "a bad topic name": {"dispatch": {"settings": {"inputTopic": "lfr matches"}}},
    "a camera with fps 500": {"ingest": {"cameras": [{"id": "c1", "deployment_id": "d", "source": "x.mp4", "fps": 500}]}},
    "a webhook URL that is not http": {"dispatch": {"settings": {"webhookUrl": "ftp://example.org/hook"}}},
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_the_values_schema_rejects_bad_values(case):
    with pytest.raises(helm().HelmValuesError):
        render(BAD_VALUES[case])


INCONSISTENT_VALUES = {
    "SASL without a Secret": ({"settings": {"kafkaSecurityProtocol": "SASL_SSL", "kafkaSaslMechanism": "PLAIN",
                                            "kafkaSaslUsername": "u"}}, "kafka.sasl.existingSecret"),
    "SASL without a mechanism": ({"settings": {"kafkaSecurityProtocol": "SASL_PLAINTEXT", "kafkaSaslUsername": "u"},
                                  "kafka": {"sasl": {"existingSecret": "s"}}}, "kafkaSaslMechanism"),
    "TLS files on a plaintext listener": ({"kafka": {"tls": {"ca": {"existingSecret": "ca"}}}}, "kafka.tls"),
    "heartbeat above a third of the session": ({"detect": {"settings": {"sessionTimeoutMs": 6000, "heartbeatIntervalMs": 3000}}},
                                               "heartbeatIntervalMs"),
    "KEDA on SASL without a TriggerAuthentication": ({"settings": {"kafkaSecurityProtocol": "SASL_SSL", "kafkaSaslMechanism": "PLAIN",
                                                                   "kafkaSaslUsername": "u"},
                                                      "kafka": {"sasl": {"existingSecret": "s"}},
                                                      "autoscaling": {"keda": {"enabled": True}}}, "triggerAuthenticationRef"),
    "a webhook token without a webhook": ({"dispatch": {"webhook": {"existingSecret": "w"}}}, "webhookUrl"),
    "a NetworkPolicy with Kafka egress to anywhere": ({"networkPolicy": {"enabled": True}}, "networkPolicy.kafka.to"),
    "a NetworkPolicy with Qdrant egress to anywhere": ({"networkPolicy": {"enabled": True, "kafka": {"to": [{"podSelector": {}}]}},
                                                        "matcher": {"settings": {"qdrantUrl": "http://q:6333"}}}, "networkPolicy.qdrant.to"),
    "a NetworkPolicy with webhook egress to anywhere": ({"networkPolicy": {"enabled": True, "kafka": {"to": [{"podSelector": {}}]},
                                                                         "qdrant": {"to": [{"podSelector": {}}]}},
                                                         "dispatch": {"settings": {"webhookUrl": "https://h/x"}}}, "networkPolicy.webhook.to"),
}


@pytest.mark.parametrize("case", sorted(INCONSISTENT_VALUES))
def test_the_templates_refuse_inconsistent_values(case):
    values, message = INCONSISTENT_VALUES[case]
    with pytest.raises(helm().HelmRenderError, match=message):
        render(values)


# -- helm test hooks ---------------------------------------------------------------------------


def test_helm_test_hooks_run_the_shipped_scripts():
    pods = by_kind(render(), "Pod")
    for component, script in (("test-kafka", "kafka-roundtrip.py"), ("test-metrics", "metrics-check.py")):
        pod = pods[name(component)]
        assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
        assert pod["spec"]["restartPolicy"] == "Never"
        (container,) = pod["spec"]["containers"]
        assert container["command"] == ["python", "-c"]
        assert container["args"][0].strip() == (CHART / "files" / script).read_text(encoding="utf-8").strip()


def test_chart_metadata():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert f'version = "{chart["appVersion"]}"' in pyproject
    assert chart["icon"].startswith("https://") and (ROOT / "docs" / chart["icon"].rsplit("/", 1)[1]).is_file()
    assert chart["maintainers"] and all(m["name"] and m["email"] for m in chart["maintainers"])
    assert chart["sources"] and chart["annotations"]["artifacthub.io/license"] == "Apache-2.0"
    images = yaml.safe_load(chart["annotations"]["artifacthub.io/images"])
    assert images == [{"name": "openlfr", "image": f"openlfr/openlfr:{chart['appVersion']}"}]
    for key in ("artifacthub.io/links", "artifacthub.io/changes"):
        assert all(item.get("url") or item.get("description") for item in yaml.safe_load(chart["annotations"][key]))
    # `helm show readme` prints the chart's own README, with the generated settings reference.
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    assert "<!-- settings-table:begin" in readme and "`LFR_LIVENESS_TIMEOUT_S`" in readme


@pytest.mark.parametrize("autoscaler", ["keda", "hpa"])
def test_no_container_sets_an_env_var_twice(autoscaler):
    for where, spec in pod_specs(render(all_features(autoscaler))).items():
        for container in spec["containers"]:
            names = [item["name"] for item in container.get("env", [])]
            assert len(names) == len(set(names)), (where, sorted(n for n in names if names.count(n) > 1))
