"""``python -m supervisor``: the same as the ``supervise`` command."""

from ._cli.main import main

raise SystemExit(main())
