"""The GPU writer image (Dockerfile.gpu), checked without building it (no Docker engine, no
GPU here): it must stay the production image with TensorFlow's CUDA build swapped in.

- requirements-gpu.txt pins the same TensorFlow release as requirements.txt's tensorflow_cpu,
  every package exactly, and the Dockerfile drops exactly the tensorflow_cpu line of the CPU lock;
- its entrypoint is the production image's, and the settings its ENV changes are real settings
  that production accepts.
"""
import re

from srcflask.config import Settings, load_settings

from .prodstack import WEB_ROOT

GPU_DOCKERFILE, PROD_DOCKERFILE = WEB_ROOT / "Dockerfile.gpu", WEB_ROOT / "Dockerfile.prod"


def instructions(path):
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [tuple(line.split(None, 1)) for line in joined.splitlines() if line.strip()]


def dockerfile_env(path):
    """The variables the final stage's ENV instructions set."""
    steps = instructions(path)
    final = max(number for number, (name, _) in enumerate(steps) if name == "FROM")
    return dict(pair.split("=", 1) for name, arguments in steps[final:] if name == "ENV" for pair in arguments.split())


def lock(path):
    return dict(line.split("==") for line in path.read_text().splitlines() if line and not line.startswith("#"))


def test_the_gpu_lock_is_the_cpu_locks_tensorflow_with_cuda():
    cpu, gpu = lock(WEB_ROOT / "requirements.txt"), lock(WEB_ROOT / "requirements-gpu.txt")
    assert gpu.pop("tensorflow") == cpu["tensorflow_cpu"]
    assert gpu and all(name.startswith("nvidia-") and name.endswith("-cu12") for name in gpu)
    assert all(re.fullmatch(r"\d+(\.\d+)+", version) for version in gpu.values())


def test_the_dockerfile_drops_only_tensorflow_cpu_from_the_cpu_lock():
    (build,) = [arguments for name, arguments in instructions(GPU_DOCKERFILE) if name == "RUN" and "grep" in arguments]
    pattern = re.search(r"grep -v '([^']+)' requirements\.txt", build)[1]
    dropped = [line for line in (WEB_ROOT / "requirements.txt").read_text().splitlines() if re.search(pattern, line)]
    assert dropped == ["tensorflow_cpu==" + lock(WEB_ROOT / "requirements.txt")["tensorflow_cpu"]]
    assert "-r requirements-gpu.txt" in build and "--no-deps" in build


def test_it_is_the_production_image_with_gpu_settings(monkeypatch):
    gpu, prod = dict(instructions(GPU_DOCKERFILE)), dict(instructions(PROD_DOCKERFILE))
    assert gpu["ENTRYPOINT"] == prod["ENTRYPOINT"] and gpu["USER"] == prod["USER"]
    assert gpu["CMD"] == '["flask", "writer", "run"]'
    gpu_env, prod_env = dockerfile_env(GPU_DOCKERFILE), dockerfile_env(PROD_DOCKERFILE)
    assert prod_env.items() <= gpu_env.items()
    changed = gpu_env.keys() - prod_env.keys() - {"TF_FORCE_GPU_ALLOW_GROWTH"}  # TensorFlow's own
    assert changed and changed <= Settings.model_fields.keys()
    for name, value in gpu_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SECRET_KEY", "k" * 64)
    monkeypatch.setenv("DATABASE_URL", "postgresql://srcflask:password@db:5432/srcflask")
    monkeypatch.setenv("RATELIMIT_STORAGE_URI", "redis://redis:6379/0")
    settings = load_settings()
    assert settings.WRITER_BATCH_SIZE > Settings.model_fields["WRITER_BATCH_SIZE"].default
