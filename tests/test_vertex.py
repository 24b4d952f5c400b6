"""Submitting to Vertex AI and to a KFP cluster, checked offline.

The real aiplatform client and the real ``kfp.Client`` talk to a local fake HTTP
endpoint that records every request and answers like the service would; the
tests assert on the captured request bodies. Config errors must be caught
before any request is made.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import yaml

import submit
from pipelines import vertex
from poisonlab.errors import PoisonlabError
from tests.conftest import ROOT, run_command

PROJECT, REGION, ROOT_URI = "demo-proj", "us-central1", "gs://demo-bucket/root"
IMAGE = "us-central1-docker.pkg.dev/demo-proj/poisonlab/poisonlab:1.0"
BASE = ["--project", PROJECT, "--region", REGION, "--pipeline-root", ROOT_URI]


class FakeApi:
    """A local HTTP endpoint: records requests, answers with ``respond(method, path, body)``."""

    def __init__(self, respond: Callable[[str, str, dict], tuple[int, dict]]):
        self.requests: list[tuple[str, str, dict]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else {}
                api.requests.append((method, self.path, body))
                status, answer = respond(method, self.path, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FakeVertex:
    """Answers like Vertex AI's pipelineJobs REST API; ``final`` is the state a GET reports."""

    def __init__(
        self,
        final: str = "PIPELINE_STATE_SUCCEEDED",
        results_uri: str | None = None,
        job: dict | None = None,
        refuse: bool = False,
    ):
        self.final, self.results_uri, self.refuse = final, results_uri, refuse
        self.job: dict = job or {}  # a job that exists already, for --fetch-results
        self.api = FakeApi(self.respond)

    def respond(self, method: str, path: str, body: dict) -> tuple[int, dict]:
        route, _, query = path.partition("?")
        created = re.fullmatch(r"/v1/(projects/[^/]+/locations/[^/]+)/pipelineJobs", route)
        if self.refuse:
            message = "Permission 'aiplatform.pipelineJobs.create' denied on resource"
            return 403, {"error": {"code": 403, "message": message, "status": "PERMISSION_DENIED"}}
        if method == "POST" and created:
            job_id = parse_qs(query)["pipelineJobId"][0]
            name = f"{created[1]}/pipelineJobs/{job_id}"
            self.job = {**body, "name": name, "state": "PIPELINE_STATE_PENDING"}
            return 200, self.job
        if method == "GET" and self.job and route == f"/v1/{self.job['name']}":
            answer = {**self.job, "state": self.final}
            if self.results_uri:
                answer["jobDetail"] = {
                    "taskDetails": [
                        {
                            "taskName": "report",
                            "state": "SUCCEEDED",
                            "outputs": {"results": {"artifacts": [{"uri": self.results_uri}]}},
                        }
                    ]
                }
            if self.final == "PIPELINE_STATE_FAILED":
                answer["error"] = {
                    "code": 9,
                    "message": "The DAG failed because task mirror failed.",
                }
            return 200, answer
        return 404, {
            "error": {"code": 404, "message": f"no {method} {path}", "status": "NOT_FOUND"}
        }

    @property
    def posts(self) -> list[dict]:
        return [body for method, path, body in self.api.requests if method == "POST"]


@pytest.fixture
def fake_vertex(monkeypatch) -> Iterator[Callable[..., FakeVertex]]:
    """Point the real aiplatform client at a FakeVertex; no GCS bucket creation offline."""
    import google.auth.credentials
    from google.cloud import aiplatform
    from google.cloud.aiplatform import initializer
    from google.cloud.aiplatform.utils import gcs_utils

    # Offline, submit() would stall for about a minute trying to create the bucket.
    monkeypatch.setattr(
        gcs_utils,
        "create_gcs_bucket_for_pipeline_artifacts_if_it_does_not_exist",
        lambda **kwargs: None,
    )
    fakes: list[FakeVertex] = []

    def start(**kwargs) -> FakeVertex:
        fake = FakeVertex(**kwargs)
        aiplatform.init(
            project=PROJECT,
            location=REGION,
            api_endpoint=fake.api.url,
            api_transport="rest",
            credentials=google.auth.credentials.AnonymousCredentials(),
        )
        fakes.append(fake)
        return fake

    yield start
    initializer.global_config.__init__()
    for fake in fakes:
        fake.api.close()


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> str:
    """One compiled pipeline shared by the tests that submit (compiling takes seconds)."""
    from pipelines.poisoning import compile_pipeline

    path = tmp_path_factory.mktemp("template") / "pipeline.yaml"
    compile_pipeline(str(path), IMAGE)
    return str(path)


# --- dry run -----------------------------------------------------------------------------


def test_dry_run_prints_request_body_without_credentials(tmp_path):
    """Must-hold 1: no credentials, the JSON body, gcsOutputDirectory and the poison levels."""
    env = {"GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "none.json"), "HOME": str(tmp_path)}
    result = run_command("submit.py", "--dry-run", *BASE, env=env)
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    runtime = body["runtimeConfig"]
    assert runtime["gcsOutputDirectory"] == ROOT_URI
    assert runtime["parameterValues"]["poison_levels"] == [0.0, 0.05, 0.1, 0.5]
    config = json.loads(runtime["parameterValues"]["config"])
    assert config["vertex"]["project"] == PROJECT
    assert body["pipelineSpec"]["pipelineInfo"]["name"] == "poisonlab-sweep"
    assert "nothing was sent" in result.stderr


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--set", "poison.levels=[0.1,2]"], "poison.levels[1]"),
        (["--label", "Team=ML"], "vertex.labels"),
    ],
)
def test_dry_run_rejects_bad_input_in_one_line(args, field):
    """Must-hold 2: a bad level or a label Vertex would refuse: exit 2, one line, no JSON."""
    result = run_command("submit.py", "--dry-run", *BASE, *args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and field in lines[0]


@pytest.mark.parametrize(
    "labels",
    [{"Team": "ml"}, {"team": "x" * 64}, {"9team": "ml"}, {"team": "ML"}, {"k" * 64: "v"}],
)
def test_labels_that_break_vertex_rules(labels):
    with pytest.raises(PoisonlabError, match="vertex.labels.*Vertex's rules"):
        vertex.check_labels(labels)


def test_label_flags():
    assert vertex.parse_label_flags(["team=ml", "empty="]) == {"team": "ml", "empty": ""}
    with pytest.raises(PoisonlabError, match="--label"):
        vertex.parse_label_flags(["team"])


def _config(**vertex_settings) -> dict:
    from poisonlab.config import load_config

    overrides = [f"vertex.{k}={json.dumps(v)}" for k, v in vertex_settings.items()]
    return load_config(None, overrides)


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"project": "Demo_Proj"}, "vertex.project"),
        ({"region": "us central"}, "vertex.region"),
        ({"pipeline_root": "/tmp/root"}, "vertex.pipeline_root"),
        ({"pipeline_root": "gs://Bad_Bucket!/root"}, "vertex.pipeline_root"),
        ({"service_account": "not-an-email"}, "vertex.service_account"),
        ({"network": "default"}, "vertex.network"),
        ({"job_id": "Job_1"}, "vertex.job_id"),
        ({"experiment": "My Experiment"}, "vertex.experiment"),
        ({"enable_caching": "yes"}, "vertex.enable_caching"),
        ({"labels": {f"k{i}": "v" for i in range(65)}}, "vertex.labels"),
        ({"labels": ["team"]}, "vertex.labels"),
    ],
)
def test_check_vertex_names_the_field(settings, field):
    base = {"project": PROJECT, "pipeline_root": ROOT_URI}
    with pytest.raises(PoisonlabError, match=re.escape(field)):
        vertex.check_vertex(_config(**{**base, **settings}))


def test_check_vertex_rejects_local_data_and_secrets():
    config = _config(project=PROJECT, pipeline_root=ROOT_URI)
    config["dataset"]["source"] = "data/iris.csv"
    with pytest.raises(PoisonlabError, match="local file.*gs://"):
        vertex.check_vertex(config)
    config["dataset"]["source"] = "gs://demo-bucket/"
    with pytest.raises(PoisonlabError, match="dataset.source"):
        vertex.check_vertex(config)
    config["dataset"]["source"] = "gs://demo-bucket/iris.parquet"
    config["mlflow"]["tracking_uri"] = "https://me:secret@mlflow.example.com"
    with pytest.raises(PoisonlabError, match="MLFLOW_TRACKING_USERNAME"):
        vertex.check_vertex(config)


def test_check_vertex_accepts_a_full_setting():
    settings = vertex.check_vertex(
        _config(
            project=PROJECT,
            pipeline_root=ROOT_URI,
            service_account="runner@demo-proj.iam.gserviceaccount.com",
            network="projects/123456/global/networks/my-vpc",
            labels={"team": "ml", "cost_center": "r-and-d", "empty": ""},
            job_id="sweep-1",
            enable_caching=False,
        )
    )
    assert settings.labels == {"team": "ml", "cost_center": "r-and-d", "empty": ""}
    assert settings.enable_caching is False and settings.job_id == "sweep-1"


def test_real_submit_needs_an_image(monkeypatch):
    monkeypatch.delenv("POISONLAB_IMAGE", raising=False)
    with pytest.raises(PoisonlabError, match="vertex.image is not set"):
        submit.main([*BASE])


def test_template_must_take_this_pipelines_parameters(tmp_path, template):
    other = yaml.safe_load(Path(template).read_text())
    other["root"]["inputDefinitions"]["parameters"] = {"x": {"parameterType": "STRING"}}
    bad = tmp_path / "other.yaml"
    bad.write_text(yaml.safe_dump(other))
    with pytest.raises(PoisonlabError, match="--template"):
        submit.main([*BASE, "--template", str(bad)])
    with pytest.raises(PoisonlabError, match="no such file"):
        submit.main([*BASE, "--template", str(tmp_path / "missing.yaml")])


# --- submission captured offline ------------------------------------------------------------


def _without_caching(spec):
    """A pipeline spec without its tasks' ``cachingOptions``."""
    if isinstance(spec, dict):
        return {k: _without_caching(v) for k, v in spec.items() if k != "cachingOptions"}
    if isinstance(spec, list):
        return [_without_caching(v) for v in spec]
    return spec


def test_submit_sends_the_checked_job(fake_vertex, template, capsys):
    """The POST body: template, parameters, pipeline root, service account, labels, network."""
    fake = fake_vertex()
    code = submit.main(
        [
            *BASE,
            "--template",
            template,
            "--service-account",
            "runner@demo-proj.iam.gserviceaccount.com",
            "--network",
            "projects/123456/global/networks/my-vpc",
            "--label",
            "team=ml",
            "--label",
            "sweep=iris-1",
            "--job-id",
            "sweep-test-1",
            "--no-cache",
            "--set",
            "poison.levels=[0.0,0.3]",
        ]
    )
    assert code == 0
    [(method, path, body)] = fake.api.requests
    assert method == "POST"
    route, _, query = path.partition("?")
    assert route == f"/v1/projects/{PROJECT}/locations/{REGION}/pipelineJobs"
    assert parse_qs(query)["pipelineJobId"] == ["sweep-test-1"]
    compiled = yaml.safe_load(Path(template).read_text())
    # The template as compiled; only the tasks' caching options differ (--no-cache).
    assert _without_caching(body["pipelineSpec"]) == _without_caching(compiled)
    runtime = body["runtimeConfig"]
    assert runtime["gcsOutputDirectory"] == ROOT_URI
    assert runtime["parameterValues"]["poison_levels"] == [0.0, 0.3]
    sent_config = json.loads(runtime["parameterValues"]["config"])
    assert sent_config["poison"]["levels"] == [0.0, 0.3]
    assert body["serviceAccount"] == "runner@demo-proj.iam.gserviceaccount.com"
    assert body["network"] == "projects/123456/global/networks/my-vpc"
    assert body["labels"] == {"team": "ml", "sweep": "iris-1"}
    # --no-cache turns caching off for every task.
    executors = body["pipelineSpec"]["root"]["dag"]["tasks"]
    assert all(not task.get("cachingOptions", {}).get("enableCache") for task in executors.values())
    out = capsys.readouterr().out
    assert (
        f"https://console.cloud.google.com/vertex-ai/locations/{REGION}/pipelines/runs/"
        f"sweep-test-1?project={PROJECT}" in out
    )


def test_submit_compiles_with_the_given_image(fake_vertex):
    fake = fake_vertex()
    assert submit.main([*BASE, "--image", IMAGE]) == 0
    [body] = fake.posts
    images = {
        e["container"]["image"]
        for e in body["pipelineSpec"]["deploymentSpec"]["executors"].values()
    }
    assert images == {IMAGE}
    # The compiled job carries no credentials: nothing that looks like a key or token.
    text = json.dumps(body)
    assert "private_key" not in text and "MLFLOW_TRACKING_TOKEN" not in text


@pytest.mark.parametrize(
    "args",
    [
        ["--set", "poison.levels=[0.1,2]"],
        ["--label", "Team=ML"],
        ["--service-account", "runner"],
        ["--pipeline-root", "demo-bucket/root"],
        ["--set", "dataset.source=./iris.csv"],
    ],
)
def test_bad_input_sends_nothing(fake_vertex, template, args):
    fake = fake_vertex()
    with pytest.raises(PoisonlabError):
        submit.main([*BASE, "--template", template, *args])
    assert fake.api.requests == []


def test_refused_request_is_one_line(fake_vertex, template):
    fake_vertex(refuse=True)
    with pytest.raises(PoisonlabError, match=r"refused the request \(HTTP 403\).*denied"):
        submit.main([*BASE, "--template", template])


def test_wait_reports_failure_and_exits_non_zero(fake_vertex, template, capsys, tmp_path):
    fake = fake_vertex(final="PIPELINE_STATE_FAILED")
    code = submit.main([*BASE, "--template", template, "--wait", "--output-dir", str(tmp_path)])
    assert code == 1
    captured = capsys.readouterr()
    assert "final state: PIPELINE_STATE_FAILED" in captured.out
    assert "console.cloud.google.com" in captured.out
    assert "mirror failed" in captured.err
    assert [m for m, _, _ in fake.api.requests][:2] == ["POST", "GET"]
    assert list(tmp_path.iterdir()) == []


def test_wait_success_prints_state(fake_vertex, template, capsys, tmp_path):
    fake_vertex(final="PIPELINE_STATE_SUCCEEDED")
    # Succeeded, but the fake reports no report task: a clear error, not a silent exit 0.
    with pytest.raises(PoisonlabError, match="no results artifact"):
        submit.main([*BASE, "--template", template, "--wait", "--output-dir", str(tmp_path)])
    assert "final state: PIPELINE_STATE_SUCCEEDED" in capsys.readouterr().out


# --- a self-hosted KFP cluster --------------------------------------------------------------


class FakeKfp:
    """Answers like the KFP v2beta1 REST API."""

    def __init__(self, final: str = "SUCCEEDED"):
        self.final = final
        self.api = FakeApi(self.respond)

    def respond(self, method: str, path: str, body: dict) -> tuple[int, dict]:
        route = path.split("?")[0]
        if route == "/apis/v2beta1/healthz":
            return 200, {"multi_user": False}
        if method == "GET" and route == "/apis/v2beta1/experiments":
            return 200, {}
        if method == "POST" and route == "/apis/v2beta1/experiments":
            return 200, {"experiment_id": "exp-1", "display_name": body["display_name"]}
        if method == "POST" and route == "/apis/v2beta1/runs":
            return 200, {**body, "run_id": "run-1", "state": "PENDING"}
        if method == "GET" and route == "/apis/v2beta1/runs/run-1":
            return 200, {"run_id": "run-1", "state": self.final}
        return 404, {"error": f"no {method} {path}"}


@pytest.fixture
def fake_kfp(monkeypatch, tmp_path) -> Iterator[Callable[..., FakeKfp]]:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.config/kfp context from this machine
    fakes: list[FakeKfp] = []

    def start(**kwargs) -> FakeKfp:
        fakes.append(FakeKfp(**kwargs))
        return fakes[-1]

    yield start
    for fake in fakes:
        fake.api.close()


@pytest.mark.parametrize(("final", "code"), [("SUCCEEDED", 0), ("FAILED", 1)])
def test_kfp_host_submits_the_run(fake_kfp, template, capsys, final, code, monkeypatch):
    monkeypatch.setenv("POISONLAB_KFP_TOKEN", "t0ken")
    fake = fake_kfp(final=final)
    args = ["--kfp-host", fake.api.url, "--template", template, "--wait"]
    assert submit.main([*args, "--set", "poison.levels=[0.0,0.2]", "--experiment", "iris"]) == code
    runs = [
        (p, b)
        for m, p, b in fake.api.requests
        if m == "POST" and p.startswith("/apis/v2beta1/runs")
    ]
    [(_, run)] = runs
    assert run["experiment_id"] == "exp-1"
    assert run["runtime_config"]["parameters"]["poison_levels"] == [0.0, 0.2]
    sent = json.loads(run["runtime_config"]["parameters"]["config"])
    assert sent["poison"]["levels"] == [0.0, 0.2]
    compiled = yaml.safe_load(Path(template).read_text())
    assert run["pipeline_spec"]["root"] == json.loads(json.dumps(compiled["root"]))
    experiments = [b for m, p, b in fake.api.requests if m == "POST" and "experiments" in p]
    assert experiments[0]["display_name"] == "iris"
    out = capsys.readouterr().out
    assert f"final state: {final}" in out and f"{fake.api.url}/#/runs/details/run-1" in out


def test_kfp_host_errors_are_one_line(fake_kfp, template):
    fake = fake_kfp()
    with pytest.raises(PoisonlabError, match="http"):
        submit.main(["--kfp-host", "kfp.example.com", "--template", template])
    with pytest.raises(PoisonlabError, match="poison.levels"):
        submit.main(["--kfp-host", fake.api.url, "--set", "poison.levels=[2]"])
    assert fake.api.requests == []
    fake.api.close()
    with pytest.raises(PoisonlabError, match="cannot reach"):
        submit.main(["--kfp-host", fake.api.url, "--template", template])


def test_template_compiled_by_compile_py_is_accepted(tmp_path):
    """A user's flow: compile once, dry-run submit that YAML."""
    path = tmp_path / "p.yaml"
    assert run_command("compile.py", "--output", str(path), "--image", IMAGE).returncode == 0
    result = run_command("submit.py", "--dry-run", *BASE, "--template", str(path), cwd=ROOT)
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    executors = body["pipelineSpec"]["deploymentSpec"]["executors"].values()
    assert {e["container"]["image"] for e in executors} == {IMAGE}


def test_kfp_dry_run_sends_nothing(fake_kfp, capsys):
    fake = fake_kfp()
    assert submit.main(["--kfp-host", fake.api.url, "--dry-run", "--label", "team=ml"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["arguments"]["poison_levels"] == [0.0, 0.05, 0.1, 0.5]
    assert fake.api.requests == []


@pytest.mark.parametrize(
    "args, difference",
    [
        (["--image", "us-docker.pkg.dev/other/repo/img:2"], "step's image: "),
        (["--set", "vertex.resources={train: {cpu: 16}}"], "the train step's resources: not set"),
        (["--set", "vertex.parallelism=3"], "for-loop-1's parallelism: not set"),
    ],
)
def test_a_template_that_would_not_run_as_the_plan_says_sends_nothing(
    fake_vertex, template, args, difference
):
    """A template runs the image, machines and parallelism it was compiled with: --image
    or vertex.resources given beside it were dropped silently, while the plan printed
    from the config described the machines asked for."""
    fake = fake_vertex()
    with pytest.raises(PoisonlabError) as error:
        submit.main([*BASE, "--template", template, *args])
    assert str(error.value).startswith(f"--template {template}: ")
    assert difference in str(error.value) and "compile it again" in str(error.value)
    assert fake.api.requests == []
    submit.main([*BASE, "--template", template, "--image", IMAGE])  # as compiled: sent
    assert len(fake.api.requests) == 1
