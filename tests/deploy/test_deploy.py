"""deploy/ recipes: configs parse, cluster objects build, manifests validate structurally."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _docs(path: Path) -> list[dict]:
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def _walltime_minutes(text: str) -> int:
    h, m, s = (int(v) for v in text.split(":"))
    return h * 60 + m + (s > 0)


def _minutes(text: str) -> int:
    assert text.endswith("m"), text
    return int(text[:-1])


# ---------------------------------------------------------------------------- slurm
@pytest.fixture
def jobqueue_config():
    import dask

    with open(DEPLOY / "slurm" / "jobqueue.yaml") as f:
        cfg = yaml.safe_load(f)
    with dask.config.set(cfg):
        yield cfg


@pytest.mark.parametrize("name", ["slurm-cpu", "slurm-gpu"])
def test_jobqueue_lifetime_below_walltime(jobqueue_config, name):
    section = jobqueue_config["jobqueue"][name]
    args = section["worker-extra-args"]
    lifetime = _minutes(args[args.index("--lifetime") + 1])
    stagger = _minutes(args[args.index("--lifetime-stagger") + 1])
    assert lifetime + stagger <= _walltime_minutes(section["walltime"])
    assert section["scheduler-options"]["dashboard_address"].startswith("127.0.0.1:")


@pytest.mark.parametrize("name", ["slurm-cpu", "slurm-gpu"])
def test_slurm_cluster_builds_and_job_script_has_flags(jobqueue_config, name):
    pytest.importorskip("dask_jobqueue")
    from dask_jobqueue import SLURMCluster

    # port 0: a free port, so concurrent test runs never collide on 8787
    with SLURMCluster(
        config_name=name, scheduler_options={"dashboard_address": "127.0.0.1:0"}
    ) as cluster:
        script = cluster.job_script()
        bound = {s.getsockname()[0] for s in cluster.scheduler.http_server._sockets.values()}
        assert bound == {"127.0.0.1"}  # the dashboard listens on loopback only
    section = jobqueue_config["jobqueue"][name]
    assert script.startswith("#!/usr/bin/env bash")
    assert f"#SBATCH -p {section['queue']}" in script
    assert f"#SBATCH -t {section['walltime']}" in script
    assert "distributed.cli.dask_worker" in script
    assert "--lifetime" in script and "--lifetime-stagger" in script
    if name == "slurm-gpu":
        assert "--resources GPU=1" in script
        assert "#SBATCH --gres=gpu:1" in script
        # one worker per GPU: a single worker process per one-GPU job
        assert "--nworkers" not in script or "--nworkers 1 " in script
        assert jobqueue_config["jobqueue"][name]["processes"] == 1
    else:
        assert "GPU" not in script


def test_gpu_submit_script_one_worker_per_gpu():
    text = (DEPLOY / "slurm" / "submit-gpu-workers.sbatch").read_text()
    directives = dict(
        line[len("#SBATCH ") :].split("=", 1)
        for line in text.splitlines()
        if line.startswith("#SBATCH") and "=" in line
    )
    gres = int(directives["--gres"].split(":")[-1].split()[0])
    tasks = int(directives["--ntasks-per-node"].split()[0])
    assert gres == tasks
    assert directives["--gpus-per-task"].split()[0] == "1"
    assert "--resources GPU=1" in text and "--nthreads 1" in text
    lifetime = int(text.split("--lifetime ")[1].split("m")[0])
    assert lifetime < _walltime_minutes(directives["--time"].split()[0])
    cpu = (DEPLOY / "slurm" / "submit-cpu-workers.sbatch").read_text()
    assert "--lifetime" in cpu and "--lifetime-stagger" in cpu


def test_runner_variant_uses_slurm_runner():
    import ast

    src = (DEPLOY / "slurm" / "runner.py").read_text()
    ast.parse(src)
    assert "from dask_jobqueue.slurm import SLURMRunner" in src
    assert "srun python deploy/slurm/runner.py" in (DEPLOY / "slurm" / "runner.sbatch").read_text()
    pytest.importorskip("dask_jobqueue")
    from dask_jobqueue.slurm import SLURMRunner  # noqa: F401 - the import the recipe relies on


# ---------------------------------------------------------------------------- kubernetes
_POD_KEYS = {"containers"}


def _check_pod_spec(spec: dict, where: str) -> list[dict]:
    assert _POD_KEYS <= set(spec), f"{where}: pod spec lacks {_POD_KEYS - set(spec)}"
    assert spec["securityContext"]["runAsNonRoot"] is True, where
    for c in spec["containers"]:
        assert {"name", "image"} <= set(c), where
        assert isinstance(c.get("args", []), list)
        assert all(isinstance(a, str) for a in c.get("args", [])), f"{where}: non-string arg"
    return spec["containers"]


def _check_dask_cluster_spec(spec: dict, name: str, where: str) -> None:
    assert spec["worker"]["replicas"] >= 1
    _check_pod_spec(spec["worker"]["spec"], f"{where} worker")
    _check_pod_spec(spec["scheduler"]["spec"], f"{where} scheduler")
    service = spec["scheduler"]["service"]
    assert service["type"] == "ClusterIP", "the scheduler must not be exposed outside"
    assert service["selector"] == {"dask.org/cluster-name": name, "dask.org/component": "scheduler"}
    ports = {p["port"] for p in service["ports"]}
    assert ports == {8786, 8787}


def _manifests() -> dict[str, dict]:
    out = {}
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in _docs(path):
            for key in ("apiVersion", "kind", "metadata", "spec"):
                assert key in doc, f"{path.name}: {doc.get('kind')} lacks {key}"
            assert doc["metadata"]["name"]
            out[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return out


def test_kubernetes_manifests_validate():
    docs = _manifests()
    assert set(docs) >= {
        "DaskCluster/cryoflow",
        "DaskWorkerGroup/cryoflow-gpu",
        "DaskJob/cryoflow-run",
        "NetworkPolicy/cryoflow-scheduler",
        "PersistentVolumeClaim/cryoflow-data",
    }
    api = {
        "DaskCluster": "kubernetes.dask.org/v1",
        "DaskWorkerGroup": "kubernetes.dask.org/v1",
        "DaskJob": "kubernetes.dask.org/v1",
        "NetworkPolicy": "networking.k8s.io/v1",
        "PersistentVolumeClaim": "v1",
    }
    for key, doc in docs.items():
        assert doc["apiVersion"] == api[doc["kind"]], key
    _check_dask_cluster_spec(docs["DaskCluster/cryoflow"]["spec"], "cryoflow", "DaskCluster")
    job = docs["DaskJob/cryoflow-run"]["spec"]
    assert job["job"]["spec"]["restartPolicy"] == "Never"
    (runner,) = _check_pod_spec(job["job"]["spec"], "DaskJob job")
    assert "cryoflow run" in " ".join(runner["args"])
    _check_dask_cluster_spec(job["cluster"]["spec"], "cryoflow-run", "DaskJob cluster")


def test_kubernetes_gpu_group_one_worker_per_gpu():
    docs = _manifests()
    group = docs["DaskWorkerGroup/cryoflow-gpu"]["spec"]
    assert group["cluster"] == "cryoflow"
    (worker,) = _check_pod_spec(group["worker"]["spec"], "gpu group")
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    args = worker["args"]
    assert args[args.index("--resources") + 1] == "GPU=1"
    assert args[args.index("--nthreads") + 1] == "1"
    cpu = docs["DaskCluster/cryoflow"]["spec"]["worker"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in cpu["resources"]["limits"]


def test_network_policy_guards_scheduler():
    pol = _manifests()["NetworkPolicy/cryoflow-scheduler"]["spec"]
    assert pol["podSelector"]["matchLabels"]["dask.org/component"] == "scheduler"
    assert pol["policyTypes"] == ["Ingress"]
    (rule,) = pol["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"dask.org/cluster-name": "cryoflow"}}}]
    assert {p["port"] for p in rule["ports"]} == {8786, 8787}


# ---------------------------------------------------------------------------- docker
def test_compose_publishes_on_loopback_only():
    (compose,) = _docs(DEPLOY / "docker" / "compose.yaml")
    services = compose["services"]
    assert {"scheduler", "worker"} <= set(services)
    published = []
    for name, svc in services.items():
        assert svc.get("user", "").startswith("1000"), f"{name} must not run as root"
        for port in svc.get("ports", []):
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), (name, port)
            published.append(int(port.split(":")[1]))
    assert sorted(published) == [8786, 8787]  # comm and dashboard
    assert services["worker"]["command"][:3] == ["dask", "worker", "tcp://scheduler:8786"]


def test_dockerfile_runs_as_non_root():
    lines = [ln.strip() for ln in (DEPLOY / "docker" / "Dockerfile").read_text().splitlines()]
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    last_from = max(i for i, ln in enumerate(lines) if ln.startswith("FROM "))
    assert any(ln.startswith("USER ") for ln in lines[last_from:])


def test_readme_covers_every_recipe():
    text = (DEPLOY / "README.md").read_text()
    for word in ("slurm/", "kubernetes/", "docker/", "ssh -N -L", "port-forward", "127.0.0.1"):
        assert word in text
