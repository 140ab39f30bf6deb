"""The command line: every command, the flag table, completion and exit codes.

The console script is ``provisioner.cli.main:main``.
"""
