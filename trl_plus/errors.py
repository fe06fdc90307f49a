"""How the command line reports errors: one or two lines and an exit status, the traceback only when asked.

- a bad setting, dataset or path (`ValueError`, `TypeError`, `OSError`: what trl-plus, transformers, TRL and the
  hub client raise for them) prints `PROG: error: MESSAGE` and exits 2;
- training that stops on a NaN or infinite loss (`NonFiniteLossError`) prints the same way and exits 1;
- a closed pipe (`trl-plus losses | head`) ends quietly with status 141, as a command killed by SIGPIPE does;
- anything else is a bug and keeps its traceback.

`--debug` on the command line or `TRL_PLUS_DEBUG=1` in the environment re-raises instead, with the traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

DEBUG_ENV = "TRL_PLUS_DEBUG"
BROKEN_PIPE_STATUS = 141  # 128 + SIGPIPE


def quiet_checkpointing_renames() -> None:
    """Silence transformers' FutureWarnings about its renamed `gradient_checkpointing*` names: TRL's configs and
    trainers still use the old ones on every run, and there is nothing for a user of the command line to change."""
    import warnings

    warnings.filterwarnings(
        "ignore", message=r"`(is_)?gradient_checkpointing(_enable|_disable)?` is deprecated", category=FutureWarning
    )


def debugging() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def short(error: BaseException) -> str:
    """The error's first line (library errors can run to dozens), saying so when there is more."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()] or [type(error).__name__]
    more = f" (+{len(lines) - 1} more lines; {DEBUG_ENV}=1 shows them with the traceback)" if len(lines) > 1 else ""
    return lines[0] + more


def run_reporting_errors(prog: str, command: Callable[[], int]) -> int:
    """Run `command` and turn the errors a user can fix into a message and an exit status (module docstring)."""
    try:
        return command()
    except BrokenPipeError:
        # Python would print a second error when it flushes stdout at exit: point stdout at /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE_STATUS
    except FloatingPointError as error:  # NonFiniteLossError: training stopped, the settings were fine
        if debugging():
            raise
        print(f"{prog}: error: {short(error)}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, OSError) as error:
        if debugging():
            raise
        print(f"{prog}: error: {short(error)}", file=sys.stderr)
        return 2
