"""``python3 -m livemig``: the ``livemig`` command."""

from __future__ import annotations

if __name__ == "__main__":
    from livemig.cli.main import main

    raise SystemExit(main())
