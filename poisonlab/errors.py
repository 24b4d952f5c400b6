"""The one exception type users see, and the command-line wrapper that shows it."""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Callable
from typing import NoReturn


class PoisonlabError(Exception):
    """Bad input: a config value, a file, a parameter.

    The message is one line that names the field and says what would fix it.
    Command-line entry points print it and exit 2, without a traceback.
    """


def run_cli(main: Callable[[], int | None]) -> None:
    """Run a command-line ``main``; turn a PoisonlabError into one line and exit 2."""
    try:
        code = main()
    except PoisonlabError as error:
        # One line, whatever the message holds: logs and CI show it whole.
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


class CommandParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (a PoisonlabError, which
    ``run_cli`` prints), not argparse's usage block: a mistyped option gets a
    did-you-mean, or the fix ``hints`` gives for an option that does not exist
    (``{"--resume": "run it again with --cache"}``)."""

    def __init__(self, *args, hints: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.hints = hints or {}

    def error(self, message: str) -> NoReturn:
        unknown = re.match(r"unrecognized arguments: (.*)", message)
        flag = next((t for t in unknown[1].split() if t.startswith("-")), None) if unknown else None
        if flag:
            flag = flag.split("=")[0]
            options = sorted(o for a in self._actions for o in a.option_strings if o[:2] == "--")
            close = difflib.get_close_matches(flag, options, n=1)
            fix = self.hints.get(flag) or (
                f"did you mean {close[0]}?" if close else f"{self.prog} --help lists them"
            )
            raise PoisonlabError(f"{flag} is not an option of {self.prog}; {fix}")
        raise PoisonlabError(f"{message}; {self.prog} --help lists the options")
