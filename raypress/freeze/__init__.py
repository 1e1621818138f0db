"""Frozen results: the records in ``snippets/``, what a record depends on (inputs), the
plan that decides between a record and a run, the runs themselves handed to
``execution``, how ``check`` normalises outputs, and the build stamp."""
