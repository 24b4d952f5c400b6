"""The one exception type users see, and the command-line wrapper that shows it."""

from __future__ import annotations

import sys
from collections.abc import Callable


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
