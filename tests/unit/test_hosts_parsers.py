"""Queue output parsers on real output samples.

SLURM and SGE samples were recorded from the test cluster that tests/infra starts (SLURM 22.05
with slurmdbd, Grid Engine 8.1.9). No PBS server can run here: the PBS samples follow PBS
Professional's documented ``qstat -f -F json`` and ``qstat -x -f`` formats (field names,
nesting, tab-indented continuation lines, Exit_status conventions) as printed by PBS Pro
19-2022 servers, with our own job ids and values.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.hosts.config.model import HostConfig, QueueConfig
from orchestrator.hosts.errors import AccountingUnavailable, JobSubmitError, QueueCommandError
from orchestrator.hosts.queues import backend_for
from orchestrator.hosts.queues.base import JobState
from orchestrator.hosts.queues.slurm import format_time
from orchestrator.hosts.runner import CommandResult


def host(kind: str) -> HostConfig:
    return HostConfig(name=f"test-{kind}", kind=kind, source=Path("/t/hosts.toml"),
                      queues={"q": QueueConfig(name="q")}, default_queue="q", user="alice")


def result(stdout: str = "", stderr: str = "", exit_code: int = 0) -> CommandResult:
    return CommandResult(("cmd",), exit_code, stdout, stderr)


SLURM = backend_for(host("slurm"))
SGE = backend_for(host("sge"))
PBS = backend_for(host("pbs"))

# squeue --noheader --jobs=... --states=all --format='%i|%T|%P|%M|%N|%b|%r' (recorded)
SQUEUE = """\
15|PENDING|debug|0:00||gres:gpu:1|Resources
16|PENDING|debug|0:00||gres:gpu:1|Priority
14|RUNNING|debug|1:02:03|localhost|gres:gpu:2|None
22|CANCELLED|debug|0:00|localhost|N/A|None
20|COMPLETED|debug|0:01|localhost|gres:gpu:1|None
21|FAILED|debug|0:00|localhost|N/A|NonZeroExitCode
30|COMPLETING|debug|1-00:00:05|localhost|N/A|None
"""
# sacct --noheader --parsable2 --format=JobID,State,ExitCode,Elapsed,TotalCPU,MaxRSS,NodeList,AllocTRES
# (recorded; the MaxRSS values of job 23's steps come from a longer job on the same cluster)
SACCT = """\
20|COMPLETED|0:0|00:00:01|00:00.229||localhost|billing=1,cpu=1,gres/gpu=1,mem=500M,node=1
20.batch|COMPLETED|0:0|00:00:01|00:00.229||localhost|cpu=1,gres/gpu=1,mem=500M,node=1
21|FAILED|3:0|00:00:00|00:00.002||localhost|billing=1,cpu=1,mem=500M,node=1
21.batch|FAILED|3:0|00:00:00|00:00.002||localhost|cpu=1,mem=500M,node=1
22|CANCELLED by 0|0:0|00:00:00|00:00.004||localhost|billing=1,cpu=1,mem=500M,node=1
22.batch|FAILED|15:0|00:00:00|00:00.004||localhost|cpu=1,mem=500M,node=1
23|COMPLETED|0:0|00:02:10|00:04:01||localhost|billing=2,cpu=2,mem=300M,node=1
23.batch|COMPLETED|0:0|00:02:10|00:00:01|5120K|localhost|cpu=2,mem=300M,node=1
23.0|COMPLETED|0:0|00:02:09|00:04:00|204800K|localhost|cpu=2,mem=300M,node=1
24|TIMEOUT|0:15|00:10:00|00:09:58||localhost|billing=1,cpu=1,gres/gpu=2,mem=500M,node=1
"""


def test_slurm_status() -> None:
    statuses = SLURM.parse_status(SQUEUE)
    assert {k: s.state for k, s in statuses.items()} == {
        "15": JobState.PENDING, "16": JobState.PENDING, "14": JobState.RUNNING, "22": JobState.CANCELLED,
        "20": JobState.DONE, "21": JobState.FAILED, "30": JobState.RUNNING}
    running = statuses["14"]
    assert (running.queue, running.elapsed_s, running.nodes, running.gpus, running.reason) == (
        "debug", 3723, "localhost", "gpu:2", None)
    assert statuses["15"].reason == "Resources" and statuses["15"].nodes is None
    assert statuses["22"].gpus is None and statuses["30"].elapsed_s == 86405
    assert SLURM.status_command(["1", "2"]) == ["squeue", "--noheader", "--jobs=1,2", "--states=all",
                                                "--format=%i|%T|%P|%M|%N|%b|%r"]
    with pytest.raises(QueueCommandError, match="unexpected squeue line"):
        SLURM.parse_status("garbage\n")


def test_slurm_status_results() -> None:
    # every listed job aged out of squeue: an answer, not an error (they are reconciled)
    gone = result(stderr="slurm_load_jobs error: Invalid job id specified\n", exit_code=1)
    assert SLURM.read_status(gone) == {}
    down = result(stderr="slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n",
                  exit_code=1)
    with pytest.raises(QueueCommandError) as info:
        SLURM.read_status(down)
    assert info.value.transient and "Unable to contact slurm controller" in str(info.value)


def test_slurm_accounting() -> None:
    records = SLURM.parse_accounting(SACCT)
    assert records["20"].state is JobState.DONE and records["20"].gpus == 1 and records["20"].exit_code == 0
    assert records["21"].state is JobState.FAILED and records["21"].exit_code == 3
    assert records["22"].state is JobState.CANCELLED and records["22"].native_state == "CANCELLED by 0"
    assert records["23"].max_memory_mb == 200.0 and records["23"].cpu_time_s == 241 and records["23"].gpus == 0
    assert records["24"].state is JobState.FAILED and records["24"].signal == 15 and records["24"].elapsed_s == 600
    disabled = result(stderr="Slurm accounting storage is disabled\n", exit_code=1)
    with pytest.raises(AccountingUnavailable):
        SLURM.read_accounting(disabled)


def test_slurm_submit_and_cancel() -> None:
    assert SLURM.parse_job_id("42\n") == "42" and SLURM.parse_job_id("42;cluster\n") == "42"
    assert SLURM.parse_job_id("Submitted batch job 43\n") == "43"
    with pytest.raises(JobSubmitError, match="sbatch printed no job id"):
        SLURM.parse_job_id("sbatch: error: Batch job submission failed: Invalid partition name specified")
    assert SLURM.cancel_succeeded(result(
        stderr="scancel: error: Kill job error on job id 14: Job/step already completing or completed\n",
        exit_code=1))
    assert not SLURM.cancel_succeeded(result(stderr="scancel: error: Unable to contact slurm controller\n",
                                             exit_code=1))


def test_slurm_time_and_checks() -> None:
    assert format_time(172800 + 61) == "2-00:01:01" and format_time(59) == "00:00:59"
    # sinfo --noheader --format=%R|%a and --Node --format=%N|%R|%G (recorded, plus a typed-GPU node)
    assert SLURM.parse_queue_names("debug|up\ngpu|up\n") == {"debug", "gpu"}
    assert SLURM.parse_gpu_inventory("localhost|debug|gpu:2\nn1|gpu|gpu:a100:4(S:0-1),gpu:v100:2\nn2|gpu|(null)\n") == {
        "debug": 2, "gpu": 6}


# qstat -xml -u '*' (recorded: two running, one held)
QSTAT_XML = """<?xml version='1.0'?>
<job_info  xmlns:xsd="http://arc.liv.ac.uk/repos/darcs/sge/source/dist/util/resources/schemas/qstat/qstat.xsd">
  <queue_info>
    <job_list state="running">
      <JB_job_number>1</JB_job_number>
      <JAT_prio>0.25000</JAT_prio>
      <JB_name>ok</JB_name>
      <JB_owner>root</JB_owner>
      <state>r</state>
      <JAT_start_time>2026-11-24T18:13:11</JAT_start_time>
      <queue_name>all.q@vm</queue_name>
      <slots>1</slots>
    </job_list>
    <job_list state="running">
      <JB_job_number>3</JB_job_number>
      <JAT_prio>0.75000</JAT_prio>
      <JB_name>pe</JB_name>
      <JB_owner>root</JB_owner>
      <state>dr</state>
      <JAT_start_time>2026-11-24T18:13:11</JAT_start_time>
      <queue_name>all.q@vm</queue_name>
      <slots>2</slots>
    </job_list>
  </queue_info>
  <job_info>
    <job_list state="pending">
      <JB_job_number>4</JB_job_number>
      <JAT_prio>0.00000</JAT_prio>
      <JB_name>held</JB_name>
      <JB_owner>root</JB_owner>
      <state>hqw</state>
      <JB_submission_time>2026-11-24T18:13:11</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
    </job_list>
    <job_list state="pending">
      <JB_job_number>5</JB_job_number>
      <JB_name>broken</JB_name>
      <state>Eqw</state>
      <queue_name></queue_name>
      <slots>1</slots>
    </job_list>
  </job_info>
</job_info>
"""
# qacct -j 1 and -j 6 (qdel of a running job), recorded and abridged
QACCT_OK = """==============================================================
qname        all.q
hostname     vm
owner        root
jobname      ok
jobnumber    1
taskid       undefined
qsub_time    Tue Nov 24 18:13:11 2026
start_time   Tue Nov 24 18:13:11 2026
end_time     Tue Nov 24 18:13:14 2026
granted_pe   NONE
slots        1
failed       0
exit_status  0
ru_wallclock 3s
ru_utime     0.113s
ru_maxrss    4.809KB
cpu          0.169s
mem          0.000Bs
maxvmem      5.152MB
"""
QACCT_KILLED = """==============================================================
qname        all.q
hostname     vm
jobname      quoted
jobnumber    6
failed       100 : assumedly after job
exit_status  137                  (Killed)
ru_wallclock 2s
cpu          0.198s
maxvmem      6.426MB
==============================================================
qname        all.q
hostname     vm
jobname      failit
jobnumber    5
failed       0
exit_status  3
ru_wallclock 2s
cpu          0.194s
maxvmem      5.211MB
"""


def test_sge_status() -> None:
    statuses = SGE.parse_status(QSTAT_XML)
    assert {k: s.state for k, s in statuses.items()} == {
        "1": JobState.RUNNING, "3": JobState.RUNNING, "4": JobState.PENDING, "5": JobState.FAILED}
    assert (statuses["1"].queue, statuses["1"].nodes) == ("all.q", "vm") and statuses["1"].elapsed_s > 0
    assert statuses["3"].reason == "deletion requested" and statuses["4"].reason == "held"
    assert statuses["5"].reason == "error state (see qstat -j)"
    assert SGE.map_state("hRr") is JobState.RUNNING and SGE.map_state("zz") is JobState.UNKNOWN
    assert SGE.status_command(["1", "2"]) == ["qstat", "-xml", "-u", "alice"]
    assert SGE.parse_status("<?xml version='1.0'?>\n<job_info>\n  <queue_info>\n  </queue_info>\n"
                            "  <job_info>\n  </job_info>\n</job_info>\n") == {}
    with pytest.raises(QueueCommandError, match="no valid XML"):
        SGE.parse_status("error: commlib error: got select error (Connection refused)")


def test_sge_accounting() -> None:
    ok = SGE.parse_accounting(QACCT_OK)["1"]
    assert (ok.state, ok.exit_code, ok.elapsed_s, ok.cpu_time_s, ok.nodes) == (JobState.DONE, 0, 3, 0.169, "vm")
    assert ok.max_memory_mb == pytest.approx(5.152)
    records = SGE.parse_accounting(QACCT_KILLED)
    assert records["6"].state is JobState.CANCELLED and records["6"].exit_code == 137 and records["6"].signal == 9
    assert records["5"].state is JobState.FAILED and records["5"].exit_code == 3
    assert SGE.read_accounting(result(stderr="error: job id 4 not found\n", exit_code=1)) == {}
    assert SGE.accounting_commands(["1", "2"]) == [["qacct", "-j", "1"], ["qacct", "-j", "2"]]


def test_sge_submit_and_cancel() -> None:
    assert SGE.parse_job_id("7\n") == "7" and SGE.parse_job_id("8.1-3:1\n") == "8"
    assert SGE.parse_job_id('Your job 9 ("ok") has been submitted\n') == "9"
    with pytest.raises(JobSubmitError):
        SGE.parse_job_id("Unable to run job: Error reading answer list from qmaster\nExiting.\n")
    assert SGE.cancel_succeeded(result(stdout='denied: job "1" does not exist\n', exit_code=1))


PBS_JSON = """{
    "timestamp":1732468391,
    "pbs_version":"2022.1.3.20230614134139",
    "pbs_server":"pbs01",
    "Jobs":{
        "4107.pbs01":{
            "Job_Name":"refine3d",
            "Job_Owner":"alice@login1.cluster",
            "resources_used":{
                "cpupercent":2310,
                "cput":"05:12:44",
                "mem":"31457280kb",
                "ncpus":36,
                "vmem":"41943040kb",
                "walltime":"00:14:01"
            },
            "job_state":"R",
            "queue":"gpu",
            "server":"pbs01",
            "Checkpoint":"u",
            "ctime":"Sun Nov 24 17:05:02 2024",
            "Error_Path":"login1.cluster:/scratch/alice/orch/run12/step3/job.out",
            "exec_host":"gpu07/0*36",
            "exec_vnode":"(gpu07:ncpus=36:mem=188743680kb:ngpus=2)",
            "Join_Path":"oe",
            "Output_Path":"login1.cluster:/scratch/alice/orch/run12/step3/job.out",
            "Resource_List":{
                "mem":"180gb",
                "mpiprocs":3,
                "ncpus":36,
                "ngpus":2,
                "nodect":1,
                "place":"pack",
                "select":"1:ncpus=36:mpiprocs=3:mem=180gb:ngpus=2",
                "walltime":"12:00:00"
            },
            "stime":"Sun Nov 24 17:05:03 2024",
            "session_id":218841,
            "substate":42,
            "comment":"Job run at Sun Nov 24 at 17:05 on (gpu07:ncpus=36:mem=188743680kb:ngpus=2)",
            "run_count":1,
            "Submit_arguments":"-"
        },
        "4108.pbs01":{
            "Job_Name":"ctf",
            "job_state":"Q",
            "queue":"workq",
            "Resource_List":{"ncpus":4,"nodect":1,"select":"1:ncpus=4"},
            "comment":"Not Running: Insufficient amount of resource: ncpus (R: 4 A: 0 T: 2304)",
            "substate":10
        },
        "4109.pbs01":{
            "Job_Name":"motioncorr",
            "job_state":"F",
            "queue":"workq",
            "resources_used":{"cput":"00:00:41","mem":"2097152kb","ncpus":8,"walltime":"00:00:44"},
            "exec_host":"cn101/0*8",
            "Exit_status":0,
            "comment":"Job run at Sun Nov 24 at 16:58 on (cn101:ncpus=8:mem=8388608kb) and finished",
            "substate":92
        },
        "4110.pbs01":{
            "Job_Name":"extract",
            "job_state":"F",
            "queue":"workq",
            "resources_used":{"cput":"00:59:01","mem":"1048576kb","ncpus":1,"walltime":"01:00:02"},
            "exec_host":"cn102/3",
            "Exit_status":271,
            "comment":"Job run at Sun Nov 24 at 15:58 on (cn102:ncpus=1) and failed",
            "substate":93
        },
        "4111.pbs01":{
            "Job_Name":"oops",
            "job_state":"F",
            "queue":"workq",
            "Exit_status":2,
            "resources_used":{"walltime":"00:00:01"},
            "comment":"Job run at Sun Nov 24 at 17:01 on (cn101:ncpus=1) and failed"
        }
    }
}"""
# qstat -x -f (text): long values wrap onto tab-indented continuation lines
PBS_TEXT = """Job Id: 4110.pbs01
    Job_Name = extract
    Job_Owner = alice@login1.cluster
    resources_used.cpupercent = 98
    resources_used.cput = 00:59:01
    resources_used.mem = 1048576kb
    resources_used.ncpus = 1
    resources_used.walltime = 01:00:02
    job_state = F
    queue = workq
    exec_host = cn102/3
    Output_Path = login1.cluster:/scratch/alice/orch/a-very-long-project-name/run
\t12/step7/job.out
    Resource_List.ncpus = 1
    Resource_List.walltime = 01:00:00
    comment = Job run at Sun Nov 24 at 15:58 on (cn102:ncpus=1) and fa
\tiled
    Exit_status = 271
    Submit_arguments = -

Job Id: 4112.pbs01
    Job_Name = held
    job_state = H
    queue = workq
"""


def test_pbs_status_json() -> None:
    statuses = PBS.parse_status(PBS_JSON)
    assert {k: s.state for k, s in statuses.items()} == {
        "4107.pbs01": JobState.RUNNING, "4108.pbs01": JobState.PENDING, "4109.pbs01": JobState.DONE,
        "4110.pbs01": JobState.FAILED, "4111.pbs01": JobState.FAILED}
    running = statuses["4107.pbs01"]
    assert (running.queue, running.elapsed_s, running.nodes, running.gpus) == ("gpu", 841, "gpu07", "2")
    assert statuses["4108.pbs01"].reason.startswith("Not Running: Insufficient amount of resource")
    assert statuses["4110.pbs01"].reason.startswith("killed by signal 15")
    assert statuses["4111.pbs01"].exit_code == 2
    assert PBS.parse_status('{"timestamp":1,"pbs_version":"2024.1.2","pbs_server":"s"}') == {}
    assert PBS.match_key("4107.pbs01.cluster.org") == "4107"


def test_pbs_status_text_and_accounting() -> None:
    statuses = PBS.parse_status(PBS_TEXT)
    assert statuses["4110.pbs01"].state is JobState.FAILED and statuses["4112.pbs01"].reason == "held"
    records = PBS.parse_accounting(PBS_TEXT)
    assert list(records) == ["4110.pbs01"]
    record = records["4110.pbs01"]
    assert (record.signal, record.elapsed_s, record.cpu_time_s, record.max_memory_mb, record.nodes) == (
        15, 3602, 3541, 1024.0, "cn102")
    json_records = PBS.parse_accounting(PBS_JSON)
    assert json_records["4109.pbs01"].state is JobState.DONE and json_records["4109.pbs01"].max_memory_mb == 2048
    assert "4107.pbs01" not in json_records  # still running: no accounting yet


def test_pbs_results_and_submit() -> None:
    partial = result(stdout=PBS_JSON, stderr="qstat: Unknown Job Id 4001.pbs01\n", exit_code=35)
    assert len(PBS.read_status(partial)) == 5
    with pytest.raises(QueueCommandError):
        PBS.read_status(result(stderr="Connection refused\nqstat: cannot connect to server pbs01 (errno=15010)\n",
                               exit_code=2))
    with pytest.raises(QueueCommandError, match="invalid JSON"):
        PBS.parse_status('{"Jobs": {')
    assert PBS.parse_job_id("4113.pbs01\n") == "4113.pbs01" and PBS.parse_job_id("77[].pbs01\n") == "77[].pbs01"
    with pytest.raises(JobSubmitError):
        PBS.parse_job_id("qsub: Job exceeds queue resource limits MSG=cannot satisfy queue max ngpus requirement")
    assert PBS.status_command(["1.s", "2.s"]) == ["qstat", "-x", "-f", "-F", "json", "1.s", "2.s"]
    assert PBS.cancel_succeeded(result(stderr="qdel: Job has finished 4109.pbs01\n", exit_code=35))
