"""ts-ipc: messages, subscriptions and workflows between tmux sessions.

A drop-in replacement for the ``ts-ipc`` shell tool (same commands, same
output formats), with every message a record that ends delivered, failed or
expired, command delivery that confirms the pane took the line, workflows
that observe each step's real exit status, and events of supervised
programs published to subscribers. See README.md, "For ts-ipc users".

Modules: :mod:`.store` (the SQLite state), :mod:`.tmux` (talking to the
tmux server, synchronously), :mod:`.deliver` (one message to its session),
:mod:`.supervised` (a supervised program in a pane, through its control
socket), :mod:`.workflow` (workflow files and planning, sans-IO),
:mod:`.run` (executing a workflow), :mod:`.cli` (the ``ts-ipc`` command).
"""
