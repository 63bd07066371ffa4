"""deploy/kubernetes/, checked offline: no cluster, no kustomize, nothing fetched.

- The resources are those deploy/kubernetes/base/kustomization.yaml lists, and it lists every
  manifest of the folder (a file left out would silently not be deployed).
- Every Kubernetes object validates against the OpenAPI schemas kubernetes-validate ships
  (strict: an unknown field is an error, not something the API server drops), for the oldest
  and the newest Kubernetes the manifests claim; KEDA's objects against the subset of its CRDs
  vendored in deploy/kubernetes/schemas/.
- They run what the compose files run (same image, entrypoint and commands), name only real
  settings of srcflask/config.py, take the secrets from the Secret only, carry probes and
  resources, and agree with each other (selectors, names, the TensorFlow threads and the CPU
  request, the grace periods and the code's shutdown times).
- The autoscaler's queue query runs on the migrated schema and counts what the writers have
  left to write.
"""
import functools
import json

import jsonschema
import pytest
import yaml
from dotenv import dotenv_values
from kubernetes_validate import utils as kubernetes_schemas
from sqlalchemy import text

from srcflask.config import ConfigurationError, Settings, load_settings
from srcflask.extensions import db

from .factories import make_document, make_user
from .prodstack import REPO_ROOT
from .test_compose_policies import COMPOSE_SETS, gunicorn_graceful_timeout, writer_stop_seconds
from .test_gpu_image import GPU_DOCKERFILE, dockerfile_env
from .test_production import compose_config, compose_folder, mounts  # noqa: F401  (fixture)

KUBERNETES = REPO_ROOT / "deploy" / "kubernetes"
BASE = KUBERNETES / "base"
GPU_OVERLAY = KUBERNETES / "overlays" / "gpu-writer"
SECRET_TEMPLATE = KUBERNETES / "secret.example.yaml"
KEDA_SCHEMA = KUBERNETES / "schemas" / "keda-v1alpha1.schema.json"
# The oldest Kubernetes the manifests are written for (every API they use is GA there) and the
# newest whose schemas kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_schemas.latest_version())
APP_IMAGE = "srcflask-web"
SECRET_NAME, SETTINGS_NAME = "srcflask-secrets", "srcflask-settings"
# Settings that are secrets: only ever from the Secret, never a ConfigMap or a literal.
SECRET_SETTINGS = {"SECRET_KEY", "DATABASE_URL", "METRICS_TOKEN", "MAIL_USERNAME", "MAIL_PASSWORD"}
REQUIRED_SECRETS = {"SECRET_KEY", "DATABASE_URL"}
# .env.prod's settings for what only the compose set-up runs, and why.
COMPOSE_ONLY = {
    "BACKUP_KEEP": "docker-compose.backup.yml's `flask backup create`; on Kubernetes the database's and the "
                   "volume's own snapshots back up (README, Kubernetes)",
}


# --- loading ------------------------------------------------------------------------------


def documents(path):
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


@functools.cache
def kustomization():
    return yaml.safe_load((BASE / "kustomization.yaml").read_text())


@functools.cache
def resources():
    """Every object kustomization.yaml deploys, in its order, as the files hold them."""
    return tuple(obj for name in kustomization()["resources"] for obj in documents(BASE / name))


def objects(kind):
    return {obj["metadata"]["name"]: obj for obj in resources() if obj["kind"] == kind}


def workloads():
    """(name, pod spec) of every Deployment and Job."""
    for kind in ("Deployment", "Job"):
        for name, obj in objects(kind).items():
            yield name, obj["spec"]["template"]["spec"]


def app_containers():
    """(workload, container) for each container of the app's own image."""
    for name, pod in workloads():
        for spec in pod["containers"]:
            if spec["image"] == APP_IMAGE:
                yield name, spec


def container(workload):
    (only,) = objects("Deployment")[workload]["spec"]["template"]["spec"]["containers"]
    return only


def env_of(container_spec):
    return {item["name"]: item for item in container_spec.get("env", [])}


# --- the folder and its kustomization --------------------------------------------------------


def test_kustomization_lists_every_manifest_and_nothing_else():
    listed = kustomization()["resources"]
    assert len(listed) == len(set(listed))
    on_disk = {path.name for path in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(listed) == on_disk
    # The template of the Secret lives outside base/: applying it would replace the real one.
    assert SECRET_TEMPLATE.parent != BASE and not any(obj["kind"] == "Secret" for obj in resources())
    assert kustomization()["namespace"] and objects("Namespace").keys() == {kustomization()["namespace"]}
    images = {image["name"] for image in kustomization()["images"]}
    assert images == {APP_IMAGE}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_matches_the_kubernetes_schemas(version):
    keda = [obj for obj in resources() if obj["apiVersion"].startswith("keda.sh/")]
    assert keda, "the writers' autoscaler is missing"
    for obj in [*resources(), *documents(SECRET_TEMPLATE)]:
        if obj in keda:
            continue
        try:
            kubernetes_schemas.validate(obj, version, strict=True)
        except kubernetes_schemas.ValidationError as invalid:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} (Kubernetes {version}): {invalid.caught.message} "
                        f"at {'.'.join(map(str, invalid.caught.absolute_path))}")


@functools.cache
def keda_schema():
    return json.loads(KEDA_SCHEMA.read_text())


def keda_errors(obj):
    schema = {**keda_schema(), "$ref": f"#/$defs/{obj['kind']}"}
    return [error.message for error in jsonschema.Draft202012Validator(schema).iter_errors(obj)]


def test_keda_objects_match_the_vendored_crd_schema():
    jsonschema.Draft202012Validator.check_schema(keda_schema())
    keda = [obj for obj in resources() if obj["apiVersion"].startswith("keda.sh/")]
    assert {obj["kind"] for obj in keda} == {"ScaledObject", "TriggerAuthentication"}
    for obj in keda:
        assert keda_errors(obj) == [], obj["metadata"]["name"]


def test_the_keda_schema_refuses_what_keda_would_not_run():
    """The vendored schema must be able to fail: a typo, a missing query, a trigger with no
    way to connect."""
    (scaled,) = objects("ScaledObject").values()
    typo = json.loads(json.dumps(scaled))
    typo["spec"]["maxReplicas"] = typo["spec"].pop("maxReplicaCount")
    no_query = json.loads(json.dumps(scaled))
    del no_query["spec"]["triggers"][0]["metadata"]["query"]
    no_connection = json.loads(json.dumps(scaled))
    del no_connection["spec"]["triggers"][0]["authenticationRef"]
    for broken in (typo, no_query, no_connection):
        assert keda_errors(broken)


# --- the same programs as the compose files ---------------------------------------------------


def test_workloads_run_what_the_compose_files_run(compose_folder):  # noqa: F811
    scaled = compose_config(compose_folder, *COMPOSE_SETS["scaled"])
    for name, spec in app_containers():
        # Never `command`: it would replace the image's entrypoint (settings check, wait for
        # the database, migrations under their lock), which compose keeps.
        assert "command" not in spec, f"{name} replaces the entrypoint"
    assert "args" not in container("web") and "command" not in scaled["web"]  # the image's gunicorn
    assert container("writer")["args"] == scaled["writer"]["command"]
    assert container("trainer")["args"] == scaled["trainer"]["command"]
    (job,) = objects("Job").values()
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["flask", "db", "upgrade"]
    assert {name for name, _ in app_containers()} == {"web", "writer", "trainer", job["metadata"]["name"]}
    assert all(scaled[name]["build"]["dockerfile"] == "Dockerfile.prod" for name in ("web", "writer", "trainer"))
    redis = container("redis")
    assert redis["image"] == scaled["redis"]["image"] and redis["args"] == scaled["redis"]["command"]
    # The models volume where compose mounts it.
    for name in ("web", "writer", "trainer"):
        volumes = {(mount["name"], mount["mountPath"]) for mount in container(name)["volumeMounts"]}
        assert volumes == {("models", "/models")} and volumes <= mounts(scaled[name])


def test_settings_are_the_committed_production_settings():
    """A setting added to .env.prod must be added here too, or named in COMPOSE_ONLY with why."""
    (settings,) = objects("ConfigMap").values()
    assert settings["metadata"]["name"] == SETTINGS_NAME
    committed = {key: value or "" for key, value in dotenv_values(REPO_ROOT / ".env.prod").items()
                 if key not in COMPOSE_ONLY}
    assert {key: settings["data"].get(key) for key in committed} == committed
    assert not COMPOSE_ONLY.keys() & settings["data"].keys()


def test_every_variable_named_is_a_real_setting():
    (settings,) = objects("ConfigMap").values()
    named = set(settings["data"])
    for _, spec in app_containers():
        named |= set(env_of(spec))
    unknown = named - set(Settings.model_fields)
    assert not unknown, f"not settings of srcflask/config.py (a typo?): {sorted(unknown)}"


def test_secrets_come_from_the_secret_only():
    (settings,) = objects("ConfigMap").values()
    assert not SECRET_SETTINGS & set(settings["data"])
    (template,) = documents(SECRET_TEMPLATE)
    assert template["metadata"]["name"] == SECRET_NAME
    for name, spec in app_containers():
        assert spec["envFrom"] == [{"configMapRef": {"name": SETTINGS_NAME}}], name
        env = env_of(spec)
        assert REQUIRED_SECRETS <= env.keys(), name
        for variable in SECRET_SETTINGS & env.keys():
            reference = env[variable]["valueFrom"]["secretKeyRef"]
            assert "value" not in env[variable] and reference["name"] == SECRET_NAME, (name, variable)
            assert reference["key"] in template["stringData"], (name, variable)
            assert reference.get("optional", False) == (variable not in REQUIRED_SECRETS), (name, variable)
    (authentication,) = objects("TriggerAuthentication").values()
    assert authentication["spec"]["secretTargetRef"] == [
        {"parameter": "connection", "name": SECRET_NAME, "key": "DATABASE_URL"}]


def test_the_settings_start_production_and_the_placeholders_do_not(monkeypatch):
    """What a pod's environment holds passes the app's own settings check: types, bounds and
    production's rules (the Redis counts). The template's placeholders are refused."""
    (settings,) = objects("ConfigMap").values()
    (template,) = documents(SECRET_TEMPLATE)
    for name in ("web", "writer"):
        environment = {**settings["data"], **{key: item["value"] for key, item in env_of(container(name)).items()
                                              if "value" in item}}
        with monkeypatch.context() as patch:
            for key, value in environment.items():
                patch.setenv(key, value)
            patch.setenv("DATABASE_URL", "postgresql://srcflask:real-password@db.internal:5432/srcflask")
            patch.setenv("SECRET_KEY", "k" * 64)
            loaded = load_settings()
            assert loaded.SRCFLASK_ENV == "production" and loaded.WRITER_IN_PROCESS == (name != "web")
            patch.setenv("SECRET_KEY", template["stringData"]["SECRET_KEY"])
            with pytest.raises(ConfigurationError, match="SECRET_KEY"):
                load_settings()


# --- probes, resources, shutdown -------------------------------------------------------------


def test_every_container_has_probes_and_resources():
    for name, pod in workloads():
        for spec in pod["containers"]:
            resources_ = spec["resources"]
            assert {"cpu", "memory"} <= resources_["requests"].keys() and "memory" in resources_["limits"], name
            if name in objects("Deployment"):
                assert "readinessProbe" in spec, name
    web = container("web")
    ports = {port["name"] for port in web["ports"]}
    paths = {probe: (web[probe]["httpGet"]["path"], web[probe]["httpGet"]["port"])
             for probe in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert paths == {"startupProbe": ("/healthz", "http"), "livenessProbe": ("/healthz", "http"),
                     "readinessProbe": ("/readyz", "http")} and "http" in ports
    startup = web["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300, "start-up may hold a long migration"
    # A database outage must restart nothing: liveness only where it touches nothing else.
    assert "livenessProbe" not in container("writer") and "livenessProbe" not in container("trainer")


def cpu_cores(quantity):
    quantity = str(quantity)
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def test_tensorflow_threads_match_the_writers_cpu_request():
    writer = container("writer")
    cores = cpu_cores(writer["resources"]["requests"]["cpu"])
    env = env_of(writer)
    assert int(env["WRITER_TF_INTRA_THREADS"]["value"]) == cores == int(env["WRITER_TF_INTER_THREADS"]["value"])
    # The trainer yields: a tenth of a writer's CPU weight at most, and the low priority class.
    trainer = objects("Deployment")["trainer"]
    assert cpu_cores(container("trainer")["resources"]["requests"]["cpu"]) <= cores / 10
    (priority,) = objects("PriorityClass").values()
    assert trainer["spec"]["template"]["spec"]["priorityClassName"] == priority["metadata"]["name"]
    assert priority["value"] < 0 and priority["preemptionPolicy"] == "Never"


def test_grace_periods_cover_the_codes_shutdown():
    web = objects("Deployment")["web"]["spec"]["template"]["spec"]
    pre_stop = web["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert web["terminationGracePeriodSeconds"] > int(pre_stop[1]) + gunicorn_graceful_timeout()
    for name in ("writer", "trainer"):
        pod = objects("Deployment")[name]["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] > writer_stop_seconds(), name


# --- the objects agree with each other ---------------------------------------------------------


def selected(selector):
    """The Deployments whose pods `selector` (a label map) selects."""
    return [name for name, deployment in objects("Deployment").items()
            if selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()]


def test_names_and_selectors_agree():
    for name, deployment in objects("Deployment").items():
        assert selected(deployment["spec"]["selector"]["matchLabels"]) == [name]
    for name, service in objects("Service").items():
        (target,) = selected(service["spec"]["selector"])
        ports = {port["name"] for spec in objects("Deployment")[target]["spec"]["template"]["spec"]["containers"]
                 for port in spec["ports"]}
        assert {port["targetPort"] for port in service["spec"]["ports"]} <= ports, name
    budgets = objects("PodDisruptionBudget")
    assert budgets.keys() == {"web", "writer"}
    for name, budget in budgets.items():
        assert selected(budget["spec"]["selector"]["matchLabels"]) == [name]
    # The rate limits' Redis is the Service the settings name.
    (settings,) = objects("ConfigMap").values()
    assert settings["data"]["RATELIMIT_STORAGE_URI"] == "redis://redis:6379/0" and "redis" in objects("Service")
    claims = set(objects("PersistentVolumeClaim"))
    for name, pod in workloads():
        assert {volume["persistentVolumeClaim"]["claimName"] for volume in pod.get("volumes", [])} <= claims, name
    assert objects("PersistentVolumeClaim")["models"]["spec"]["accessModes"] == ["ReadWriteMany"]


def test_writers_are_scaled_by_keda_alone():
    (scaled,) = objects("ScaledObject").values()
    assert scaled["spec"]["scaleTargetRef"]["name"] == "writer"
    # Two batches per writer: a writer that takes a batch still has the next one waiting.
    batch = Settings.model_fields["WRITER_BATCH_SIZE"].default
    assert "WRITER_BATCH_SIZE" not in env_of(container("writer"))
    assert float(scaled["spec"]["triggers"][0]["metadata"]["targetQueryValue"]) == 2 * batch
    assert "replicas" not in objects("Deployment")["writer"]["spec"], "apply would reset the autoscaler's choice"
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "postgresql"
    assert trigger["authenticationRef"]["name"] in objects("TriggerAuthentication")
    assert 1 <= scaled["spec"]["minReplicaCount"] < scaled["spec"]["maxReplicaCount"]


# --- the queue query on the real schema ---------------------------------------------------------


def queue_query():
    (scaled,) = objects("ScaledObject").values()
    return scaled["spec"]["triggers"][0]["metadata"]["query"]


def keda_count():
    """What KEDA reads: one integer from the query, as its PostgreSQL scaler runs it."""
    (row,) = db.session.execute(text(queue_query())).all()
    (value,) = row
    assert isinstance(value, int)
    return value


def test_the_queue_query_counts_what_the_writers_have_left(app_context):
    from srcflask.services import autodoc_queue
    from srcflask.services.archive import archive_document

    assert keda_count() == 0
    sponsor, editor = make_user("sponsor"), make_user("editor")
    saved = [make_document(sponsor, editor, title=f"Document {number}") for number in range(3)]
    assert keda_count() == 3
    archive_document(saved[1], sponsor)
    db.session.commit()
    assert keda_count() == 2, "an archived document's autodoc waits unwritten: no writer for it"
    jobs = autodoc_queue.claim_jobs("writer-test", 1, 60, 3)
    assert len(jobs) == 1 and keda_count() == 2, "a job being written still counts"
    autodoc_queue.complete_job(jobs[0], jobs[0].body, " written.", {"model": "tiny-gpt2"})
    db.session.commit()
    assert keda_count() == 1


# --- the GPU writers' overlay ------------------------------------------------------------------


def strategic_merge(base, patch):
    """kustomize's strategic merge as far as the overlay uses it: maps merge, lists of named
    items (containers, env) merge by name, other lists are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        return {**base, **{key: strategic_merge(base[key], value) if key in base else value
                           for key, value in patch.items()}}
    named = isinstance(base, list) and isinstance(patch, list) and all(
        isinstance(item, dict) and "name" in item for item in base + patch)
    if named:
        patches = {item["name"]: item for item in patch}
        known = {item["name"] for item in base}
        return [strategic_merge(item, patches[item["name"]]) if item["name"] in patches else item for item in base] \
            + [item for item in patch if item["name"] not in known]
    return patch


def json_patch(obj, operations):
    """RFC 6902 operations on `obj`: only `replace`, of a path that exists."""
    obj = json.loads(json.dumps(obj))
    for operation in operations:
        assert operation["op"] == "replace", f"teach this test {operation['op']}"
        *parents, last = [int(part) if part.isdigit() else part for part in operation["path"].strip("/").split("/")]
        holder = functools.reduce(lambda node, part: node[part], parents, obj)
        assert last in holder if isinstance(holder, dict) else last < len(holder), operation["path"]
        holder[last] = operation["value"]
    return obj


def identity(obj):
    return obj["kind"], obj["metadata"]["name"]


def patch_target(patch):
    if "path" in patch:
        (change,) = documents(GPU_OVERLAY / patch["path"])
        return identity(change)
    return patch["target"]["kind"], patch["target"]["name"]


def apply_patch(obj, patch):
    if "path" in patch:
        (change,) = documents(GPU_OVERLAY / patch["path"])
        return strategic_merge(obj, change)
    return json_patch(obj, yaml.safe_load(patch["patch"]))


@functools.cache
def gpu_overlay():
    """The overlay's kustomization and the base's objects with its patches applied."""
    overlay = yaml.safe_load((GPU_OVERLAY / "kustomization.yaml").read_text())
    assert overlay["resources"] == ["../../base"]
    built = [json.loads(json.dumps(obj)) for obj in resources()]
    for patch in overlay["patches"]:
        target = patch_target(patch)
        assert [identity(obj) for obj in built].count(target) == 1, f"{target} must be one object of the base"
        built = [apply_patch(obj, patch) if identity(obj) == target else obj for obj in built]
    return overlay, built


def test_gpu_overlay_builds_valid_objects():
    overlay, built = gpu_overlay()
    listed = {patch["path"] for patch in overlay["patches"] if "path" in patch}
    assert listed == {path.name for path in GPU_OVERLAY.glob("*.yaml")} - {"kustomization.yaml"}
    for obj in built:
        if obj["apiVersion"].startswith("keda.sh/"):
            assert keda_errors(obj) == [], obj["metadata"]["name"]
            continue
        for version in KUBERNETES_VERSIONS:
            kubernetes_schemas.validate(obj, version, strict=True)


def test_gpu_writers_run_the_gpu_image_on_a_gpu():
    overlay, built = gpu_overlay()
    by_kind = {identity(obj): obj for obj in built}
    (writer,) = by_kind["Deployment", "writer"]["spec"]["template"]["spec"]["containers"]
    assert {image["name"] for image in overlay["images"]} == {writer["image"]} == {"srcflask-web-gpu"}
    assert writer["args"] == container("writer")["args"] and env_of(writer) == env_of(container("writer"))
    assert int(writer["resources"]["limits"]["nvidia.com/gpu"]) == 1
    cores = cpu_cores(writer["resources"]["requests"]["cpu"])
    assert int(env_of(writer)["WRITER_TF_INTRA_THREADS"]["value"]) == cores
    # The batch is the GPU image's (its ENV); KEDA's target is two of them per writer.
    gpu_batch = int(dockerfile_env(GPU_DOCKERFILE)["WRITER_BATCH_SIZE"])
    assert int(dockerfile_env(GPU_DOCKERFILE)["WRITER_TF_INTRA_THREADS"]) == cores
    (trigger,) = by_kind["ScaledObject", "writer"]["spec"]["triggers"]
    assert float(trigger["metadata"]["targetQueryValue"]) == 2 * gpu_batch
    assert trigger["metadata"]["query"] == queue_query()
    # Nothing else changes: web, trainer and the rest are the base's.
    patched = {("Deployment", "writer"), ("ScaledObject", "writer")}
    unchanged = {key: obj for key, obj in by_kind.items() if key not in patched}
    assert list(unchanged.values()) == [obj for obj in resources() if identity(obj) in unchanged]
