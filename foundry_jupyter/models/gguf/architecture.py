"""What differs between the decoder architectures the import takes, as llama.cpp lays them out in GGUF.

All of them are pre-norm decoders with grouped-query attention, rotary positions and a gated MLP; the
table says where each departs from llama. A GGUF converted by llama.cpp already holds Gemma's RMSNorm
weights as `1 + w`, so every norm here is a plain `x / rms(x) * w`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Architecture:
    genai_type: str  # genai_config.json's model.type (one onnxruntime-genai 0.18 loads)
    permuted_qk: bool = False  # llama.cpp permuted Q/K rows into its interleaved rotary order
    fused_qkv: bool = False  # one `attn_qkv` matrix instead of attn_q / attn_k / attn_v
    fused_gate_up: bool = False  # `ffn_up` holds the gate rows, then the up rows; no `ffn_gate`
    qk_norm: bool = False  # RMSNorm of each head of Q and K before the rotary embedding
    sandwich_norms: bool = False  # RMSNorm of the attention and MLP outputs before each residual add
    gelu: bool = False  # GeGLU (tanh-approximated GELU gate) instead of SwiGLU
    embedding_scale: bool = False  # token embeddings multiplied by sqrt(hidden_size)
    sliding_window_pattern: int = 0  # every n-th layer global, the rest local (0: no local layers)
    local_rope_theta: float = 0.0  # rotary base of the local layers (0: the file's own)


ARCHITECTURES: dict[str, Architecture] = {
    "llama": Architecture("llama", permuted_qk=True),
    "mistral": Architecture("mistral", permuted_qk=True),
    "qwen2": Architecture("qwen2"),
    "qwen3": Architecture("qwen3", qk_norm=True),
    "phi3": Architecture("phi3", fused_qkv=True, fused_gate_up=True),
    # llama.cpp fixes Gemma 3's pattern (five local layers, then a global one) and its local layers'
    # rotary base rather than reading them from the file.
    "gemma3": Architecture(
        "gemma3_text",
        qk_norm=True,
        sandwich_norms=True,
        gelu=True,
        embedding_scale=True,
        sliding_window_pattern=6,
        local_rope_theta=10000.0,
    ),
}
SUPPORTED_ARCHITECTURES = tuple(ARCHITECTURES)
