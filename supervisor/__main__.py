"""``python -m supervisor``: the same as the ``supervise`` command."""

from ._cli import main

raise SystemExit(main())
