"""The one training loop of the project, on accelerate: diffusion models, ControlNets, detectors, GANs.

A model plugs in as a `TrainingTask`: an `nn.Module` holding all its networks (frozen ones included)
whose `forward(batch, generator)` returns the scalar loss of one batch, and whose
`trainable_groups()` names the parameters to optimise. The loop owns everything else: devices and
multi-GPU (accelerate), mixed precision, the optimizer (AdamW with linear warmup then a constant rate unless the
task says otherwise), seeds, tqdm, a metrics JSONL, atomic periodic checkpoints (model + optimizers + schedulers +
RNG), exact resume, NaN detection and a run summary. A task may override:
- `configure_optimizers(config)`: named (optimizer, scheduler or None) pairs, e.g. a detector's official SGD and
  per-epoch poly schedule, or one lazily regularised Adam per network of a GAN;
- `training_step(model, batch, generator, step, update)`: what a step does, e.g. a GAN's phases, each ending in
  `update(loss, optimizer_name)`; returns the values to log (`loss` is the run's main one). Such a step's phases
  see each other's updates, so it is meant for gradient_accumulation_steps 1;
- `checkpoint_extras()`: tensors beyond the trainable parameters that change in training and that a checkpoint must
  hold (BatchNorm statistics, an EMA copy), saved and restored as strictly as the parameters;
- `calls_networks_directly = True`: its `training_step` calls its networks, not `model` (a GAN's phases), so the
  distributed wrapper never sees the forward passes; `update` then averages the optimizer's gradients over the
  processes itself before stepping (as StyleGAN3's training loop does).

    class MyTask(TrainingTask):
        def __init__(self):
            super().__init__()
            self.unet, self.vae = ..., ...          # freeze what must not train: p.requires_grad_(False)
        def trainable_groups(self):
            return {"unet": list(self.unet.parameters())}
        def forward(self, batch, generator):
            noise = torch.randn(shape, generator=generator, device=generator.device)
            ...
            return F.mse_loss(pred, noise)

    summary = train(MyTask(), dataset, LoopConfig(max_steps=1000, batch_size=8, lr=1e-4), "runs/x", resume=True)

Several processes (`accelerate launch`, `torchrun`): `batch_size` is the global batch of a step, cut into
processes x `gradient_accumulation_steps` micro-batches; each process runs its micro-batches (accelerate's
accumulation), gradients are all-reduced, and the main process alone writes logs and checkpoints.

Rules that make a resumed run reach the same weights as an uninterrupted one:
- all randomness of a step (noise, timesteps, condition dropout, augmentation) is drawn from `generator`,
  which is seeded from (seed, step, micro-batch): so any layout with the same number of micro-batches
  (processes x accumulation) trains the same weights, e.g. 2 processes and 1 process accumulating 2. Layers that
  draw from torch's global RNG (dropout, StyleGAN noise inputs) find it seeded from the same parts before each
  micro-batch; a task never saves or restores RNG state itself;
- the batch of a step is a pure function of (seed, step): epochs are seeded permutations of the dataset
  and a resumed run starts the stream at its step, so the dataset itself must be deterministic (do
  random augmentation in `forward`, not in `__getitem__`).

Checkpoints hold only the trainable parameters and the task's `checkpoint_extras()` (frozen weights come from
wherever the task built them) and are written as `<out>/checkpoints/step-<n>` via a temporary folder renamed on
completion; the last `keep_checkpoints` are kept. `<out>/metrics.jsonl` gets one line per logged step; `<out>/run_summary.json`
records config, seed, versions, parameter counts per group, the final status and `train_seconds` (the wall time of
the whole training, summed over resumes: see `deffiller.utils.clock`).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, broadcast_object_list, send_to_device, set_seed
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers import get_constant_schedule_with_warmup

from deffiller.errors import DefFillerError
from deffiller.utils.clock import SUMMARY_KEY, TrainingClock
from deffiller.utils.io import remove_folder, remove_stale_temps, replace_folder, write_json, write_text
from deffiller.utils.provenance import provenance
from deffiller.utils.seeds import derive_seed, seeded_generator

CHECKPOINTS = "checkpoints"
METRICS = "metrics.jsonl"
SUMMARY = "run_summary.json"
TRAINABLE_FILE = "trainable.safetensors"


@dataclass
class LoopConfig:
    """Optimisation settings shared by every trained model; a model's config section may subclass it."""

    max_steps: int = 30_000
    batch_size: int = 2  # the global batch: per process x processes x gradient_accumulation_steps
    gradient_accumulation_steps: int = 1  # micro-batches per process and step (a small GPU's way to the global batch)
    lr: float = 5e-5
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 10_000  # linear from 0 (first step) to lr, then constant (transformers' schedule)
    grad_clip: float | None = None  # max grad norm; None = no clipping
    mixed_precision: str = "no"  # no | fp16 | bf16
    checkpoint_every: int = 5_000
    keep_checkpoints: int = 1
    log_every: int = 1
    num_workers: int = 0  # -1 = sized to the machine (see `loader_workers`)
    device: str = "auto"  # auto (accelerate's choice) | cpu


class TrainingTask(torch.nn.Module):
    """A trainable model as seen by `train`: subclass it, see the module docstring."""

    calls_networks_directly = False

    def trainable_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        """Named groups of the parameters to optimise; every other parameter must have requires_grad=False."""
        raise NotImplementedError

    def forward(self, batch: dict, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def configure_optimizers(self, config: LoopConfig) -> dict[str, tuple[torch.optim.Optimizer, object]]:
        """Named (optimizer, scheduler or None) pairs over the trainable parameters; the first is the default of
        `update` and its learning rate is logged. Default: AdamW with `config`'s linear warmup, then constant."""
        params = [p for group in self.trainable_groups().values() for p in group]
        optimizer = torch.optim.AdamW(params, lr=config.lr, betas=tuple(config.adam_betas),
                                      weight_decay=config.weight_decay)
        return {"main": (optimizer, get_constant_schedule_with_warmup(optimizer, config.warmup_steps))}

    def training_step(self, model, batch, generator: torch.Generator, step: int, update) -> dict:
        """One micro-batch of step `step` (0-based); returns {name: scalar} to log. `model` is this task as prepared
        for distributed training (call it for a forward pass whose gradients are all-reduced); `update(loss, name)`
        checks the loss is finite, back-propagates it and, on the step's last micro-batch, steps optimizer `name`."""
        loss = model(batch, generator)
        update(loss)
        return {"loss": loss}

    def checkpoint_extras(self) -> dict[str, torch.Tensor]:
        """Named tensors, other than trainable parameters, that a checkpoint holds and a resume copies back."""
        return {}


def persistent_buffers(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The buffers of `module` its state dict holds (running statistics, tracked means), by state-dict name."""
    params = {name for name, _ in module.named_parameters()}
    return {k: v for k, v in module.state_dict(keep_vars=True).items() if k not in params}


class TrainingDiverged(DefFillerError):
    """The loss became NaN or infinite; the run stopped without touching its last checkpoint."""


def step_generator(seed: int, step: int, micro_batch: int, device) -> torch.Generator:
    """The generator of one micro-batch of a step (its index in the global batch, 0 with one process and no
    accumulation): independent of every other step and micro-batch and of the global RNG."""
    return seeded_generator(seed, step, micro_batch, device=device)


def average_gradients(params: list[torch.nn.Parameter], accelerator: Accelerator) -> None:
    """Average the gradients of `params` over the processes in one all-reduce, with DDP's rule for unused
    parameters: a gradient missing on some processes counts as zero there, one missing on all of them stays None
    (so the optimizer skips that parameter, as with one process)."""
    device = params[0].device
    flat = torch.cat([torch.zeros(p.numel(), device=device) if p.grad is None else p.grad.detach().flatten().float()
                      for p in params] + [torch.tensor([p.grad is not None for p in params], device=device).float()])
    flat = accelerator.reduce(flat, reduction="sum")
    grads, present = flat[: -len(params)].split([p.numel() for p in params]), flat[-len(params):]
    for p, grad, count in zip(params, grads, present.tolist()):
        if count:
            p.grad = (grad / accelerator.num_processes).view_as(p).to(p.dtype)


def micro_batch_size(batch_size: int, processes: int, accumulation: int) -> int:
    """The batch of one forward pass: the global `batch_size` over processes x accumulation steps."""
    if accumulation < 1:
        raise DefFillerError(f"gradient_accumulation_steps must be at least 1, got {accumulation}")
    micro, rest = divmod(batch_size, processes * accumulation)
    if rest or not micro:
        raise DefFillerError(f"batch_size {batch_size} (the global batch) does not split into {processes} process(es) "
                             f"x {accumulation} gradient accumulation step(s); make it a multiple of "
                             f"{processes * accumulation}, or change the process count or gradient_accumulation_steps")
    return micro


class StepBatches(torch.utils.data.Sampler):
    """Index micro-batches of this process for steps start, start+1, ...: seeded epochs over the dataset, cut into
    global batches of `batch_size` (a batch may straddle two epochs), each cut into processes x accumulation
    micro-batches; process p takes micro-batches p * accumulation + a, a = 0 .. accumulation - 1, of every step."""

    def __init__(self, size: int, batch_size: int, seed: int, start_step: int, process: int = 0, processes: int = 1,
                 accumulation: int = 1):
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.start_step, self.process, self.processes, self.accumulation = start_step, process, processes, accumulation
        self.micro = micro_batch_size(batch_size, processes, accumulation)

    def _epoch(self, epoch: int) -> list[int]:
        return torch.randperm(self.size, generator=seeded_generator(self.seed, epoch)).tolist()

    def __iter__(self):
        global_batch = self.batch_size
        position = self.start_step * global_batch
        epoch, offset = divmod(position, self.size)
        order = self._epoch(epoch)
        while True:
            batch = []
            while len(batch) < global_batch:
                if offset == self.size:
                    epoch, offset = epoch + 1, 0
                    order = self._epoch(epoch)
                take = min(global_batch - len(batch), self.size - offset)
                batch += order[offset : offset + take]
                offset += take
            for a in range(self.accumulation):
                first = (self.process * self.accumulation + a) * self.micro
                yield batch[first : first + self.micro]


def loader_workers(requested: int) -> int:
    """`requested` data loader workers, or for -1 one per spare core (one core stays with the training process),
    at most 8: the items are two small image files each, so more workers only add start-up time."""
    if requested >= 0:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(8, max(0, cores - 1))


def parameter_counts(task: TrainingTask) -> dict:
    """Trainable parameters per task group, frozen parameters per top-level submodule."""
    groups = task.trainable_groups()
    trainable_ids = {id(p) for params in groups.values() for p in params}
    frozen: dict[str, int] = {}
    for name, p in task.named_parameters():
        if id(p) not in trainable_ids:
            top = name.split(".")[0]
            frozen[top] = frozen.get(top, 0) + p.numel()
    trainable = {g: sum(p.numel() for p in params) for g, params in groups.items()}
    return {"trainable": trainable, "frozen": frozen, "trainable_total": sum(trainable.values()),
            "frozen_total": sum(frozen.values())}


def check_trainable(task: TrainingTask) -> list[torch.nn.Parameter]:
    """The trainable parameters, after checking they are exactly the ones with requires_grad (no overlap, no strays)."""
    params, seen = [], set()
    for group, members in task.trainable_groups().items():
        for p in members:
            if id(p) in seen:
                raise ValueError(f"a parameter appears twice in trainable_groups (group {group!r})")
            seen.add(id(p))
            params.append(p)
    wrong = [n for n, p in task.named_parameters() if p.requires_grad != (id(p) in seen)]
    if wrong:
        raise ValueError(f"requires_grad disagrees with trainable_groups() for {wrong[:8]} ({len(wrong)} in all)")
    return params


def checkpoint_dirs(out_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    found = [p for p in (out_dir / CHECKPOINTS).glob("step-*") if re.fullmatch(r"step-\d+", p.name) and p.is_dir()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def _checkpointed(task: TrainingTask) -> dict[str, torch.Tensor]:
    """What a checkpoint holds of the task: the trainable parameters and its extras."""
    return {**{n: p for n, p in task.named_parameters() if p.requires_grad}, **task.checkpoint_extras()}


def _register_trainable_only_checkpoints(accelerator: Accelerator, task: TrainingTask) -> None:
    """Checkpoints store the trainable parameters and extras only, and loading them is strict about their names."""

    def save_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            state = {n: t.detach().contiguous().cpu() for n, t in _checkpointed(accelerator.unwrap_model(models[0])).items()}
            save_file(state, str(Path(output_dir) / TRAINABLE_FILE))
        weights.clear()

    def load_hook(models, input_dir):
        model = accelerator.unwrap_model(models.pop(0))
        state = load_file(str(Path(input_dir) / TRAINABLE_FILE))
        params = _checkpointed(model)
        if set(state) != set(params):
            _foreign(input_dir, f"missing {sorted(set(params) - set(state))[:5]}, extra {sorted(set(state) - set(params))[:5]}")
        shapes = [f"{n} {tuple(state[n].shape)} here {tuple(p.shape)}" for n, p in params.items() if state[n].shape != p.shape]
        if shapes:
            _foreign(input_dir, f"{len(shapes)} shapes differ, e.g. {shapes[0]}")
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value)

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def _foreign(checkpoint, difference: str):
    raise DefFillerError(f"{checkpoint}: this checkpoint was written by another configuration ({difference}); resume "
                         f"with the profile and settings the run was started with, or choose another output folder")


def _damaged_file(checkpoint: Path) -> Path | None:
    """The first file of a checkpoint folder that is truncated or corrupt (torch.save files are zip archives)."""
    for path in sorted(checkpoint.iterdir()):
        try:
            if path.suffix == ".safetensors" and path.stat().st_size != _safetensors_size(path):
                return path
            elif path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix in (".bin", ".pkl", ".pt") and zipfile.ZipFile(path).testzip() is not None:
                return path
        except (OSError, ValueError, zipfile.BadZipFile):
            return path
    return None


def _safetensors_size(path: Path) -> int:
    with open(path, "rb") as f:
        header = int.from_bytes(f.read(8), "little")
        meta = json.loads(f.read(header))
    return 8 + header + max((v["data_offsets"][1] for k, v in meta.items() if k != "__metadata__"), default=0)


def _load_checkpoint(accelerator: Accelerator, checkpoints: list[Path]) -> tuple[int, float | None]:
    """Load the newest checkpoint: (its step, the training seconds before it, None if it predates their record).
    A damaged one is an error naming its file (never silently skipped: the user decides whether to fall back to an
    older checkpoint by deleting it)."""
    newest = checkpoints[-1]
    fallback = (f"delete {newest} to resume from {checkpoints[-2].name}" if len(checkpoints) > 1 else
                f"delete {newest} and rerun with --resume to start over (it was the only checkpoint)")
    damaged = _damaged_file(newest)
    if damaged is not None:
        raise DefFillerError(f"{damaged}: checkpoint file is truncated or corrupt (was it copied or modified after the "
                             f"run? checkpoints are written atomically); {fallback}")
    try:
        accelerator.load_state(str(newest))
        state = json.loads((newest / "loop_state.json").read_text())
        return int(state["step"]), state.get(SUMMARY_KEY)
    except DefFillerError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise DefFillerError(f"{newest}: cannot resume from this checkpoint ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}); it was written by another configuration "
                             f"or is damaged: resume with the run's original settings, or {fallback}") from exc


def _note_layout(checkpoint: Path, processes: int, accumulation: int, report: bool) -> None:
    """Say so when a run resumes on another number of processes or accumulation steps than its checkpoint's."""
    state = json.loads((checkpoint / "loop_state.json").read_text())
    before = state.get("processes", 1), state.get("gradient_accumulation_steps", 1)
    if before == (processes, accumulation) or not report:
        return
    same = before[0] * before[1] == processes * accumulation
    print(f"deffiller: note: {checkpoint} was written by {before[0]} process(es) x {before[1]} accumulation step(s); "
          f"resuming on {processes} x {accumulation}. The global batch and data order are unchanged; "
          + ("so are the noise draws (same number of micro-batches per step)." if same else
             "the noise draws of the remaining steps differ from an uninterrupted run, as they are drawn per "
             "micro-batch (processes x accumulation steps)."), file=sys.stderr)


def _truncate_metrics(path: Path, last_step: int) -> dict:
    """Drop log lines past the resumed checkpoint (written by the interrupted run after its last checkpoint);
    returns the values of the last kept one."""
    if not path.is_file():
        return {}
    kept = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            kept.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # the torn last line of a killed run (or a blank one)
    kept = [record for record in kept if isinstance(record, dict) and record.get("step", last_step + 1) <= last_step]
    write_text(path, "".join(json.dumps(record) + "\n" for record in kept))
    return {k: v for k, v in kept[-1].items() if k not in ("step", "lr", "seconds")} if kept else {}


def train(task: TrainingTask, dataset, config: LoopConfig, out_dir, seed: int = 0, resume: bool = False,
          collate_fn=None, progress: bool = True, run_info: dict | None = None, desc: str = "train") -> dict:
    """Train `task` on `dataset` for `config.max_steps` steps into `out_dir`; returns the run summary.

    With `resume`, continues from the newest complete checkpoint in `out_dir` (or starts afresh if there is
    none); without it, an `out_dir` that already holds checkpoints is an error. `run_info` (profile, init,
    data description, ...) is copied into the summary, whose `last` holds the last logged values and `final_loss`
    their `loss`. Raises `TrainingDiverged` on a NaN/inf loss.
    """
    out_dir = Path(out_dir)
    if len(dataset) == 0:
        raise DefFillerError("the training set is empty")
    existing = checkpoint_dirs(out_dir)
    if existing and not resume:
        raise DefFillerError(f"{out_dir} already holds checkpoints ({existing[-1].name}); pass --resume to continue "
                             f"that run or choose another output folder")
    if config.mixed_precision not in ("no", "fp16", "bf16"):
        raise DefFillerError(f"mixed_precision must be no, fp16 or bf16, got {config.mixed_precision!r}")
    # without CUDA, accelerate sees the processes of `accelerate launch --multi_gpu` (gloo) only when told cpu=True
    accelerator = Accelerator(mixed_precision=config.mixed_precision,
                              cpu=config.device == "cpu" or not torch.cuda.is_available(),
                              gradient_accumulation_steps=config.gradient_accumulation_steps,
                              step_scheduler_with_optimizer=False,  # the schedule counts optimizer steps
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    processes, accumulation = accelerator.num_processes, config.gradient_accumulation_steps
    micro_batch_size(config.batch_size, processes, accumulation)
    set_seed(seed)
    check_trainable(task)
    counts = parameter_counts(task)
    pairs = task.configure_optimizers(config)
    _register_trainable_only_checkpoints(accelerator, task)
    schedulers = [s for _, s in pairs.values() if s is not None]
    model, *prepared = accelerator.prepare(task, *(o for o, _ in pairs.values()), *schedulers)
    prepared_schedulers = iter(prepared[len(pairs):])
    optimizers = {name: (optimizer, scheduler and next(prepared_schedulers))
                  for (name, (_, scheduler)), optimizer in zip(pairs.items(), prepared)}
    default = next(iter(optimizers))

    start, last, seconds_before = 0, {}, 0.0
    if existing:
        start, seconds_before = _load_checkpoint(accelerator, existing)
        _note_layout(existing[-1], processes, accumulation, accelerator.is_main_process)
    if accelerator.is_main_process:
        shutil.rmtree(out_dir / CHECKPOINTS / ".partial", ignore_errors=True)
        remove_stale_temps(out_dir)
        remove_stale_temps(out_dir / CHECKPOINTS)
        last = _truncate_metrics(out_dir / METRICS, start)
    last = broadcast_object_list([last])[0]  # every process reports it, even with no step left to run
    summary = {"status": "running", "step": start, "max_steps": config.max_steps, "seed": seed,
               "config": dataclasses.asdict(config), "parameters": counts, **provenance(),
               "processes": accelerator.num_processes, "device": str(accelerator.device),
               "resumed_from": start or None, **(run_info or {})}

    batches = StepBatches(len(dataset), config.batch_size, seed, start, accelerator.process_index, processes,
                          accumulation)
    workers = loader_workers(config.num_workers)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=workers, collate_fn=collate_fn,
                                         pin_memory=accelerator.device.type == "cuda", prefetch_factor=4 if workers else None)
    bar = tqdm(total=config.max_steps, initial=start, desc=desc, disable=not (progress and accelerator.is_main_process))
    model.train()
    loader_iter, step, tic = iter(loader), start, time.perf_counter()
    clock = TrainingClock(seconds_before)

    def update(loss: torch.Tensor, name: str | None = None) -> None:
        if not torch.isfinite(loss.detach()).all():
            raise TrainingDiverged(f"loss became {loss.item()} at step {step + 1}; stopped. The last checkpoint "
                                   f"({checkpoint_dirs(out_dir)[-1].name if checkpoint_dirs(out_dir) else 'none'}) "
                                   f"is intact: lower the learning rate or use mixed_precision=no and resume")
        accelerator.backward(loss)
        if not accelerator.sync_gradients:  # gradients accumulate until the step's last micro-batch
            return
        optimizer, scheduler = optimizers[name or default]
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if task.calls_networks_directly and processes > 1:
            average_gradients(params, accelerator)
        if config.grad_clip is not None:
            accelerator.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        if scheduler is not None and not optimizer.step_was_skipped:  # an fp16 overflow skips the step, and so the schedule
            scheduler.step()
        optimizer.zero_grad(set_to_none=True)

    while step < config.max_steps:
        lr = optimizers[default][0].param_groups[0]["lr"]
        logs = []
        try:
            for a in range(accumulation):
                batch = send_to_device(next(loader_iter), accelerator.device)
                micro = accelerator.process_index * accumulation + a
                generator = step_generator(seed, step, micro, accelerator.device)
                torch.manual_seed(derive_seed(seed, step, micro, "global"))
                with accelerator.accumulate(model):  # gradients all-reduced on the step's last micro-batch only
                    logs.append(task.training_step(model, batch, generator, step, update))
        except TrainingDiverged:
            summary.update(status="diverged", step=step)
            if accelerator.is_main_process:
                write_json(out_dir / SUMMARY, summary)
            bar.close()
            raise
        step += 1
        means = torch.stack([torch.stack([torch.as_tensor(values[k], dtype=torch.float32, device=accelerator.device)
                                          .detach() for values in logs]).mean() for k in logs[0]])
        last = dict(zip(logs[0], accelerator.gather(means[None]).mean(0).tolist()))
        bar.update(1)
        bar.set_postfix({k: f"{v:.4f}" for k, v in last.items()})
        if accelerator.is_main_process and (step % config.log_every == 0 or step == config.max_steps):
            elapsed, tic = time.perf_counter() - tic, time.perf_counter()
            _append_metrics(out_dir / METRICS, {"step": step, **last, "lr": lr, "seconds": elapsed})
        if step % config.checkpoint_every == 0 or step == config.max_steps:
            _save_checkpoint(accelerator, out_dir, step, config.keep_checkpoints, clock.seconds())
    bar.close()
    summary.update(status="done", step=step, last=last, final_loss=last.get("loss"), **{SUMMARY_KEY: clock.seconds()})
    if accelerator.is_main_process:
        write_json(out_dir / SUMMARY, summary)
    accelerator.wait_for_everyone()
    if accelerator.device.type == "cuda":
        accelerator.free_memory()  # drops accelerate's references to the model and optimizer state (a full gc: slow)
    return summary


def _append_metrics(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _save_checkpoint(accelerator: Accelerator, out_dir: Path, step: int, keep: int, seconds: float | None) -> None:
    """accelerate save_state into `.partial`, then rename to `step-<n>`; older ones beyond `keep` are removed."""
    partial = out_dir / CHECKPOINTS / ".partial"
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (partial / "loop_state.json").write_text(json.dumps({"step": step, SUMMARY_KEY: seconds,
                                                             "processes": accelerator.num_processes,
                                                             "gradient_accumulation_steps": accelerator.gradient_accumulation_steps}))
        replace_folder(partial, out_dir / CHECKPOINTS / f"step-{step}")
        for old in checkpoint_dirs(out_dir)[: -max(keep, 1)]:
            remove_folder(old)
    accelerator.wait_for_everyone()


__all__ = ["LoopConfig", "StepBatches", "TrainingDiverged", "TrainingTask", "checkpoint_dirs",
           "parameter_counts", "persistent_buffers", "step_generator", "train"]
