"""What runs away from the scheduler: in a dask worker, a pilot, a batch job or on an SSH host.

A compute node imports this package, the protocol modules (:mod:`orchestrator.protocol`,
:mod:`orchestrator.em`, :mod:`orchestrator.objects`) and the plugin whose step it runs; nothing
of the scheduler, the hosts machinery or the CLI.

- :mod:`.runtime`: one attempt of one step in a dask worker (the public entry points);
- :mod:`.gpus`: a GPU step leases its devices from its worker's pool first;
- :mod:`.remote`: a step on a host that neither shares the project's files nor reaches its store;
- :mod:`.batch_job`: what a step's own batch job runs (``python -m orchestrator.worker.batch_job``);
- :mod:`.processes`: finding and ending a step's processes (also used by the scheduler's side).
"""
