"""Subcommands of the ``testbed`` CLI; each module defines ``register(subparsers)``.

A module's ``register`` adds its parser with ``set_defaults(func=...)``; the function takes the
parsed arguments and returns an exit code. Keep heavy imports (torch) inside the function.
"""
