"""The application layer: everything a user can do, as typed functions, for every front end.

The ``orch`` command, the Python API (:mod:`orchestrator.api`), the web server and the
streaming controls all call these functions; none of them touches the scheduler or the store
directly. One module per concern:

=================  ================================================================
``projects``       create, list, show and delete projects
``runs``           submit a run or a workflow file, restart, cancel, wait (with progress)
``status``         a project's runs with their step counts; one run's steps
``logs``           a run's step logs, read or followed
``events``         a run's (or the project's) event log, read or followed
``outputs``        a run's registered outputs
``sets``           a project's sets: list, query with conditions, page through items
``plugins``        installed plugins, their protocols and params
``scheduler``      the project's scheduler: is it running, start, stop, serve
``hosts``          the execution hosts: list, show, check for real
``queue``          a project's batch jobs as their queues see them
``transfers``      files moving to and from SSH hosts
``records``        the records several modules return (dataclasses with ``to_dict()`` for JSON)
``serialize``      the records' base and their JSON form (UTC times, enums, paths)
``access``         how a function reaches a project: a reference, or an opened handle
``errors``         which errors the layer raises, and the HTTP status of each
=================  ================================================================

The rules every function keeps, so that a web server can call them from any thread:

- the project is a *reference* (a folder, a registered name, a :class:`~orchestrator.project.Project`)
  or an :class:`~orchestrator.app.access.OpenProject` handle the caller keeps open across calls;
  a store the function opens is closed before it returns;
- the result is a record (or a list of records) with ``to_dict()``; nothing is printed;
- what goes wrong is an :class:`~orchestrator.errors.OrchestratorError` whose message names the
  project, run, step, param, file or host at fault (see :mod:`orchestrator.app.errors`);
- no global state: the plugin registry and the hosts are read per call unless passed in.

The modules are imported one by one (this package imports none of them) so that a command
that only reads the store never loads dask, the scheduler or the plugins.
"""
