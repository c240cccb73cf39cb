"""Provenance: what a finished run was, kept so that its results can be traced and repeated.

``record`` builds a run's provenance record when it finishes (software and versions, every
param, inputs, steps with their hosts, jobs and accounting, who launched it, and the content
fingerprints of the files it read and wrote) and keeps it in the store; ``lineage`` walks from
a run's output back, run by run, to the raw data. ``fingerprints`` and ``software`` gather the
parts. The record's layout is versioned (:data:`record.RECORD_FORMAT`).
"""
