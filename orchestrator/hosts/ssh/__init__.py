"""The SSH layer: connections and remote commands (:mod:`.client`, paramiko), bulk streams through
the OpenSSH client (:mod:`.openssh`), and dask workers started on a host over SSH (:mod:`.workers`)."""
