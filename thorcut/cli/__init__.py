"""The command line's plumbing: the Typer app and its error boundary (:mod:`.app`), the shared
options (:mod:`.options`), the consoles and safe text (:mod:`.output`), and the Redis session a
command opens (:mod:`.session`). The commands themselves live in :mod:`thorcut.commands`."""
