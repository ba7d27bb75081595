"""Training in several processes (DistributedDataParallel over gloo): the averaged gradient of one step equals
one process's gradient on the same global batch, and `train --nproc 2` writes a checkpoint that predicts."""

import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from conftest import make_names, write_names_dir
from nameorigin import distributed
from nameorigin.cli import main
from nameorigin.data import encode_names
from nameorigin.models import ModelConfig, build_model
from nameorigin.predict import Predictor

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="this torch build has no gloo backend"
)
CONFIG = ModelConfig(name="gru-attention", hidden=8, bidirectional=True, embed=4)


def global_batch():
    """Two batches of 6 names of different lengths, with labels; together the global batch."""
    names = [n for group in make_names(3, seed=5).values() for n in group]  # 12 names, 4 'languages'
    tokens, lengths = encode_names(names)
    labels = torch.arange(len(names)) % 4
    return tokens, lengths, labels, [torch.arange(0, 6), torch.arange(6, 12)]


def step_gradients(model, net, tokens, lengths, labels, index) -> dict[str, torch.Tensor]:
    log_probs, _ = net(tokens[index, : int(lengths[index].max())], lengths[index])
    F.nll_loss(log_probs, labels[index]).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def grad_worker(rank: int, world: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        ranks = distributed.current()
        torch.manual_seed(rank)  # different weights on each rank: DDP must start them all from rank 0's
        model = build_model(CONFIG, 4)
        if rank == 0:
            torch.manual_seed(0)
            model = build_model(CONFIG, 4)
        net = distributed.wrap(model, ranks)
        tokens, lengths, labels, batches = global_batch()
        (mine,) = distributed.shard(batches, ranks)
        grads = step_gradients(model, net, tokens, lengths, labels, mine)
        if rank == 0:
            torch.save(grads, out)
        dist.barrier()  # no rank leaves while the other's gradient all-reduce may still be in flight
    finally:
        dist.destroy_process_group()


def test_two_processes_average_to_the_global_batch_gradient(tmp_path):
    out = tmp_path / "grads.pt"
    mp.spawn(grad_worker, args=(2, str(tmp_path / "rendezvous"), str(out)), nprocs=2, join=True)
    together = torch.load(out)
    torch.manual_seed(0)
    model = build_model(CONFIG, 4)
    tokens, lengths, labels, batches = global_batch()
    alone = step_gradients(model, model, tokens, lengths, labels, torch.cat(batches))
    assert together.keys() == alone.keys() and len(alone) > 5
    for name in alone:
        assert torch.allclose(together[name], alone[name], atol=1e-5, rtol=0), name


def test_shard_gives_each_rank_the_same_number_of_batches():
    batches = list(range(7))
    shares = [distributed.shard(batches, distributed.Ranks(r, 3)) for r in range(3)]
    assert shares == [[0, 3], [1, 4], [2, 5]]
    assert distributed.shard(batches, distributed.Ranks()) == batches
    with pytest.raises(ValueError, match="cannot be shared"):
        distributed.shard([0], distributed.Ranks(0, 2))


def test_train_nproc_2_writes_one_checkpoint_that_predicts(tmp_path):
    folder = write_names_dir(tmp_path)
    out = tmp_path / "ddp.safetensors"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "nameorigin",
            "train",
            "--data",
            str(folder),
            "--model",
            "gru",
            "--hidden",
            "16",
            "--epochs",
            "3",
            "--batch-size",
            "16",
            "--nproc",
            "2",
            "--out",
            str(out),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("trained gru on") == 1 and run.stdout.count("validation (") == 1  # rank 0 alone
    predictor = Predictor.load(out)
    assert predictor.checkpoint.meta["training"]["processes"] == 2
    assert predictor.checkpoint.meta["metrics"]["valid"]["n"] > 0
    (result,) = predictor.predict(["Kalov"], top=2)
    assert len(result.predictions) == 2 and not result.error


@pytest.mark.parametrize("argv", [["--nproc", "0"], ["--nproc", "-1"], ["--nproc", "two"]])
def test_bad_nproc_exits_2(tmp_path, capsys, argv):
    with pytest.raises(SystemExit) as e:
        main(["train", "--data", str(tmp_path), *argv])
    assert e.value.code == 2 and "--nproc" in capsys.readouterr().err


def test_nproc_with_the_worksheet_loop_is_refused(tmp_path, capsys):
    folder = write_names_dir(tmp_path)
    assert main(["train", "--data", str(folder), "--worksheet", "--nproc", "2"]) == 2
    assert "worksheet" in capsys.readouterr().err
