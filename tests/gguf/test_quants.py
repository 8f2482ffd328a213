"""GGUF block types: the importer's unpacking against `gguf`'s numpy dequantizers (llama.cpp's layouts)."""

from __future__ import annotations

import numpy as np
import pytest

from foundry_jupyter.models.gguf import GGUFError, GGUFModel
from foundry_jupyter.models.gguf.reader import QuantLinear

from .kquants import quantize
from .tinygguf import write_tiny_gguf

MATRICES = ("blk.0.attn_q.weight", "blk.1.attn_output.weight", "blk.1.ffn_down.weight", "token_embd.weight")


@pytest.mark.parametrize("kind", ["Q4_K", "Q5_K", "Q6_K"])
def test_k_quant_encoder_writes_blocks_gguf_decodes(kind):
    """The tests' own encoder, decoded by gguf: within a step of each format's resolution."""
    import gguf

    rng = np.random.default_rng(1)
    w = (rng.standard_normal((6, 512)) * 0.3).astype(np.float32)
    raw = quantize(w, kind)
    assert raw.shape == (6, 2 * gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[kind]][1])
    error = np.abs(gguf.quants.dequantize(raw, gguf.GGMLQuantizationType[kind]) - w).max()
    assert error < {"Q4_K": 0.1, "Q5_K": 0.05, "Q6_K": 0.05}[kind]


@pytest.mark.parametrize("qtype", ["Q4_0", "Q4_1", "Q4_K", "Q5_0", "Q5_1", "Q5_K", "Q6_K", "Q8_0"])
def test_reader_unpacks_like_gguf(tiny_gguf, qtype):
    """Every matrix read back equals gguf's dequantization; Q4_0, Q4_1 and Q4_K stay 4-bit blocks."""
    import gguf

    path = tiny_gguf(qtype)
    model = GGUFModel(path)
    tensors = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}
    for name in MATRICES:
        expected = gguf.quants.dequantize(tensors[name].data, tensors[name].tensor_type)
        np.testing.assert_allclose(model.dense(name), expected, rtol=1e-6, atol=1e-6)
        kept = model.linear(name, keep_int4=True)
        assert isinstance(kept, QuantLinear) == (qtype in ("Q4_0", "Q4_1", "Q4_K"))
        if isinstance(kept, QuantLinear):
            np.testing.assert_allclose(kept.dequantize(), expected, rtol=1e-6, atol=1e-6)


def _rewrite(src, dest, *, tensor=None, extra=None):
    """Copy a GGUF file, passing each (name, data, type) through `tensor` and the writer to `extra`."""
    import gguf

    reader = gguf.GGUFReader(str(src))
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(str(dest), arch)
    for field in reader.fields.values():
        if not field.name.startswith(("GGUF.", "general.architecture")):
            writer.add_key_value(field.name, field.contents(), field.types[0], field.types[-1])
    if extra is not None:
        extra(writer)
    for t in reader.tensors:
        item = (t.name, np.asarray(t.data), t.tensor_type)
        name, data, kind = tensor(*item) if tensor is not None else item
        writer.add_tensor(name, data, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return dest


def test_unsupported_block_type_is_named_in_one_line(tmp_path):
    import gguf

    def to_tq2(name, data, kind):
        if name != "blk.1.ffn_up.weight":
            return name, data, kind
        tq2 = gguf.GGMLQuantizationType.TQ2_0
        return name, gguf.quants.quantize(gguf.quants.dequantize(data, kind), tq2), tq2

    path = _rewrite(write_tiny_gguf(tmp_path / "a.gguf", "Q4_K"), tmp_path / "tq2.gguf", tensor=to_tq2)
    with pytest.raises(GGUFError) as error:
        GGUFModel(path)
    message = str(error.value)
    assert "blk.1.ffn_up.weight" in message and "TQ2_0" in message and "\n" not in message


def test_unsupported_rope_scaling_is_named(tmp_path):
    import gguf

    def yarn(writer):
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(4.0)

    path = _rewrite(
        write_tiny_gguf(tmp_path / "a.gguf", "Q8_0", arch="qwen3"), tmp_path / "y.gguf", extra=yarn
    )
    with pytest.raises(GGUFError, match="rope scaling 'yarn' is not supported"):
        GGUFModel(path)
