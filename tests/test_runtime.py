"""Process settings (groupo/runtime.py): OpenMP's wait policy and torch's threads, decided by the
entry points from what other processes use now; ``import groupo`` decides nothing."""
import os
import subprocess
import sys
import time

import pytest

from groupo import runtime

BUSY = "import os; os.getloadavg = lambda: (5.0, 5.0, 5.0); "   # a machine that looks busy


def _run(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()


def test_import_groupo_has_no_side_effects():
    """On a busy machine, importing groupo sets no OMP_WAIT_POLICY, measures nothing (the load
    module is not even imported) and loads no torch; the public functions still work."""
    got = _run(BUSY + "import sys, groupo; print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules, "
               "'groupo.runtime' in sys.modules); print(bool(groupo.compute_advantages([1., 0.], [0, 0]).advantages[0] > 0))")
    assert got == ["None", "False", "False", "True"]


@pytest.mark.slow
def test_the_cli_entry_point_decides_the_policy_before_torch_loads():
    got = _run(BUSY + "import groupo.runtime as r; r.others_busy = lambda window=0.3: 1.0; "
               "from groupo.cli import main; main(['list', 'kl']); print(os.environ.get('OMP_WAIT_POLICY'))")
    assert got[-1] == "PASSIVE"
    got = _run("import os, groupo.runtime as r; r.load_average = lambda: 0.0; from groupo.cli import main; "
               "main(['list', 'kl']); print(os.environ.get('OMP_WAIT_POLICY'))")
    assert got[-1] == "None"


@pytest.mark.parametrize("load, others, want", [(0.1, None, None), (1.3, 1.0, "PASSIVE"), (1.3, 0.0, None),
                                                (1.3, None, "PASSIVE")])
def test_openmp_wait_policy_sleeps_only_when_other_work_runs(monkeypatch, load, others, want):
    """Idle machine: OpenMP's default spin (2x faster steps, measured); busy machine: PASSIVE
    (2.6x faster than spinning, measured); a high load average left by a finished job (nothing
    running now) is checked by a measurement and keeps the default; nothing measurable: the
    average decides."""
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(runtime, "_CACHE", {})
    measured = []
    monkeypatch.setattr(runtime, "others_busy", lambda window=0.3: measured.append(window) or others)
    assert runtime.wait_policy() == want
    assert len(measured) == (1 if load > runtime.IDLE_LOAD else 0)     # idle: nothing measured


def test_prepare_process_never_overrides_the_user_or_a_loaded_torch(monkeypatch):
    monkeypatch.setattr(runtime, "wait_policy", lambda: "PASSIVE")
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert runtime.prepare_process() is None and os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    assert "torch" in sys.modules                  # this test process: too late to change anything
    assert runtime.prepare_process() is None and "OMP_WAIT_POLICY" not in os.environ


@pytest.mark.parametrize("load, others, want", [(0.1, None, 2), (1.3, 0.0, 2), (1.3, 1.0, 1), (1.3, None, 1),
                                                (3.0, 2.0, 1)])
def test_auto_threads_use_the_cores_other_processes_leave(monkeypatch, load, others, want):
    """model.threads=0 on a 2-core machine: a lagging load average with nothing running now keeps
    both cores; another process using a core leaves one (never fewer than 1)."""
    import torch

    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(runtime, "_CACHE", {})
    monkeypatch.setattr(runtime, "others_busy", lambda window=0.3: others)
    try:
        assert runtime.set_threads(0) == want
        assert runtime.set_threads(3) == 3          # an explicit count is taken as is
    finally:
        torch.set_num_threads(before)


def test_others_busy_sees_a_busy_process():
    """The measurement itself (Linux): ~1 core while a child process spins, excluding this one."""
    if runtime.others_busy(0.05) is None:
        pytest.skip("no /proc/stat here")
    child = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 3: pass"])
    try:
        time.sleep(0.3)
        seen = runtime.others_busy(0.5)
    finally:
        child.kill()
        child.wait()
    assert 0.6 <= seen <= 2.5, seen


def test_omp_num_threads_of_the_user_is_respected(monkeypatch):
    """OMP_NUM_THREADS=1 limits torch to one thread when model.threads is left at 0 (auto); an
    explicit model.threads still wins."""
    import torch

    before = torch.get_num_threads()
    monkeypatch.setattr(runtime, "busy_cores", lambda: 0.0)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert runtime.set_threads(0) == 1 and torch.get_num_threads() == 1
        assert runtime.set_threads(2) == 2
        monkeypatch.setenv("OMP_NUM_THREADS", "")
        assert runtime.set_threads(0) == 4
    finally:
        torch.set_num_threads(before)
