"""The two small Python programs that :mod:`orchestrator.hosts.ssh.workers` runs on an SSH host.

They are sent as ``python -c`` text, so the host needs no file of ours beyond the installed
packages; they use the standard library only and must run on whatever Python the host has.
"""

# Reports the remote interpreter, checks the modules the workers need, and picks free loopback
# ports: all are held open together so that no two workers get the same one. They listen until
# stdin closes, so that a forwarded connection to one shows port forwarding works.
PROBE = r"""
import importlib, json, socket, sys
missing = {}
for name in sys.argv[2:]:
    try:
        importlib.import_module(name)
    except ImportError as exc:
        missing[name] = str(exc)
held = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    held.append(s)
print(json.dumps({"python": sys.executable, "version": list(sys.version_info[:3]), "missing": missing,
                  "ports": [s.getsockname()[1] for s in held]}), flush=True)
sys.stdin.read()
"""

# Runs one dask worker in a process group of its own and ends the group when stdin reaches its
# end (the group was closed, or the SSH session is gone), or on SIGTERM/SIGHUP. PR_SET_PDEATHSIG
# covers the wrapper itself being killed with SIGKILL.
#
# The first line on stdin is the worker's TLS credentials (JSON: ca, cert, key in PEM; {} for
# none). The wrapper hands that line to the worker through a pipe, and the worker puts it in its
# in-memory dask configuration before dask's own command line starts the worker: the
# credentials are never in a file, an argument list (which every user may read) or an
# environment (which every program a step starts would inherit) on the host, and they are gone
# with the worker, whatever ends it.
WRAPPER = r"""
import json, os, signal, subprocess, sys, threading

GRACE = float(sys.argv[1])
WORKER = r'''
import json, os, runpy, sys
import dask, distributed
tls = json.loads(sys.stdin.readline() or "{}")
os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
if tls:
    dask.config.set({"distributed.comm.require-encryption": True, "distributed.comm.tls.ca-file": tls["ca"],
                     "distributed.comm.tls.worker.cert": tls["cert"], "distributed.comm.tls.worker.key": tls["key"]})
del tls
runpy.run_module("distributed.cli.dask_worker", run_name="__main__", alter_sys=True)
'''

def first_line():
    line = b""
    while not line.endswith(b"\n"):
        byte = os.read(0, 1)
        if not byte:
            sys.exit("the credentials line did not come on stdin")
        line += byte
    return line

credentials = first_line()

def die_with_parent():
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: stdin EOF and signals still end the worker

child = subprocess.Popen([sys.executable, "-c", WORKER] + sys.argv[2:],
                         stdin=subprocess.PIPE, stdout=2, stderr=2, start_new_session=True,
                         preexec_fn=die_with_parent if sys.platform.startswith("linux") else None)
child.stdin.write(credentials)
child.stdin.close()
del credentials
print(json.dumps({"wrapper_pid": os.getpid(), "worker_pid": child.pid}), flush=True)
stopping = threading.Event()

def signal_group(sig):
    try:
        os.killpg(child.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # the group is already gone

def watch_stdin():
    while True:
        try:
            if not os.read(0, 4096):
                break
        except OSError:
            break
    stopping.set()

for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
    signal.signal(sig, lambda number, frame: stopping.set())
threading.Thread(target=watch_stdin, daemon=True).start()
while child.poll() is None and not stopping.wait(0.2):
    pass
if child.returncode is None:  # asked to stop: the worker leaves the scheduler, then the group goes
    signal_group(signal.SIGTERM)
    try:
        child.wait(GRACE)
    except subprocess.TimeoutExpired:
        pass
signal_group(signal.SIGKILL)  # whatever is left in the worker's group (programs a step started)
code = child.poll()
os._exit(0 if code is None else code if code >= 0 else 128 - code)
"""
