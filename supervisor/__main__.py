"""``python -m supervisor``: the same as the ``supervise`` command."""

from ._cli.launch import main

raise SystemExit(main())
