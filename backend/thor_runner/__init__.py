"""The job runner: the top layer, which puts the domain (``thor_trading``) and the push transport
(``global_markets``) together.

The heartbeat runs the domain's jobs and hands their messages, past the flags and fault injection,
to the transport's broadcaster; the leader lock and the database term make sure exactly one
process does so at a time. Nothing below imports from here (``tests/backend/test_layers.py``).
"""
