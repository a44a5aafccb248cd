"""The hang watchdog: a rank that stops making progress makes every rank dump its Python stacks and say
which rank is behind.

The distributed test starts 2 gloo processes through our torchrun launcher (LaunchPlan + run_torchrun);
each runs HANG_SCRIPT: five "steps" of a sleep and an all_reduce, where rank 1 sleeps 4 s inside step 4
(after its step began, before its forward) while rank 0 has done its forward and waits in the all_reduce.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

from tuneforge.train.launch.torchrun import LaunchPlan, find_free_port
from tuneforge.train.run.watchdog import HangWatchdog, behind_message, stall_limit_s

SRC = Path(__file__).resolve().parents[2] / "src"

HANG_SCRIPT = textwrap.dedent("""
    import logging, os, sys, time
    import torch
    import torch.distributed as dist
    from tuneforge.train.run.watchdog import distributed_watchdog

    rank = int(os.environ["RANK"])
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format=f"[rank {rank}] %(message)s")
    dist.init_process_group("gloo")
    watchdog = distributed_watchdog(factor=3.0, min_s=1.0)
    watchdog.poll_s = 0.1
    watchdog.start()

    def rank_one_sleeps_in_its_forward():
        time.sleep(4)

    for step in range(1, 6):
        watchdog.step_begun(step)
        time.sleep(0.05)
        if rank == 1 and step == 4:
            rank_one_sleeps_in_its_forward()
        watchdog.forward_done()
        dist.all_reduce(torch.ones(1))  # the backward's gradient all-reduce
        watchdog.step_completed(step)
    watchdog.stop()
    dist.destroy_process_group()
    print(f"rank {rank} finished", file=sys.stderr)
""")

LAUNCH = """
import sys
from tuneforge.train.launch.torchrun import LaunchPlan, run_torchrun
plan = LaunchPlan(nproc_per_node=2, nnodes="1", node_rank=0, master_addr="127.0.0.1", master_port=int(sys.argv[1]))
sys.exit(run_torchrun(plan.torchrun_args() + [sys.argv[2]]))
"""


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_the_limit_is_a_multiple_of_the_median_step_time_with_a_floor():
    assert stall_limit_s([], 10, 300) is None  # no step time yet: nothing to judge by
    assert stall_limit_s([1.0, 50.0, 2.0], 10, 5) == 20.0  # the median, not the mean: one slow step is no pace
    assert stall_limit_s([0.1, 0.1], 10, 300) == 300


def test_behind_message_names_the_rank_that_got_least_far():
    assert behind_message({0: (4, 1), 1: (4, 0)}) == (
        "rank 1 is behind at step 4 (step 4 begun, no forward done; rank 0: step 4, forward of micro-batch 1 done)")
    completed = 1 << 30
    assert behind_message({0: (4, 0), 1: (3, completed), 2: (4, 0)}) == (
        "rank 1 is behind at step 4 (step 3 completed; rank 0: step 4 begun, no forward done; "
        "rank 2: step 4 begun, no forward done)")
    assert behind_message({0: (2, 1), 1: (2, 1)}).startswith("all ranks are at the same point")
    assert behind_message({0: (2, 1), 1: None}) == "rank 1 published no progress yet"


def test_one_dump_per_stall_and_none_while_paused(capfd, caplog):
    clock = Clock()
    watchdog = HangWatchdog(rank=0, world_size=1, store=None, factor=4, min_s=2, clock=clock)
    for step in range(1, 4):
        watchdog.step_begun(step)
        clock.now += 1.0
        watchdog.step_completed(step)
    clock.now += 3.9
    assert not watchdog.check()  # limit max(4 x 1 s, 2 s) = 4 s
    with watchdog.paused():  # a long evaluation is not a hang
        clock.now += 100
        assert not watchdog.check()
    clock.now += 4.1
    assert watchdog.check()
    assert not watchdog.check()  # once per stall
    assert "rank 0 completed no step for 4 s (limit 4 s = max(4 x median step time 1.00 s" in caplog.text
    assert "Current thread" in capfd.readouterr().err  # faulthandler's dump
    watchdog.step_completed(4)
    assert "rank 0 completed step 4 after 4 s; the run goes on" in caplog.text


def test_two_gloo_ranks_one_asleep_both_dump_and_name_the_rank_behind(tmp_path):
    script = tmp_path / "hang.py"
    script.write_text(HANG_SCRIPT)
    env = {"PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", LAUNCH, str(find_free_port()), str(script)], env=env,
                          capture_output=True, text=True, timeout=120)
    err = done.stderr
    assert done.returncode == 0, err[-4000:]
    for rank in (0, 1):  # both ranks noticed, named rank 1, dumped their stacks, and then finished
        assert (f"[rank {rank}] hang watchdog: rank {rank} completed no step for " in err), err[-4000:]
        assert f"rank {rank} finished" in err
    assert err.count("rank 1 is behind at step 4 (step 4 begun, no forward done; rank 0: step 4, forward of "
                     "micro-batch 1 done)") == 2, err[-4000:]
    assert "in rank_one_sleeps_in_its_forward" in err  # rank 1's dump shows where it is stuck
    assert "all_reduce" in err  # rank 0's dump shows the collective it waits in
    assert err.count("completed step 4 after") == 2  # each rank says the run went on


def test_one_process_runs_have_no_watchdog():
    from tuneforge.train.run.watchdog import distributed_watchdog

    assert distributed_watchdog(10.0, 300.0) is None  # no process group: nobody to be behind
