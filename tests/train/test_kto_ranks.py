"""KTO under data parallelism: 2 gloo processes, each holding half of the global batch, score against the
KL baseline of the whole batch (gathered over the ranks, as TRL does) and so give the one-process loss."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tuneforge.train.preference import losses as pl

BETA = 1.0

# One global batch of 4 rows: (desirable?, policy logp, reference logp, policy KL logp, reference KL logp).
# The two halves have very different KL log-ratios (0.8 and 4.5 on average), so a per-rank baseline
# would change the loss.
ROWS = [
    (True, -4.0, -5.0, -10.0, -10.5),
    (False, -9.0, -8.0, -11.0, -12.1),
    (True, -3.0, -3.5, -12.0, -17.0),
    (False, -6.0, -6.5, -9.0, -13.0),
]


def _loss(rows):
    tags = torch.tensor([row[0] for row in rows])
    policy, ref, policy_kl, ref_kl = (torch.tensor([row[i] for row in rows]) for i in range(1, 5))
    per_row, _, _, kl = pl.kto_losses(policy[tags], policy[~tags], policy_kl, ref[tags], ref[~tags], ref_kl,
                                      beta=BETA)
    return per_row.nanmean(), kl  # the recipe's loss: the mean over this rank's rows


def _worker(rank, init_file, result_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    loss, kl = _loss(ROWS[2 * rank: 2 * rank + 2])
    mean_loss = loss.clone()
    dist.all_reduce(mean_loss)  # DDP averages the ranks' gradients, i.e. their losses
    mean_loss /= 2
    kls = [torch.zeros(()) for _ in range(2)]
    dist.all_gather(kls, kl)
    if rank == 0:
        torch.save({"loss": mean_loss, "kls": kls}, result_file)
    dist.destroy_process_group()


def test_two_ranks_give_the_one_process_kto_loss(tmp_path):
    single_loss, single_kl = _loss(ROWS)
    assert float(single_kl) == pytest.approx((0.5 + 1.1 + 5.0 + 4.0) / 4)

    result_file = tmp_path / "kto.pt"
    mp.start_processes(_worker, args=(str(tmp_path / "init"), str(result_file)), nprocs=2, start_method="fork")
    result = torch.load(result_file)
    assert [float(kl) for kl in result["kls"]] == pytest.approx([float(single_kl)] * 2)
    assert float(result["loss"]) == pytest.approx(float(single_loss), rel=1e-6)

    # The per-rank baseline (what each rank computed alone) gives another loss: the gather is what matters.
    per_rank = (_loss(ROWS[:2])[0] + _loss(ROWS[2:])[0]) / 2
    assert abs(float(per_rank) - float(single_loss)) > 1e-3


def test_ranks_with_unequal_rows_use_the_mean_over_all_kl_rows(tmp_path):
    result_file = tmp_path / "kl.pt"
    mp.start_processes(_unequal_worker, args=(str(tmp_path / "init"), str(result_file)), nprocs=2,
                       start_method="fork")
    assert float(torch.load(result_file)) == pytest.approx((1.0 + 2.0 + 6.0) / 3)


def _unequal_worker(rank, init_file, result_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    values = torch.tensor([1.0, 2.0]) if rank == 0 else torch.tensor([6.0])
    mean = pl.mean_over_ranks(values)
    if rank == 0:
        torch.save(mean, result_file)
    dist.destroy_process_group()
