"""Causal transformer with BitLinear layers (ternary weights, int8 activations) and five heads."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Token ids: 0 <pad>, 1 <bos>, 2 <eos>, 3 <unk>, the 20 standard amino acids, then X.
VOCAB = ["<pad>", "<bos>", "<eos>", "<unk>"] + list("ACDEFGHIKLMNPQRSTVWY") + ["X"]
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
X_ID = VOCAB.index("X")
_RESIDUE_IDS = {residue: index for index, residue in enumerate(VOCAB) if len(residue) == 1}

# Quantization modes of the schedule, in training order.
FLOAT, INT8, TERNARY = "float", "int8", "ternary"


def encode(sequence: str) -> list[int]:
    """Encode a protein as <bos> + residues; letters outside the 20 standard amino acids map to X."""
    return [BOS_ID] + [_RESIDUE_IDS.get(residue, X_ID) for residue in sequence.upper()]


def length_sorted_batches(token_lists: list[list[int]], batch_size: int):
    """Yield (indices, input_ids, attention_mask) for batches of the token lists, right-padded.

    Lists are taken in order of length, so a batch carries little padding; `indices` gives the
    position in `token_lists` of each row.
    """
    order = sorted(range(len(token_lists)), key=lambda i: len(token_lists[i]))
    for begin in range(0, len(order), batch_size):
        indices = order[begin:begin + batch_size]
        length = max(len(token_lists[i]) for i in indices)
        input_ids = torch.full((len(indices), length), PAD_ID, dtype=torch.long)
        attention_mask = torch.zeros((len(indices), length), dtype=torch.long)
        for row, index in enumerate(indices):
            input_ids[row, :len(token_lists[index])] = torch.tensor(token_lists[index])
            attention_mask[row, :len(token_lists[index])] = 1
        yield indices, input_ids, attention_mask


def quantize_activations_int8(x: torch.Tensor) -> torch.Tensor:
    """Fake-quantize to int8 per token (absmax over the last dimension) with a straight-through gradient."""
    scale = 127.0 / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
    quantized = (x * scale).round().clamp(-128, 127) / scale
    return x + (quantized - x).detach()


def ternarize(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Ternarize each output row around its mean; return the -1/0/+1 codes and the per-row scale.

    The row (one output channel) is the quantization group: codes = clip(round((w - mean) / s), -1, 1)
    with s = mean(|w - mean|). The effective weight is codes * s, so the row mean is dropped, as in
    BitNet's binarization around the mean.
    """
    centered = weight - weight.mean(dim=1, keepdim=True)
    scale = centered.abs().mean(dim=1, keepdim=True).clamp(min=1e-5)
    codes = (centered / scale).round().clamp(-1, 1)
    return codes, scale


def quantize_weight_int8(weight: torch.Tensor) -> torch.Tensor:
    scale = 127.0 / weight.abs().max().clamp(min=1e-5)
    return (weight * scale).round().clamp(-127, 127) / scale


class BitLinear(nn.Module):
    """Linear layer without bias whose input goes through LayerNorm, then int8 activation quantization.

    The weight is used in float32, int8 (per-tensor absmax) or ternary form depending on `mode`; the
    straight-through estimator passes gradients to the float32 latent weight. After `freeze()` the layer
    stores the ternary codes as an int8 buffer and dequantizes them in the graph, which is what the ONNX
    export stores.
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.norm = nn.LayerNorm(in_features)
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.normal_(self.weight, std=1.0 / math.sqrt(in_features))
        self.mode = FLOAT
        self.frozen = False

    def effective_weight(self) -> torch.Tensor:
        if self.frozen:
            return self.weight_codes.to(torch.float32) * self.weight_scale
        if self.mode == INT8:
            return self.weight + (quantize_weight_int8(self.weight) - self.weight).detach()
        if self.mode == TERNARY:
            codes, scale = ternarize(self.weight)
            return self.weight + (codes * scale - self.weight).detach()
        return self.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        if self.mode != FLOAT:
            x = quantize_activations_int8(x)
        return F.linear(x, self.effective_weight())

    @torch.no_grad()
    def freeze(self) -> None:
        """Replace the latent float weight with int8 ternary codes and a float32 per-row scale."""
        codes, scale = ternarize(self.weight)
        del self.weight
        self.register_buffer("weight_codes", codes.to(torch.int8))
        self.register_buffer("weight_scale", scale.to(torch.float32))
        self.mode = TERNARY
        self.frozen = True


def rotary_tables(length: int, dim: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    positions = torch.arange(length, device=device, dtype=torch.float32)
    inverse_frequency = 1.0 / (10000 ** (torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim))
    angles = positions[:, None] * inverse_frequency[None, :]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class Block(nn.Module):
    def __init__(self, d_model: int, heads: int, ffn: int):
        super().__init__()
        self.heads = heads
        self.head_dim = d_model // heads
        self.qkv = BitLinear(d_model, 3 * d_model)
        self.out = BitLinear(d_model, d_model)
        self.ffn_in = BitLinear(d_model, ffn)
        self.ffn_out = BitLinear(ffn, d_model)

    def forward(self, x, cos, sin, causal_mask, past_key=None, past_value=None):
        """Run one layer; keys and values of earlier positions come in as past_key/past_value.

        Returns the new states and this layer's keys and values over past and current positions.
        """
        batch, length, d_model = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        q = apply_rotary(q, cos, sin)
        k = apply_rotary(k, cos, sin)
        if past_key is not None:
            k = torch.cat([past_key, k], dim=2)
            v = torch.cat([past_value, v], dim=2)
        # Contiguous operands: with a strided K^T, batched matmul in Debian's torch 1.13 measured about 5x slower on 2 cores.
        scores = torch.matmul(q.contiguous(), k.transpose(-1, -2).contiguous()) / math.sqrt(self.head_dim)
        scores = scores.masked_fill(causal_mask, -1e9)
        attention = torch.softmax(scores, dim=-1)
        context = torch.matmul(attention, v.contiguous()).transpose(1, 2).reshape(batch, length, d_model)
        x = x + self.out(context)
        x = x + self.ffn_out(F.gelu(self.ffn_in(x)))
        return x, k, v


def domain_head_module(d_model: int, classes: int, hidden: int = 0) -> nn.Module:
    """Build a per-position domain head: Linear, or with hidden > 0 Linear, GELU, Linear."""
    if hidden <= 0:
        return nn.Linear(d_model, classes)
    return nn.Sequential(nn.Linear(d_model, hidden), nn.GELU(), nn.Linear(hidden, classes))


class Standardize(nn.Module):
    """Subtract a fixed mean from each feature and divide by a fixed scale (buffers set by the refit)."""

    def __init__(self, width: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("scale", torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.scale


def pooled_head_module(d_model: int, classes: int, hidden: int = 0, depth: int = 1, dropout: float = 0.0,
                       standardize: bool = False) -> nn.Module:
    """Build a head on the pooled state: Linear, or with hidden > 0 `depth` blocks of Linear, GELU, Dropout, then Linear.

    With standardize the head starts with a Standardize of its input.
    """
    if hidden <= 0:
        return nn.Linear(d_model, classes)
    layers: list[nn.Module] = [Standardize(d_model)] if standardize else []
    width = d_model
    for _ in range(max(depth, 1)):
        layers += [nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout)]
        width = hidden
    return nn.Sequential(*layers, nn.Linear(width, classes))


def head_classes(head: nn.Module) -> int:
    """Number of classes of a Linear head or of a Sequential head that ends in a Linear."""
    return head.out_features if isinstance(head, nn.Linear) else head[-1].out_features


POOLED_HEADS = ("localization", "go", "function")
# Inputs of the pooled heads, averaged over the sequence's positions. "final" is the final states.
# "layers_and_composition" is every layer's output states, the final states and the one-hot tokens
# (so the residue composition), side by side. Both are sums over positions, so a cached prefix
# carries them in past_state_sum.
POOLING_MODES = ("final", "layers_and_composition")


class ProteinBitNet(nn.Module):
    """Decoder-only transformer with five heads.

    Localization, GO and function read the masked mean of the pooled states (`pooling`, by default
    the final states); the domain head classifies residues (0 = no domain, 1 + i = family i) from
    one position's final state, and its output at the position of residue j + domain_lookahead is the class of residue j (see
    shift_domain_rows in evaluate.py); the LM head predicts the next residue.
    Right padding needs no key mask: with causal attention a real token never attends to a later
    pad position.

    Prefix caching: `past` contains each layer's keys and values of earlier positions and
    `past_state_sum` the sum of their pooled states, so a sequence can be read block by block with
    the same outputs as in one pass. The past is shared by every row of a batch and has no padding.
    """

    def __init__(self, layers: int, d_model: int, heads: int, ffn: int,
                 go_labels: int, localization_labels: int, function_labels: int, domain_labels: int = 0,
                 **_unused):
        super().__init__()
        self.embedding = nn.Embedding(len(VOCAB), d_model, padding_idx=PAD_ID)
        self.blocks = nn.ModuleList(Block(d_model, heads, ffn) for _ in range(layers))
        self.final_norm = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, len(VOCAB))
        self.localization_head = nn.Linear(d_model, localization_labels)
        self.go_head = nn.Linear(d_model, go_labels)
        self.function_head = nn.Linear(d_model, function_labels) if function_labels else None
        self.domain_head = domain_head_module(d_model, domain_labels + 1) if domain_labels else None
        # Residues that the domain head reads past the residue it classifies; set by the refit.
        self.domain_lookahead = 0
        self.pooling = "final"
        self.head_dim = d_model // heads
        self.heads = heads
        self.d_model = d_model

    def bit_linears(self):
        return [m for m in self.modules() if isinstance(m, BitLinear)]

    def set_quantization(self, mode: str) -> None:
        for layer in self.bit_linears():
            layer.mode = mode

    def freeze(self) -> None:
        for layer in self.bit_linears():
            layer.freeze()

    def replace_domain_head(self, hidden: int, lookahead: int) -> None:
        """Put a freshly initialized domain head of `hidden` units (0: linear) in place of the current one."""
        self.domain_head = domain_head_module(self.d_model, head_classes(self.domain_head), hidden)
        self.domain_lookahead = lookahead

    def pooled_width(self) -> int:
        """Width of the pooled state and of the state sum (see POOLING_MODES)."""
        if self.pooling == "final":
            return self.d_model
        return (len(self.blocks) + 1) * self.d_model + len(VOCAB)

    def replace_pooled_heads(self, hidden: int, depth: int, dropout: float = 0.0, pooling: str = "final") -> None:
        """Put freshly initialized heads of `depth` hidden layers of `hidden` units in place of the pooled heads.

        The heads read `pooling` (see POOLING_MODES). Heads on more than the final states start with
        a Standardize; the refit sets its mean and scale from the training proteins.
        """
        if pooling not in POOLING_MODES:
            raise ValueError(f"unknown pooling {pooling!r}; expected one of {', '.join(POOLING_MODES)}")
        self.pooling = pooling
        for name in POOLED_HEADS:
            head = getattr(self, f"{name}_head")
            if head is not None:
                setattr(self, f"{name}_head", pooled_head_module(self.pooled_width(), head_classes(head), hidden, depth,
                                                                 dropout, standardize=pooling != "final"))

    def final_states(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Return the final LayerNorm's states [batch, seq, d_model] of right-padded input."""
        return self(input_ids, (input_ids != PAD_ID).long())["final_states"]

    def empty_past(self, batch: int):
        """Return zero-length keys/values for every layer and a zero state sum."""
        shape = (batch, self.heads, 0, self.head_dim)
        past = [(torch.zeros(shape), torch.zeros(shape)) for _ in self.blocks]
        return past, torch.zeros((batch, self.pooled_width()))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, past=None, past_state_sum=None):
        length = input_ids.shape[1]
        past_length = past[0][0].shape[2] if past is not None else 0
        x = self.embedding(input_ids)
        cos, sin = rotary_tables(past_length + length, self.head_dim, input_ids.device)
        cos, sin = cos[past_length:], sin[past_length:]
        query_positions = torch.arange(length, device=input_ids.device) + past_length
        key_positions = torch.arange(past_length + length, device=input_ids.device)
        causal_mask = key_positions[None, :] > query_positions[:, None]
        present = []
        layer_states = []
        for index, block in enumerate(self.blocks):
            past_key, past_value = past[index] if past is not None else (None, None)
            x, key, value = block(x, cos, sin, causal_mask, past_key, past_value)
            present.append((key, value))
            layer_states.append(x)
        x = self.final_norm(x)
        mask = attention_mask.to(x.dtype).unsqueeze(-1)
        if self.pooling == "final":
            pooled_source = x
        else:
            one_hot = F.one_hot(input_ids, len(VOCAB)).to(x.dtype)
            pooled_source = torch.cat(layer_states + [x, one_hot], dim=-1)
        state_sum = (pooled_source * mask).sum(dim=1)
        count = mask.sum(dim=1)
        if past_state_sum is not None:
            state_sum = state_sum + past_state_sum
            count = count + past_length
        pooled = state_sum / count.clamp(min=1.0)
        outputs = {
            "localization_logits": self.localization_head(pooled),
            "go_logits": self.go_head(pooled),
        }
        if self.function_head is not None:
            outputs["function_logits"] = self.function_head(pooled)
        if self.domain_head is not None:
            outputs["domain_logits"] = self.domain_head(x)
        outputs["lm_logits"] = self.lm_head(x)
        outputs["final_states"] = x
        outputs["present"] = present
        outputs["state_sum"] = state_sum
        return outputs


def count_parameters(model: nn.Module) -> int:
    """Count trainable weights; after freeze() the ternary codes count in place of the latent weights."""
    total = sum(p.numel() for p in model.parameters())
    for layer in model.bit_linears():
        if layer.frozen:
            total += layer.weight_codes.numel()
    return total
