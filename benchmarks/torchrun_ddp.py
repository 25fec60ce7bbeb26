"""Plain DDP training, as a user would write it for ``torchrun``: the baseline.

Run with ``torchrun --nproc_per_node 2 benchmarks/torchrun_ddp.py --steps 300``.
Trains the raylift ``mlp`` on the ``digits`` tensors with gloo and AdamW, each
rank taking its own slice of a seeded per-epoch permutation, then saves the
weights from rank 0. Rank 0 prints one JSON line: samples trained, loop seconds
(first to last optimizer step) and total seconds (script start to exit).
"""

from __future__ import annotations

import time

SCRIPT_START = time.perf_counter()

import argparse  # noqa: E402 - the clock starts before the imports
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402

from raylift.data import PreparedData, load_dataset  # noqa: E402
from raylift.models import build_model  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps")
    parser.add_argument("--batch", type=int, default=64, help="examples per rank per step")
    parser.add_argument("--hidden", default="1024,1024", help="MLP hidden sizes, comma-separated")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=50, help="print the loss every N steps")
    parser.add_argument("--save-dir", default=None, help="where rank 0 saves the weights")
    return parser.parse_args()


def train_steps(
    ddp: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: PreparedData,
    args: argparse.Namespace,
    rank: int,
    world: int,
) -> tuple[float, float]:
    """The training loop: ``args.steps`` optimizer steps; returns (seconds, last loss)."""
    num_train = data.num_train
    global_batch = args.batch * world
    steps_per_epoch = num_train // global_batch
    permutation = torch.empty(0, dtype=torch.int64)
    running_loss, last_loss = 0.0, float("nan")

    loop_start = time.perf_counter()
    ddp.train()
    for step in range(args.steps):
        epoch, position = divmod(step, steps_per_epoch)
        if position == 0:
            generator = torch.Generator().manual_seed(args.seed * 1_000_003 + epoch)
            permutation = torch.randperm(num_train, generator=generator)
        start = position * global_batch + rank * args.batch
        indices = permutation[start : start + args.batch]
        inputs, targets = data.train_inputs[indices], data.train_targets[indices]

        loss = nn.functional.cross_entropy(ddp(inputs), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

        running_loss += loss.item()
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            last_loss = running_loss / ((step % args.log_every) + 1)
            running_loss = 0.0
            if rank == 0:
                print(f"step {step + 1}: loss {last_loss:.4f}", file=sys.stderr, flush=True)
    return time.perf_counter() - loop_start, last_loss


def main() -> None:
    args = parse_args()
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()

    data = load_dataset("digits", {}, val_fraction=0.2, seed=args.seed)
    hidden = [int(size) for size in args.hidden.split(",") if size]
    torch.manual_seed(args.seed)
    model = build_model("mlp", None, {"hidden_sizes": hidden}, data.info)
    ddp = DistributedDataParallel(model)
    optimizer = torch.optim.AdamW(ddp.parameters(), lr=args.lr, weight_decay=args.weight_decay)

    loop_s, last_loss = train_steps(ddp, optimizer, data, args, rank, world)

    if rank == 0:
        save_dir = args.save_dir or tempfile.mkdtemp(prefix="torchrun-ddp-")
        torch.save(model.state_dict(), os.path.join(save_dir, "model.pt"))
    dist.barrier()
    dist.destroy_process_group()
    if rank == 0:
        result = {
            "samples": args.steps * args.batch * world,
            "steps": args.steps,
            "world_size": world,
            "loop_s": loop_s,
            "total_s": time.perf_counter() - SCRIPT_START,
            "train_loss": last_loss,
            "torch_threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        }
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
