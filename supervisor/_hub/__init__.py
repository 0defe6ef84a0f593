"""``supervise hub``: one Telegram bot for every supervise instance on the machine.

:mod:`.fleet` finds the instances through their control sockets, follows
their events from the journal with no gap across the hub's own restarts,
and answers through the control protocol; :mod:`.client` is the async
control client it uses.
"""
