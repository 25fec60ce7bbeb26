"""Elastic DDP training with checkpoint/resume, as a user would write it for elastic ``torchrun``.

The baseline of ``recovery.py``. Run on every "node" (agent) with the same
rendezvous arguments, e.g. twice on one machine::

    OMP_NUM_THREADS=1 TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 .venv/bin/torchrun --nnodes=1:2 \
        --nproc-per-node=1 --max-restarts=3 --rdzv-backend=c10d \
        --rdzv-endpoint=127.0.0.1:29531 --rdzv-id=demo \
        --rdzv-conf=last_call_timeout=1,keep_alive_interval=1,keep_alive_max_attempt=3 \
        --monitor-interval=0.5 benchmarks/torchrun_elastic.py --ckpt-dir /tmp/ckpt

It trains the raylift ``mlp`` on the ``digits`` tensors with gloo and AdamW (constant
LR) on raylift's sample stream (``raylift.training.plan``: a step takes the next
global batch of seeded per-epoch permutations at ``samples_seen``), keeping the
global batch at ``--batch x --max-world`` whatever the world size (fewer ranks
accumulate more micro-batches, like raylift's ``keep_global``). Every
``--checkpoint-every`` steps rank 0 saves model, optimizer, step and samples seen
atomically (write a temp file, fsync, rename); at start every rank resumes from
the checkpoint if there is one (start the second agent once the first, which
hosts the rendezvous store, is up; ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` lets a
node join a running job, see benchmarks/README.md). Rank 0 prints one JSON line per step:
``{"t": time.time(), "step", "world", "resumed_from", "restart", "pid"}``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from raylift.data import load_dataset
from raylift.models import build_model
from raylift.training.plan import SampleStream, StepPlan

CHECKPOINT = "latest.pt"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt-dir", required=True, help="shared checkpoint folder")
    parser.add_argument("--steps", type=int, default=100_000, help="total optimizer steps")
    parser.add_argument("--batch", type=int, default=32, help="examples per rank per micro-batch")
    parser.add_argument("--max-world", type=int, default=2, help="ranks the global batch is for")
    parser.add_argument("--hidden", default="32", help="MLP hidden sizes, comma-separated")
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-every", type=int, default=20, help="steps between saves")
    parser.add_argument(
        "--step-time", type=float, default=0.0, help="pace: at least this many seconds a step"
    )
    return parser.parse_args()


def save_checkpoint(path: str, payload: dict) -> None:
    """Write ``path`` atomically: a reader sees the old file or the complete new one."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as handle:
        torch.save(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def main() -> None:
    args = parse_args()
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    data = load_dataset("digits", {}, val_fraction=0.2, seed=args.seed)
    plan = StepPlan(
        num_train=data.num_train,
        per_worker_batch=args.batch,
        world_size=world,
        grad_accum_steps=1,
        epochs=None,
        max_steps=args.steps,
        max_workers=args.max_world,
    )
    stream = SampleStream(data.num_train, args.seed)
    hidden = [int(size) for size in args.hidden.split(",") if size]
    torch.manual_seed(args.seed)
    model = build_model("mlp", None, {"hidden_sizes": hidden}, data.info)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)

    step, samples_seen, resumed_from = 0, 0, None
    path = os.path.join(args.ckpt_dir, CHECKPOINT)
    if os.path.exists(path):
        state = torch.load(path, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, samples_seen = int(state["step"]), int(state["samples_seen"])
        resumed_from = step
    ddp = DistributedDataParallel(model)
    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0))
    scale = world / plan.global_batch  # summed per-sample losses -> mean over the global batch

    ddp.train()
    while step < plan.total_steps:
        started = time.perf_counter()
        for micro in range(plan.accum_steps):
            indices = stream.indices(plan.micro_batch_positions(samples_seen, micro, rank))
            inputs, targets = data.train_inputs[indices], data.train_targets[indices]
            per_sample = nn.functional.cross_entropy(ddp(inputs), targets, reduction="none")
            last = micro == plan.accum_steps - 1
            if last:
                (per_sample.sum() * scale).backward()
            else:
                with ddp.no_sync():
                    (per_sample.sum() * scale).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        samples_seen += plan.global_batch
        if rank == 0 and step % args.checkpoint_every == 0:
            payload = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "step": step,
                "samples_seen": samples_seen,
            }
            save_checkpoint(path, payload)
        if rank == 0:
            line = {
                "t": time.time(),
                "step": step,
                "world": world,
                "resumed_from": resumed_from,
                "restart": restart,
                "pid": os.getpid(),
            }
            print(json.dumps(line), flush=True)
        left = args.step_time - (time.perf_counter() - started)
        if left > 0:
            time.sleep(left)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
