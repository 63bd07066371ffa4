"""Loading and fetching the writer's GPT-2 (TFGPT2LMHeadModel and its tokenizer).

The model is loaded from a local folder in save_pretrained layout, once per process: TensorFlow takes
seconds to import and the weights about 2 GB of RAM, so a second load would be pure waste. Nothing
heavy happens at import time; tensorflow and transformers are imported inside the functions.
`fetch_model` is the only code that talks to the Hugging Face hub (`flask writer fetch`).

The writer's compiled XLA programs can be kept across restarts in XLA's persistent compilation
cache (`use_xla_cache`): TensorFlow reads its TF_XLA_FLAGS once, when it starts, so the cache is
set up here, in the one place that imports TensorFlow for the writer, just before that import.
"""
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ...src.nativelog import quiet_native_startup

log = logging.getLogger(__name__)

TF_WEIGHTS = "tf_model.h5"
PT_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
# What the writer needs and nothing else: the hub's gpt2 repository also holds PyTorch, Flax,
# ONNX, Rust and Core ML weights, several GB the app would never read.
FETCH_FILES = ("config.json", "generation_config.json", TF_WEIGHTS, *TOKENIZER_FILES)
FETCH_HELP = "`flask writer fetch` installs one"
# WRITER_XLA_CACHE_DIR's default: this folder beside the writer's model folder, i.e. on the
# models volume wherever the models are kept (/models/xla-cache in production).
XLA_CACHE_FOLDER = "xla-cache"
XLA_CACHE_OFF = "off"
_XLA_CACHE_FLAG = "--tf_xla_persistent_cache_directory"


class ModelNotInstalled(Exception):
    """The model folder is missing or lacks the files a GPT-2 needs."""


class ModelFetchFailed(Exception):
    """The model could not be downloaded; the message says why, without a traceback."""


@dataclass(frozen=True)
class LoadedModel:
    """The tokenizer, the TF model and what identifies them (for the autodoc's reproducibility stamp)."""

    tokenizer: object
    model: object
    info: dict = field(default_factory=dict)


_cache = {}
_cache_lock = threading.Lock()


def load_model(model_dir, *, intra_op_threads=None, inter_op_threads=None, xla_cache_dir=None):
    """The model in `model_dir`, loaded on the first call in this process and cached by folder.

    `intra_op_threads`/`inter_op_threads` set TensorFlow's thread pools (None keeps TF's default of
    one thread per core). They are process-wide and only take effect before TensorFlow's runtime
    starts, i.e. on the first load; the web app shares the machine's cores with the writer, so a
    deployment can leave one core to the requests. `xla_cache_dir` turns on XLA's persistent
    compilation cache there (use_xla_cache; process-wide too, first load only). Raises
    ModelNotInstalled when the folder is missing or incomplete.
    """
    key = str(Path(model_dir).resolve())
    with _cache_lock:
        if key not in _cache:
            _cache[key] = _load(Path(key), intra_op_threads, inter_op_threads, xla_cache_dir)
        return _cache[key]


@dataclass(frozen=True)
class XlaCache:
    """XLA's persistent compilation cache of this process: its folder, None when there is none
    (`problem` then says why)."""

    folder: Path | None
    problem: str | None = None

    def entries(self):
        """The names of the compiled programs now in the folder: a compilation adds one, a
        program loaded from the cache adds none (how the writer tells a cache hit)."""
        if self.folder is None:
            return frozenset()
        try:
            return frozenset(entry.name for entry in self.folder.iterdir() if entry.suffix == ".pb")
        except OSError:
            return frozenset()


_xla_cache = XlaCache(None, "not set up in this process")
_xla_cache_ready = False
_xla_cache_lock = threading.Lock()


def xla_cache_folder(setting, model_dir):
    """The folder WRITER_XLA_CACHE_DIR names: the setting itself, None when it says "off", and
    when empty `xla-cache` beside the model folder `model_dir` (on the models volume)."""
    if setting == XLA_CACHE_OFF:
        return None
    return Path(setting) if setting else Path(model_dir).resolve().parent / XLA_CACHE_FOLDER


def xla_cache():
    """The XlaCache in force in this process."""
    return _xla_cache


def use_xla_cache(folder):
    """Keep this process's XLA programs in a subfolder of `folder` and reuse the ones a previous
    process left there; the XlaCache in force. Once per process (later calls return the first
    answer): TensorFlow reads TF_XLA_FLAGS once, when it starts, so this must run before then.

    An operator's own `--tf_xla_persistent_cache_directory` in TF_XLA_FLAGS wins; their other
    flags are kept. A folder that cannot be created or written means no cache, with one warning
    line, never a failed start: the writer then compiles on every start, as it did before.
    """
    global _xla_cache, _xla_cache_ready
    with _xla_cache_lock:
        if _xla_cache_ready:
            return _xla_cache
        _xla_cache_ready = True
        flags = os.environ.get("TF_XLA_FLAGS", "")
        operators = re.search(rf"{_XLA_CACHE_FLAG}=(\S+)", flags)
        if operators:
            _xla_cache = XlaCache(Path(operators.group(1)))
        else:
            _xla_cache = _prepare_xla_cache(Path(folder))
        if _xla_cache.folder is None:
            log.warning("XLA compilation cache off: %s; the writer compiles its programs on every start",
                        _xla_cache.problem, extra={"event": "xla_cache_off", "reason": _xla_cache.problem})
            return _xla_cache
        if not operators:
            os.environ["TF_XLA_FLAGS"] = f"{flags} {_XLA_CACHE_FLAG}={_xla_cache.folder}".strip()
        late = "tensorflow" in sys.modules  # imported already: it may have read TF_XLA_FLAGS
        log.info("XLA compilation cache in %s (%d programs)%s", _xla_cache.folder, len(_xla_cache.entries()),
                 "; TensorFlow was imported before it was set up, so it may not apply" if late else "",
                 extra={"event": "xla_cache", "folder": str(_xla_cache.folder), "programs": len(_xla_cache.entries()),
                        "set_by": "TF_XLA_FLAGS" if operators else "WRITER_XLA_CACHE_DIR", "late": late})
        return _xla_cache


def _prepare_xla_cache(folder):
    """The XlaCache in a subfolder of `folder` named after this machine (_machine_key), made
    if needed and checked by writing a file into it (permissions, a read-only mount, a full
    disk, uid 10001 in the production image); XlaCache(None, why) when that fails."""
    target = folder / _machine_key()
    try:
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target, prefix=".write-check-"):
            pass
    except OSError as error:
        return XlaCache(None, f"cannot write to {target} ({type(error).__name__}: {error.strerror or error})")
    return XlaCache(target)


def _machine_key():
    """The name of this machine's subfolder of the cache. The cached programs are machine code
    for this CPU, made by this TensorFlow with these XLA options, and TensorFlow only logs a
    warning when it loads one made for another CPU (an instruction this one lacks would then
    crash the process): a models volume moved to, or shared with, other hosts gets a
    subfolder per kind of machine. Computed without importing TensorFlow."""
    from importlib import metadata

    distributions = metadata.packages_distributions().get("tensorflow") or ["tensorflow"]
    try:
        tf_version = metadata.version(distributions[0])
    except metadata.PackageNotFoundError:
        tf_version = "unknown"
    identity = "\n".join([_cpu_flags(), platform.machine(), tf_version, os.environ.get("XLA_FLAGS", "")])
    return f"tf{tf_version}-{platform.machine()}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"


def _cpu_flags():
    """The CPU's feature flags (Linux), else what the platform says of the processor."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            return next((line for line in cpuinfo if line.startswith("flags")), "")
    except OSError:
        return platform.processor()


def forget_model(model_dir):
    """Drop the cached model of `model_dir`, so that the next load_model reads the folder again
    and the memory goes once nobody holds the old one (the writer switching models)."""
    with _cache_lock:
        _cache.pop(str(Path(model_dir).resolve()), None)


def _load(path, intra_op_threads, inter_op_threads, xla_cache_dir):
    weights = _check_folder(path)
    if xla_cache_dir is not None:
        use_xla_cache(xla_cache_dir)  # before TensorFlow starts: it reads TF_XLA_FLAGS once
    started = time.perf_counter()
    with quiet_native_startup():
        import tensorflow as tf
        from transformers import GPT2Tokenizer, GPT2TokenizerFast, TFGPT2LMHeadModel
    import_seconds = time.perf_counter() - started

    _configure_threads(tf, intra_op_threads, inter_op_threads)
    try:
        tokenizer = GPT2TokenizerFast.from_pretrained(path)
    except (ImportError, OSError, ValueError) as error:  # e.g. the `tokenizers` library is missing
        log.warning("fast tokenizer unavailable in %s (%s); using GPT2Tokenizer", path, error)
        tokenizer = GPT2Tokenizer.from_pretrained(path)
    from_pt = weights[0].name != TF_WEIGHTS
    model = TFGPT2LMHeadModel.from_pretrained(path, from_pt=from_pt)
    load_seconds = time.perf_counter() - started
    info = {
        "name": _model_name(model.config, path),
        "path": str(path),
        "weights": [weights_file.name for weights_file in weights],
        "weights_sha256": _sha256(weights),
        "load_seconds": round(load_seconds, 2),  # TensorFlow's import included
        "import_seconds": round(import_seconds, 2),
        "tf_threads": {
            "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
        },
    }
    log.info("loaded GPT-2 %s from %s in %.1f s (importing TensorFlow %.1f s)", info["name"], path, load_seconds,
             import_seconds, extra={"event": "model_loaded", "load_seconds": info["load_seconds"],
                                    "import_seconds": info["import_seconds"]})
    return LoadedModel(tokenizer=tokenizer, model=model, info=info)


def _model_name(config, path):
    """The hub name when the config carries one, else the folder's name (`gpt2` for the default folder)."""
    name = config._name_or_path
    return name if name and not Path(name).exists() else path.name


def _check_folder(path):
    """The weights file(s) to load; ModelNotInstalled naming what is missing otherwise."""
    if not path.is_dir():
        raise ModelNotInstalled(f"No GPT-2 model folder at {path}; {FETCH_HELP}.")
    missing = [name for name in ("config.json",) if not (path / name).is_file()]
    if not ((path / "tokenizer.json").is_file() or all((path / name).is_file() for name in TOKENIZER_FILES[:2])):
        missing.append("tokenizer.json or vocab.json + merges.txt")
    weights = [path / TF_WEIGHTS] if (path / TF_WEIGHTS).is_file() else [path / name for name in PT_WEIGHTS
                                                                       if (path / name).is_file()][:1]
    if not weights:
        missing.append(f"{TF_WEIGHTS} (or PyTorch weights with torch installed)")
    if missing:
        raise ModelNotInstalled(f"The GPT-2 model folder {path} is incomplete (missing {', '.join(missing)}); "
                                f"{FETCH_HELP}.")
    if weights[0].name != TF_WEIGHTS:
        try:
            import torch  # noqa: F401  (only needed by transformers' PyTorch-to-TF conversion)
        except ImportError:
            raise ModelNotInstalled(
                f"{path} holds only PyTorch weights ({weights[0].name}) and torch is not installed to convert "
                f"them; {FETCH_HELP} with TF weights ({TF_WEIGHTS})."
            ) from None
    return weights


def registrable_config(path):
    """config.json of the GPT-2 folder at `path` as a dict, when the folder can be registered: a
    save_pretrained GPT-2 (model_type gpt2) with TF weights and a tokenizer. ModelNotInstalled
    naming what is wrong otherwise. Reads no weights and imports no ML library."""
    path = Path(path)
    if not path.is_dir():
        raise ModelNotInstalled(f"{path} is not a folder.")
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelNotInstalled(f"{path} is not a save_pretrained model folder: it has no config.json.") from None
    except (OSError, ValueError) as error:
        raise ModelNotInstalled(f"{path}/config.json cannot be read: {error}") from None
    if not isinstance(config, dict) or config.get("model_type") != "gpt2":
        kind = config.get("model_type") if isinstance(config, dict) else None
        raise ModelNotInstalled(f"{path} does not hold a GPT-2 (its config.json says model_type {kind!r}).")
    missing = [key for key in ("n_layer", "n_head", "n_embd", "n_positions", "vocab_size")
               if not isinstance(config.get(key), int)]
    if missing:
        raise ModelNotInstalled(f"{path}/config.json lacks {', '.join(missing)}.")
    if not (path / TF_WEIGHTS).is_file():
        raise ModelNotInstalled(f"{path} has no TensorFlow weights ({TF_WEIGHTS}); the writer loads only those.")
    if not ((path / "tokenizer.json").is_file() or all((path / name).is_file() for name in TOKENIZER_FILES[:2])):
        raise ModelNotInstalled(f"{path} has no tokenizer (tokenizer.json, or vocab.json and merges.txt).")
    return config


def _configure_threads(tf, intra_op_threads, inter_op_threads):
    """Apply the thread settings if TensorFlow's runtime has not started yet; warn when too late."""
    wanted = {"intra": intra_op_threads, "inter": inter_op_threads}
    setters = {"intra": tf.config.threading.set_intra_op_parallelism_threads,
               "inter": tf.config.threading.set_inter_op_parallelism_threads}
    for kind, threads in wanted.items():
        if threads is None:
            continue
        try:
            setters[kind](threads)
        except RuntimeError:  # the runtime is already initialised (an earlier load in this process)
            log.warning("TensorFlow already started: %s-op threads stay as they are", kind)


def _sha256(files):
    """sha256 over the weights file(s), computed once per load (the files are hundreds of MB)."""
    digest = hashlib.sha256()
    for weights_file in files:
        with open(weights_file, "rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def hub_reachable(timeout=3):
    """True when the Hugging Face hub answers within `timeout` seconds (for the quick start)."""
    import requests
    from huggingface_hub.constants import ENDPOINT

    try:
        requests.head(ENDPOINT, timeout=timeout, allow_redirects=False)
    except requests.RequestException:
        return False
    return True


def fetch_model(model_name, target_dir, progress=True):
    """Download `model_name` from the hub into `target_dir` (TF weights, config and tokenizer only).

    The files go to a temporary folder next to the target and are moved into place only when all
    arrived, so a broken download never leaves a half-installed model that load_model would try to
    read. Any network or hub error raises ModelFetchFailed with a short message. huggingface_hub
    draws its own tqdm progress bars unless `progress` is False.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    target = Path(target_dir).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-fetch-", dir=target.parent))
    if not progress:
        disable_progress_bars()
    try:
        snapshot_download(repo_id=model_name, local_dir=staging, allow_patterns=list(FETCH_FILES))
        _check_folder(staging)
        shutil.rmtree(staging / ".cache", ignore_errors=True)  # huggingface_hub's download metadata
        _replace_folder(staging, target)
    except ModelNotInstalled as error:
        raise ModelFetchFailed(f"{model_name} on the hub lacks files the writer needs: {error}") from None
    except Exception as error:  # requests, huggingface_hub and OS errors alike: report, never a traceback
        raise ModelFetchFailed(_fetch_error_message(model_name, error)) from None
    finally:
        if not progress:
            enable_progress_bars()
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _replace_folder(new, target):
    """Put `new` at `target`; an existing model is swapped out, then removed."""
    if target.exists():
        old = target.with_name(f".{target.name}-old-{os.getpid()}")
        os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, target)


def _fetch_error_message(model_name, error):
    from huggingface_hub.constants import ENDPOINT
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    if isinstance(error, GatedRepoError):
        return f"Could not fetch {model_name}: the model is gated and needs a Hugging Face token."
    if isinstance(error, RepositoryNotFoundError):
        return f"Could not fetch {model_name}: no such model on the Hugging Face hub."
    if isinstance(error, LocalEntryNotFoundError) or not hub_reachable():
        return (f"Could not fetch {model_name}: the Hugging Face hub ({ENDPOINT}) cannot be reached "
                "(offline, blocked by a proxy or HF_HUB_OFFLINE is set).")
    return f"Could not fetch {model_name}: {type(error).__name__}: {error}"
