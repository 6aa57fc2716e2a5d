"""Local VLM backbone directories, so SmolVLA can be built with no Hugging Face Hub access.

lerobot builds SmolVLA's vision-language backbone from `vlm_model_name` with
`AutoConfig`, `AutoProcessor` and `AutoTokenizer`. With `load_vlm_weights=False` it needs
only those files, not weights. This module writes such a directory from a typed spec:
`tiny` for tests, simulation and the demo, and `smolvlm2-500m` (the public SmolVLM2-500M
dimensions) to measure the full-size architecture offline.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

# Tokens SmolVLM's processor and SmolVLA's model look up by name on the tokenizer.
SPECIAL_TOKENS = {
    "pad_token": "<pad>",
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
}
EXTRA_SPECIAL_TOKENS = {
    "fake_image_token": "<fake_token_around_image>",
    "global_image_token": "<global-img>",
    "image_token": "<image>",
    "end_of_utterance_token": "<end_of_utterance>",
}


@dataclass(frozen=True)
class BackboneSpec:
    """Dimensions of a SmolVLM-style backbone (text llama + vision SigLIP encoder)."""

    name: str
    text_hidden: int
    text_layers: int
    text_heads: int
    text_kv_heads: int
    text_intermediate: int
    vocab_size: int
    vision_hidden: int
    vision_layers: int
    vision_heads: int
    vision_intermediate: int
    image_size: int
    patch_size: int
    scale_factor: int

    @property
    def image_seq_len(self) -> int:
        return (self.image_size // self.patch_size) ** 2 // self.scale_factor**2

    def fingerprint(self) -> str:
        payload = json.dumps(asdict(self), sort_keys=True) + BACKBONE_FORMAT_VERSION
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


BACKBONE_FORMAT_VERSION = "1"

TINY = BackboneSpec(
    name="tiny",
    text_hidden=64,
    text_layers=4,
    text_heads=4,
    text_kv_heads=2,
    text_intermediate=128,
    vocab_size=512,
    vision_hidden=32,
    vision_layers=2,
    vision_heads=2,
    vision_intermediate=64,
    image_size=64,
    patch_size=16,
    scale_factor=2,
)

SMOLVLM2_500M = BackboneSpec(
    name="smolvlm2-500m",
    text_hidden=960,
    text_layers=32,
    text_heads=15,
    text_kv_heads=5,
    text_intermediate=2560,
    vocab_size=49280,
    vision_hidden=768,
    vision_layers=12,
    vision_heads=12,
    vision_intermediate=3072,
    image_size=512,
    patch_size=16,
    scale_factor=4,
)

BACKBONES = {spec.name: spec for spec in (TINY, SMOLVLM2_500M)}


def _build_tokenizer():
    """A byte-level BPE tokenizer without merges: every string encodes, vocab stays small."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    specials = list(SPECIAL_TOKENS.values()) + list(EXTRA_SPECIAL_TOKENS.values())
    vocab = {token: i for i, token in enumerate(specials + sorted(alphabet))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=SPECIAL_TOKENS["unk_token"]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        extra_special_tokens=dict(EXTRA_SPECIAL_TOKENS),
        model_max_length=2048,
        padding_side="right",
        **SPECIAL_TOKENS,
    )


def write_backbone(spec: BackboneSpec, out_dir: Path) -> Path:
    """Write config, tokenizer and processor files for `spec` into `out_dir` (atomically)."""
    from transformers import (
        SmolVLMConfig,
        SmolVLMImageProcessor,
        SmolVLMProcessor,
        SmolVLMVideoProcessor,
    )

    out_dir = Path(out_dir)
    tokenizer = _build_tokenizer()
    if len(tokenizer) > spec.vocab_size:
        raise ValueError(f"backbone {spec.name}: vocab_size {spec.vocab_size} < tokenizer {len(tokenizer)}")
    image_token_id = tokenizer.convert_tokens_to_ids(EXTRA_SPECIAL_TOKENS["image_token"])
    config = SmolVLMConfig(
        image_token_id=image_token_id,
        pad_token_id=tokenizer.pad_token_id,
        scale_factor=spec.scale_factor,
        vision_config={
            "hidden_size": spec.vision_hidden,
            "intermediate_size": spec.vision_intermediate,
            "num_hidden_layers": spec.vision_layers,
            "num_attention_heads": spec.vision_heads,
            "image_size": spec.image_size,
            "patch_size": spec.patch_size,
        },
        text_config={
            "model_type": "llama",
            "hidden_size": spec.text_hidden,
            "intermediate_size": spec.text_intermediate,
            "num_hidden_layers": spec.text_layers,
            "num_attention_heads": spec.text_heads,
            "num_key_value_heads": spec.text_kv_heads,
            "head_dim": spec.text_hidden // spec.text_heads,
            "vocab_size": spec.vocab_size,
            "pad_token_id": tokenizer.pad_token_id,
            "max_position_embeddings": 8192,
        },
    )
    size = {"longest_edge": spec.image_size}
    image_processor = SmolVLMImageProcessor(size=size, max_image_size=size, do_image_splitting=False, do_resize=True)
    video_processor = SmolVLMVideoProcessor(size=size, max_image_size=size)
    processor = SmolVLMProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        image_seq_len=spec.image_seq_len,
    )

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        config.save_pretrained(staging)
        processor.save_pretrained(staging)
        (staging / "zk0-backbone.json").write_text(
            json.dumps({"spec": asdict(spec), "fingerprint": spec.fingerprint()}, indent=2)
        )
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.replace(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def ensure_backbone(spec: BackboneSpec, cache_dir: Path) -> Path:
    """Return the backbone dir for `spec` under `cache_dir`, writing it once if absent or stale."""
    out_dir = Path(cache_dir) / f"backbone-{spec.name}-{spec.fingerprint()}"
    marker = out_dir / "zk0-backbone.json"
    if marker.exists() and json.loads(marker.read_text()).get("fingerprint") == spec.fingerprint():
        return out_dir
    return write_backbone(spec, out_dir)
