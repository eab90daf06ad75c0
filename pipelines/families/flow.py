"""What the flow-matching transformer families share (FLUX.1, FLUX.2 [klein]; Qwen-Image and
Z-Image to come): their schedulers, their prompt encoders without windows (T5, Qwen3),
counted by Kiln because diffusers cuts them silently.

Schedulers (diffusers 0.42, read and run): the FLUX pipelines always hand the scheduler a
sigma schedule and the resolution shift ``mu``. ``FlowMatchEulerDiscreteScheduler`` takes
both. ``DPMSolverMultistepScheduler`` with ``use_flow_sigmas`` builds its own flow sigmas
(the pipelines then pass none) and takes ``mu`` only where the model shifts dynamically
([dev], [klein]); on [schnell]'s fixed shift it fails, so a [schnell] entry keeps
``schedulers = ["flow_euler"]`` and a request for ``dpmpp_2m`` there is a 400 naming it.
``flow_heun`` (``FlowMatchHeunDiscreteScheduler``) takes neither sigmas nor ``mu`` and
every FLUX pipeline refuses it: not offered until diffusers passes it a schedule it reads.
"""

from __future__ import annotations

from typing import Any

from pipelines.param_error import ParamError

# Kiln's name -> (diffusers class, overrides) for the flow-matching families.
FLOW_SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "flow_euler": ("FlowMatchEulerDiscreteScheduler", {}),
    "dpmpp_2m": (
        "DPMSolverMultistepScheduler",
        {
            "use_flow_sigmas": True,
            "prediction_type": "flow_prediction",
            "algorithm_type": "dpmsolver++",
            "solver_order": 2,
        },
    ),
}


def flow_strength_steps(steps: int, strength: float) -> int:
    """The denoising steps the flow-matching img2img and inpaint pipelines run of ``steps``
    at ``strength`` (diffusers' ``get_timesteps`` there): they skip ``steps × (1 -
    strength)`` rounded down, so at least one runs at any strength above 0."""
    return steps - int(max(steps - steps * strength, 0))


class CountedPrompts:
    """What the encoders without windows share: a prompt is counted in tokens the way the
    pipeline tokenizes it, and refused past ``limit`` (diffusers would cut it silently)."""

    def __init__(self, pipe: Any, limit: int, encoder_name: str) -> None:
        self._pipe = pipe
        self.limit = limit
        self._encoder_name = encoder_name

    def token_count(self, prompt: str) -> int:
        raise NotImplementedError

    def chunk_count(self, prompt: str) -> int:
        # One window: every call of the model is padded to ``limit``.
        return 1

    def check(self, prompt: str, field: str = "prompt") -> None:
        count = self.token_count(prompt)
        if count > self.limit:
            raise ParamError(
                field,
                f"{field} is {count} tokens for the {self._encoder_name} text encoder; "
                f"this model takes at most {self.limit}",
            )


class T5Prompts(CountedPrompts):
    """FLUX.1: CLIP's pooled embedding of the prompt (cut at 77 tokens by design, as the
    reference does) and T5's sequence, padded to the model's length (512 [dev], 256
    [schnell]) and counted with ``</s>``. No classifier-free guidance: no negatives."""

    def __init__(self, pipe: Any, sequence_length: int | None) -> None:
        super().__init__(pipe, int(sequence_length or 512), "T5")

    def token_count(self, prompt: str) -> int:
        return len(self._pipe.tokenizer_2(prompt).input_ids)

    def encode(self, prompts: list[str], negative_prompts: list[str]) -> dict[str, Any]:
        embeds, pooled, _text_ids = self._pipe.encode_prompt(
            prompt=prompts,
            prompt_2=prompts,
            device=self._pipe._execution_device,
            num_images_per_prompt=1,
            max_sequence_length=self.limit,
        )
        return {
            "prompt_embeds": embeds,
            "pooled_prompt_embeds": pooled,
            "max_sequence_length": self.limit,
        }


class Qwen3Prompts(CountedPrompts):
    """FLUX.2 [klein]: Qwen3's hidden states of the prompt in its chat template, padded to
    the model's length (512) and counted with the template's tokens. A base checkpoint's
    classifier-free guidance encodes the negatives the same way."""

    def __init__(self, pipe: Any, sequence_length: int | None) -> None:
        super().__init__(pipe, int(sequence_length or 512), "Qwen3")

    def _templated(self, prompt: str) -> str:
        return self._pipe.tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}],
            tokenize=False,
            add_generation_prompt=True,
            enable_thinking=False,
        )

    def token_count(self, prompt: str) -> int:
        return len(self._pipe.tokenizer(self._templated(prompt)).input_ids)

    def encode(self, prompts: list[str], negative_prompts: list[str]) -> dict[str, Any]:
        device = self._pipe._execution_device
        embeds, _ = self._pipe.encode_prompt(
            prompt=prompts, device=device, max_sequence_length=self.limit
        )
        kwargs: dict[str, Any] = {"prompt_embeds": embeds, "max_sequence_length": self.limit}
        # A base checkpoint's CFG (a distilled one has none: nothing to encode).
        if not self._pipe.config.is_distilled:
            negatives, _ = self._pipe.encode_prompt(
                prompt=negative_prompts, device=device, max_sequence_length=self.limit
            )
            kwargs["negative_prompt_embeds"] = negatives
        return kwargs
