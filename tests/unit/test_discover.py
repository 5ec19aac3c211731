"""Spec discovery: walking the module tree finds what the hand-written specs say, and drafts a
spec for a family without one that structured pruning can use after review."""

from __future__ import annotations

import pytest
import torch
import transformers

from squeeze.methods.prune.importance import magnitude_importance
from squeeze.methods.prune.slicing import prune_structured
from squeeze.methods.prune.structured import StructuredPruneConfig
from squeeze.model.arch import ArchSpec, find_spec, layer_list
from squeeze.model.discover import block_list_path, check_proposal, propose_spec
from squeeze.model.tiny import FAMILIES, MORE_FAMILIES, tiny_config


def skeleton(family: str):
    """The family's tiny classifier on the meta device: structure without weights."""
    config = tiny_config(family)
    with torch.device("meta"):
        return transformers.AutoModelForSequenceClassification.from_config(config), config


@pytest.mark.parametrize("family", (*FAMILIES, *MORE_FAMILIES))
def test_discovery_finds_what_each_spec_says(family):
    model, config = skeleton(family)
    differences = check_proposal(propose_spec(model, config), find_spec(config))
    if family == "roberta":
        # The tiny tokenizer pads with id 0, so its positions start at 1, not at 2 as in
        # RoBERTa's own checkpoints (pad id 1): discovery reads the model, the spec is general.
        assert differences == ["position_offset: spec 2, found 1"]
    else:
        assert differences == []


def test_block_list_is_the_innermost_list_holding_the_weights():
    model, _ = skeleton("albert")
    assert block_list_path(model.base_model) == "encoder.albert_layer_groups.0.albert_layers"
    model, _ = skeleton("bert")
    assert block_list_path(model.base_model) == "encoder.layer"


def test_a_reviewed_proposal_prunes_a_family_without_a_spec(tiny_classifiers):
    """OPT has no spec: its proposal, pasted as code, is a spec structured pruning can use."""
    from squeeze.model.checkpoint import load

    loaded = load(tiny_classifiers["opt"])
    proposal = propose_spec(loaded.model, loaded.config)
    spec = eval(proposal.as_code(), {"ArchSpec": ArchSpec})  # what a reviewer would paste
    assert spec.attn_out == "self_attn.out_proj" and spec.ffn_in == ("fc1",)
    assert spec.position_offset == 2  # OPT's learned table reserves two positions
    importance = magnitude_importance(loaded.model, spec, loaded.config)
    shapes, _, _ = prune_structured(
        loaded.model, spec, StructuredPruneConfig(heads=0.5, ffn=0.5), importance
    )
    assert {(s.heads, s.ffn) for s in shapes} == {(2, 32)}
    batch = loaded.tokenizer(["a w1 b w2", "w3 b"], padding=True, return_tensors="pt")
    with torch.inference_mode():
        logits = loaded.model(**batch).logits
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()
    assert len(layer_list(loaded.model, spec)) == 2


def test_interleaved_fused_attention_is_flagged_for_review():
    model, config = skeleton("gpt_neox")
    proposal = propose_spec(model, config)
    assert proposal.values["fused_qkv"] == "attention.query_key_value"
    assert any("interleaved per head" in doubt for doubt in proposal.doubts)


def test_readme_family_table_is_generated_from_the_specs():
    from pathlib import Path

    from squeeze.model.families import markdown_table

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert markdown_table() in readme, "regenerate it: python -m squeeze.model.families"
