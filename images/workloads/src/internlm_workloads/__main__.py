"""``python -m internlm_workloads <stage>``: load the config, run the stage, report the result.

Exit codes: 0 success; 1 a permanent failure (bad config, missing input, tool failure), with
``ok: false`` and a one-line reason in the termination message; 128+N when stopped by signal N.

``python -m internlm_workloads fetch`` fetches the input in ``INTERNLM_INPUTS`` (hub repos,
S3 objects: the ``fetch-<input>`` init containers); a stage reports what they fetched
(``INTERNLM_FETCHED_DIR``) and, once it succeeded, uploads its output directory to
``INTERNLM_OUTPUT_URI`` (S3) (``transfer.py``).
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback

from . import transfer
from .config import STAGES, ConfigError, load_config
from .report import StageError, Terminated, log, one_line, start_progress_server, write_termination


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    stage = argv[0] if argv else os.environ.get("INTERNLM_STAGE", "")
    if stage in ("-h", "--help"):
        print(__doc__)
        print("stages:", ", ".join(STAGES))
        return 0
    if stage == "fetch":
        return transfer.main()
    if stage not in STAGES:
        write_termination({"ok": False, "reason": f"unknown stage {stage!r}; one of {STAGES}"})
        return 2
    try:
        cfg = load_config(os.environ.get("INTERNLM_CONFIG", "/etc/internlm/config.json"), stage)
        module = importlib.import_module(f".stages.{stage}", __package__)
        start_progress_server()
        result = dict(module.run(cfg) or {})
        fetched = transfer.fetched_records()
        uploaded = transfer.upload_output(os.environ.get("INTERNLM_OUTPUT_DIR") or cfg.output_dir)
        if fetched:
            result["fetched"] = fetched
        if uploaded:
            result["uploaded"] = uploaded
    except ConfigError as e:
        write_termination({"ok": False, "reason": f"bad config: {e}"})
        return 1
    except StageError as e:
        write_termination({"ok": False, "reason": e.reason, **e.extra})
        return e.exit_code
    except Terminated as e:
        write_termination({"ok": False, "reason": str(e), **e.extra})
        return 128 + e.signum
    except KeyboardInterrupt:
        write_termination({"ok": False, "reason": "interrupted"})
        return 130
    except Exception as e:  # a bug or an unexpected tool error: still one line, still permanent
        traceback.print_exc()
        write_termination({"ok": False, "reason": one_line(f"{type(e).__name__}: {e}")})
        return 1
    log(f"{stage} finished")
    write_termination({"ok": True, **result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
