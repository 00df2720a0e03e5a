"""One rank of the collective-helper test in test_training_distributed.py.

It joins the process group as the trainer does, exercises each helper of ``DistributedContext`` and
``check_replicas_identical``, and prints what it saw as one JSON line.
"""

import json

import torch

from training.distributed import check_replicas_identical, process_group


def _raise_missing_checkpoint() -> None:
    raise FileNotFoundError("no checkpoint at runs/tiny/ckpt.pt")


def main() -> None:
    report = {}
    with process_group("cpu") as context:
        report["rank"] = context.rank
        report["main_result"] = context.call_on_main(lambda: {"computed_by": context.rank})
        try:
            context.call_on_main(_raise_missing_checkpoint)
        except FileNotFoundError as err:
            report["main_error"] = str(err)

        weights = {"wte": torch.linspace(-1.0, 1.0, 7), "lm_head": torch.ones(3, 2)}
        check_replicas_identical(weights.items(), context)
        if context.rank == 1:
            # The smallest possible change: the next float32 above 1.0.
            weights["lm_head"][0, 0] = torch.nextafter(torch.tensor(1.0), torch.tensor(2.0))
        try:
            check_replicas_identical(weights.items(), context)
            report["replica_error"] = None
        except RuntimeError as err:
            report["replica_error"] = str(err)

        report["mean"] = context.mean(float(context.rank))
        report["broadcast"] = context.broadcast(10.0 + context.rank)
        flags = torch.tensor([context.rank == 0, context.rank == 1, False])
        report["any_rank"] = context.any_rank(flags).tolist()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
