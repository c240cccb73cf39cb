"""The SSH layer: one target (:mod:`.target`), one client API (:mod:`.shell`: commands, small files,
streams) implemented by paramiko connections and pools (:mod:`.client`) and by the OpenSSH client
for bulk streams (:mod:`.openssh`), and dask workers started on a host over SSH (:mod:`.workers`)."""
