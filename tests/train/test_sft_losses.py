"""LLaMA-Factory main's SFT losses (use_dft_loss, use_eaft_loss + eaft_alpha, use_asft_loss + asft_alpha):
exact values on a hand-computed example, the same loss from padded and padding-free batches, and short
runs that train with the weighted loss."""

import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from test_train_recipes import run_recipe
from tuneforge.config import make_config
from tuneforge.errors import ConfigError
from tuneforge.train.sft_losses import TokenLoss, sft_token_loss

torch.set_num_threads(1)

# One row of 4 positions over a vocabulary of 3; labels [-100, 0, 2, 1]: position 0 predicts token 0,
# position 1 predicts token 2, position 2 predicts token 1, position 3 has no next token.
LOGITS = [[2.0, 0.0, 0.0], [0.0, 1.0, 3.0], [1.0, 1.0, 1.0], [5.0, -5.0, 0.0]]
LABELS = [-100, 0, 2, 1]
TARGETS = [(0, 0), (1, 2), (2, 1)]  # (position, target token)
REF_LOGITS = [[0.0, 0.0, 0.0], [0.0, 2.0, 0.0], [1.0, 0.0, -1.0], [0.0, 0.0, 0.0]]


def _softmax(row):
    exps = [math.exp(x) for x in row]
    return [e / sum(exps) for e in exps]


def _tensors(logits=LOGITS, labels=LABELS):
    return torch.tensor([logits], requires_grad=True), torch.tensor([labels])


def _loss(kind, alpha=1.0, num_items=None, ref=None):
    logits, labels = _tensors()
    targets = torch.nn.functional.pad(labels, (0, 1), value=-100)[..., 1:]
    ref_logits = torch.tensor([ref]) if ref is not None else None
    return TokenLoss(kind, alpha)(logits, targets, num_items, ref_logits), logits


def test_dft_loss_is_the_cross_entropy_weighted_by_the_target_probability():
    # p(target) by hand: softmax([2,0,0])[0], softmax([0,1,3])[2], softmax([1,1,1])[1] = 1/3
    probs = [_softmax(LOGITS[pos])[tok] for pos, tok in TARGETS]
    assert probs[0] == pytest.approx(math.exp(2) / (math.exp(2) + 2))
    assert probs[2] == pytest.approx(1 / 3)
    expected = sum(-p * math.log(p) for p in probs) / 3
    loss, logits = _loss("dft")
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    plain = sum(-math.log(p) for p in probs) / 3
    assert loss.item() < plain
    # The weight gets no gradient: d/dz of -p.detach() * log p is p * (softmax - onehot).
    loss.backward()
    p1 = _softmax(LOGITS[1])
    expected_grad = [probs[1] * (p1[j] - (j == 2)) / 3 for j in range(3)]
    assert logits.grad[0, 1].tolist() == pytest.approx(expected_grad, rel=1e-5)
    assert logits.grad[0, 3].abs().sum().item() == 0  # the last position has no target


def test_dft_loss_divides_by_the_trainers_token_count():
    # num_items_in_batch: the target tokens of the whole accumulated batch (here 6, twice this batch's).
    loss, _ = _loss("dft")
    halved, _ = _loss("dft", num_items=torch.tensor(6))
    assert halved.item() == pytest.approx(loss.item() / 2, rel=1e-6)


def test_eaft_loss_weights_by_the_entropy_over_3_to_the_power_alpha():
    # vocabulary of 3 < 20: the top-20 entropy is the full entropy of the position's softmax.
    def entropy(row):
        return -sum(p * math.log(p) for p in _softmax(row))

    assert entropy(LOGITS[2]) == pytest.approx(math.log(3))
    for alpha in (1.0, 2.0):
        weights = [(entropy(LOGITS[pos]) / 3) ** alpha for pos, _ in TARGETS]
        ces = [-math.log(_softmax(LOGITS[pos])[tok]) for pos, tok in TARGETS]
        expected = sum(w * ce for w, ce in zip(weights, ces)) / 3
        loss, _ = _loss("eaft", alpha=alpha)
        assert loss.item() == pytest.approx(expected, rel=1e-6), alpha


def test_eaft_entropy_covers_only_the_20_largest_logits():
    # 25 tokens: 5 at logit 0 (left out) and 20 at logit 1; the top-20 softmax is uniform: entropy log(20).
    logits = [[1.0] * 20 + [0.0] * 5, [0.0] * 25]
    loss = TokenLoss("eaft", 1.0)(torch.tensor([logits]), torch.tensor([[3, -100]]))
    ce = -math.log(math.exp(1) / (20 * math.exp(1) + 5))
    assert loss.item() == pytest.approx(math.log(20) / 3 * ce, rel=1e-6)


def test_asft_loss_adds_alpha_times_the_kl_from_the_reference():
    probs = [_softmax(LOGITS[pos])[tok] for pos, tok in TARGETS]
    dft = sum(-p * math.log(p) for p in probs) / 3

    def kl(ref_row, row):  # KL(reference || policy)
        q, p = _softmax(ref_row), _softmax(row)
        return sum(qi * math.log(qi / pi) for qi, pi in zip(q, p))

    mean_kl = sum(kl(REF_LOGITS[pos], LOGITS[pos]) for pos, _ in TARGETS) / 3
    loss, _ = _loss("asft", alpha=0.5, ref=REF_LOGITS)
    assert loss.item() == pytest.approx(dft + 0.5 * mean_kl, rel=1e-6)
    same, _ = _loss("asft", alpha=0.5, ref=LOGITS)
    assert same.item() == pytest.approx(dft, rel=1e-6)  # no KL against itself


def test_sft_token_loss_reads_the_method_group():
    assert sft_token_loss(make_config({}).method) is None
    assert sft_token_loss(make_config({"use_dft_loss": True}).method) == TokenLoss("dft")
    assert sft_token_loss(make_config({"use_eaft_loss": True, "eaft_alpha": 2.0}).method) == TokenLoss("eaft", 2.0)
    assert sft_token_loss(make_config({"use_asft_loss": True}).method) == TokenLoss("asft", 0.1)


@pytest.mark.parametrize("values, message", [
    ({"use_dft_loss": True, "use_eaft_loss": True},
     "use_dft_loss and use_eaft_loss are both set; choose one SFT loss."),
    ({"use_dft_loss": True, "stage": "pt"}, "use_dft_loss replaces the loss of stage sft; stage is 'pt'."),
    ({"use_eaft_loss": True, "label_smoothing_factor": 0.1},
     "use_eaft_loss computes its own loss, so label_smoothing_factor would be ignored"),
])
def test_loss_combinations_are_refused(values, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_config(values)


# --- through the real trainer -----------------------------------------------------------------------------


def _first_batch_features(trainer, count=4):
    return [trainer.train_dataset[i] for i in range(count)]


def _hand_loss(kind, logits, labels, alpha=1.0):
    """The weighted loss from a padded batch's logits, computed position by position."""
    total, count = 0.0, 0
    for row_logits, row_labels in zip(logits, labels):
        for pos in range(len(row_labels) - 1):
            target = int(row_labels[pos + 1])
            if target == -100:
                continue
            log_probs = torch.log_softmax(row_logits[pos].double(), -1)
            p = log_probs[target].exp().item()
            if kind == "dft":
                weight = p
            else:
                top = torch.topk(row_logits[pos].double(), 20).values
                top_log = top - torch.logsumexp(top, -1)
                weight = (-(top_log.exp() * top_log).sum().item() / 3) ** alpha
            total += -weight * math.log(p)
            count += 1
    return total / count


@pytest.fixture(scope="module")
def dft_run(tiny_llama_dir, tmp_path_factory):
    return run_recipe("sft", tiny_llama_dir, tmp_path_factory.mktemp("dft"), finetuning_type="lora",
                      learning_rate=1e-2, use_dft_loss=True, logging_steps=1)


@pytest.mark.parametrize("kind", ["dft", "eaft"])
def test_padded_and_padding_free_batches_give_the_hand_computed_loss(dft_run, kind):
    _, trainer = dft_run
    trainer.token_loss = TokenLoss(kind, 1.5)
    collator = trainer.data_collator
    assert type(collator).__name__ == "PaddingFreeCollator", "padding-free batches are on for this run"
    features = _first_batch_features(trainer)
    padded = collator.padded_collator(features)
    packed = collator.pack(features, even_if_slower=True)
    model = trainer.model.eval()
    try:
        with torch.no_grad():
            logits = model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"]).logits
            expected = _hand_loss(kind, logits, padded["labels"], alpha=1.5)
            padded_loss = trainer.compute_loss(model, padded).item()
            packed_loss = trainer.compute_loss(model, packed).item()
            plain = model(**padded).loss.item()
    finally:
        trainer.token_loss = TokenLoss("dft")
    assert padded_loss == pytest.approx(expected, rel=1e-4)
    assert packed_loss == pytest.approx(expected, rel=1e-4)
    assert abs(padded_loss - plain) > 0.1 * plain  # the weighted loss, not the model's cross entropy


def _logged_losses(trainer):
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def _plain_loss(trainer):
    """The model's own cross entropy on the 8 training rows (one padded batch), in eval mode."""
    batch = trainer.data_collator.padded_collator(_first_batch_features(trainer, count=8))
    model = trainer.model.eval()
    with torch.no_grad():
        return model(**batch).loss.item()


def test_dft_run_trains_with_the_weighted_loss(dft_run, tiny_llama_dir, tmp_path):
    _, trainer = dft_run
    assert trainer.token_loss == TokenLoss("dft")
    # The same first step with the plain loss: same seed, batch and starting weights. DFT weighs each token's
    # cross entropy by its probability (about 1 / vocabulary for the untrained model), so it is far smaller.
    _, plain = run_recipe("sft", tiny_llama_dir, tmp_path, finetuning_type="lora", learning_rate=1e-2,
                          logging_steps=1, max_steps=1)
    dft_losses, plain_first = _logged_losses(trainer), _logged_losses(plain)[0]
    assert dft_losses[0] < 0.05 * plain_first, (dft_losses[0], plain_first)
    # -p log p rises while p < 1/e, so the DFT loss itself first climbs as the model learns; the model's
    # plain cross entropy on the training rows falls.
    assert _plain_loss(trainer) < 0.85 * plain_first  # 7.66 -> 5.81 in 30 steps
    assert dft_losses[-1] < max(dft_losses)


def test_asft_run_trains_with_the_lora_policy_as_reference(tiny_llama_dir, tmp_path):
    metrics, trainer = run_recipe("sft", tiny_llama_dir, tmp_path, finetuning_type="lora", learning_rate=1e-2,
                                  use_asft_loss=True, asft_alpha=0.5, max_steps=10)
    assert trainer.token_loss == TokenLoss("asft", 0.5) and trainer.sft_reference is None
    losses = _logged_losses(trainer)
    assert losses[-1] < losses[0], losses
    # After training the policy differs from its adapter-off self: the KL term is positive.
    features = _first_batch_features(trainer)
    batch = trainer.data_collator(features)
    model = trainer.model.eval()
    with torch.no_grad():
        with_kl = trainer.compute_loss(model, batch).item()
        trainer.token_loss = TokenLoss("asft", 0.0)
        without_kl = trainer.compute_loss(model, batch).item()
    assert with_kl > without_kl


def test_asft_with_full_training_compares_with_a_frozen_copy_of_the_start(tiny_llama_dir, tmp_path):
    metrics, trainer = run_recipe("sft", tiny_llama_dir, tmp_path, finetuning_type="full", learning_rate=5e-3,
                                  use_asft_loss=True, max_steps=10)
    reference = trainer.sft_reference
    assert reference is not None and reference is not trainer.model and not reference.training
    start = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir))
    for (name, kept), (_, original) in zip(reference.named_parameters(), start.named_parameters()):
        assert torch.equal(kept, original), name  # the reference never trains
        assert not kept.requires_grad
    # The model learned the rows: its cross entropy is below the reference's (the start) on them. (The
    # ASFT loss itself first rises: -p log p grows while p < 1/e, and so does the KL from the start.)
    batch = trainer.data_collator.padded_collator(_first_batch_features(trainer, count=8))
    with torch.no_grad():
        trained, started = (model.eval()(**batch).loss.item() for model in (trainer.model, reference))
    assert trained < 0.9 * started, (trained, started)


def test_asft_reads_ref_model_which_plain_sft_refuses(tiny_llama_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"ref_model only applies to stage dpo or kto or ppo or grpo \(or sft with "
                                          r"use_asft_loss\) \(stage is 'sft'\); remove it."):
        make_config({"stage": "sft", "do_train": True, "ref_model": str(tiny_llama_dir)})
    _, trainer = run_recipe("sft", tiny_llama_dir, tmp_path, finetuning_type="lora", learning_rate=1e-2,
                            use_asft_loss=True, ref_model=str(tiny_llama_dir), max_steps=2)
    # With ref_model the reference is that model, loaded on its own (not the adapter-off policy).
    assert trainer.sft_reference is not None and not trainer.sft_reference.training
    assert not any(param.requires_grad for param in trainer.sft_reference.parameters())
