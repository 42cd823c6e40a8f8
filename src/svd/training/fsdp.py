"""FSDP (train.parallel: fsdp, the a100 profile): parameters, gradients and optimizer state sharded over processes.

torch's per-parameter FSDP (`fully_shard`, "FSDP2") wraps each UNet block (down, mid and up blocks) and the root, so
one block's full weights exist at a time in a forward or backward. It runs on GPUs with NCCL and, unlike
accelerate's FSDP plugin (which on a machine without CUDA falls back to plain DDP), on the CPU with gloo: the same
code path is tested here with 2 processes.

Checkpoints stay consolidated: every process takes part in gathering the full model, EMA and optimizer state, the
main process writes them in the usual layout (svd.training.checkpoint), and every process loads its own shard
back from the full tensors. So a checkpoint resumes under FSDP or DDP with any process count, and the exported UNet
is a plain diffusers folder. (At the paper's 1.5B parameters the full state is ~18 GB of host memory on the main
process during a save; sharded torch.distributed.checkpoint saves are the next step past that.)
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

GroupNames = list[list[str]]  # the parameter names of each optimizer group, in order


def _blocks(model: nn.Module) -> Iterator[nn.Module]:
    """The units each wrapped by fully_shard: a diffusers UNet's down, mid and up blocks, else the root's children."""
    found = False
    for name in ("down_blocks", "up_blocks"):
        for block in getattr(model, name, None) or []:
            found = True
            yield block
    if getattr(model, "mid_block", None) is not None:
        found = True
        yield model.mid_block
    if not found:
        yield from (c for c in model.children() if any(True for _ in c.parameters()))


def shard_model(model: nn.Module, optimizer: torch.optim.Optimizer) -> GroupNames:
    """Shard `model` over the default process group (in place) and point `optimizer` at the sharded parameters
    (fully_shard replaces them; the optimizer must not have stepped yet). Returns the optimizer's group names,
    which the consolidated optimizer state is indexed by."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    if any(optimizer.state.values()):
        raise ValueError("shard the model before the optimizer's first step")
    name_of = {id(p): n for n, p in model.named_parameters()}
    groups = [[name_of[id(p)] for p in g["params"]] for g in optimizer.param_groups]
    mesh = init_device_mesh("cuda" if torch.cuda.is_available() else "cpu", (torch.distributed.get_world_size(),))
    for block in _blocks(model):
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    params = dict(model.named_parameters())
    for group, names in zip(optimizer.param_groups, groups):
        group["params"] = [params[n] for n in names]
    return groups


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def unsharded_class(model: nn.Module) -> type:
    """The model's own class (fully_shard swaps in a subclass, FSDP<Class>)."""
    from torch.distributed.fsdp import FSDPModule

    cls = type(model)
    if not isinstance(model, FSDPModule):
        return cls
    return next(c for c in cls.__mro__[1:] if issubclass(c, nn.Module) and not issubclass(c, FSDPModule))


def _full_options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Full weights on the main process ({} on the others). Collective: every process calls it."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_full_options())


def full_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Sharded tensors (an EMA shadow) as full CPU tensors on every process. Collective."""
    from torch.distributed.tensor import DTensor

    return {k: (v.full_tensor() if isinstance(v, DTensor) else v).cpu() for k, v in tensors.items()}


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, groups: GroupNames) -> dict:
    """The optimizer's full state on the main process ({} on the others) in torch's own layout (parameters numbered
    in group order), the layout an unsharded run saves and loads. Collective."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    by_name = get_optimizer_state_dict(model, optimizer, options=_full_options())
    if not by_name:
        return {}
    index = {n: i for i, n in enumerate(n for names in groups for n in names)}
    return {
        "state": {index[k]: v for k, v in by_name["state"].items()},
        "param_groups": [{**g, "params": [index[n] for n in g["params"]]} for g in by_name["param_groups"]],
    }


def load_full_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    groups: GroupNames,
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict | None,
) -> None:
    """Every process loads its shard of a consolidated checkpoint (each has read the full state). Collective."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, model_state, options=options)
    if optimizer is not None and optimizer_state is not None:
        names = [n for names in groups for n in names]
        by_name = {
            "state": {names[i]: v for i, v in optimizer_state["state"].items()},
            "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in optimizer_state["param_groups"]],
        }
        set_optimizer_state_dict(model, optimizer, by_name, options=options)


def shard_like(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A full tensor cut to `like`'s sharding (an EMA shadow entry), or itself when `like` is not sharded."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if isinstance(like, DTensor):
        return distribute_tensor(value.to(like.dtype), like.device_mesh, like.placements)
    return value


__all__ = [
    "GroupNames",
    "full_model_state",
    "full_optimizer_state",
    "full_tensors",
    "is_sharded",
    "load_full_state",
    "shard_like",
    "shard_model",
    "unsharded_class",
]
