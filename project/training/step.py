"""T5 speed: the whole optimiser step (forward, T1 loss, backward, T4 clipping, T2 update)
replayed from one CUDA graph.

A CUDA graph records the step's kernels once and replays them with one launch, so the
host no longer issues some hundreds of kernels a step. What makes the step capturable:
fixed-size batches (D4 drops the last incomplete one), inputs copied into static buffers,
no host sync inside the step (losses are read back every k steps, outside it), and an
AdamW whose learning rate is a device tensor (the T3 schedule fills it before each replay).
On the CPU the same step runs on the same buffers without a graph, so the CPU tests cover
this code path.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# Real training steps run before the capture, on a side stream (cuBLAS workspaces,
# autograd's streams, torch.compile's compilation and AdamW's state are all set up there).
WARMUP_STEPS = 3

StepFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class GraphedStep:
    """T5: calls `step(inputs, targets) -> [loss, grad_norm]` on static buffers. With
    `capture` (CUDA) the first WARMUP_STEPS calls run eagerly and the next one captures the
    step in a CUDA graph that every later call replays.
    """

    def __init__(
        self,
        step: StepFunction,
        batch_shape: tuple[int, int],
        device: torch.device,
        capture: bool,
    ) -> None:
        self.step = step
        self.inputs = torch.zeros(batch_shape, dtype=torch.long, device=device)  # (B, T)
        self.targets = torch.zeros(batch_shape, dtype=torch.long, device=device)  # (B, T)
        self.capture = capture
        self.eager_calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.output = torch.zeros(2, device=device)  # the graph's [loss, grad_norm]

    def __call__(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """One optimiser step on this batch; returns [loss, grad_norm], still on the device."""
        self.inputs.copy_(inputs)
        self.targets.copy_(targets)
        if not self.capture:
            return self.step(self.inputs, self.targets)
        if self.eager_calls < WARMUP_STEPS:
            self.eager_calls += 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                output = self.step(self.inputs, self.targets)
            torch.cuda.current_stream().wait_stream(side)
            return output
        if self.graph is None:
            # Capturing records the kernels without running them; the replay below runs
            # this step for real.
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.output = self.step(self.inputs, self.targets)
        self.graph.replay()
        return self.output.clone()  # the next replay overwrites the static output
