"""The ``devicenet`` command's entry point (also ``python -m devicenet``).

Only the standard library is imported before the try: Ctrl-C while numpy,
Pillow and click load (a second or more on a small board) exits quietly
with status 130, like Ctrl-C anywhere later (``cli.Commands``).
"""

import sys

from .errors import INTERRUPTED


def main():
    try:
        from .cli import main as command
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        sys.exit(INTERRUPTED)
    try:
        command()
    except KeyboardInterrupt:  # between click's own handling and the exit
        sys.exit(INTERRUPTED)


if __name__ == "__main__":
    main()
