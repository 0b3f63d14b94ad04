"""The rollout server (``groupo serve-rollouts``) and ``rollout.name=server``: the server in a
subprocess gives exactly the colocated samples and weights, follows every update, fails in one
line when unreachable; overlap (one-step off-policy) records each row's weights version."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from groupo.cli import main

ROOT = Path(__file__).resolve().parent.parent
STEPS = 3
BASE = ["model.tiny=false", "model.threads=1", "generation.group_size=4", "generation.prompts_per_step=3",
        "generation.max_new_tokens=6", f"train.steps={STEPS}", "train.micro_batches=2", "train.lr=1e-2",
        "warmstart.steps=0", "task.name=lego", "task.eval_size=4", "eval.n=4", "eval.before=false",
        "eval.after=false", "log.tensorboard=false", "log.progress=false", "log.completions_per_step=64",
        "checkpoint.every=0", "generation.temperature=1.5"]
VOLATILE = ("time/", "mem/", "tokens_per_s", "rollout/", "tis/")


def _serve(folder: Path, *args):
    """``groupo serve-rollouts`` on a free port in a subprocess; yields its url, then stops it."""
    log = folder / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "groupo", "serve-rollouts", "--model", *args, "--port", "0",
                                 "--threads", "1"], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 120
    while "serving rollouts" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    yield log.read_text().split(" on ", 1)[1].split()[0]
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tiny_dir, tmp_path_factory):
    """A server taking weights as files (stopped at the end of the module)."""
    folder = tmp_path_factory.mktemp("server")
    yield from _serve(folder, str(tiny_dir), "--weights-dir", str(folder / "weights"))


@pytest.fixture(scope="module")
def group_server(tiny_dir, tmp_path_factory):
    """A server taking weights over a gloo process group of two (--weights group)."""
    yield from _serve(tmp_path_factory.mktemp("group_server"), str(tiny_dir), "--weights", "group")


def _reward(tmp_path):
    """A reward that varies within groups even for a random model, so every update moves the weights."""
    f = tmp_path / "varied.py"
    f.write_text("def reward(completions, **kw):\n    return [float(len(c) % 3) for c in completions]\n")
    return f"rewards=[{{name: python, path: {f}}}]"


def _train(out: Path, tiny_dir, *over) -> list:
    assert main(["train", "grpo", "--out", str(out), f"model.path={tiny_dir}", *BASE, *over]) == 0
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _stable(rows) -> list:
    return [{k: v for k, v in r.items() if not k.startswith(VOLATILE)} for r in rows]


def _samples(out: Path) -> list:
    return [(r["step"], r["prompt"], r["completion"]) for r in map(json.loads, (out / "completions.jsonl").open())]


def _final(out: Path):
    from safetensors.torch import load_file

    ck = out / f"checkpoints/step_{STEPS}"
    return load_file(str(ck / "model.safetensors")), torch.load(ck / "state.pt", weights_only=False)


@pytest.mark.parametrize("per_prompt", [True, False])
def test_server_run_equals_colocated_run(server, tiny_dir, tmp_path, per_prompt):
    """Same samples, metrics, final weights and generator state as colocated generation; the
    weights were pushed after every update and the server's model equals the trainer's."""
    from groupo.rollout import remote
    from groupo.rollout.transport import weights_digest

    over = [_reward(tmp_path), f"generation.seed_per_prompt={str(per_prompt).lower()}"]
    local = _train(tmp_path / "local", tiny_dir, *over)
    remote_rows = _train(tmp_path / "remote", tiny_dir, *over, "rollout.name=server", f"rollout.url={server}",
                         "rollout.tis_cap=0")
    assert _samples(tmp_path / "remote") == _samples(tmp_path / "local")
    assert _stable(remote_rows) == _stable(local)
    assert all(r["grad_norm"] > 0 for r in local)             # the weights moved at every step
    w_local, s_local = _final(tmp_path / "local")
    w_remote, s_remote = _final(tmp_path / "remote")
    assert w_local.keys() == w_remote.keys()
    assert all(torch.equal(w_local[k], w_remote[k]) for k in w_local)          # bit-identical
    assert torch.equal(s_local["gen_rng"], s_remote["gen_rng"])                # the step generator advanced alike
    assert [r["rollout/version_min"] for r in remote_rows] == [0, 1, 2]        # sampled by the current weights
    assert all(r["rollout/staleness_max"] == 0 for r in remote_rows)
    client = remote._CLIENT
    assert client.version == STEPS                                             # one push per update
    loaded = client.check_load(digest=True)                                    # the server loads the last one
    assert loaded["version"] == STEPS and loaded["digest"] == weights_digest(w_remote.items())


def test_lora_server_run_equals_colocated_lora_run(server, tiny_dir, tmp_path):
    """LoRA with a server: the trainer pushes W + BA per adapted layer (rollout/vllm.py
    ``inference_weights``), the server samples with that plain model; on this model the samples
    and metrics equal colocated LoRA sampling, and the server ends on the final adapter merged."""
    from groupo.model.load import load_model
    from groupo.rollout import remote
    from groupo.rollout.transport import weights_digest
    from groupo.rollout.vllm import inference_weights

    over = [_reward(tmp_path), "generation.seed_per_prompt=true", "model.lora_r=4", "model.lora_alpha=8"]
    local = _train(tmp_path / "local", tiny_dir, *over)
    remote_rows = _train(tmp_path / "remote", tiny_dir, *over, "rollout.name=server", f"rollout.url={server}",
                         "rollout.tis_cap=0")
    assert _samples(tmp_path / "remote") == _samples(tmp_path / "local")
    assert _stable(remote_rows) == _stable(local) and all(r["grad_norm"] > 0 for r in local)
    assert [r["rollout/version_min"] for r in remote_rows] == [0, 1, 2]
    final = load_model(tmp_path / f"remote/checkpoints/step_{STEPS}")          # base + the final adapter
    assert hasattr(final, "peft_config")
    loaded = remote._CLIENT.check_load(digest=True)
    assert loaded["version"] == STEPS and loaded["digest"] == weights_digest(inference_weights(final))
    assert loaded["digest"] != weights_digest(inference_weights(load_model(tiny_dir)))    # the adapter moved W


def test_group_weights_equal_colocated_and_follow_overlap(group_server, tiny_dir, tmp_path):
    """Weights over a gloo group of two instead of files: the run equals colocated generation
    bit for bit and the server's model ends equal to the trainer's; with overlap the pushes land
    while the server samples from the previous version (the scheduled versions of the file path)."""
    from groupo.rollout import remote
    from groupo.rollout.collective import GroupSender
    from groupo.rollout.transport import weights_digest

    over = [_reward(tmp_path), "generation.seed_per_prompt=true"]
    local = _train(tmp_path / "local", tiny_dir, *over)
    rows = _train(tmp_path / "group", tiny_dir, *over, "rollout.name=server", f"rollout.url={group_server}",
                  "rollout.tis_cap=0")
    client = remote._CLIENT
    assert isinstance(client.transport, GroupSender) and client.info["weights"]["backend"] == "gloo"
    assert _samples(tmp_path / "group") == _samples(tmp_path / "local")
    assert _stable(rows) == _stable(local) and all(r["grad_norm"] > 0 for r in local)
    w_local, w_group = _final(tmp_path / "local")[0], _final(tmp_path / "group")[0]
    assert all(torch.equal(w_local[k], w_group[k]) for k in w_local)
    loaded = client.check_load(digest=True)
    assert loaded["version"] == STEPS and loaded["digest"] == weights_digest(w_group.items())
    lag = _train(tmp_path / "lag", tiny_dir, *over, "rollout.name=server", f"rollout.url={group_server}",
                 "rollout.overlap=true")
    assert [(r["rollout/version_min"], r["rollout/staleness_max"]) for r in lag] == [(0, 0), (0, 1), (1, 1)]
    assert remote._CLIENT.check_load(digest=True)["version"] == STEPS


def test_attach_to_a_file_server_is_one_line(server):
    from groupo.model.load import ModelError
    from groupo.rollout.remote import Client

    with pytest.raises(ModelError, match=r"/attach: this server takes weights as files \(--weights files\)"):
        Client(server, 30).call("/attach", {"session": "abc123"})


def test_generate_matches_colocated_sampler(server, tiny):
    """One call through the server against groupo's sampler in this process: same tokens, masks,
    texts and final generator states (one generator, or one per prompt); the returned log-probs
    are those of the sampled tokens under the sampler's logits."""
    from groupo.model.load import eos_ids
    from groupo.model.logprobs import build_inputs, token_logprobs
    from groupo.registry import build
    from groupo.rollout.hf import generate

    model, tok = tiny
    backend = build("rollout", "server", {"url": server})
    backend.prepare(model)
    prompts, sizes, eos = ["1+1=", "what is 2*3?", "xy"], [3, 0, 4], eos_ids(tok, model)

    def gens(per_prompt):
        return [torch.Generator().manual_seed(10 + j) for j in range(3)] if per_prompt else torch.Generator().manual_seed(7)

    for per_prompt, kw in ((True, {}), (False, {"top_p": 0.9, "top_k": 20})):
        g_srv, g_loc = gens(per_prompt), gens(per_prompt)
        a = backend.generate(model, tok, prompts, sizes, 10, eos, 1.3, generator=g_srv, **kw)
        b = generate(model, tok, prompts, sizes, 10, eos, 1.3, generator=g_loc, decode="lean", **kw)
        for f in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "truncated", "group"):
            assert torch.equal(getattr(a, f), getattr(b, f)), f
        assert a.texts == b.texts
        for x, y in zip(g_srv if per_prompt else [g_srv], g_loc if per_prompt else [g_loc]):
            assert torch.equal(x.get_state(), y.get_state())
        ids, attn, pos = build_inputs(a.prompt_ids, a.prompt_mask, a.completion_ids, a.completion_mask)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=attn, position_ids=pos).logits[:, a.prompt_ids.shape[1] - 1:-1]
        ref, _ = token_logprobs(logits.float(), a.completion_ids, 1.3, False)
        m = a.completion_mask.bool()
        assert torch.allclose(a.sampler_logp[m], ref[m], atol=1e-4)
        assert (a.sampler_logp[~m] == 0).all() and (a.policy_version == 0).all()


def test_overlap_rows_carry_the_scheduled_version(server, tiny_dir, tmp_path, capsys, monkeypatch):
    """rollout.overlap: step 1 is sampled by version 0, step t >= 2 by version t-2 while the
    trainer holds t-1 (staleness 1); prompts are those of the synchronous run, the prefetched
    request is always the one the step asks for, and the old log-probs the importance weights
    use come from the current weights (they differ from the sampler's only when rows are stale)."""
    from groupo.train import loop

    gaps = []

    def spy(*args, **kw):          # mean |old log-prob - sampler log-prob| of each step's tokens
        m = args[1].bool()
        gaps.append(float((kw["old_logp"] - kw["sampler_logp"])[m].abs().mean()))
        return score(*args, **kw)

    score = loop.score
    monkeypatch.setattr(loop, "score", spy)
    over = [_reward(tmp_path), "generation.seed_per_prompt=true", "rollout.name=server", f"rollout.url={server}",
            "rollout.tis_cap=2"]
    sync = _train(tmp_path / "sync", tiny_dir, *over)
    rows = _train(tmp_path / "overlap", tiny_dir, *over, "rollout.overlap=true")
    assert "prefetched request differs" not in capsys.readouterr().out
    assert [(r["rollout/version_min"], r["rollout/version_max"]) for r in rows] == [(0, 0), (0, 0), (1, 1)]
    assert [(r["rollout/staleness_mean"], r["rollout/staleness_max"]) for r in rows] == [(0, 0), (1, 1), (1, 1)]
    assert [r["rollout/staleness_max"] for r in sync] == [0, 0, 0]
    prompts = lambda out: [(s, p) for s, p, _ in _samples(out)]  # noqa: E731
    assert prompts(tmp_path / "overlap") == prompts(tmp_path / "sync")
    assert _samples(tmp_path / "overlap")[:12] == _samples(tmp_path / "sync")[:12]      # step 1: same weights
    assert max(gaps[:STEPS]) < 1e-4 and gaps[STEPS] < 1e-4                  # on-policy: decode vs forward only
    assert min(gaps[STEPS + 1:]) > 1e-3                                     # one update old


def test_overlap_with_frozen_weights_is_the_synchronous_run(server, tiny_dir, tmp_path):
    """lr 1e-30: the float32 weights never change (an update far below their rounding), so the
    one-step-old samples are the synchronous ones (the prefetch plans exactly the request of the
    step); only the version bookkeeping differs."""
    over = [_reward(tmp_path), "train.lr=1e-30", "rollout.name=server", f"rollout.url={server}", "rollout.tis_cap=0"]
    sync = _train(tmp_path / "sync", tiny_dir, *over)
    lag = _train(tmp_path / "lag", tiny_dir, *over, "rollout.overlap=true")
    assert _samples(tmp_path / "lag") == _samples(tmp_path / "sync")
    assert _stable(lag) == _stable(sync)
    assert [r["rollout/staleness_max"] for r in lag] == [0, 1, 1]


def test_unreachable_server_is_one_line_before_training(tiny_dir, tmp_path, capsys):
    import socket

    with socket.socket() as s:          # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "run"
    rc = main(["train", "grpo", "--out", str(out), f"model.path={tiny_dir}", *BASE, "rollout.name=server",
               f"rollout.url=http://127.0.0.1:{port}"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err, err
    assert f"rollout server http://127.0.0.1:{port} is unreachable" in err and "groupo serve-rollouts" in err
    assert not (out / "metrics.jsonl").exists()


def test_several_servers_map_ranks_and_refuse_idle_ones(monkeypatch, tiny_dir, tmp_path, capsys):
    """``rollout.url`` with several servers: rank r uses server r mod n; more servers than processes
    is one line before training; a malformed entry is refused by the config."""
    from groupo.model.load import ModelError
    from groupo.rollout.remote import Server
    from groupo.train import dist

    s = Server(url="http://a:1, http://b:2/")
    assert s.urls() == ["http://a:1", "http://b:2"]
    monkeypatch.setattr(dist, "world", lambda: 3)
    for r, want in [(0, "http://a:1"), (1, "http://b:2"), (2, "http://a:1")]:
        monkeypatch.setattr(dist, "rank", lambda r=r: r)
        assert s.my_url() == want
    monkeypatch.undo()
    with pytest.raises(ModelError, match="lists 2 servers but this run has 1 process"):
        s.my_url()
    with pytest.raises(ValueError, match="must start with http://.*got 'b:2'"):
        Server(url="http://a:1,b:2")
    out = tmp_path / "run"
    rc = main(["train", "grpo", "--out", str(out), f"model.path={tiny_dir}", *BASE, "rollout.name=server",
               "rollout.url=http://127.0.0.1:1,http://127.0.0.1:2"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "torchrun --nproc_per_node 2" in err, err
    assert not (out / "metrics.jsonl").exists()


def test_server_errors_come_back_in_one_line(server, tiny):
    from groupo.model.load import ModelError
    from groupo.rollout.remote import Client

    model, tok = tiny
    client = Client(server, 30)
    client.connect()
    with pytest.raises(ModelError, match=r"rollout server http://.*/generate: 'decode' must be one of"):
        client.generate({"prompts": ["a"], "group_sizes": [1], "max_new_tokens": 2, "eos_ids": [0],
                         "decode": "fast"}, 0)
    with pytest.raises(ModelError, match="the pushed weights do not fit the server's model"):
        client.transport.push([("not.a.weight", torch.zeros(2))], client.session, 0)
        client.check_load()


@pytest.mark.slow
def test_two_processes_share_one_session(server, group_server, tiny_dir, tmp_path):
    """torchrun, 2 processes: rank 0 pushes for both (one session), each rank sends its share of
    prompts; bit-identical to 2 colocated processes, and overlap keeps the schedule. With two
    servers (one per rank) the weights are the same."""
    over = [f"model.path={tiny_dir}", *BASE, _reward(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}

    def run(name, *extra):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "groupo",
               "train", "grpo", "--out", str(tmp_path / name), *over, *extra]
        done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]

    run("local")
    rows = run("remote", "rollout.name=server", f"rollout.url={server}", "rollout.tis_cap=0")
    lag = run("overlap", "rollout.name=server", f"rollout.url={server}", "rollout.overlap=true")
    # two servers, one per rank (files and group transports): each rank pushes to its own
    from groupo.rollout.remote import Client

    before = Client(group_server, 10).call("/health")["loaded"]
    run("two", "rollout.name=server", f"rollout.url={server},{group_server}", "rollout.tis_cap=0")
    after = Client(group_server, 10).call("/health")["loaded"]     # rank 1 drew from it: a new session,
    assert after[0] != before[0] and after[1] == STEPS - 1         # the version that sampled the last step
    w_local, w_remote, w_two = (_final(tmp_path / n)[0] for n in ("local", "remote", "two"))
    assert all(torch.equal(w_local[k], w_remote[k]) and torch.equal(w_local[k], w_two[k]) for k in w_local)
    assert [r["rollout/version_min"] for r in rows] == [0, 1, 2]
    assert [(r["rollout/version_min"], r["rollout/staleness_max"]) for r in lag] == [(0, 0), (0, 1), (1, 1)]


@pytest.fixture
def vllm_server(fake_vllm, tiny_dir, tmp_path):
    """``groupo serve-rollouts --engine vllm`` in this process (a thread), its engine the fake vLLM."""
    import threading
    from http.server import ThreadingHTTPServer

    from groupo.rollout.server import RolloutServer, _Handler

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.app = RolloutServer(str(tiny_dir), tmp_path / "weights", engine="vllm", say=lambda s: None)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd.app
    httpd.shutdown()
    httpd.server_close()


def test_vllm_engine_server_equals_colocated_vllm(vllm_server, fake_vllm, tiny_dir, tmp_path):
    """A server sampling with vLLM gives the colocated vLLM backend's run: the same per-prompt seeds
    (drawn from the trainer's generators), samples, metrics and final weights; the engine loads
    every pushed version before it samples."""
    url, app = vllm_server
    over = [_reward(tmp_path), "model.device=cpu"]
    local = _train(tmp_path / "local", tiny_dir, *over, "rollout.name=vllm")
    remote_rows = _train(tmp_path / "remote", tiny_dir, *over, "rollout.name=server", f"rollout.url={url}")
    assert app.info()["engine"] == "vllm" and app.loaded[1] == STEPS - 1
    assert _samples(tmp_path / "remote") == _samples(tmp_path / "local")
    assert _stable(remote_rows) == _stable(local)
    w_local, w_remote = _final(tmp_path / "local")[0], _final(tmp_path / "remote")[0]
    assert all(torch.equal(w_local[k], w_remote[k]) for k in w_local)
    server_llm = app.engine.llm
    assert server_llm.calls.count("generate") == STEPS and server_llm.calls.count("load_weights") == STEPS
    assert all(r["tis/mean_weight"] == pytest.approx(1.0, abs=1e-3) for r in remote_rows if "tis/mean_weight" in r)


def test_group_transport_versions_pruning_and_errors():
    """collective.py in one process (receiver thread + sender): each version arrives exactly,
    versions below the trainer's keep_from are dropped, a version that never comes is one line
    after the timeout, and a dtype the transport does not send is refused before anything goes."""
    from groupo.rollout.collective import GroupReceiver, GroupSender

    recv = GroupReceiver("127.0.0.1", 0, torch.device("cpu"), say=lambda s: None)
    recv.attach("s1")
    send = GroupSender("127.0.0.1", recv.port, "gloo", "s1", 30.0)
    w = [("a.weight", torch.randn(3, 4)), ("b.bias", torch.randn(5).to(torch.bfloat16))]
    for v in range(3):
        send.push([(n, t + v) for n, t in w], "s1", v, keep_from=v - 1)
        got = recv.pull("s1", v, timeout_s=30)
        assert all(torch.equal(got[n], t + v) and got[n].dtype == t.dtype for n, t in w)
    assert sorted(k[1] for k in recv.versions) == [1, 2]                       # v0 dropped at keep_from=1
    with pytest.raises(FileNotFoundError, match="weights version 7 of session s1 did not arrive"):
        recv.pull("s1", 7, timeout_s=0.2)
    with pytest.raises(ValueError, match="weight ids has dtype torch.int64"):
        send.push([("ids", torch.arange(3))], "s1", 3)
    recv.forget_others("s2")
    assert not recv.versions
