"""What a user runs: ``build`` (the pipeline, stage by stage), ``check`` and its report,
``serve``. Each command calls the stages in ``publish``, ``freeze`` and ``execution``;
none of them is imported by a lower folder."""
