"""Stand-in for the `lmdeploy` launcher on machines without a GPU (LMDeploy inference is
CUDA-only). Takes `serve api_server <args>`, parses them with LMDeploy's own CLI parser (the
real one, installed in the serve environment), then serves the model with transformers'
generate through helpers/openai_server.py on the parsed --server-port. On SIGTERM it records
the signal in $STANDIN_SIGNAL_FILE, takes a moment to "drain", and exits 0.
"""

import json
import os
import runpy
import signal
import sys
import time
from pathlib import Path

from lmdeploy.cli.cli import CLI
from lmdeploy.cli.lite import SubCliLite
from lmdeploy.cli.serve import SubCliServe

CLI.add_parsers()
SubCliServe.add_parsers()
SubCliLite.add_parsers()
args = CLI.parser.parse_args(sys.argv[1:])
assert sys.argv[1:3] == ["serve", "api_server"], sys.argv
Path(os.environ["STANDIN_ARGS_FILE"]).write_text(json.dumps(vars(args), default=str))


def on_term(signum, _frame):
    Path(os.environ["STANDIN_SIGNAL_FILE"]).write_text(signal.Signals(signum).name)
    time.sleep(0.5)
    os._exit(0)


signal.signal(signal.SIGTERM, on_term)
signal.signal(signal.SIGINT, on_term)
name = args.model_name or "internlm2-tiny"
sys.argv = [
    "openai_server.py",
    "--model",
    args.model_path,
    "--port",
    str(args.server_port),
    "--name",
    name,
]
runpy.run_path(str(Path(__file__).with_name("openai_server.py")), run_name="__main__")
