"""serve, engine transformers: Hugging Face ``transformers serve`` pinned to the model.

- ``transformers serve NAME`` preloads NAME before it answers HTTP and then lists and answers
  for that name only. NAME must be the served model name (what clients and the Agent send), so
  it is a link to the model directory in a fresh working directory: transformers takes an
  existing local path as it is.
- The flag list is parsed by transformers' own CLI (its typer command) before anything
  starts, so a bad flag fails the pod at once with its message.
- The model is always a local directory and pods must not reach a hub, so the server runs with
  the Hugging Face hub offline and its PyPI update check off.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..config import ServeSpec
from ..report import StageError

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_UPDATE_CHECK": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}


def build_args(spec: ServeSpec) -> list[str]:
    """The arguments after ``transformers serve``: the served name, then the operator's flags
    (``--port``/``--host`` added when the list does not carry them)."""
    args = [str(spec.served_model_name), *spec.args]
    if "--port" not in args:
        args += ["--port", str(spec.port)]
    if "--host" not in args:
        args += ["--host", "0.0.0.0"]
    return args


def validate_with_transformers(args: list[str]) -> dict[str, Any]:
    """Parse the arguments with transformers' own ``serve`` command (typer);
    StageError with its message on error. Returns the parsed parameters."""
    try:
        import typer
        import typer.main
        from transformers.cli.serve import Serve
        from typer.exceptions import TyperException
    except ImportError as e:
        raise StageError(f"transformers serve is not available in this image: {e}") from e
    # the serve command alone, as transformers' CLI registers it (the whole CLI imports more)
    app = typer.Typer()
    app.command(name="serve")(Serve)
    serve = typer.main.get_command(app)
    try:
        ctx = serve.make_context("transformers serve", list(args), resilient_parsing=False)
    except TyperException as e:  # typer's own click: usage errors, bad values
        msg = e.format_message() if hasattr(e, "format_message") else str(e)
        raise StageError(f"transformers serve rejects the arguments: {msg}") from e
    return dict(ctx.params)


def link_model(name: str, model_path: str, workdir: Path) -> Path:
    """``workdir/name`` -> the model directory (what ``transformers serve name`` loads)."""
    link = workdir / name
    link.symlink_to(Path(model_path).resolve(), target_is_directory=True)
    return link


def launch(spec: ServeSpec) -> tuple[list[str], int, str, dict[str, str]]:
    """(argv, port, working directory, env) of the server."""
    if not Path(spec.model_path).is_dir():
        raise StageError(
            f"modelPath {spec.model_path} is not a directory: transformers serve loads a local "
            "model directory (config.json, weights, tokenizer)"
        )
    args = build_args(spec)
    params = validate_with_transformers(args)
    workdir = Path(tempfile.mkdtemp(prefix="transformers-serve-"))
    link_model(str(spec.served_model_name), spec.model_path, workdir)
    # the module rather than the `transformers` script: the interpreter running this stage is
    # the image's, wherever its bin/ is on PATH
    argv = [sys.executable, "-m", "transformers.cli.transformers", "serve", *args]
    return argv, int(params["port"]), str(workdir), {**os.environ, **OFFLINE_ENV}
