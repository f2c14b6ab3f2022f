"""What the temporal memory holds while it trains: content retention, perceiver attention, update size.

A video stage that trains the perceiver can collapse: the latents learn a constant summary, the memory
tokens of different videos become nearly equal and the memory's content is worth nothing, while the
loss looks fine. These numbers make that visible during training. They are measured on a fixed probe
(a few clips of different videos, chosen once at the start), under ``torch.no_grad``, so successive
measurements compare the same inputs:

- ``retention``: mean over pairs of probe clips of ||m_i - m_j|| / mean(||m_i||, ||m_j||), where m is a
  clip's memory tokens ([M, C], the perceiver's output). A content-free memory has retention near 0.
  At initialisation it is about 0.3; the collapse we saw ended at 0.006. Below ``RETENTION_THRESHOLD``
  the run reports a collapse.
- ``context_mass``: the perceiver's attention mass on context-frame tokens (the rest goes to the
  latents themselves), averaged over layers, heads, latents and clips; ``attention_entropy``: the mean
  entropy (nats) of those attention rows. A collapsing perceiver attends nearly one-hot onto latents.
- ``latent_norm``: mean L2 norm of the learned latent queries (the parameter); ``memory_norm``: mean
  L2 norm of the memory tokens.
- ``update_ratio``: ||memory cross-attention output - its input|| / ||input|| on the probe's vision
  tokens (how much the memory changes what the heads see, gate included).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

RETENTION_THRESHOLD = 0.05


@dataclass(frozen=True)
class MemoryDiagnostics:
    retention: float
    context_mass: float
    attention_entropy: float
    latent_norm: float
    memory_norm: float
    update_ratio: float

    @property
    def collapsed(self) -> bool:
        return self.retention < RETENTION_THRESHOLD

    def as_row(self) -> dict[str, float]:
        """The log-row fields (``mem_`` prefix)."""
        return {f"mem_{name}": value for name, value in asdict(self).items()}

    def warning(self) -> str | None:
        if not self.collapsed:
            return None
        return (f"MEMORY COLLAPSE: retention {self.retention:.4f} < {RETENTION_THRESHOLD} (the memory tokens of "
                f"different clips are nearly equal; context attention mass {self.context_mass:.3f}): lower "
                "the perceiver's learning rate or use --perceiver-lr-scale 0")


def content_retention(memory_tokens: torch.Tensor) -> float:
    """memory_tokens [P, M, C] (P >= 2 clips) -> mean pairwise relative difference."""
    flat = memory_tokens.flatten(1).float()  # [P, M*C]
    if flat.shape[0] < 2:
        raise ValueError("content retention needs at least two clips")
    norms = flat.norm(dim=1)  # [P]
    distances = torch.cdist(flat[None], flat[None])[0]  # [P, P]
    scale = (norms[:, None] + norms[None, :]) / 2
    pairs = torch.triu_indices(flat.shape[0], flat.shape[0], offset=1)
    relative = distances[pairs[0], pairs[1]] / scale[pairs[0], pairs[1]].clamp_min(1e-12)
    return float(relative.mean())


def _perceiver_attention(layer, media: torch.Tensor, latents: torch.Tensor, key_bias: torch.Tensor):
    """The attention probabilities a PerceiverLayer computes: [B, h, M, T*HW + M]."""
    normed_latents = layer.norm_latents(latents)
    keys = torch.cat([layer.norm_media(media), normed_latents], dim=1)
    q, k, _ = layer.heads(normed_latents, keys)  # [B, h, M, d], [B, h, Nk, d] (QK-norm applied if on)
    scores = torch.matmul(q, k.transpose(-2, -1)) * (q.shape[-1] ** -0.5) + key_bias  # [B, h, M, Nk]
    return scores.softmax(dim=-1)


@torch.no_grad()
def measure_memory(model, forward, probe) -> MemoryDiagnostics:
    """Run ``forward(model, probe)`` once with hooks on the perceiver and the memory cross-attention.

    ``forward`` is the training forward (``training.video.memory_forward``); ``probe`` its batch of
    P >= 2 clips of different videos, every context slot of each clip valid or not as the data says.
    """
    perceiver, cross = model.perceiver_resampler, model.memory_cross_attn
    captured: dict[str, list] = {"attention": [], "memory": [], "update": []}
    num_latents = perceiver.latents.shape[0]

    def on_layer(layer, args, output):
        media, latents, key_bias = args[:3]
        probs = _perceiver_attention(layer, media, latents, key_bias)  # [B, h, M, Nk]
        context = probs[..., : probs.shape[-1] - num_latents].sum(dim=-1)  # [B, h, M]
        entropy = -(probs * probs.clamp_min(1e-12).log()).sum(dim=-1)  # [B, h, M]
        captured["attention"].append((float(context.mean()), float(entropy.mean())))

    def on_perceiver(module, args, output):
        captured["memory"].append(output.detach())

    def on_cross(module, args, output):
        vision = args[0]
        captured["update"].append(float((output - vision).flatten(1).norm(dim=1).mean()
                                        / vision.flatten(1).norm(dim=1).mean().clamp_min(1e-12)))

    handles = [layer.register_forward_hook(on_layer) for layer in perceiver.layers]
    handles += [perceiver.register_forward_hook(on_perceiver), cross.register_forward_hook(on_cross)]
    try:
        forward(model, probe)
    finally:
        for handle in handles:
            handle.remove()
    if not captured["memory"] or not captured["update"]:
        raise RuntimeError("the probe forward did not run the perceiver and the memory cross-attention")
    memory = captured["memory"][0]  # [P, M, C]
    mass = sum(c for c, _ in captured["attention"]) / len(captured["attention"])
    entropy = sum(e for _, e in captured["attention"]) / len(captured["attention"])
    return MemoryDiagnostics(
        retention=content_retention(memory),
        context_mass=mass,
        attention_entropy=entropy,
        latent_norm=float(perceiver.latents.detach().norm(dim=-1).mean()),
        memory_norm=float(memory.norm(dim=-1).mean()),
        update_ratio=captured["update"][0],
    )


def summarise(history: list[dict]) -> dict:
    """Diagnostics rows logged during a run -> the ``memory_diagnostics`` block of summary.json."""
    if not history:
        return {}
    retention = [row["mem_retention"] for row in history]
    first, last = history[0], history[-1]
    return {
        "retention_threshold": RETENTION_THRESHOLD,
        "measurements": len(history),
        "retention_first": first["mem_retention"], "retention_last": last["mem_retention"],
        "retention_min": min(retention),
        "collapsed": min(retention) < RETENTION_THRESHOLD,
        "collapse_steps": [row["step"] for row in history if row["mem_retention"] < RETENTION_THRESHOLD],
        **{f"{key}_first": first[f"mem_{key}"] for key in ("context_mass", "attention_entropy", "update_ratio")},
        **{f"{key}_last": last[f"mem_{key}"] for key in ("context_mass", "attention_entropy", "latent_norm",
                                                          "memory_norm", "update_ratio")},
    }


def max_entropy(num_keys: int) -> float:
    """Entropy of a uniform attention row over ``num_keys`` keys (for reading ``attention_entropy``)."""
    return math.log(num_keys)
